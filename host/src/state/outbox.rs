//! The outbox: every accepted event waits on disk until each of its endpoints has it.
//!
//! Tables of one [redb] database:
//! - `events`: sequence number -> the stored event (JSON);
//! - `remaining`: sequence number -> endpoints still to deliver it;
//! - `pending`: (endpoint, sequence number) -> attempts made and when the first was;
//! - `checkpoints`: source position key -> value;
//! - `workflows`: workflow uid -> what the enrich stage last saw of it (for derived events).
//!
//! All writes go through one writer thread that commits whatever has queued up in one
//! transaction (group commit). Accepts and checkpoints are committed durably before their
//! callers continue; completions are committed lazily (durably at least every second), which
//! after a crash can only mean a delivery is repeated (at least once), never lost.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use crate::model::clock::now_ms;
use crate::model::event::RouterEvent;
use crate::model::item::Checkpoint;

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const REMAINING: TableDefinition<u64, u32> = TableDefinition::new("remaining");
const PENDING: TableDefinition<(&str, u64), (u32, u64)> = TableDefinition::new("pending");
const CHECKPOINTS: TableDefinition<&str, &str> = TableDefinition::new("checkpoints");
const WORKFLOWS: TableDefinition<&str, &[u8]> = TableDefinition::new("workflows");

/// Completions and attempt counts are committed lazily, but made durable at least this often
/// while they keep coming, so a crash repeats at most about this much delivery progress even
/// when no new event arrives (a finished replay, a quiet cluster draining a backlog).
const DURABLE_EVERY: Duration = Duration::from_secs(1);

/// Memory for the database's page cache. The outbox is read mostly near its head, so a small
/// cache serves it; redb's default (1 GiB) would be most of the router's memory.
const CACHE_BYTES: usize = 32 << 20;

/// How long lazy writes (completions) are gathered before they are committed.
const GATHER: Duration = Duration::from_millis(5);

/// How many queued writes one transaction takes at most.
const GROUP_COMMIT: usize = 8192;

/// An outbox error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OutboxError {
    /// The database failed.
    #[error("outbox database: {0}")]
    Database(#[from] redb::Error),
    /// The writer thread has stopped (the router is shutting down).
    #[error("the outbox writer has stopped")]
    Stopped,
}

/// An outbox result.
pub(crate) type Result<T, E = OutboxError> = std::result::Result<T, E>;

/// An event as stored: what was accepted, and when.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    accepted_ms: u64,
    event: RouterEvent,
}

/// One event waiting for one endpoint.
#[derive(Clone, Debug)]
pub(crate) struct PendingDelivery {
    /// Position in the outbox; deliveries of an endpoint are loaded in this order.
    pub(crate) seq: u64,
    /// Attempts already made (before a restart, too).
    pub(crate) attempts: u32,
    /// When the first attempt was made (Unix ms), or 0 when none was.
    pub(crate) first_attempt_ms: u64,
    /// When the event was accepted (Unix ms).
    pub(crate) accepted_ms: u64,
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

enum Write {
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
    /// Commit durably; with `close`, then stop the writer and release the database.
    Flush {
        done: oneshot::Sender<()>,
        close: bool,
    },
}

/// A handle to the outbox; cheap to clone.
#[derive(Clone)]
pub(crate) struct Outbox {
    db: Arc<Database>,
    writes: mpsc::UnboundedSender<Write>,
    last_seq: watch::Receiver<u64>,
    depth: Arc<watch::Sender<i64>>,
}

impl Outbox {
    /// Opens (or creates) the outbox at `path` and starts its writer thread.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        Ok(Self::open_db(path)?)
    }

    fn open_db(path: &Path) -> Result<Self, redb::Error> {
        let db = Arc::new(
            Database::builder()
                .set_cache_size(CACHE_BYTES)
                .create(path)?,
        );
        let txn = db.begin_write()?;
        txn.open_table(EVENTS)?;
        txn.open_table(REMAINING)?;
        let depth = txn.open_table(PENDING)?.len()?;
        txn.open_table(CHECKPOINTS)?;
        txn.open_table(WORKFLOWS)?;
        txn.commit()?;
        let next = {
            let read = db.begin_read()?;
            let events = read.open_table(EVENTS)?;
            events.last()?.map_or(1, |(k, _)| k.value() + 1)
        };
        let (writes, queue) = mpsc::unbounded_channel();
        let (seq_tx, last_seq) = watch::channel(next - 1);
        let depth = Arc::new(watch::Sender::new(depth as i64));
        let writer = Writer {
            db: Arc::clone(&db),
            next,
            seq: seq_tx,
            depth: Arc::clone(&depth),
            last_durable: Instant::now(),
        };
        std::thread::Builder::new()
            .name("outbox-writer".into())
            .spawn(move || writer.run(queue))
            .expect("spawning a thread");
        Ok(Self {
            db,
            writes,
            last_seq,
            depth,
        })
    }

