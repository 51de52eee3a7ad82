//! The outbox: every accepted event waits here until each of its endpoints has it.
//!
//! [`Outbox`] is one API over the two backends ([`redb`](super::redb) and
//! [`postgres`](super::postgres)), with the same semantics:
//!
//! - [`Outbox::accept`] stores events, their pending deliveries, the source position and
//!   workflow states in one transaction, durable before it returns;
//! - [`Outbox::attempted`] and [`Outbox::complete`] are lazy: queued, and committed in groups
//!   within [`LAZY_WINDOW`] of each other, so a crash repeats at most that much delivery
//!   progress (at least once), and never loses a delivery;
//! - an event is removed with its last pending delivery.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::{mpsc, watch};

use super::handoff::Handoff;
pub(crate) use super::postgres::Claims;
use super::postgres::Postgres;
use super::redb::Redb;
use crate::model::event::RouterEvent;
use crate::model::item::Checkpoint;

/// How long completions and attempt counts are gathered before they are committed, durably,
/// in one transaction. The shorter, the less a crash repeats; each window costs one disk sync
/// while deliveries flow (none when idle).
pub(super) const LAZY_WINDOW: Duration = Duration::from_millis(10);

/// How many queued writes one transaction takes at most.
pub(super) const GROUP_COMMIT: usize = 8192;

/// Where a writer reports how long each of its commits took: the histogram the router gives
/// [`Outbox::time_commits`], once it has (none in tools and tests).
#[derive(Clone, Default)]
pub(super) struct CommitTimes(Arc<OnceLock<Histogram>>);

impl CommitTimes {
    /// Records one commit that took `took`.
    pub(super) fn observe(&self, took: Duration) {
        if let Some(histogram) = self.0.get() {
            histogram.observe(took.as_secs_f64());
        }
    }
}

/// An outbox error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OutboxError {
    /// The redb database failed.
    #[error("outbox database: {0}")]
    Database(#[from] redb::Error),
    /// PostgreSQL failed, or could not be reached in time (the error and its causes).
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    /// The PostgreSQL database cannot be used as it is (e.g. a newer schema).
    #[error("{0}")]
    Unusable(String),
    /// The writer has stopped (the router is shutting down).
    #[error("the outbox writer has stopped")]
    Stopped,
}

/// An outbox result.
pub(crate) type Result<T, E = OutboxError> = std::result::Result<T, E>;

/// One event waiting for one endpoint.
#[derive(Clone, Debug)]
pub(crate) struct PendingDelivery {
    /// Position in the outbox; deliveries of an endpoint are loaded in this order.
    pub(crate) seq: u64,
    /// Attempts already made (before a restart, too).
    pub(crate) attempts: u32,
    /// When the first attempt was made (Unix ms), or 0 when none was.
    pub(crate) first_attempt_ms: u64,
    /// When the event was accepted (Unix µs). The outbox stores whole milliseconds, so a
    /// delivery read back from it, rather than handed over in memory, is that precise.
    pub(crate) accepted_us: u64,
    /// The claim bucket of its workflow (see [`Claims`]); 0 with redb, which has no claims.
    pub(crate) bucket: u32,
    /// The event.
    pub(crate) event: Arc<RouterEvent>,
}

/// An event to accept, with the endpoints it goes to.
#[derive(Debug)]
pub(crate) struct Accept {
    /// The event.
    pub(crate) event: RouterEvent,
    /// Names of the endpoints that want it.
    pub(crate) endpoints: Vec<String>,
}

/// Everything one accept stores in one transaction.
#[derive(Debug, Default)]
pub(crate) struct AcceptBatch {
    /// Events, each with its endpoints.
    pub(crate) events: Vec<Accept>,
    /// The source position after them.
    pub(crate) checkpoint: Option<Checkpoint>,
    /// Workflow states to store (`None` removes one).
    pub(crate) workflows: Vec<(String, Option<Vec<u8>>)>,
}

/// A handle to the outbox, in either backend; cheap to clone.
#[derive(Clone)]
pub(crate) enum Outbox {
    /// `outbox.redb` in the state folder.
    Redb(Redb),
    /// Tables of a PostgreSQL database.
    Postgres(Postgres),
}

/// Calls the same method on whichever backend `$outbox` is.
macro_rules! dispatch {
    ($outbox:expr, $backend:ident => $call:expr) => {
        match $outbox {
            Outbox::Redb($backend) => $call,
            Outbox::Postgres($backend) => $call,
        }
    };
}

impl Outbox {
    /// Opens (or creates) the redb outbox at `path` and starts its writer thread.
    pub(crate) fn open_redb(path: &Path) -> Result<Self> {
        Ok(Self::Redb(Redb::open(path)?))
    }

    /// Reports the time each commit from now on takes to `histogram`; a second call keeps the
    /// first histogram.
    pub(crate) fn time_commits(&self, histogram: Histogram) {
        let _ = dispatch!(self, o => o.commit_times()).0.set(histogram);
    }

    /// Stores a batch durably, in one transaction, then returns.
    pub(crate) async fn accept(&self, batch: AcceptBatch) -> Result<()> {
        dispatch!(self, o => o.accept(batch).await)
    }

    /// Records a failed attempt, so a restart keeps counting from there.
    pub(crate) fn attempted(&self, endpoint: &str, seq: u64, attempts: u32, first_ms: u64) {
        dispatch!(self, o => o.attempted(endpoint, seq, attempts, first_ms))
    }

    /// Removes a delivery that is done (delivered, dropped or dead-lettered).
    pub(crate) fn complete(&self, endpoint: &str, seq: u64) {
        dispatch!(self, o => o.complete(endpoint, seq))
    }

