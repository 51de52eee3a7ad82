//! The writer: one task, one connection, every write. It commits whatever has queued up in
//! one transaction (group commit); consecutive writes of a kind become one statement.
//!
//! A transaction that cannot commit because the connection is gone is tried again, with
//! backoff, on a new connection, for as long as it takes: callers of `accept` wait, nothing is
//! lost. Each transaction first locks the `meta` row and stores a random token in it, so that
//! when a commit's reply is lost, the next try sees whether it went through, and does not
//! store the same events twice.

use std::collections::HashMap;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_postgres::{Client, Statement, Transaction};
use tokio_util::sync::CancellationToken;

use super::link::{Backoff, Link, describe, is_transient};
use super::{CHANNEL, DEPTH_REFRESH, raise};
use crate::model::clock::now_ms;
use crate::state::outbox::{AcceptBatch, GROUP_COMMIT, LAZY_WINDOW};

/// A queued write.
pub(super) enum Write {
    Accept(AcceptBatch, oneshot::Sender<()>),
    Attempted {
        endpoint: String,
        seq: u64,
        attempts: u32,
        first_ms: u64,
    },
    Complete {
        endpoint: String,
        seq: u64,
    },
    ClearCheckpoint(String, oneshot::Sender<()>),
    Purge(String, oneshot::Sender<u64>),
    DeadLetter(Letter, oneshot::Sender<()>),
    /// Commit; with `close`, then stop.
    Flush {
        done: oneshot::Sender<()>,
        close: bool,
    },
}

impl Write {
    /// Whether nobody waits for this write: it may be committed a little later, and without
    /// waiting for the server's disk.
    fn is_lazy(&self) -> bool {
        matches!(self, Write::Complete { .. } | Write::Attempted { .. })
    }
}

/// A dead letter, as a row of `dead_letters`.
pub(super) struct Letter {
    /// When it was given up (RFC 3339).
    pub(super) at: String,
    /// The endpoint's name.
    pub(super) endpoint: String,
    /// The `webhook-id` it was sent with.
    pub(super) webhook_id: String,
    /// The whole letter, as JSON.
    pub(super) json: String,
}

/// One statement's worth of a transaction, ready to be sent (again, after a failure).
enum Step {
    Accept(Accepted),
    Attempted(Vec<(String, u64, u32, u64)>),
    Complete(Vec<(String, u64)>),
    Purge(String),
    ClearCheckpoint(String),
    DeadLetter(Letter),
}

/// An [`AcceptBatch`], serialised.
struct Accepted {
    accepted_ms: i64,
    keys: Vec<String>,
    events: Vec<Vec<u8>>,
    endpoints: Vec<Vec<String>>,
    stored_uids: Vec<String>,
    stored_states: Vec<Vec<u8>>,
    removed_uids: Vec<String>,
    checkpoint: Option<(String, String)>,
}

/// What a committed transaction changed.
#[derive(Clone, Default)]
struct Outcome {
    last_seq: Option<u64>,
    depth: i64,
    purged: Vec<u64>,
}

/// Callers to answer once the transaction has committed.
#[derive(Default)]
struct Replies {
    done: Vec<oneshot::Sender<()>>,
    purged: Vec<oneshot::Sender<u64>>,
}

/// The statements, prepared on each new connection.
struct Sql {
    lock_meta: Statement,
    set_token: Statement,
    next_seqs: Statement,
    insert_events: Statement,
    insert_pending: Statement,
    store_workflows: Statement,
    remove_workflows: Statement,
    set_checkpoint: Statement,
    clear_checkpoint: Statement,
    attempted: Statement,
    complete: Statement,
    purge: Statement,
    release: Statement,
    dead_letter: Statement,
    notify: Statement,
}

