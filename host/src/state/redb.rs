//! The redb backend: the outbox as one [redb] file, `state.dir/outbox.redb`.
//!
//! Tables:
//! - `events`: sequence number -> the stored event (JSON);
//! - `remaining`: sequence number -> endpoints still to deliver it;
//! - `pending`: (endpoint, sequence number) -> attempts made and when the first was;
//! - `checkpoints`: source position key -> value;
//! - `workflows`: workflow uid -> what the enrich stage last saw of it (for derived events).
//!
//! All writes go through one writer thread that commits whatever has queued up in one durable
//! transaction (group commit); completions wait at most [`LAZY_WINDOW`] for company.
//!
//! Size: redb reuses the pages that delivered events free, so the file grows only with the
//! backlog; but it does not shrink while open. A file inflated by a long outage is compacted
//! when the router starts, if it is over [`COMPACT_ABOVE`] and more than half free. Opening
//! then takes longer (about as long as writing the live data again), and the disk needs room
//! for the live data while it runs.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::Instant;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};

use super::outbox::{AcceptBatch, GROUP_COMMIT, LAZY_WINDOW, OutboxError, PendingDelivery, Result};
use crate::model::clock::now_ms;
use crate::model::event::RouterEvent;

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const REMAINING: TableDefinition<u64, u32> = TableDefinition::new("remaining");
const PENDING: TableDefinition<(&str, u64), (u32, u64)> = TableDefinition::new("pending");
const CHECKPOINTS: TableDefinition<&str, &str> = TableDefinition::new("checkpoints");
const WORKFLOWS: TableDefinition<&str, &[u8]> = TableDefinition::new("workflows");

/// Memory for the database's page cache. The outbox is read mostly near its head, so a small
/// cache serves it; redb's default (1 GiB) would be most of the router's memory.
const CACHE_BYTES: usize = 32 << 20;

/// A file smaller than this is never compacted: it is not worth the wait.
pub(super) const COMPACT_ABOVE: u64 = 8 << 20;

/// An event as stored: what was accepted, and when (`E` is a [`RouterEvent`], or a reference
/// to one).
#[derive(Debug, Serialize, Deserialize)]
struct Stored<E> {
    accepted_ms: u64,
    event: E,
}

/// An [`AcceptBatch`] with its events serialised (by the caller, so that the writer spends its
/// time writing).
struct Serialised {
    events: Vec<(Vec<u8>, Vec<String>)>,
    checkpoint: Option<crate::model::item::Checkpoint>,
    workflows: Vec<(String, Option<Vec<u8>>)>,
}

impl Serialised {
    /// Serialises `batch`, leaving out the events routed nowhere.
    fn new(batch: AcceptBatch) -> Self {
        let accepted_ms = now_ms();
        let events = batch
            .events
            .into_iter()
            .filter(|a| !a.endpoints.is_empty())
            .map(|a| {
                let stored = Stored {
                    accepted_ms,
                    event: &a.event,
                };
                let bytes = serde_json::to_vec(&stored).expect("events serialise");
                (bytes, a.endpoints)
            })
            .collect();
        Self {
            events,
            checkpoint: batch.checkpoint,
            workflows: batch.workflows,
        }
    }
}

/// A queued write.
enum Write {
    Accept(Serialised, oneshot::Sender<()>),
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
    /// Commit; with `close`, then stop the writer and release the database.
    Flush {
        done: oneshot::Sender<()>,
        close: bool,
    },
}

impl Write {
    /// Whether nobody waits for this write: it may be committed a little later.
    fn is_lazy(&self) -> bool {
        matches!(self, Write::Complete { .. } | Write::Attempted { .. })
    }
}

/// A handle to the redb outbox; cheap to clone.
#[derive(Clone)]
pub(crate) struct Redb {
    db: Arc<Database>,
    writes: Sender<Write>,
    last_seq: watch::Receiver<u64>,
    depth: Arc<watch::Sender<i64>>,
}

