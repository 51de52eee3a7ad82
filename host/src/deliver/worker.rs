//! One endpoint's delivery loop: loads its deliveries from the outbox, sends them concurrently
//! across workflows and in order within one, and retries or dead-letters failures.
//!
//! A worker that keeps up takes its new deliveries in memory, handed over as soon as they are
//! durable ([`handoff`](crate::state::handoff)), and holds a hand-off back while it has no
//! room for it, which slows the source down to its pace. Otherwise the outbox is the queue:
//! the worker keeps at most [`LOADED`] deliveries in memory and reads more as they complete,
//! so an endpoint that is down for hours costs disk, not memory, and never holds up another
//! endpoint (each has its own worker). Within an endpoint, one workflow stuck behind a failing
//! delivery holds at most [`QUEUED`] deliveries in memory: the rest of it stays in the outbox,
//! read again once its queue has room, so that it never fills the worker and holds up the
//! other workflows.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use foldhash::{HashMap, HashSet};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::Delivery;
use super::http::{Failure, HttpSender};
use super::pace::Pacer;
use super::record;
use crate::model::clock::{now_ms, now_us};
use crate::model::request::{Render, Request, Verdict};
use crate::state::History;
use crate::state::dead_letter::{DeadLetter, DeadLetters};
use crate::state::outbox::{Outbox, PendingDelivery};
use crate::telemetry::Metrics;
use crate::telemetry::delivery::Succeeded;

/// Deliveries held in memory per endpoint at most.
pub(crate) const LOADED: usize = 1024;

/// Deliveries queued in memory behind one workflow's delivery under way, at most.
const QUEUED: usize = 256;

/// How often a delivery waiting for a missing plugin looks again, besides on every change.
const PLUGIN_RECHECK: Duration = Duration::from_secs(30);

/// The wait before writing a dead letter again after a failed write; it doubles each time.
const DEAD_LETTER_RETRY_FIRST: Duration = Duration::from_secs(1);

/// The longest wait between two attempts to write a dead letter.
const DEAD_LETTER_RETRY_MAX: Duration = Duration::from_secs(60);

/// What a worker needs, shared by its delivery tasks.
pub(super) struct Shared {
    pub(crate) name: String,
    pub(crate) endpoint: watch::Receiver<Arc<Delivery>>,
    pub(crate) outbox: Outbox,
    pub(crate) dead_letters: DeadLetters,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) http: HttpSender,
    pub(crate) render: Arc<dyn Render>,
    pub(crate) slots: Arc<Semaphore>,
    /// Spaces the attempts when the endpoint has a `rate`.
    pub(crate) pacer: Pacer,
    /// Stop starting attempts; attempts under way finish.
    pub(crate) stop: CancellationToken,
    /// The console's history.
    pub(crate) history: History,
    /// With a shared outbox: the claim buckets whose workflows this replica delivers now.
    /// `None`: every workflow.
    pub(crate) claims: Option<watch::Receiver<u64>>,
    /// The metrics of this endpoint's successful deliveries, once there was one.
    pub(crate) succeeded: OnceLock<Succeeded>,
}

/// How one delivery ended.
enum End {
    /// Delivered, dropped or dead-lettered: removed from the outbox.
    Done,
    /// The worker is stopping, or this replica no longer holds its workflow's claim: left in
    /// the outbox for the next run or the replica that takes the claim.
    Left,
}

/// What a delivery task returns: its workflow's ordering key, its sequence number, its end.
type Ended = (String, u64, End);

/// How long a worker that gained claims waits for its completions to be committed before it
/// reads the outbox again from the start.
const FLUSH_PATIENCE: Duration = Duration::from_secs(5);

/// The deliveries a worker holds in memory, by workflow: one under way per workflow, the
/// others queued behind it in sequence order.
///
/// Its maps are looked up several times per delivery, by sequence number and by ordering key (a
/// workflow uid, which the API server assigns; a name only for Events that carry no uid), so
/// they hash with foldhash.
#[derive(Default)]
struct Held {
    /// Sequence numbers of every delivery held (under way or queued).
    seqs: HashSet<u64>,
    /// The deliveries waiting behind the one under way, per workflow.
    queues: HashMap<String, VecDeque<PendingDelivery>>,
    /// Workflows with a delivery under way, and their claim buckets.
    busy: HashMap<String, u32>,
    /// Per claim bucket with deliveries under way: cancelled when the claim is lost.
    tokens: HashMap<u32, CancellationToken>,
    /// Workflows whose queue was full, and the first of their deliveries left in the outbox:
    /// the later ones read are left too, so that they keep their order.
    overflow: HashMap<String, u64>,
    /// Workflows being read again from the delivery of theirs first left in the outbox.
    rereading: HashMap<String, u64>,
    /// The highest sequence number read since the last read from the start: what lies at or
    /// below it was read once, and only the deliveries left in the outbox are taken again.
    frontier: u64,
}