impl Sql {
    async fn prepare(client: &Client) -> Result<Self, tokio_postgres::Error> {
        let p = |sql| client.prepare(sql);
        Ok(Self {
            lock_meta: p("SELECT last_commit FROM meta WHERE id = 1 FOR UPDATE").await?,
            set_token: p("UPDATE meta SET last_commit = $1 WHERE id = 1").await?,
            next_seqs: p("SELECT nextval('event_seq') FROM generate_series(1, $1::bigint)").await?,
            insert_events: p("INSERT INTO events (seq, accepted_ms, ordering_key, event) \
                 SELECT s, $2, k, e FROM unnest($1::bigint[], $3::text[], $4::bytea[]) AS u(s, k, e)")
            .await?,
            insert_pending: p("INSERT INTO pending (endpoint, seq) \
                 SELECT * FROM unnest($1::text[], $2::bigint[])")
            .await?,
            store_workflows: p("INSERT INTO workflows (uid, state) \
                 SELECT * FROM unnest($1::text[], $2::bytea[]) \
                 ON CONFLICT (uid) DO UPDATE SET state = excluded.state")
            .await?,
            remove_workflows: p("DELETE FROM workflows WHERE uid = ANY($1::text[])").await?,
            set_checkpoint: p("INSERT INTO checkpoints (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .await?,
            clear_checkpoint: p("DELETE FROM checkpoints WHERE key = $1").await?,
            attempted: p("UPDATE pending p SET attempts = u.a, first_attempt_ms = u.f \
                 FROM unnest($1::text[], $2::bigint[], $3::int[], $4::bigint[]) AS u(e, s, a, f) \
                 WHERE p.endpoint = u.e AND p.seq = u.s")
            .await?,
            complete: p("DELETE FROM pending p USING unnest($1::text[], $2::bigint[]) AS u(e, s) \
                 WHERE p.endpoint = u.e AND p.seq = u.s RETURNING p.seq")
            .await?,
            purge: p("DELETE FROM pending WHERE endpoint = $1 RETURNING seq").await?,
            release: p("DELETE FROM events e WHERE e.seq = ANY($1::bigint[]) \
                 AND NOT EXISTS (SELECT 1 FROM pending p WHERE p.seq = e.seq)")
            .await?,
            dead_letter: p("INSERT INTO dead_letters (at, endpoint, webhook_id, letter) \
                 VALUES ($1::text::timestamptz, $2, $3, $4)")
            .await?,
            notify: p("SELECT pg_notify($1, $2)").await?,
        })
    }
}

/// Owns every write transaction.
pub(super) struct Writer {
    link: Link,
    connection: Option<(Client, Sql)>,
    last_seq: std::sync::Arc<watch::Sender<u64>>,
    depth: std::sync::Arc<watch::Sender<i64>>,
    /// Set by `close`: stop trying once a try fails.
    closing: CancellationToken,
    /// What the transaction whose commit was sent but not answered changed.
    unconfirmed: Option<Outcome>,
}

impl Writer {
    /// A writer connecting through `link` (on its first write).
    pub(super) fn new(
        link: Link,
        last_seq: std::sync::Arc<watch::Sender<u64>>,
        depth: std::sync::Arc<watch::Sender<i64>>,
        closing: CancellationToken,
    ) -> Self {
        Self {
            link,
            connection: None,
            last_seq,
            depth,
            closing,
            unconfirmed: None,
        }
    }

