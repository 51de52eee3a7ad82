//! The `deliver` stage: POSTs each accepted event to every endpoint that wants it.
//!
//! One [`worker`] per endpoint takes that endpoint's deliveries as they are accepted (or reads
//! them from the outbox when it falls behind), so a slow or dead endpoint never stalls
//! another. [`http`] makes one attempt (plain endpoints through the [`lean`] client), [`retry`] decides when to
//! try again, [`signing`] signs per Standard Webhooks. [`Deliverer`] starts, updates and stops
//! the workers as the config changes; [`removed`] keeps a removed endpoint's backlog for a
//! grace period; [`leftovers`] lets a new leader deliver what an earlier term left before it
//! accepts anything new.

mod http;
mod lean;
mod leftovers;
mod pace;
mod record;
mod removed;
pub(crate) mod retry;
mod settings;
pub(crate) mod signing;
pub(crate) mod tls;
mod worker;

pub(crate) use http::HttpSender;
pub(crate) use leftovers::deliver_leftovers;
pub(crate) use settings::{Delivery, Settings};

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::model::request::Render;
use crate::state::{DeadLetters, History, Outbox};
use crate::telemetry::Metrics;
use pace::Pacer;
use removed::Removed;

/// What every worker shares.
#[derive(Clone)]
pub(crate) struct Context {
    /// The outbox to read deliveries from and complete them in.
    pub(crate) outbox: Outbox,
    /// Where given-up deliveries go.
    pub(crate) dead_letters: DeadLetters,
    /// Metrics.
    pub(crate) metrics: Arc<Metrics>,
    /// What each endpoint is sent for an event (the payload stage).
    pub(crate) render: Arc<dyn Render>,
    /// The HTTP client.
    pub(crate) http: HttpSender,
    /// Where each attempt and outcome is noted for the console (off without it).
    pub(crate) history: History,
    /// Cancelled when this replica must stop delivering at once (it lost the leader lease, and
    /// another may deliver now): every worker ends, dropping its attempts under way, whose
    /// deliveries stay pending in the outbox as they were.
    pub(crate) abort: CancellationToken,
    /// With an outbox other replicas deliver from too: the claim buckets whose workflows this
    /// replica delivers now (see [`Claims`](crate::state::outbox::Claims)); `None`: every
    /// workflow.
    pub(crate) claims: Option<watch::Receiver<u64>>,
}

/// A worker, as the deliverer keeps it.
struct Running {
    settings: watch::Sender<Arc<Delivery>>,
    slots: Arc<Semaphore>,
    concurrency: usize,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// Keeps one worker per configured endpoint.
pub(crate) struct Deliverer {
    context: Context,
    workers: HashMap<String, Running>,
    removed: Removed,
}

impl Deliverer {
    /// A deliverer with no workers yet.
    pub(crate) fn new(context: Context) -> Self {
        let removed = Removed::new(context.outbox.clone(), Arc::clone(&context.metrics));
        Self {
            context,
            workers: HashMap::new(),
            removed,
        }
    }

    /// Runs a worker for each endpoint of `settings`, following their changes, until `stop`
    /// is cancelled, then lets attempts under way finish and returns; or until the context's
    /// `abort` is, then returns at once.
    pub(crate) async fn run(
        mut self,
        mut settings: watch::Receiver<Arc<Settings>>,
        stop: CancellationToken,
    ) {
        let abort = self.context.abort.clone();
        let current = settings.borrow_and_update().clone();
        self.resume(&current).await;
        self.apply(&current).await;
        loop {
            let grace = settings.borrow().removed_grace;
            let expiry = self.removed.next_expiry(grace);
            tokio::select! {
                changed = settings.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let current = settings.borrow_and_update().clone();
                    self.apply(&current).await;
                }
                () = tokio::time::sleep(expiry.unwrap_or(Duration::MAX)), if expiry.is_some() => {
                    self.removed.expire(grace).await;
                }
                () = stop.cancelled() => break,
                () = abort.cancelled() => break,
            }
        }
        for running in self.workers.values() {
            running.stop.cancel();
        }
        for (_, running) in self.workers.drain() {
            let _ = running.task.await;
        }
    }

    /// At start, before any worker: deliveries of an endpoint no longer configured are kept
    /// for its grace period (counted from when an earlier run saw it leave, if one did); an
    /// endpoint configured again resumes its own.
    async fn resume(&mut self, settings: &Settings) {
        let counts = count_pending(&self.context.outbox)
            .await
            .unwrap_or_default();
        for endpoint in &settings.endpoints {
            let kept = self
                .removed
                .restore(&endpoint.name, settings.removed_grace)
                .await;
            if let Some(pending) = counts.get(&endpoint.name).filter(|_| kept) {
                tracing::info!(endpoint = %endpoint.name, pending, "resuming undelivered events");
            }
        }
        for (name, count) in counts {
            if !settings.endpoints.iter().any(|e| e.name == name) {
                self.removed
                    .hold(&name, count, settings.removed_grace)
                    .await;
            }
        }
    }

