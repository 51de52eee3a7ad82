//! The redb writer: one thread owns every write transaction. It commits whatever has queued
//! up in one durable transaction (group commit); events arrive serialised, so that the thread
//! spends its time writing.
//!
//! Writes nobody waits for (completions, failed attempts) do not go through the queue: they
//! gather in [`Lazy`], and the writer takes them all at its next commit, at most
//! [`LAZY_WINDOW`] after the first. A steady stream of completions so costs neither one commit
//! nor one wake-up of the thread per delivery.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use redb::{Database, ReadableTable};
use tokio::sync::{oneshot, watch};

use super::stored::StoredEvent;
use super::{CHECKPOINTS, EVENTS, PENDING, REMAINING, WORKFLOWS};
use crate::model::clock::now_us;
use crate::model::event::RouterEvent;
use crate::model::item::Checkpoint;
use crate::state::handoff::{Committed, Tails};
use crate::state::outbox::{AcceptBatch, CommitTimes, GROUP_COMMIT, LAZY_WINDOW};
use crate::state::record;

/// An [`AcceptBatch`] with its events serialised (by the caller, so that the writer spends its
/// time writing), and kept, for the [hand-off](crate::state::handoff).
pub(super) struct Serialised {
    accepted_us: u64,
    events: Vec<(Vec<u8>, Arc<RouterEvent>, Vec<String>)>,
    checkpoint: Option<Checkpoint>,
    workflows: Vec<(String, Option<Vec<u8>>)>,
}

impl Serialised {
    /// Serialises `batch`, leaving out the events routed nowhere.
    pub(super) fn new(batch: AcceptBatch) -> Self {
        let accepted_us = now_us();
        let events = batch
            .events
            .into_iter()
            .filter(|a| !a.endpoints.is_empty())
            .map(|a| {
                let mut bytes = Vec::with_capacity(record::CAPACITY);
                record::encode(accepted_us / 1000, &a.event, &mut bytes);
                (bytes, Arc::new(a.event), a.endpoints)
            })
            .collect();
        Self {
            accepted_us,
            events,
            checkpoint: batch.checkpoint,
            workflows: batch.workflows,
        }
    }
}

/// A write nobody waits for: committed within [`LAZY_WINDOW`].
pub(super) enum LazyWrite {
    /// A failed attempt.
    Attempted {
        endpoint: String,
        seq: u64,
        attempts: u32,
        first_ms: u64,
    },
    /// A delivery done.
    Complete { endpoint: String, seq: u64 },
}

/// Lazy writes gathered for the writer's next commit.
#[derive(Default)]
pub(super) struct Lazy(Mutex<Vec<LazyWrite>>);

impl Lazy {
    /// Adds `write`; true when it is the first since the writer last took them, so that the
    /// caller tells the writer ([`Write::Lazy`]).
    pub(super) fn push(&self, write: LazyWrite) -> bool {
        let mut writes = self.0.lock().unwrap_or_else(|e| e.into_inner());
        writes.push(write);
        writes.len() == 1
    }

    fn take(&self) -> Vec<LazyWrite> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn is_empty(&self) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
    }
}

/// A queued write.
pub(super) enum Write {
    /// Events to store; answered once committed.
    Accept(Serialised, oneshot::Sender<()>),
    /// Lazy writes are waiting in [`Lazy`]: commit them within [`LAZY_WINDOW`].
    Lazy,
    /// A source position to forget.
    ClearCheckpoint(String, oneshot::Sender<()>),
    /// Every delivery of an endpoint to drop; answered with how many.
    Purge(String, oneshot::Sender<u64>),
    /// Commit; with `close`, then stop the writer and release the database.
    Flush {
        done: oneshot::Sender<()>,
        close: bool,
    },
}

/// Starts the writer thread on `db`, numbering events from `next`; returns where to send
/// writes. The thread stops after a close, or once every sender is gone.
pub(super) fn spawn(
    db: Arc<Database>,
    next: u64,
    seq: watch::Sender<u64>,
    depth: Arc<watch::Sender<i64>>,
    tails: Tails,
    lazy: Arc<Lazy>,
    commit_times: CommitTimes,
) -> Sender<Write> {
    let (writes, queue) = std::sync::mpsc::channel();
    let writer = Writer {
        db,
        next,
        seq,
        depth,
        tails,
        lazy,
        commit_times,
    };
    std::thread::Builder::new()
        .name("outbox-writer".into())
        .spawn(move || writer.run(queue))
        .expect("spawning a thread");
    writes
}