impl Held {
    /// Takes `delivery` in, as the head of its workflow (returned, to start) or queued behind
    /// it; or leaves it in the outbox, when it is held already, was taken in before, or its
    /// workflow's queue is full.
    fn take(&mut self, delivery: PendingDelivery) -> Option<(String, PendingDelivery)> {
        let seq = delivery.seq;
        let key = delivery.event.ordering_key();
        let left_before = |first: Option<&u64>| first.is_some_and(|first| *first <= seq);
        let again = seq <= self.frontier;
        self.frontier = self.frontier.max(seq);
        if again && !left_before(self.overflow.get(&key)) && !left_before(self.rereading.get(&key))
        {
            return None;
        }
        if self.seqs.contains(&seq) {
            return None;
        }
        if self.busy.contains_key(&key) {
            let queue = self.queues.entry(key.clone()).or_default();
            if queue.len() >= QUEUED || self.overflow.contains_key(&key) {
                self.overflow.entry(key).or_insert(seq);
                return None;
            }
            self.seqs.insert(seq);
            queue.push_back(delivery);
            return None;
        }
        self.seqs.insert(seq);
        self.busy.insert(key.clone(), delivery.bucket);
        Some((key, delivery))
    }

    /// When `key`'s queue has room again for what it left in the outbox: the sequence number
    /// to read again from.
    fn refill(&mut self, key: &str) -> Option<u64> {
        let queued = self.queues.get(key).map_or(0, VecDeque::len);
        if queued >= QUEUED / 2 {
            return None;
        }
        let first = self.overflow.remove(key)?;
        self.rereading.insert(key.to_owned(), first);
        Some(first)
    }

    /// Everything is read again from the start.
    fn read_all_again(&mut self) {
        self.overflow.clear();
        self.rereading.clear();
        self.frontier = 0;
    }

    /// Forgets the deliveries queued behind `key` and the workflow itself.
    fn drop_workflow(&mut self, key: &str) {
        if let Some(queue) = self.queues.remove(key) {
            for delivery in queue {
                self.seqs.remove(&delivery.seq);
            }
        }
        self.busy.remove(key);
    }

    /// Stops delivering the workflows of the buckets in `gone`: their attempts under way end
    /// (left pending), and what is queued behind them is forgotten.
    fn lose(&mut self, gone: u64) {
        self.tokens.retain(|bucket, token| {
            let lost = gone & (1 << bucket) != 0;
            if lost {
                token.cancel();
            }
            !lost
        });
        let keys: Vec<String> = self
            .queues
            .keys()
            .filter(|key| self.busy.get(*key).is_some_and(|b| gone & (1 << b) != 0))
            .cloned()
            .collect();
        for key in keys {
            if let Some(queue) = self.queues.remove(&key) {
                for delivery in queue {
                    self.seqs.remove(&delivery.seq);
                }
            }
        }
    }
}