impl Redb {
    /// Opens (or creates) the outbox at `path`, compacts it when mostly free, and starts its
    /// writer thread.
    pub(super) fn open(path: &Path) -> Result<Self> {
        Ok(Self::open_db(path)?)
    }

    fn open_db(path: &Path) -> Result<Self, redb::Error> {
        let mut db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)?;
        let txn = db.begin_write()?;
        txn.open_table(EVENTS)?;
        txn.open_table(REMAINING)?;
        let depth = txn.open_table(PENDING)?.len()?;
        txn.open_table(CHECKPOINTS)?;
        txn.open_table(WORKFLOWS)?;
        let live = txn.stats()?;
        txn.commit()?;
        compact_if_mostly_free(
            &mut db,
            path,
            live.allocated_pages() * live.page_size() as u64,
        )?;
        let db = Arc::new(db);
        let next = {
            let read = db.begin_read()?;
            let events = read.open_table(EVENTS)?;
            events.last()?.map_or(1, |(k, _)| k.value() + 1)
        };
        let (writes, queue) = std::sync::mpsc::channel();
        let (seq_tx, last_seq) = watch::channel(next - 1);
        let depth = Arc::new(watch::Sender::new(depth as i64));
        let writer = Writer {
            db: Arc::clone(&db),
            next,
            seq: seq_tx,
            depth: Arc::clone(&depth),
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

    /// See [`Outbox::accept`](super::Outbox::accept).
    pub(super) async fn accept(&self, batch: AcceptBatch) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.send(Write::Accept(Serialised::new(batch), done))?;
        wait.await.map_err(|_| OutboxError::Stopped)
    }

    /// See [`Outbox::attempted`](super::Outbox::attempted).
    pub(super) fn attempted(&self, endpoint: &str, seq: u64, attempts: u32, first_ms: u64) {
        let _ = self.send(Write::Attempted {
            endpoint: endpoint.to_owned(),
            seq,
            attempts,
            first_ms,
        });
    }

    /// See [`Outbox::complete`](super::Outbox::complete).
    pub(super) fn complete(&self, endpoint: &str, seq: u64) {
        let _ = self.send(Write::Complete {
            endpoint: endpoint.to_owned(),
            seq,
        });
    }

    /// See [`Outbox::purge`](super::Outbox::purge).
    pub(super) async fn purge(&self, endpoint: &str) -> Result<u64> {
        let (done, wait) = oneshot::channel();
        self.send(Write::Purge(endpoint.to_owned(), done))?;
        wait.await.map_err(|_| OutboxError::Stopped)
    }