    /// Commits what `queue` brings until a close (returns the replies to send once the
    /// connections are closed) or until every sender is gone.
    pub(super) async fn run(
        mut self,
        mut queue: mpsc::UnboundedReceiver<Write>,
    ) -> Vec<oneshot::Sender<()>> {
        loop {
            let first = match tokio::time::timeout(DEPTH_REFRESH, queue.recv()).await {
                Ok(Some(write)) => write,
                Ok(None) => return Vec::new(),
                Err(_) => {
                    self.refresh_depth().await;
                    continue;
                }
            };
            let batch = gather(&mut queue, first).await;
            let close = batch
                .iter()
                .any(|w| matches!(w, Write::Flush { close: true, .. }));
            let lazy = batch.iter().all(Write::is_lazy);
            let (steps, replies) = plan(batch);
            match self.commit(&steps, lazy).await {
                Ok(outcome) => {
                    if let Some(seq) = outcome.last_seq {
                        raise(&self.last_seq, seq);
                    }
                    if outcome.depth != 0 {
                        self.depth.send_modify(|d| *d += outcome.depth);
                    }
                    for (done, n) in replies.purged.into_iter().zip(outcome.purged) {
                        let _ = done.send(n);
                    }
                    if close {
                        return replies.done;
                    }
                    for done in replies.done {
                        let _ = done.send(());
                    }
                }
                // Callers waiting on this batch see `Stopped`.
                Err(e) => {
                    tracing::error!("outbox write failed: {}", describe(&e));
                    if close {
                        return Vec::new();
                    }
                }
            }
        }
    }

    /// Commits `steps` in one transaction, trying again on a new connection while the failure
    /// is one that passes, until it commits or the outbox is closing.
    async fn commit(
        &mut self,
        steps: &[Step],
        lazy: bool,
    ) -> Result<Outcome, tokio_postgres::Error> {
        let token = rand::random::<i64>();
        self.unconfirmed = None;
        let mut backoff = Backoff::default();
        let mut failures = 0u32;
        loop {
            let error = match self.connected().await {
                Ok(()) => match self.try_commit(steps, lazy, token).await {
                    Ok(outcome) => {
                        if failures > 0 {
                            tracing::info!(failures, "writing to PostgreSQL again");
                        }
                        return Ok(outcome);
                    }
                    Err(e) => e,
                },
                Err(e) => e,
            };
            let transient = match &self.connection {
                Some((client, _)) => is_transient(&error, client),
                None => true,
            };
            if !transient || self.closing.is_cancelled() {
                return Err(error);
            }
            failures += 1;
            let wait = backoff.next();
            tracing::warn!(
                retry_in = ?wait,
                "cannot write to PostgreSQL, trying again: {}",
                describe(&error)
            );
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.closing.cancelled() => return Err(error),
            }
        }
    }

    /// Makes sure there is a live connection with its statements prepared.
    async fn connected(&mut self) -> Result<(), tokio_postgres::Error> {
        if let Some((client, _)) = &self.connection
            && !client.is_closed()
        {
            return Ok(());
        }
        self.connection = None;
        let client = self.link.connect().await?;
        let sql = Sql::prepare(&client).await?;
        self.connection = Some((client, sql));
        Ok(())
    }

    async fn try_commit(
        &mut self,
        steps: &[Step],
        lazy: bool,
        token: i64,
    ) -> Result<Outcome, tokio_postgres::Error> {
        let (client, sql) = self.connection.as_mut().expect("connected");
        let txn = client.transaction().await?;
        if lazy {
            txn.batch_execute("SET LOCAL synchronous_commit = off")
                .await?;
        }
        let last: i64 = txn.query_one(&sql.lock_meta, &[]).await?.get(0);
        if last == token
            && let Some(outcome) = self.unconfirmed.take()
        {
            // The last try committed; only its reply was lost.
            return Ok(outcome);
        }
        txn.execute(&sql.set_token, &[&token]).await?;
        let outcome = execute(&txn, sql, steps).await?;
        self.unconfirmed = Some(outcome.clone());
        txn.commit().await?;
        self.unconfirmed = None;
        Ok(outcome)
    }

    /// Sets the depth to the count of pending rows, which other processes may have changed.
    async fn refresh_depth(&mut self) {
        if self.connected().await.is_err() {
            return;
        }
        let (client, _) = self.connection.as_ref().expect("connected");
        if let Ok(row) = client.query_one("SELECT count(*) FROM pending", &[]).await {
            self.depth.send_if_modified(|d| {
                let count: i64 = row.get(0);
                std::mem::replace(d, count) != count
            });
        }
    }
}