/// Runs until `shared.stop` is cancelled and the attempts under way have finished.
pub(super) async fn run(shared: Arc<Shared>) {
    let mut accepted = shared.outbox.accepted();
    let mut reconnects = shared.outbox.reconnects();
    let mut claims = shared.claims.clone();
    let mut owned = claims.as_mut().map(|c| *c.borrow_and_update());
    let mut held = Held::default();
    let mut running: FuturesUnordered<BoxFuture<'static, Ended>> = FuturesUnordered::new();
    let mut handoffs = shared.outbox.handoffs(&shared.name);
    // A hand-off taken from the queue before there was room for it.
    let mut parked = None;
    // Every delivery of this endpoint up to here was read or handed over.
    let mut cursor = 0u64;
    let mut caught_up = false;
    // Whether the outbox still tells of new deliveries (until it closes).
    let mut accepting = true;
    loop {
        // What was accepted up to `mark` was handed over before `mark` was published.
        let mark = *accepted.borrow_and_update();
        while let Some(handoff) = parked.take().or_else(|| handoffs.try_recv().ok()) {
            if handoff.upto <= cursor || shared.stop.is_cancelled() {
                continue;
            }
            // One missed (its queue was full), or another process committed since the last
            // one: the outbox has it.
            if handoff.after > cursor {
                caught_up = false;
                continue;
            }
            // No room: held back, so that the queue fills and the source waits.
            if !held.seqs.is_empty() && held.seqs.len() + handoff.deliveries.len() > LOADED {
                parked = Some(handoff);
                break;
            }
            for delivery in handoff.deliveries {
                // Another replica's workflows are its to deliver.
                if delivery.seq <= cursor || !owns(owned, delivery.bucket) {
                    continue;
                }
                if let Some((key, head)) = held.take(delivery) {
                    running.push(start(&shared, &mut held, key, head));
                }
            }
            cursor = handoff.upto;
        }
        // A hand-off held back covers what follows the cursor; later ones wait in the queue.
        if mark > cursor && parked.is_none() {
            caught_up = false;
        }
        // Read in large batches: refilling one delivery per completion would cost a read
        // transaction each.
        let loaded = held.seqs.len();
        if !caught_up && loaded <= LOADED / 2 && !shared.stop.is_cancelled() && owned != Some(0) {
            let mark = *accepted.borrow();
            let batch = load(&shared, cursor, LOADED - loaded, owned).await;
            caught_up = batch.len() < LOADED - loaded;
            for delivery in batch {
                cursor = delivery.seq;
                if let Some((key, head)) = held.take(delivery) {
                    running.push(start(&shared, &mut held, key, head));
                }
            }
            if cursor >= held.frontier {
                held.rereading.clear();
            }
            // Read to the end: nothing of this endpoint lies between its last row and what
            // had been accepted when the read began.
            if caught_up {
                cursor = cursor.max(mark);
            }
        }
        tokio::select! {
            // Claims first: a lost claim stops its workflows before anything else happens.
            biased;
            new = claim_change(&mut claims), if !shared.stop.is_cancelled() => {
                let old = owned.unwrap_or(u64::MAX);
                owned = Some(new);
                held.lose(old & !new);
                if new & !old != 0 {
                    // The gained workflows' deliveries may lie before the cursor: read again
                    // from the start, once this worker's own completions are committed, so
                    // that none of them is read back as pending.
                    let _ = tokio::time::timeout(FLUSH_PATIENCE, shared.outbox.flush()).await;
                    cursor = 0;
                    caught_up = false;
                    held.read_all_again();
                }
            }
            Some((key, seq, end)) = running.next() => {
                held.seqs.remove(&seq);
                if matches!(end, End::Left) {
                    let bucket = held.busy.get(&key).copied();
                    held.drop_workflow(&key);
                    // A claim lost and gained again before this attempt ended: what was
                    // queued behind it was dropped with it, so read it again.
                    let regained = bucket.is_some_and(|b| owned.is_some() && owns(owned, b));
                    if !shared.stop.is_cancelled() && regained {
                        let _ = tokio::time::timeout(FLUSH_PATIENCE, shared.outbox.flush()).await;
                        cursor = 0;
                        caught_up = false;
                        held.read_all_again();
                    }
                    continue;
                }
                let next = held.queues.get_mut(&key).and_then(VecDeque::pop_front);
                if let Some(first) = held.refill(&key) {
                    cursor = cursor.min(first - 1);
                    caught_up = false;
                }
                match next {
                    Some(next) => running.push(start(&shared, &mut held, key, next)),
                    None => held.drop_workflow(&key),
                }
            }
            // More accepted: handed over, or to read (see the top of the loop).
            changed = accepted.changed(), if caught_up && accepting && !shared.stop.is_cancelled() => {
                accepting = changed.is_ok();
            }
            // The database may have lost completions committed lazily before it went down:
            // their rows are pending again, behind the cursor. Read everything again.
            Some(Ok(())) = async { Some(reconnects.as_mut()?.changed().await) },
                if reconnects.is_some() && !shared.stop.is_cancelled() =>
            {
                cursor = 0;
                caught_up = false;
                held.read_all_again();
            }
            () = shared.stop.cancelled(), if !shared.stop.is_cancelled() => {}
            else => break,
        }
        if shared.stop.is_cancelled() && running.is_empty() {
            break;
        }
    }
}

/// Whether this replica delivers the workflows of `bucket`: always, without claims.
fn owns(owned: Option<u64>, bucket: u32) -> bool {
    owned.is_none_or(|o| o & (1 << bucket) != 0)
}

/// The next claims, when they change; never, without claims (or once their task is gone).
async fn claim_change(claims: &mut Option<watch::Receiver<u64>>) -> u64 {
    if let Some(receiver) = claims
        && receiver.changed().await.is_ok()
    {
        return *receiver.borrow_and_update();
    }
    std::future::pending().await
}