    /// Stores a batch durably, in one transaction, then returns.
    pub(crate) async fn accept(&self, batch: AcceptBatch) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.send(Write::Accept(batch, done))?;
        wait.await.map_err(|_| OutboxError::Stopped)
    }

    /// Records a failed attempt, so a restart keeps counting from there.
    pub(crate) fn attempted(&self, endpoint: &str, seq: u64, attempts: u32, first_ms: u64) {
        let _ = self.send(Write::Attempted {
            endpoint: endpoint.to_owned(),
            seq,
            attempts,
            first_ms,
        });
    }

    /// Removes a delivery that is done (delivered, dropped or dead-lettered).
    pub(crate) fn complete(&self, endpoint: &str, seq: u64) {
        let _ = self.send(Write::Complete {
            endpoint: endpoint.to_owned(),
            seq,
        });
    }

    /// Removes every delivery of an endpoint that no longer exists; returns how many.
    pub(crate) async fn purge(&self, endpoint: &str) -> Result<u64> {
        let (done, wait) = oneshot::channel();
        self.send(Write::Purge(endpoint.to_owned(), done))?;
        wait.await.map_err(|_| OutboxError::Stopped)
    }

    /// Forgets a source position.
    pub(crate) async fn clear_checkpoint(&self, key: &str) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.send(Write::ClearCheckpoint(key.to_owned(), done))?;
        wait.await.map_err(|_| OutboxError::Stopped)
    }

    /// Makes every write durable, stops the writer and closes the database once no other
    /// handle to it is left, so that the state folder can be opened again in this process.
    pub(crate) async fn close(self) -> Result<()> {
        let Self { db, writes, .. } = self;
        drop(db);
        let (done, wait) = oneshot::channel();
        writes
            .send(Write::Flush { done, close: true })
            .map_err(|_| OutboxError::Stopped)?;
        wait.await.map_err(|_| OutboxError::Stopped)
    }

    /// The stored value of a source position.
    pub(crate) fn checkpoint(&self, key: &str) -> Result<Option<String>> {
        Ok(self.read_checkpoint(key)?)
    }

    fn read_checkpoint(&self, key: &str) -> Result<Option<String>, redb::Error> {
        let read = self.db.begin_read()?;
        let table = read.open_table(CHECKPOINTS)?;
        Ok(table.get(key)?.map(|v| v.value().to_owned()))
    }

    /// Every stored workflow state, by uid.
    pub(crate) fn workflows(&self) -> Result<Vec<(String, Vec<u8>)>> {
        Ok(self.read_workflows()?)
    }

    fn read_workflows(&self) -> Result<Vec<(String, Vec<u8>)>, redb::Error> {
        let read = self.db.begin_read()?;
        let table = read.open_table(WORKFLOWS)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (uid, state) = row?;
            out.push((uid.value().to_owned(), state.value().to_vec()));
        }
        Ok(out)
    }

    /// Up to `limit` deliveries of `endpoint` after sequence number `after`, in order.
    pub(crate) fn pending(
        &self,
        endpoint: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<PendingDelivery>> {
        Ok(self.read_pending(endpoint, after, limit)?)
    }

    fn read_pending(
        &self,
        endpoint: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<PendingDelivery>, redb::Error> {
        let read = self.db.begin_read()?;
        let pending = read.open_table(PENDING)?;
        let events = read.open_table(EVENTS)?;
        let mut out = Vec::new();
        for row in pending.range((endpoint, after.saturating_add(1))..=(endpoint, u64::MAX))? {
            if out.len() == limit {
                break;
            }
            let (key, value) = row?;
            let seq = key.value().1;
            let (attempts, first_attempt_ms) = value.value();
            let Some(bytes) = events.get(seq)? else {
                continue;
            };
            let stored: Stored = match serde_json::from_slice(bytes.value()) {
                Ok(stored) => stored,
                Err(e) => {
                    tracing::error!(seq, "outbox entry unreadable, skipped: {e}");
                    continue;
                }
            };
            out.push(PendingDelivery {
                seq,
                attempts,
                first_attempt_ms,
                accepted_ms: stored.accepted_ms,
                event: Arc::new(stored.event),
            });
        }
        Ok(out)
    }

    /// The lowest sequence number that some endpoint still waits for, or `None` when every
    /// accepted event is delivered.
    pub(crate) fn oldest_pending(&self) -> Result<Option<u64>> {
        let oldest = || -> Result<Option<u64>, redb::Error> {
            let read = self.db.begin_read()?;
            let remaining = read.open_table(REMAINING)?;
            Ok(remaining.first()?.map(|(seq, _)| seq.value()))
        };
        Ok(oldest()?)
    }

    /// Deliveries waiting, over all endpoints.
    pub(crate) fn depth(&self) -> i64 {
        *self.depth.borrow()
    }

    /// Waits until no delivery is waiting, over all endpoints.
    pub(crate) async fn drained(&self) {
        let mut depth = self.depth.subscribe();
        let _ = depth.wait_for(|d| *d <= 0).await;
    }

    /// Changes whenever events are accepted; holds the last sequence number.
    pub(crate) fn accepted(&self) -> watch::Receiver<u64> {
        self.last_seq.clone()
    }

    fn send(&self, write: Write) -> Result<()> {
        self.writes.send(write).map_err(|_| OutboxError::Stopped)
    }
}

/// Takes queued writes into `batch`, up to [`GROUP_COMMIT`].
fn drain(queue: &mut mpsc::UnboundedReceiver<Write>, batch: &mut Vec<Write>) {
    while batch.len() < GROUP_COMMIT {
        match queue.try_recv() {
            Ok(write) => batch.push(write),
            Err(_) => break,
        }
    }
}

impl Write {
    /// Whether nobody waits for this write: it may be committed a little later.
    fn is_lazy(&self) -> bool {
        matches!(self, Write::Complete { .. } | Write::Attempted { .. })
    }
}

/// Owns every write transaction.
struct Writer {
    db: Arc<Database>,
    next: u64,
    seq: watch::Sender<u64>,
    depth: Arc<watch::Sender<i64>>,
    /// When a transaction was last committed durably.
    last_durable: Instant,
}

/// Replies to send once a transaction has committed.
#[derive(Default)]
struct Replies {
    done: Vec<oneshot::Sender<()>>,
    purged: Vec<(oneshot::Sender<u64>, u64)>,
}

impl Writer {
    fn run(mut self, mut queue: mpsc::UnboundedReceiver<Write>) {
        let mut closing = Vec::new();
        while let Some(first) = queue.blocking_recv() {
            let mut batch = vec![first];
            drain(&mut queue, &mut batch);
            // Nobody waits on completions: gather them a moment, so that a steady trickle
            // costs a few transactions per second rather than one per delivery.
            if batch.len() < GROUP_COMMIT / 8 && batch.iter().all(Write::is_lazy) {
                std::thread::sleep(GATHER);
                drain(&mut queue, &mut batch);
            }
            let close = batch
                .iter()
                .any(|w| matches!(w, Write::Flush { close: true, .. }));
            let last_seq = self.next;
            match self.commit(batch) {
                Ok(replies) => {
                    if self.next != last_seq {
                        self.seq.send_replace(self.next - 1);
                    }
                    for (done, n) in replies.purged {
                        let _ = done.send(n);
                    }
                    if close {
                        closing = replies.done;
                        break;
                    }
                    for done in replies.done {
                        let _ = done.send(());
                    }
                }
                // Callers waiting on this batch see `Stopped`; the writer carries on, since a
                // full disk or similar may clear.
                Err(e) => {
                    self.next = last_seq;
                    tracing::error!("outbox write failed: {e}");
                }
            }
        }
        // Release the database before saying it is closed.
        drop(self);
        for done in closing {
            let _ = done.send(());
        }
    }

    fn commit(&mut self, batch: Vec<Write>) -> Result<Replies, redb::Error> {
        let mut txn = self.db.begin_write()?;
        let durable =
            !batch.iter().all(Write::is_lazy) || self.last_durable.elapsed() >= DURABLE_EVERY;
        txn.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        })
        .map_err(redb::Error::from)?;
        let mut replies = Replies::default();
        let mut depth = 0i64;
        let now = now_ms();
        {
            let mut events = txn.open_table(EVENTS)?;
            let mut remaining = txn.open_table(REMAINING)?;
            let mut pending = txn.open_table(PENDING)?;
            let mut checkpoints = txn.open_table(CHECKPOINTS)?;
            let mut workflows = txn.open_table(WORKFLOWS)?;
            for write in batch {
                match write {
                    Write::Accept(accepted, done) => {
                        let AcceptBatch {
                            events: accepts,
                            checkpoint,
                            workflows: states,
                        } = accepted;
                        for (uid, state) in states {
                            match state {
                                Some(bytes) => workflows.insert(uid.as_str(), bytes.as_slice())?,
                                None => workflows.remove(uid.as_str())?,
                            };
                        }
                        for accept in accepts.into_iter().filter(|a| !a.endpoints.is_empty()) {
                            let seq = self.next;
                            self.next += 1;
                            let stored = Stored {
                                accepted_ms: now,
                                event: accept.event,
                            };
                            let bytes = serde_json::to_vec(&stored).expect("events serialise");
                            events.insert(seq, bytes.as_slice())?;
                            remaining.insert(seq, accept.endpoints.len() as u32)?;
                            for endpoint in &accept.endpoints {
                                pending.insert((endpoint.as_str(), seq), (0, 0))?;
                            }
                            depth += accept.endpoints.len() as i64;
                        }
                        if let Some(c) = checkpoint {
                            checkpoints.insert(c.key.as_str(), c.value.as_str())?;
                        }
                        replies.done.push(done);
                    }
                    Write::Attempted {
                        endpoint,
                        seq,
                        attempts,
                        first_ms,
                    } => {
                        if pending.get((endpoint.as_str(), seq))?.is_some() {
                            pending.insert((endpoint.as_str(), seq), (attempts, first_ms))?;
                        }
                    }
                    Write::Complete { endpoint, seq } => {
                        if pending.remove((endpoint.as_str(), seq))?.is_some() {
                            depth -= 1;
                            release(&mut events, &mut remaining, seq)?;
                        }
                    }
                    Write::Purge(endpoint, done) => {
                        let seqs: Vec<u64> = pending
                            .extract_from_if(
                                (endpoint.as_str(), 0)..=(endpoint.as_str(), u64::MAX),
                                |_, _| true,
                            )?
                            .map(|row| row.map(|(k, _)| k.value().1))
                            .collect::<Result<_, _>>()?;
                        for &seq in &seqs {
                            release(&mut events, &mut remaining, seq)?;
                        }
                        depth -= seqs.len() as i64;
                        replies.purged.push((done, seqs.len() as u64));
                    }
                    Write::ClearCheckpoint(key, done) => {
                        checkpoints.remove(key.as_str())?;
                        replies.done.push(done);
                    }
                    Write::Flush { done, .. } => replies.done.push(done),
                }
            }
        }
        txn.commit()?;
        if durable {
            self.last_durable = Instant::now();
        }
        if depth != 0 {
            self.depth.send_modify(|d| *d += depth);
        }
        Ok(replies)
    }
}

/// One endpoint is done with `seq`: drop the event when it was the last.
fn release(
    events: &mut redb::Table<u64, &[u8]>,
    remaining: &mut redb::Table<u64, u32>,
    seq: u64,
) -> Result<(), redb::Error> {
    let left = remaining
        .get(seq)?
        .map_or(0, |v| v.value())
        .saturating_sub(1);
    if left == 0 {
        remaining.remove(seq)?;
        events.remove(seq)?;
    } else {
        remaining.insert(seq, left)?;
    }
    Ok(())
}

/// Counts deliveries per endpoint, for startup logs.
pub(crate) fn count_by_endpoint(outbox: &Outbox) -> Result<HashMap<String, u64>> {
    Ok(count_rows(outbox)?)
}

fn count_rows(outbox: &Outbox) -> Result<HashMap<String, u64>, redb::Error> {
    let read = outbox.db.begin_read()?;
    let pending = read.open_table(PENDING)?;
    let mut counts = HashMap::new();
    for row in pending.iter()? {
        let (key, _) = row?;
        *counts.entry(key.value().0.to_owned()).or_insert(0) += 1;
    }
    Ok(counts)
}