/// Takes what has queued up after `first`, up to [`GROUP_COMMIT`] writes. While they are all
/// lazy, waits up to [`LAZY_WINDOW`] (from `first`) for more; a write someone waits for ends
/// the wait.
async fn gather(queue: &mut mpsc::UnboundedReceiver<Write>, first: Write) -> Vec<Write> {
    let deadline = Instant::now() + LAZY_WINDOW;
    let mut lazy = first.is_lazy();
    let mut batch = vec![first];
    while batch.len() < GROUP_COMMIT {
        let next = match queue.try_recv() {
            Ok(write) => write,
            Err(_) if lazy => match tokio::time::timeout_at(deadline, queue.recv()).await {
                Ok(Some(write)) => write,
                _ => break,
            },
            Err(_) => break,
        };
        lazy &= next.is_lazy();
        batch.push(next);
    }
    batch
}

/// Turns writes into steps (runs of completions or attempts become one step each) and the
/// replies to send once they are committed.
fn plan(batch: Vec<Write>) -> (Vec<Step>, Replies) {
    let mut steps = Vec::new();
    let mut replies = Replies::default();
    for write in batch {
        match write {
            Write::Accept(accepted, done) => {
                steps.push(Step::Accept(serialise(accepted)));
                replies.done.push(done);
            }
            Write::Attempted {
                endpoint,
                seq,
                attempts,
                first_ms,
            } => match steps.last_mut() {
                Some(Step::Attempted(run)) => run.push((endpoint, seq, attempts, first_ms)),
                _ => steps.push(Step::Attempted(vec![(endpoint, seq, attempts, first_ms)])),
            },
            Write::Complete { endpoint, seq } => match steps.last_mut() {
                Some(Step::Complete(run)) => run.push((endpoint, seq)),
                _ => steps.push(Step::Complete(vec![(endpoint, seq)])),
            },
            Write::Purge(endpoint, done) => {
                steps.push(Step::Purge(endpoint));
                replies.purged.push(done);
            }
            Write::ClearCheckpoint(key, done) => {
                steps.push(Step::ClearCheckpoint(key));
                replies.done.push(done);
            }
            Write::DeadLetter(letter, done) => {
                steps.push(Step::DeadLetter(letter));
                replies.done.push(done);
            }
            Write::Flush { done, .. } => replies.done.push(done),
        }
    }
    (steps, replies)
}

/// Serialises an accept: events routed nowhere are left out, and of several states of one
/// workflow the last counts.
fn serialise(batch: AcceptBatch) -> Accepted {
    let mut accepted = Accepted {
        accepted_ms: now_ms() as i64,
        keys: Vec::new(),
        events: Vec::new(),
        endpoints: Vec::new(),
        stored_uids: Vec::new(),
        stored_states: Vec::new(),
        removed_uids: Vec::new(),
        checkpoint: batch.checkpoint.map(|c| (c.key, c.value)),
    };
    for accept in batch.events.into_iter().filter(|a| !a.endpoints.is_empty()) {
        accepted.keys.push(accept.event.ordering_key());
        accepted
            .events
            .push(serde_json::to_vec(&accept.event).expect("events serialise"));
        accepted.endpoints.push(accept.endpoints);
    }
    let latest: HashMap<String, Option<Vec<u8>>> = batch.workflows.into_iter().collect();
    for (uid, state) in latest {
        match state {
            Some(state) => {
                accepted.stored_uids.push(uid);
                accepted.stored_states.push(state);
            }
            None => accepted.removed_uids.push(uid),
        }
    }
    accepted
}