/// Starts delivering `delivery`, the head of workflow `key`, until done or its claim bucket
/// is lost.
fn start(
    shared: &Arc<Shared>,
    held: &mut Held,
    key: String,
    delivery: PendingDelivery,
) -> BoxFuture<'static, Ended> {
    let seq = delivery.seq;
    let lost = held.tokens.entry(delivery.bucket).or_default().clone();
    let plugins = shared.render.runs_plugins(&shared.name);
    let shared = Arc::clone(shared);
    let work = async move {
        tokio::select! {
            end = deliver(shared, delivery) => end,
            () = lost.cancelled() => End::Left,
        }
    };
    if !plugins {
        // Rendering alone is cheap: a task of its own would cost more than it spreads.
        return Box::pin(async move { (key, seq, work.await) });
    }
    // Plugins are CPU work: a task of its own lets them, and the sending, use every core,
    // not only the worker's. Dropped with the worker, it is aborted.
    let task = AbortOnDropHandle::new(tokio::spawn(work));
    Box::pin(async move {
        let end = match task.await {
            Ok(end) => end,
            // As if it had run in the worker's own task.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_aborted) => End::Left,
        };
        (key, seq, end)
    })
}

async fn load(
    shared: &Shared,
    cursor: u64,
    limit: usize,
    buckets: Option<u64>,
) -> Vec<PendingDelivery> {
    let outbox = shared.outbox.clone();
    let name = shared.name.clone();
    let loaded =
        tokio::task::spawn_blocking(move || outbox.pending_in(&name, cursor, limit, buckets)).await;
    match loaded {
        Ok(Ok(batch)) => {
            let read_back = &shared.metrics.outbox_read_back;
            read_back
                .get_or_create(&Metrics::endpoint(&shared.name))
                .inc_by(batch.len() as u64);
            batch
        }
        Ok(Err(e)) => {
            tracing::error!(endpoint = %shared.name, "cannot read the outbox: {e}");
            Vec::new()
        }
        Err(e) => {
            tracing::error!(endpoint = %shared.name, "outbox read task failed: {e}");
            Vec::new()
        }
    }
}

/// Delivers one event to the endpoint: render, plugins, then attempts until done.
async fn deliver(shared: Arc<Shared>, mut delivery: PendingDelivery) -> End {
    let webhook_id = ["msg_", &delivery.event.id].concat();
    // A slot first, then the body: the bodies in memory are bounded by the endpoint's
    // concurrency, not by how many of its workflows wait.
    let (request, slot) = loop {
        let Ok(slot) = shared.slots.acquire().await else {
            return End::Left;
        };
        // Not sent: the slot goes back before anything else (a dead letter's write, a wait).
        match shared.render.render(&shared.name, &delivery.event).await {
            Verdict::Deliver(request) => break (request, slot),
            Verdict::Drop { by } => {
                drop(slot);
                record::dropped(&shared, &delivery.event, &webhook_id, &by);
                shared.metrics.delivery.dropped(&shared.name, by);
                shared.outbox.complete(&shared.name, delivery.seq);
                return End::Done;
            }
            Verdict::DeadLetter {
                plugin,
                error,
                payload,
            } => {
                drop(slot);
                let request = Request {
                    payload,
                    headers: Vec::new(),
                };
                let error = format!("plugin {plugin} failed: {error}");
                return dead_letter(&shared, &delivery, &request, &webhook_id, &error).await;
            }
            Verdict::Wait { reason } => {
                drop(slot);
                tracing::warn!(endpoint = %shared.name, webhook_id, "delivery waits in the outbox: {reason}");
                if !wait_for_plugins(&shared).await {
                    return End::Left;
                }
            }
        }
    };
    let mut slot = Some(slot);
    let started = Instant::now();
    // Attempts made before a restart count against the budget; time is measured from now.
    let elapsed_before = Duration::from_millis(match delivery.first_attempt_ms {
        0 => 0,
        first => now_ms().saturating_sub(first),
    });
    loop {
        if shared.stop.is_cancelled() {
            return End::Left;
        }
        let (outcome, seconds) = {
            let _slot = match slot.take() {
                Some(slot) => slot,
                None => match shared.slots.acquire().await {
                    Ok(slot) => slot,
                    Err(_) => return End::Left,
                },
            };
            let rate = shared.endpoint.borrow().rate;
            tokio::select! {
                () = shared.pacer.turn(rate) => {}
                () = shared.stop.cancelled() => return End::Left,
            }
            let endpoint = shared.endpoint.borrow().clone();
            let sent = Instant::now();
            let keep = shared.history.is_on();
            let (outcome, exchange) = (shared.http)
                .post(&endpoint, &request, &webhook_id, keep)
                .await;
            let took = sent.elapsed();
            record::attempted(
                &shared,
                &delivery.event,
                &webhook_id,
                took,
                &outcome,
                exchange,
            );
            let seconds = took.as_secs_f64();
            if let Err(failure) = &outcome {
                let delivery_metrics = &shared.metrics.delivery;
                delivery_metrics.attempt(&shared.name, failure.class(), seconds);
            }
            (outcome, seconds)
        };
        delivery.attempts += 1;
        if delivery.first_attempt_ms == 0 {
            delivery.first_attempt_ms = now_ms();
        }
        let failure = match outcome {
            Ok(_) => {
                let latency = now_us().saturating_sub(delivery.accepted_us) as f64 / 1e6;
                let succeeded = shared
                    .succeeded
                    .get_or_init(|| shared.metrics.delivery.succeeded(&shared.name));
                succeeded.count(seconds, latency);
                shared.outbox.complete(&shared.name, delivery.seq);
                return End::Done;
            }
            Err(failure) => failure,
        };
        let retry_policy = shared.endpoint.borrow().retry.clone();
        let delay = match &failure {
            Failure::Retry { retry_after, .. } => retry_policy.next_delay(
                delivery.attempts,
                elapsed_before + started.elapsed(),
                *retry_after,
            ),
            Failure::Final { .. } => None,
        };
        let Some(delay) = delay else {
            let end = dead_letter(&shared, &delivery, &request, &webhook_id, failure.error()).await;
            return end;
        };
        tracing::warn!(
            endpoint = %shared.name,
            webhook_id,
            attempt = delivery.attempts,
            retry_in = ?delay,
            "delivery failed: {}",
            failure.error()
        );
        shared.metrics.delivery.retried(&shared.name);
        shared.outbox.attempted(
            &shared.name,
            delivery.seq,
            delivery.attempts,
            delivery.first_attempt_ms,
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shared.stop.cancelled() => return End::Left,
        }
    }
}