/// Owns every write transaction.
struct Writer {
    db: Arc<Database>,
    next: u64,
    seq: watch::Sender<u64>,
    depth: Arc<watch::Sender<i64>>,
    tails: Tails,
    lazy: Arc<Lazy>,
    commit_times: CommitTimes,
}

/// Replies to send once a transaction has committed, and the events it stored.
#[derive(Default)]
struct Replies {
    done: Vec<oneshot::Sender<()>>,
    purged: Vec<(oneshot::Sender<u64>, u64)>,
    committed: Vec<Committed>,
}

impl Writer {
    fn run(mut self, queue: Receiver<Write>) {
        let mut closing = Vec::new();
        while let Ok(first) = queue.recv() {
            let Some((batch, lazy)) = gather(&queue, first, &self.lazy) else {
                continue;
            };
            let close = batch
                .iter()
                .any(|w| matches!(w, Write::Flush { close: true, .. }));
            let last_seq = self.next;
            match self.commit(batch, lazy) {
                Ok(replies) => {
                    if self.next != last_seq {
                        // Hand-offs first: a worker woken by the watch finds them queued.
                        let (after, upto) = (last_seq - 1, self.next - 1);
                        self.tails.publish(after, upto, &replies.committed);
                        self.seq.send_replace(upto);
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

    fn commit(&mut self, batch: Vec<Write>, lazy: Vec<LazyWrite>) -> Result<Replies, redb::Error> {
        let started = Instant::now();
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
                            accepted_us,
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
                        for (bytes, event, endpoints) in accepts {
                            let seq = self.next;
                            self.next += 1;
                            events.insert(seq, bytes.as_slice())?;
                            // One endpoint, the most common case, needs no count.
                            if endpoints.len() > 1 {
                                remaining.insert(seq, endpoints.len() as u32)?;
                            }
                            for endpoint in &endpoints {
                                pending.insert((endpoint.as_str(), seq), (0, 0))?;
                            }
                            depth += endpoints.len() as i64;
                            replies.committed.push(Committed {
                                seq,
                                accepted_us,
                                event,
                                endpoints,
                                bucket: 0,
                            });
                        }
                        if let Some(c) = checkpoint {
                            checkpoints.insert(c.key.as_str(), c.value.as_str())?;
                        }
                        replies.done.push(done);
                    }
                    Write::Lazy => {}
                    Write::Purge(endpoint, done) => {
                        let seqs: Vec<u64> = pending
                            .extract_from_if(
                                (endpoint.as_str(), 0)..=(endpoint.as_str(), u64::MAX),
                                |_, _| true,
                            )?
                            .map(|row| row.map(|(k, _)| k.value().1))
                            .collect::<Result<_, _>>()?;
                        depth -= seqs.len() as i64;
                        replies.purged.push((done, seqs.len() as u64));
                        release(&mut events, &mut remaining, seqs)?;
                    }
                    Write::ClearCheckpoint(key, done) => {
                        checkpoints.remove(key.as_str())?;
                        replies.done.push(done);
                    }
                    Write::Flush { done, .. } => replies.done.push(done),
                }
            }
            // After the queued writes: a completion always follows its event's acceptance.
            let mut completed = Vec::new();
            for write in lazy {
                match write {
                    LazyWrite::Attempted {
                        endpoint,
                        seq,
                        attempts,
                        first_ms,
                    } => {
                        if pending.get((endpoint.as_str(), seq))?.is_some() {
                            pending.insert((endpoint.as_str(), seq), (attempts, first_ms))?;
                        }
                    }
                    LazyWrite::Complete { endpoint, seq } => completed.push((endpoint, seq)),
                }
            }
            depth -= complete(&mut pending, &mut events, &mut remaining, completed)?;
        }
        txn.commit()?;
        self.commit_times.observe(started.elapsed());
        if depth != 0 {
            self.depth.send_modify(|d| *d += depth);
        }
        Ok(replies)
    }
}

/// Takes what has queued up after `first`, up to [`GROUP_COMMIT`] writes, and then every lazy
/// write. When `first` only says that lazy writes wait, waits up to [`LAZY_WINDOW`] for more
/// company, cut short by a write someone waits for: a steady stream of completions costs one
/// durable commit per window. `None` when there is nothing to write (the lazy writes that
/// `first` told of went with an earlier commit).
fn gather(
    queue: &Receiver<Write>,
    first: Write,
    lazy: &Lazy,
) -> Option<(Vec<Write>, Vec<LazyWrite>)> {
    let mut batch = Vec::new();
    if matches!(first, Write::Lazy) {
        if lazy.is_empty() {
            return None;
        }
        let deadline = Instant::now() + LAZY_WINDOW;
        loop {
            match queue.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Write::Lazy) => continue,
                Ok(write) => {
                    batch.push(write);
                    break;
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
    } else {
        batch.push(first);
    }
    while batch.len() < GROUP_COMMIT {
        match queue.try_recv() {
            Ok(Write::Lazy) => {}
            Ok(write) => batch.push(write),
            Err(_) => break,
        }
    }
    Some((batch, lazy.take()))
}

/// How far apart two sequence numbers may be and still be removed in one pass over a table:
/// a pass visits the rows between them that stay, a new pass starts from the root.
const RUN_GAP: u64 = 64;

/// Removes the pending rows of the `completed` deliveries, and [releases](release) their
/// events; returns how many rows there were (a delivery completed twice, or purged, has none).
///
/// Deliveries complete mostly in order, so the rows go in a few passes over runs of nearby
/// keys, each rewriting a leaf once, rather than in a descent from the root per row.
fn complete(
    pending: &mut redb::Table<(&str, u64), (u32, u64)>,
    events: &mut redb::Table<u64, StoredEvent>,
    remaining: &mut redb::Table<u64, u32>,
    mut completed: Vec<(String, u64)>,
) -> Result<i64, redb::Error> {
    completed.sort_unstable();
    completed.dedup();
    let mut released = Vec::with_capacity(completed.len());
    for of_endpoint in completed.chunk_by(|a, b| a.0 == b.0) {
        let endpoint = of_endpoint[0].0.as_str();
        let seqs: Vec<u64> = of_endpoint.iter().map(|(_, seq)| *seq).collect();
        for run in runs(&seqs) {
            let (first, last) = (run[0], run[run.len() - 1]);
            pending.retain_in((endpoint, first)..=(endpoint, last), |(_, seq), _| {
                let done = run.binary_search(&seq).is_ok();
                if done {
                    released.push(seq);
                }
                !done
            })?;
        }
    }
    let removed = released.len() as i64;
    release(events, remaining, released)?;
    Ok(removed)
}

/// Endpoints are done with `released` (a sequence number once per endpoint): drops each event
/// whose last endpoint that was. An event without a count in `remaining` had one endpoint.
fn release(
    events: &mut redb::Table<u64, StoredEvent>,
    remaining: &mut redb::Table<u64, u32>,
    mut released: Vec<u64>,
) -> Result<(), redb::Error> {
    released.sort_unstable();
    let mut gone = Vec::with_capacity(released.len());
    for same in released.chunk_by(|a, b| a == b) {
        let (seq, done) = (same[0], same.len() as u32);
        let left = remaining.get(seq)?.map(|v| v.value());
        match left {
            Some(left) if left > done => {
                remaining.insert(seq, left - done)?;
            }
            Some(_) => {
                remaining.remove(seq)?;
                gone.push(seq);
            }
            None => gone.push(seq),
        }
    }
    for run in runs(&gone) {
        let (first, last) = (run[0], run[run.len() - 1]);
        events.retain_in(first..=last, |seq, _| run.binary_search(&seq).is_err())?;
    }
    Ok(())
}

/// `seqs` (sorted) cut where two are more than [`RUN_GAP`] apart.
fn runs(seqs: &[u64]) -> impl Iterator<Item = &[u64]> {
    seqs.chunk_by(|a, b| b - a <= RUN_GAP)
}