/// Runs the steps in `txn`, in order.
async fn execute(
    txn: &Transaction<'_>,
    sql: &Sql,
    steps: &[Step],
) -> Result<Outcome, tokio_postgres::Error> {
    let mut outcome = Outcome::default();
    for step in steps {
        match step {
            Step::Accept(a) => accept(txn, sql, a, &mut outcome).await?,
            Step::Attempted(run) => {
                let latest: HashMap<(&str, u64), (u32, u64)> = run
                    .iter()
                    .map(|(e, s, a, f)| ((e.as_str(), *s), (*a, *f)))
                    .collect();
                let (mut endpoints, mut seqs, mut attempts, mut firsts) =
                    (Vec::new(), Vec::new(), Vec::new(), Vec::new());
                for ((endpoint, seq), (a, f)) in latest {
                    endpoints.push(endpoint);
                    seqs.push(seq as i64);
                    attempts.push(a as i32);
                    firsts.push(f as i64);
                }
                txn.execute(&sql.attempted, &[&endpoints, &seqs, &attempts, &firsts])
                    .await?;
            }
            Step::Complete(run) => {
                let endpoints: Vec<&str> = run.iter().map(|(e, _)| e.as_str()).collect();
                let seqs: Vec<i64> = run.iter().map(|(_, s)| *s as i64).collect();
                let done = txn.query(&sql.complete, &[&endpoints, &seqs]).await?;
                let done: Vec<i64> = done.iter().map(|row| row.get(0)).collect();
                txn.execute(&sql.release, &[&done]).await?;
                outcome.depth -= done.len() as i64;
            }
            Step::Purge(endpoint) => {
                let done = txn.query(&sql.purge, &[endpoint]).await?;
                let done: Vec<i64> = done.iter().map(|row| row.get(0)).collect();
                txn.execute(&sql.release, &[&done]).await?;
                outcome.depth -= done.len() as i64;
                outcome.purged.push(done.len() as u64);
            }
            Step::ClearCheckpoint(key) => {
                txn.execute(&sql.clear_checkpoint, &[key]).await?;
            }
            Step::DeadLetter(l) => {
                txn.execute(
                    &sql.dead_letter,
                    &[&l.at, &l.endpoint, &l.webhook_id, &l.json],
                )
                .await?;
            }
        }
    }
    if let Some(seq) = outcome.last_seq {
        txn.execute(&sql.notify, &[&CHANNEL, &seq.to_string()])
            .await?;
    }
    Ok(outcome)
}

/// Stores one accept: workflow states, events with fresh sequence numbers, their pending rows
/// and the checkpoint.
async fn accept(
    txn: &Transaction<'_>,
    sql: &Sql,
    a: &Accepted,
    outcome: &mut Outcome,
) -> Result<(), tokio_postgres::Error> {
    if !a.stored_uids.is_empty() {
        txn.execute(&sql.store_workflows, &[&a.stored_uids, &a.stored_states])
            .await?;
    }
    if !a.removed_uids.is_empty() {
        txn.execute(&sql.remove_workflows, &[&a.removed_uids])
            .await?;
    }
    if !a.events.is_empty() {
        let rows = txn
            .query(&sql.next_seqs, &[&(a.events.len() as i64)])
            .await?;
        let mut seqs: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
        seqs.sort_unstable();
        txn.execute(
            &sql.insert_events,
            &[&seqs, &a.accepted_ms, &a.keys, &a.events],
        )
        .await?;
        let mut endpoints = Vec::new();
        let mut pending = Vec::new();
        for (seq, names) in seqs.iter().zip(&a.endpoints) {
            for name in names {
                endpoints.push(name.as_str());
                pending.push(*seq);
            }
        }
        txn.execute(&sql.insert_pending, &[&endpoints, &pending])
            .await?;
        outcome.depth += pending.len() as i64;
        let last = *seqs.last().expect("events were numbered") as u64;
        outcome.last_seq = Some(outcome.last_seq.map_or(last, |l| l.max(last)));
    }
    if let Some((key, value)) = &a.checkpoint {
        txn.execute(&sql.set_checkpoint, &[key, value]).await?;
    }
    Ok(())
}