/// Waits for the plugins or the endpoint's settings to change (or [`PLUGIN_RECHECK`] to
/// pass); false when the worker is stopping.
async fn wait_for_plugins(shared: &Shared) -> bool {
    let mut endpoint = shared.endpoint.clone();
    endpoint.mark_unchanged();
    tokio::select! {
        () = shared.render.changed() => true,
        _ = endpoint.changed() => true,
        () = tokio::time::sleep(PLUGIN_RECHECK) => true,
        () = shared.stop.cancelled() => false,
    }
}

/// Writes the dead letter of `delivery`, then completes it. A failed write (disk full, read
/// only) is logged and tried again, from [`DEAD_LETTER_RETRY_FIRST`] doubling up to
/// [`DEAD_LETTER_RETRY_MAX`], for as long as the worker runs: the delivery stays pending in the
/// outbox meanwhile, holding back its workflow, and when the worker stops it is left there for
/// the next start ([`End::Left`]).
async fn dead_letter(
    shared: &Shared,
    delivery: &PendingDelivery,
    request: &Request,
    webhook_id: &str,
    error: &str,
) -> End {
    tracing::error!(
        endpoint = %shared.name,
        webhook_id,
        attempts = delivery.attempts,
        "delivery given up, written to {}: {error}",
        shared.dead_letters.path().display()
    );
    let letter = DeadLetter {
        time: k8s_openapi::jiff::Timestamp::now().to_string(),
        endpoint: &shared.name,
        webhook_id,
        attempts: delivery.attempts,
        last_error: error,
        payload: std::str::from_utf8(&request.payload.body).ok(),
        event: &delivery.event,
    };
    let mut wait = DEAD_LETTER_RETRY_FIRST;
    loop {
        match shared.dead_letters.write(&letter).await {
            Ok(()) => {
                record::given_up(shared, &delivery.event, webhook_id, error);
                shared.metrics.delivery.dead_lettered(&shared.name);
                shared.outbox.complete(&shared.name, delivery.seq);
                return End::Done;
            }
            Err(e) => tracing::error!(
                endpoint = %shared.name,
                webhook_id,
                retry_in = ?wait,
                "cannot write the dead letter, kept in the outbox: {e}"
            ),
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shared.stop.cancelled() => return End::Left,
        }
        wait = (wait * 2).min(DEAD_LETTER_RETRY_MAX);
    }
}
