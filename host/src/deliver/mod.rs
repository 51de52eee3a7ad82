//! The `deliver` stage: POSTs each accepted event to every endpoint that wants it.
//!
//! One [`worker`] per endpoint reads that endpoint's deliveries from the outbox, so a slow or
//! dead endpoint never stalls another. [`http`] makes one attempt, [`retry`] decides when to
//! try again, [`signing`] signs per Standard Webhooks. [`Deliverer`] starts, updates and stops
//! the workers as the config changes.

mod http;
pub(crate) mod retry;
mod settings;
pub(crate) mod signing;
mod worker;

pub(crate) use http::HttpSender;
pub(crate) use settings::Delivery;

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::model::request::Render;
use crate::state::{DeadLetters, Outbox};
use crate::telemetry::Metrics;

/// Every endpoint's delivery settings, as the config gives them.
pub(crate) type Endpoints = Arc<Vec<Arc<Delivery>>>;

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
}

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
}

impl Deliverer {
    /// A deliverer with no workers yet.
    pub(crate) fn new(context: Context) -> Self {
        Self {
            context,
            workers: HashMap::new(),
        }
    }

    /// Runs a worker for each of `endpoints`, following their changes, until `stop` is
    /// cancelled; then lets attempts under way finish and returns.
    pub(crate) async fn run(
        mut self,
        mut config: watch::Receiver<Endpoints>,
        stop: CancellationToken,
    ) {
        let current = config.borrow_and_update().clone();
        self.purge_unknown(&current).await;
        self.apply(&current).await;
        loop {
            tokio::select! {
                changed = config.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let current = config.borrow_and_update().clone();
                    self.apply(&current).await;
                }
                () = stop.cancelled() => break,
            }
        }
        for running in self.workers.values() {
            running.stop.cancel();
        }
        for (_, running) in self.workers.drain() {
            let _ = running.task.await;
        }
    }

    /// Starts, updates and stops workers to match `endpoints`.
    async fn apply(&mut self, endpoints: &[Arc<Delivery>]) {
        let wanted: HashMap<&str, &Arc<Delivery>> =
            endpoints.iter().map(|e| (e.name.as_str(), e)).collect();
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
            match self.context.outbox.purge(&name).await {
                Ok(0) => tracing::info!(endpoint = %name, "endpoint removed"),
                Ok(n) => {
                    tracing::warn!(endpoint = %name, "endpoint removed; {n} undelivered events for it dropped")
                }
                Err(e) => {
                    tracing::error!(endpoint = %name, "endpoint removed; cannot clear its deliveries: {e}")
                }
            }
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
                    let running = self.spawn(Arc::clone(endpoint));
                    self.workers.insert(name.to_owned(), running);
                }
            }
        }
    }

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
            stop: stop.clone(),
        };
        Running {
            settings,
            slots,
            concurrency: endpoint.concurrency,
            stop,
            task: tokio::spawn(supervise(Arc::new(shared))),
        }
    }

    /// Drops deliveries for endpoints that were removed while the router was not running.
    async fn purge_unknown(&self, endpoints: &[Arc<Delivery>]) {
        let outbox = self.context.outbox.clone();
        let counts =
            tokio::task::spawn_blocking(move || crate::state::outbox::count_by_endpoint(&outbox))
                .await;
        let Ok(Ok(counts)) = counts else {
            return;
        };
        for (name, count) in counts {
            if endpoints.iter().any(|e| e.name == name) {
                tracing::info!(endpoint = %name, pending = count, "resuming undelivered events");
            } else if self.context.outbox.purge(&name).await.is_ok() {
                tracing::warn!(endpoint = %name, "endpoint no longer configured; {count} undelivered events for it dropped");
            }
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