    /// Removes every delivery of an endpoint that no longer exists; returns how many.
    pub(crate) async fn purge(&self, endpoint: &str) -> Result<u64> {
        dispatch!(self, o => o.purge(endpoint).await)
    }

    /// Forgets a source position.
    pub(crate) async fn clear_checkpoint(&self, key: &str) -> Result<()> {
        dispatch!(self, o => o.clear_checkpoint(key).await)
    }

    /// Makes every write durable, stops the writer and closes the database (with redb, once no
    /// other handle to it is left, so that the state folder can be opened again in this
    /// process).
    pub(crate) async fn close(self) -> Result<()> {
        dispatch!(self, o => o.close().await)
    }

    /// The stored value of a source position.
    pub(crate) fn checkpoint(&self, key: &str) -> Result<Option<String>> {
        dispatch!(self, o => o.checkpoint(key))
    }

    /// Every stored workflow state, by uid.
    pub(crate) fn workflows(&self) -> Result<Vec<(String, Vec<u8>)>> {
        dispatch!(self, o => o.workflows())
    }

    /// Up to `limit` deliveries of `endpoint` after sequence number `after`, in order. Blocks:
    /// call it on a blocking thread.
    #[cfg(test)]
    pub(crate) fn pending(
        &self,
        endpoint: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<PendingDelivery>> {
        self.pending_in(endpoint, after, limit, None)
    }

    /// [`Outbox::pending`], of the workflows in `buckets` only (a [`Claims`] mask) when
    /// given. Blocks: call it on a blocking thread.
    pub(crate) fn pending_in(
        &self,
        endpoint: &str,
        after: u64,
        limit: usize,
        buckets: Option<u64>,
    ) -> Result<Vec<PendingDelivery>> {
        match self {
            Self::Redb(o) => o.pending(endpoint, after, limit),
            Self::Postgres(o) => o.pending(endpoint, after, limit, buckets),
        }
    }

    /// Starts claiming workflows to deliver, as `owner`, when other replicas may deliver from
    /// this outbox too (PostgreSQL): each workflow is then delivered by one replica at a time.
    /// `None` with redb, whose one process delivers everything.
    pub(crate) fn claims(&self, owner: String, ttl: Duration) -> Option<Claims> {
        match self {
            Self::Redb(_) => None,
            Self::Postgres(o) => Some(o.claims(owner, ttl)),
        }
    }

    /// Once delivery has stopped: commits the completions queued, then gives `claims` up so
    /// that other replicas take them at once.
    pub(crate) async fn release(&self, claims: Claims) {
        if let Self::Postgres(o) = self {
            o.release(claims).await;
        }
    }

    /// Waits until every write queued so far (completions included) is committed.
    pub(crate) async fn flush(&self) -> Result<()> {
        match self {
            Self::Redb(_) => Ok(()),
            Self::Postgres(o) => o.flush().await,
        }
    }

    /// The lowest sequence number that some endpoint still waits for, or `None` when every
    /// accepted event is delivered.
    pub(crate) fn oldest_pending(&self) -> Result<Option<u64>> {
        dispatch!(self, o => o.oldest_pending())
    }

    /// Whether other processes may share this outbox (PostgreSQL): what is pending there is
    /// the last leader's work to continue, not leftovers of this replica's earlier term.
    pub(crate) fn is_shared(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }

    /// Deliveries waiting, over all endpoints.
    pub(crate) fn depth(&self) -> i64 {
        *self.depth_watch().borrow()
    }

    /// Waits until no delivery is waiting, over all endpoints.
    pub(crate) async fn drained(&self) {
        let mut depth = self.depth_watch().subscribe();
        let _ = depth.wait_for(|d| *d <= 0).await;
    }

    /// Changes whenever events are accepted (with PostgreSQL, by any process); holds the last
    /// sequence number.
    pub(crate) fn accepted(&self) -> watch::Receiver<u64> {
        dispatch!(self, o => o.accepted())
    }

    /// With PostgreSQL, changes each time the database is reached again after the connection
    /// was lost: it may have lost the last lazy commits, so a worker reads its pending rows
    /// again from the start. `None` with redb, whose commits survive any crash of the router.
    pub(crate) fn reconnects(&self) -> Option<watch::Receiver<u64>> {
        match self {
            Self::Redb(_) => None,
            Self::Postgres(db) => Some(db.reconnects()),
        }
    }

    /// Hands `endpoint`'s deliveries to the returned receiver in memory as they are accepted
    /// (see [`handoff`](super::handoff)); with PostgreSQL, those this process accepted: the
    /// worker reads what other processes accept from the database.
    pub(crate) fn handoffs(&self, endpoint: &str) -> mpsc::Receiver<Handoff> {
        dispatch!(self, o => o.tails().subscribe(endpoint))
    }

    fn depth_watch(&self) -> &watch::Sender<i64> {
        dispatch!(self, o => o.depth_watch())
    }
}

/// What waits for one endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Backlog {
    /// Deliveries waiting.
    pub(crate) pending: u64,
    /// When the oldest of them was accepted (Unix ms), when known.
    pub(crate) oldest_ms: Option<u64>,
}

/// What waits, per endpoint. Blocks (it reads every pending row): call it on a blocking
/// thread, and not often.
pub(crate) fn backlog(outbox: &Outbox) -> Result<HashMap<String, Backlog>> {
    dispatch!(outbox, o => o.backlog())
}

/// Counts deliveries per endpoint, for startup logs. Blocks: call it on a blocking thread.
pub(crate) fn count_by_endpoint(outbox: &Outbox) -> Result<HashMap<String, u64>> {
    Ok(backlog(outbox)?
        .into_iter()
        .map(|(endpoint, b)| (endpoint, b.pending))
        .collect())
}