    /// See [`Outbox::clear_checkpoint`](super::Outbox::clear_checkpoint).
    pub(super) async fn clear_checkpoint(&self, key: &str) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.send(Write::ClearCheckpoint(key.to_owned(), done))?;
        wait.await.map_err(|_| OutboxError::Stopped)
    }

    /// See [`Outbox::close`](super::Outbox::close).
    pub(super) async fn close(self) -> Result<()> {
        let Self { db, writes, .. } = self;
        drop(db);
        let (done, wait) = oneshot::channel();
        writes
            .send(Write::Flush { done, close: true })
            .map_err(|_| OutboxError::Stopped)?;
        wait.await.map_err(|_| OutboxError::Stopped)
    }

    /// See [`Outbox::checkpoint`](super::Outbox::checkpoint).
    pub(super) fn checkpoint(&self, key: &str) -> Result<Option<String>> {
        let read = || -> Result<Option<String>, redb::Error> {
            let read = self.db.begin_read()?;
            let table = read.open_table(CHECKPOINTS)?;
            Ok(table.get(key)?.map(|v| v.value().to_owned()))
        };
        Ok(read()?)
    }

    /// See [`Outbox::workflows`](super::Outbox::workflows).
    pub(super) fn workflows(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let read = || -> Result<Vec<(String, Vec<u8>)>, redb::Error> {
            let read = self.db.begin_read()?;
            let table = read.open_table(WORKFLOWS)?;
            let mut out = Vec::new();
            for row in table.iter()? {
                let (uid, state) = row?;
                out.push((uid.value().to_owned(), state.value().to_vec()));
            }
            Ok(out)
        };
        Ok(read()?)
    }

    /// See [`Outbox::pending`](super::Outbox::pending).
    pub(super) fn pending(
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
            let stored: Stored<RouterEvent> = match serde_json::from_slice(bytes.value()) {
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

    /// See [`Outbox::oldest_pending`](super::Outbox::oldest_pending).
    pub(super) fn oldest_pending(&self) -> Result<Option<u64>> {
        let oldest = || -> Result<Option<u64>, redb::Error> {
            let read = self.db.begin_read()?;
            let remaining = read.open_table(REMAINING)?;
            Ok(remaining.first()?.map(|(seq, _)| seq.value()))
        };
        Ok(oldest()?)
    }

    /// See [`Outbox::accepted`](super::Outbox::accepted).
    pub(super) fn accepted(&self) -> watch::Receiver<u64> {
        self.last_seq.clone()
    }

    /// Deliveries waiting, kept current by the writer.
    pub(super) fn depth_watch(&self) -> &watch::Sender<i64> {
        &self.depth
    }

    /// See [`count_by_endpoint`](super::outbox::count_by_endpoint).
    pub(super) fn count_by_endpoint(&self) -> Result<HashMap<String, u64>> {
        let count = || -> Result<HashMap<String, u64>, redb::Error> {
            let read = self.db.begin_read()?;
            let pending = read.open_table(PENDING)?;
            let mut counts = HashMap::new();
            for row in pending.iter()? {
                let (key, _) = row?;
                *counts.entry(key.value().0.to_owned()).or_insert(0) += 1;
            }
            Ok(counts)
        };
        Ok(count()?)
    }

    fn send(&self, write: Write) -> Result<()> {
        self.writes.send(write).map_err(|_| OutboxError::Stopped)
    }
}

/// Compacts the file at `path` when it is over [`COMPACT_ABOVE`] and more than half of it is
/// free (`live` bytes in use), as after a long outage; logs what it did.
fn compact_if_mostly_free(db: &mut Database, path: &Path, live: u64) -> Result<(), redb::Error> {
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    if size <= COMPACT_ABOVE || live >= size / 2 {
        return Ok(());
    }
    let started = Instant::now();
    db.compact().map_err(redb::Error::from)?;
    let after = std::fs::metadata(path).map_or(0, |m| m.len());
    tracing::info!(
        before_bytes = size,
        after_bytes = after,
        took = ?started.elapsed(),
        "compacted the outbox file"
    );
    Ok(())
}

/// Owns every write transaction.
struct Writer {
    db: Arc<Database>,
    next: u64,
    seq: watch::Sender<u64>,
    depth: Arc<watch::Sender<i64>>,
}

/// Replies to send once a transaction has committed.
#[derive(Default)]
struct Replies {
    done: Vec<oneshot::Sender<()>>,
    purged: Vec<(oneshot::Sender<u64>, u64)>,
}

impl Writer {
    fn run(mut self, queue: Receiver<Write>) {
        let mut closing = Vec::new();
        while let Ok(first) = queue.recv() {
            let batch = gather(&queue, first);
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
        let txn = self.db.begin_write()?;
        let mut replies = Replies::default();
        let mut depth = 0i64;
        {
            let mut events = txn.open_table(EVENTS)?;
            let mut remaining = txn.open_table(REMAINING)?;
            let mut pending = txn.open_table(PENDING)?;
            let mut checkpoints = txn.open_table(CHECKPOINTS)?;
            let mut workflows = txn.open_table(WORKFLOWS)?;
            for write in batch {
                match write {
                    Write::Accept(accepted, done) => {
                        let Serialised {
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
                        for (bytes, endpoints) in accepts {
                            let seq = self.next;
                            self.next += 1;
                            events.insert(seq, bytes.as_slice())?;
                            remaining.insert(seq, endpoints.len() as u32)?;
                            for endpoint in &endpoints {
                                pending.insert((endpoint.as_str(), seq), (0, 0))?;
                            }
                            depth += endpoints.len() as i64;
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
        if depth != 0 {
            self.depth.send_modify(|d| *d += depth);
        }
        Ok(replies)
    }
}

/// Takes what has queued up after `first`, up to [`GROUP_COMMIT`] writes. While they are all
/// lazy, waits up to [`LAZY_WINDOW`] (from `first`) for more, so that a steady stream of
/// completions costs one durable commit per window rather than one per delivery; a write
/// someone waits for ends the wait.
fn gather(queue: &Receiver<Write>, first: Write) -> Vec<Write> {
    let deadline = Instant::now() + LAZY_WINDOW;
    let mut lazy = first.is_lazy();
    let mut batch = vec![first];
    while batch.len() < GROUP_COMMIT {
        let next = match queue.try_recv() {
            Ok(write) => write,
            Err(_) if lazy => {
                match queue.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(write) => write,
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
            Err(_) => break,
        };
        lazy &= next.is_lazy();
        batch.push(next);
    }
    batch
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::EventFacts;
    use crate::state::outbox::Accept;

    /// An event with a message of `size` bytes, so that a test can fill the file quickly.
    fn event(i: usize, size: usize) -> RouterEvent {
        RouterEvent {
            id: format!("e{i}"),
            event: EventFacts {
                uid: format!("uid-{i}"),
                message: "x".repeat(size),
                ..EventFacts::default()
            },
            node: None,
            workflow: None,
            synthesized: false,
            task: None,
            plumbing: false,
            attempt: 1,
        }
    }

    fn batch(from: usize, n: usize) -> AcceptBatch {
        AcceptBatch {
            events: (from..from + n)
                .map(|i| Accept {
                    event: event(i, 4096),
                    endpoints: vec!["hook".into()],
                })
                .collect(),
            ..AcceptBatch::default()
        }
    }

    fn count_by_endpoint_of(outbox: &Redb) -> u64 {
        outbox.count_by_endpoint().unwrap()["hook"]
    }

    #[tokio::test]
    async fn a_file_emptied_by_delivery_shrinks_when_opened_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.redb");
        let outbox = Redb::open(&path).unwrap();
        for i in 0..3 {
            outbox.accept(batch(i * 1000, 1000)).await.unwrap();
        }
        // A fresh outbox numbers its events from 1.
        for seq in 1..=3000 {
            outbox.complete("hook", seq);
        }
        let mut depth = outbox.depth.subscribe();
        depth.wait_for(|d| *d == 0).await.unwrap();
        outbox.close().await.unwrap();
        let full = std::fs::metadata(&path).unwrap().len();
        assert!(full > COMPACT_ABOVE, "{full} bytes after 12 MB of events");

        let outbox = Redb::open(&path).unwrap();
        let compacted = std::fs::metadata(&path).unwrap().len();
        assert!(
            compacted < full / 4,
            "{full} bytes before the reopen, {compacted} after"
        );
        // Still a working outbox.
        outbox.accept(batch(9000, 1)).await.unwrap();
        let pending = outbox.pending("hook", 0, 10).unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].event.id, "e9000");
        outbox.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_file_with_a_live_backlog_is_left_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.redb");
        let outbox = Redb::open(&path).unwrap();
        for i in 0..3 {
            outbox.accept(batch(i * 1000, 1000)).await.unwrap();
        }
        outbox.close().await.unwrap();
        let full = std::fs::metadata(&path).unwrap().len();
        assert!(full > COMPACT_ABOVE, "{full} bytes after 12 MB of events");

        let outbox = Redb::open(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), full);
        assert_eq!(count_by_endpoint_of(&outbox), 3000);
        outbox.close().await.unwrap();
    }
}
