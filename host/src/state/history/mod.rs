//! The console's delivery history: the last few deliveries of each endpoint, what was sent and
//! what came back, kept across restarts where the outbox is: in `state.dir/history.redb`
//! ([`store`]) with redb, in the `delivery_history` table with PostgreSQL, so that the
//! replicas sharing that database share one history.
//!
//! The deliver stage [`History::append`]s a [`Record`] per attempt or outcome; a record with
//! the same endpoint and webhook-id as an earlier one adds its attempts to it and takes its
//! outcome, so a retried or redriven delivery stays one record. Appending never waits: records
//! go through a bounded channel to a writer thread, and when that is full the record is
//! dropped and counted (`console_history_dropped_total`). The writer keeps at most `keep`
//! records per endpoint, the most recently changed.

mod store;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::Outbox;
use super::postgres::Postgres;
use crate::telemetry::Metrics;

/// The history's file in `state.dir`.
pub(crate) const FILE_NAME: &str = "history.redb";

/// Records waiting for the writer at most; more are dropped.
const QUEUE: usize = 4096;

/// Records one transaction writes at most.
const BATCH: usize = 512;

/// What the writer is sent.
pub(crate) enum Write {
    /// A record to add or merge.
    Record(Box<Record>),
    /// Answer once everything before is written.
    Flush(oneshot::Sender<()>),
}

/// `first` and what else is queued, up to [`BATCH`]: the records, and the flushes to answer
/// once they are written.
pub(crate) fn take_batch(
    first: Write,
    queue: &Receiver<Write>,
) -> (Vec<Record>, Vec<oneshot::Sender<()>>) {
    let mut records = Vec::new();
    let mut flushed = Vec::new();
    for write in std::iter::once(first).chain(queue.try_iter().take(BATCH)) {
        match write {
            Write::Record(record) => records.push(*record),
            Write::Flush(done) => flushed.push(done),
        }
    }
    (records, flushed)
}

/// How a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Outcome {
    /// The endpoint answered 2xx.
    Delivered,
    /// An attempt failed; another is due.
    Retrying,
    /// Given up: written to the dead letters.
    DeadLettered,
    /// A plugin dropped it: nothing was sent.
    Dropped,
}

/// One HTTP attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Attempt {
    /// When it was sent (Unix ms).
    pub(crate) at_ms: u64,
    /// How long it took, in ms.
    pub(crate) millis: u64,
    /// The answer's status, when one came.
    pub(crate) status: Option<u16>,
    /// `2xx`, `4xx`, `5xx`, `timeout`, `connect`, `error`.
    pub(crate) class: String,
    /// Why it failed (URLs redacted), when it did.
    pub(crate) error: Option<String>,
}

/// A request as sent, or an answer as received: header values that are secrets are redacted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Message {
    /// The answer's status (none for a request).
    pub(crate) status: Option<u16>,
    /// Headers, in order.
    pub(crate) headers: Vec<(String, String)>,
    /// The body (an answer's first KiB, secrets redacted).
    pub(crate) body: String,
}

/// One delivery of one event to one endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    /// The endpoint's name.
    pub(crate) endpoint: String,
    /// The webhook-id, `msg_<event id>`.
    pub(crate) webhook_id: String,
    /// When it last changed (Unix ms).
    pub(crate) time_ms: u64,
    /// When the event happened, as Kubernetes recorded it (RFC 3339), when known.
    #[serde(default)]
    pub(crate) event_time: Option<String>,
    /// The KFP run id (the workflow's uid), when known.
    pub(crate) run_id: Option<String>,
    /// The workflow's name.
    pub(crate) workflow: String,
    /// The task or node, when the event is about one.
    pub(crate) task: Option<String>,
    /// The event's reason, e.g. `WorkflowFailed`.
    pub(crate) reason: String,
    /// The event's message.
    pub(crate) message: String,
    /// How it stands.
    pub(crate) outcome: Outcome,
    /// What dropped it or why it was given up.
    pub(crate) note: Option<String>,
    /// Every attempt, oldest first.
    pub(crate) attempts: Vec<Attempt>,
    /// The last request sent.
    pub(crate) request: Option<Message>,
    /// The last answer received.
    pub(crate) response: Option<Message>,
}

impl Record {
    /// `self` after `newer`: the attempts of both, the rest from `newer` (request and answer
    /// only when it has them).
    pub(crate) fn merge(mut self, newer: Record) -> Record {
        let Record {
            time_ms,
            outcome,
            note,
            attempts,
            request,
            response,
            ..
        } = newer;
        self.time_ms = time_ms;
        self.outcome = outcome;
        self.note = note;
        self.attempts.extend(attempts);
        if request.is_some() {
            self.request = request;
        }
        if response.is_some() {
            self.response = response;
        }
        self
    }
}

/// The history, or none (the console is off); cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct History {
    inner: Option<Arc<Inner>>,
}

/// An open history.
struct Inner {
    backend: Backend,
    writes: SyncSender<Write>,
    metrics: Arc<Metrics>,
}

/// Where the records are kept.
enum Backend {
    /// `history.redb` in the state folder.
    Redb(store::Store),
    /// The `delivery_history` table of the PostgreSQL outbox.
    Postgres(Postgres),
}

impl History {
    /// Opens (or creates) the history beside `outbox` (with redb, in `dir`), keeping `keep`
    /// records per endpoint, and starts its writer thread.
    pub(crate) fn open(
        dir: &Path,
        outbox: &Outbox,
        keep: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Self, redb::Error> {
        let (writes, queue) = std::sync::mpsc::sync_channel(QUEUE);
        let backend = match outbox {
            Outbox::Redb(_) => {
                let store = store::Store::open(&dir.join(FILE_NAME))?;
                store.spawn_writer(queue, keep);
                Backend::Redb(store)
            }
            Outbox::Postgres(postgres) => {
                postgres.spawn_history_writer(queue, keep, Arc::clone(&metrics));
                Backend::Postgres(postgres.clone())
            }
        };
        Ok(Self {
            inner: Some(Arc::new(Inner {
                backend,
                writes,
                metrics,
            })),
        })
    }

    /// Whether records are kept.
    pub(crate) fn is_on(&self) -> bool {
        self.inner.is_some()
    }

    /// Queues `record` for the writer; drops and counts it when the queue is full.
    pub(crate) fn append(&self, record: Record) {
        let Some(inner) = &self.inner else { return };
        if let Err(TrySendError::Full(_)) = inner.writes.try_send(Write::Record(Box::new(record))) {
            inner.metrics.console_history_dropped.inc();
        }
    }

    /// Every record kept, most recently changed first.
    pub(crate) async fn all(&self) -> std::io::Result<Vec<Record>> {
        let Some(inner) = &self.inner else {
            return Ok(Vec::new());
        };
        let inner = Arc::clone(inner);
        tokio::task::spawn_blocking(move || match &inner.backend {
            Backend::Redb(store) => store.all().map_err(std::io::Error::other),
            Backend::Postgres(postgres) => postgres.history().map_err(std::io::Error::other),
        })
        .await
        .map_err(std::io::Error::other)?
    }

    /// Waits until the records appended so far are written: at shutdown, so that a restart
    /// shows them.
    pub(crate) async fn flush(&self) {
        let Some(inner) = &self.inner else { return };
        let (done, wait) = tokio::sync::oneshot::channel();
        let writes = inner.writes.clone();
        // The queue may be full: wait for room off the runtime's threads.
        let _ = tokio::task::spawn_blocking(move || writes.send(Write::Flush(done))).await;
        let _ = wait.await;
    }
}