    /// Starts, updates and stops workers to match `settings`. A removed endpoint's worker
    /// stops and its deliveries are kept for the grace period; one that comes back resumes them.
    async fn apply(&mut self, settings: &Settings) {
        let wanted: HashMap<&str, &Arc<Delivery>> = settings
            .endpoints
            .iter()
            .map(|e| (e.name.as_str(), e))
            .collect();
        let gone: Vec<String> = self
            .workers
            .keys()
            .filter(|name| !wanted.contains_key(name.as_str()))
            .cloned()
            .collect();
        for name in gone {
            let running = self.workers.remove(&name).expect("listed above");
            running.stop.cancel();
            let _ = running.task.await;
            let counts = count_pending(&self.context.outbox).await;
            let count = counts.and_then(|c| c.get(&name).copied()).unwrap_or(0);
            self.removed
                .hold(&name, count, settings.removed_grace)
                .await;
        }
        for (name, endpoint) in wanted {
            match self.workers.get_mut(name) {
                Some(running) if *running.settings.borrow() != *endpoint => {
                    resize(running, endpoint.concurrency);
                    running.settings.send_replace(Arc::clone(endpoint));
                    tracing::info!(endpoint = %name, "endpoint settings updated");
                }
                Some(_) => {}
                None => {
                    self.removed.restore(name, settings.removed_grace).await;
                    let running = self.spawn(Arc::clone(endpoint));
                    self.workers.insert(name.to_owned(), running);
                }
            }
        }
    }

    /// Starts the worker of `endpoint`; it ends when its `stop` is cancelled (after its
    /// attempts under way) or at once when the context's `abort` is.
    fn spawn(&self, endpoint: Arc<Delivery>) -> Running {
        let (settings, receiver) = watch::channel(Arc::clone(&endpoint));
        let slots = Arc::new(Semaphore::new(endpoint.concurrency));
        let stop = CancellationToken::new();
        let shared = worker::Shared {
            name: endpoint.name.clone(),
            endpoint: receiver,
            outbox: self.context.outbox.clone(),
            dead_letters: self.context.dead_letters.clone(),
            metrics: Arc::clone(&self.context.metrics),
            http: self.context.http.clone(),
            render: Arc::clone(&self.context.render),
            slots: Arc::clone(&slots),
            pacer: Pacer::default(),
            stop: stop.clone(),
            history: self.context.history.clone(),
            claims: self.context.claims.clone(),
            succeeded: std::sync::OnceLock::new(),
        };
        let abort = self.context.abort.clone();
        let task = tokio::spawn(async move {
            tokio::select! {
                () = supervise(Arc::new(shared)) => {}
                () = abort.cancelled() => {}
            }
        });
        Running {
            settings,
            slots,
            concurrency: endpoint.concurrency,
            stop,
            task,
        }
    }
}

/// Deliveries pending in `outbox`, per endpoint; `None` (logged) when it cannot be read.
async fn count_pending(outbox: &Outbox) -> Option<HashMap<String, u64>> {
    let outbox = outbox.clone();
    let counted =
        tokio::task::spawn_blocking(move || crate::state::outbox::count_by_endpoint(&outbox)).await;
    match counted {
        Ok(Ok(counts)) => Some(counts),
        Ok(Err(e)) => {
            tracing::error!("cannot count the deliveries in the outbox: {e}");
            None
        }
        Err(e) => {
            tracing::error!("counting the deliveries in the outbox failed: {e}");
            None
        }
    }
}

/// Runs a worker, starting it again if it panics: what it had in hand is still in the outbox,
/// so the new one picks it up, and the endpoint's deliveries never silently stop.
async fn supervise(shared: Arc<worker::Shared>) {
    loop {
        match AssertUnwindSafe(worker::run(Arc::clone(&shared)))
            .catch_unwind()
            .await
        {
            Ok(()) => return,
            Err(_) => {
                tracing::error!(endpoint = %shared.name, "delivery loop panicked; restarting it");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Changes how many requests a worker may have in flight. Permits in use cannot be taken
/// back at once: a smaller limit takes hold as the requests under way finish.
fn resize(running: &mut Running, concurrency: usize) {
    if concurrency > running.concurrency {
        running.slots.add_permits(concurrency - running.concurrency);
    } else if concurrency < running.concurrency {
        let excess = (running.concurrency - concurrency) as u32;
        let slots = Arc::clone(&running.slots);
        tokio::spawn(async move {
            if let Ok(permits) = slots.acquire_many_owned(excess).await {
                permits.forget();
            }
        });
    }
    running.concurrency = concurrency;
}
