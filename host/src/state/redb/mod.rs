//! The redb backend: the outbox as one [redb] file, `state.dir/outbox.redb`.
//!
//! Tables:
//! - `events`: sequence number -> the stored event (a binary [record](super::record), of the
//!   value type [`stored::StoredEvent`]);
//! - `remaining`: sequence number -> endpoints still to deliver it, for an event routed to
//!   more than one (no row: one);
//! - `pending`: (endpoint, sequence number) -> attempts made and when the first was;
//! - `checkpoints`: source position key -> value;
//! - `workflows`: workflow uid -> what the enrich stage last saw of it (for derived events).
//!
//! All writes go through one thread, the [`writer`]; reads run on the caller's thread.
//!
//! Size: redb reuses the pages that delivered events free, so the file grows only with the
//! backlog; but it does not shrink while open. A file inflated by a long outage is compacted
//! when the router starts, if it is over [`COMPACT_ABOVE`] and more than half free. Opening
//! then takes longer (about as long as writing the live data again), and the disk needs room
//! for the live data while it runs.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Instant;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::{oneshot, watch};

mod migrate;
mod stored;
mod writer;

use self::stored::StoredEvent;
use self::writer::{Lazy, LazyWrite, Serialised, Write};
use super::handoff::Tails;
use super::outbox::{AcceptBatch, Backlog, CommitTimes, OutboxError, PendingDelivery, Result};
use super::record;

const EVENTS: TableDefinition<u64, StoredEvent> = TableDefinition::new("events");
const REMAINING: TableDefinition<u64, u32> = TableDefinition::new("remaining");
const PENDING: TableDefinition<(&str, u64), (u32, u64)> = TableDefinition::new("pending");
const CHECKPOINTS: TableDefinition<&str, &str> = TableDefinition::new("checkpoints");
const WORKFLOWS: TableDefinition<&str, &[u8]> = TableDefinition::new("workflows");

/// Memory for the database's page cache. The outbox is read only by workers that fell behind,
/// mostly near its head, so a small cache serves it; redb's default (1 GiB) would be most of
/// the router's memory.
const CACHE_BYTES: usize = 4 << 20;

/// A file smaller than this is never compacted: it is not worth the wait.
pub(super) const COMPACT_ABOVE: u64 = 8 << 20;

/// A handle to the redb outbox; cheap to clone.
#[derive(Clone)]
pub(crate) struct Redb {
    db: Arc<Database>,
    writes: Sender<Write>,
    last_seq: watch::Receiver<u64>,
    depth: Arc<watch::Sender<i64>>,
    tails: Tails,
    lazy: Arc<Lazy>,
    commit_times: CommitTimes,
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
        migrate::events_to_current(&db)?;
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
        let (seq_tx, last_seq) = watch::channel(next - 1);
        let depth = Arc::new(watch::Sender::new(depth as i64));
        let tails = Tails::default();
        let lazy = Arc::new(Lazy::default());
        let commit_times = CommitTimes::default();
        let writes = writer::spawn(
            Arc::clone(&db),
            next,
            seq_tx,
            Arc::clone(&depth),
            tails.clone(),
            Arc::clone(&lazy),
            commit_times.clone(),
        );
        Ok(Self {
            db,
            writes,
            last_seq,
            depth,
            tails,
            lazy,
            commit_times,
        })
    }

    /// Where the writer reports its commits' times.
    pub(super) fn commit_times(&self) -> &CommitTimes {
        &self.commit_times
    }

    /// See [`Outbox::accept`](super::Outbox::accept). Waits first, briefly, for a worker with
    /// room for the hand-off (see [`Tails::room`]).
    pub(super) async fn accept(&self, batch: AcceptBatch) -> Result<()> {
        self.tails.room().await;
        let (done, wait) = oneshot::channel();
        self.send(Write::Accept(Serialised::new(batch), done))?;
        wait.await.map_err(|_| OutboxError::Stopped)
    }

    /// See [`Outbox::attempted`](super::Outbox::attempted).
    pub(super) fn attempted(&self, endpoint: &str, seq: u64, attempts: u32, first_ms: u64) {
        self.send_lazy(LazyWrite::Attempted {
            endpoint: endpoint.to_owned(),
            seq,
            attempts,
            first_ms,
        });
    }

    /// See [`Outbox::complete`](super::Outbox::complete).
    pub(super) fn complete(&self, endpoint: &str, seq: u64) {
        self.send_lazy(LazyWrite::Complete {
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
            let (accepted_ms, event) = match record::decode(bytes.value()) {
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
                accepted_us: accepted_ms * 1000,
                bucket: 0,
                event: Arc::new(event),
            });
        }
        Ok(out)
    }

    /// See [`Outbox::oldest_pending`](super::Outbox::oldest_pending).
    pub(super) fn oldest_pending(&self) -> Result<Option<u64>> {
        let oldest = || -> Result<Option<u64>, redb::Error> {
            let read = self.db.begin_read()?;
            // An event is kept until its last endpoint is done with it.
            let events = read.open_table(EVENTS)?;
            Ok(events.first()?.map(|(seq, _)| seq.value()))
        };
        Ok(oldest()?)
    }

    /// See [`Outbox::accepted`](super::Outbox::accepted).
    pub(super) fn accepted(&self) -> watch::Receiver<u64> {
        self.last_seq.clone()
    }

    /// Where the writer hands each endpoint's new deliveries, once committed.
    pub(super) fn tails(&self) -> &Tails {
        &self.tails
    }

    /// Deliveries waiting, kept current by the writer.
    pub(super) fn depth_watch(&self) -> &watch::Sender<i64> {
        &self.depth
    }

    /// See [`backlog`](super::outbox::backlog).
    pub(super) fn backlog(&self) -> Result<HashMap<String, Backlog>> {
        let count = || -> Result<HashMap<String, Backlog>, redb::Error> {
            let read = self.db.begin_read()?;
            let pending = read.open_table(PENDING)?;
            let events = read.open_table(EVENTS)?;
            let mut backlog: HashMap<String, Backlog> = HashMap::new();
            for row in pending.iter()? {
                let (key, _) = row?;
                let (endpoint, seq) = key.value();
                if let Some(b) = backlog.get_mut(endpoint) {
                    b.pending += 1;
                    continue;
                }
                // Rows are in (endpoint, seq) order: an endpoint's first is its oldest.
                let oldest_ms = events
                    .get(seq)?
                    .and_then(|bytes| record::accepted_ms(bytes.value()).ok());
                backlog.insert(
                    endpoint.to_owned(),
                    Backlog {
                        pending: 1,
                        oldest_ms,
                    },
                );
            }
            Ok(backlog)
        };
        Ok(count()?)
    }

    fn send(&self, write: Write) -> Result<()> {
        self.writes.send(write).map_err(|_| OutboxError::Stopped)
    }

    /// Queues a lazy write, waking the writer only for the first since its last commit.
    fn send_lazy(&self, write: LazyWrite) {
        if self.lazy.push(write) {
            let _ = self.writes.send(Write::Lazy);
        }
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

#[cfg(test)]
mod tests {
    use std::ops::RangeInclusive;

    use super::*;
    use crate::model::event::{EventFacts, RouterEvent};
    use crate::state::outbox::Accept;

    /// An event with a message of `size` bytes, so that a test can fill the file quickly.
    fn event(i: usize, size: usize) -> RouterEvent {
        RouterEvent::bare(
            format!("e{i}"),
            EventFacts {
                uid: format!("uid-{i}"),
                message: "x".repeat(size),
                ..EventFacts::default()
            },
        )
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
        outbox.backlog().unwrap()["hook"].pending
    }

    #[tokio::test]
    async fn a_file_emptied_by_delivery_shrinks_when_opened_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.redb");
        let outbox = Redb::open(&path).unwrap();
        for i in 0..4 {
            outbox.accept(batch(i * 1000, 1000)).await.unwrap();
        }
        // A fresh outbox numbers its events from 1.
        for seq in 1..=4000 {
            outbox.complete("hook", seq);
        }
        let mut depth = outbox.depth.subscribe();
        depth.wait_for(|d| *d == 0).await.unwrap();
        outbox.close().await.unwrap();
        let full = std::fs::metadata(&path).unwrap().len();
        assert!(full > COMPACT_ABOVE, "{full} bytes after 16 MB of events");

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

    /// Commits what was queued so far, lazy writes included.
    async fn flush(outbox: &Redb) {
        let (done, wait) = oneshot::channel();
        outbox.send(Write::Flush { done, close: false }).unwrap();
        wait.await.unwrap();
    }

    #[tokio::test]
    async fn an_event_is_kept_until_its_last_endpoint_is_done_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Redb::open(&dir.path().join("outbox.redb")).unwrap();
        let accept = |i: usize, endpoints: &[&str]| Accept {
            event: event(i, 10),
            endpoints: endpoints.iter().map(|e| e.to_string()).collect(),
        };
        let batch = AcceptBatch {
            events: vec![accept(1, &["a", "b"]), accept(2, &["a"])],
            ..AcceptBatch::default()
        };
        outbox.accept(batch).await.unwrap();
        // A file written before single-endpoint events went without a count still has one.
        {
            let txn = outbox.db.begin_write().unwrap();
            txn.open_table(REMAINING).unwrap().insert(2, 1).unwrap();
            txn.commit().unwrap();
        }
        assert_eq!(outbox.oldest_pending().unwrap(), Some(1));

        outbox.complete("a", 1);
        flush(&outbox).await;
        assert_eq!(outbox.oldest_pending().unwrap(), Some(1), "b still waits");
        assert_eq!(outbox.pending("b", 0, 10).unwrap()[0].seq, 1);

        outbox.complete("b", 1);
        flush(&outbox).await;
        assert_eq!(outbox.oldest_pending().unwrap(), Some(2));

        outbox.complete("a", 2);
        flush(&outbox).await;
        assert_eq!(outbox.oldest_pending().unwrap(), None);
        let read = outbox.db.begin_read().unwrap();
        assert!(read.open_table(REMAINING).unwrap().is_empty().unwrap());
        assert!(read.open_table(EVENTS).unwrap().is_empty().unwrap());
        drop(read);
        outbox.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_hand_off_carries_its_acceptance_in_microseconds_and_the_file_in_milliseconds() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Redb::open(&dir.path().join("outbox.redb")).unwrap();
        let mut handoffs = outbox.tails.subscribe("hook");
        let before = crate::model::clock::now_us();
        outbox.accept(batch(0, 1)).await.unwrap();
        let after = crate::model::clock::now_us();
        let handed = handoffs.recv().await.unwrap().deliveries[0].accepted_us;
        // Whole milliseconds would fall before `before` 999 times in 1000.
        assert!(
            (before..=after).contains(&handed),
            "{before} <= {handed} <= {after}"
        );
        let read = outbox.pending("hook", 0, 10).unwrap()[0].accepted_us;
        assert_eq!(
            read,
            handed / 1000 * 1000,
            "read back: the stored milliseconds"
        );
        outbox.close().await.unwrap();
    }

    #[tokio::test]
    async fn completions_far_apart_and_repeated_remove_exactly_their_rows() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Redb::open(&dir.path().join("outbox.redb")).unwrap();
        let small = |from: usize, n: usize, endpoints: &[&str]| AcceptBatch {
            events: (from..from + n)
                .map(|i| Accept {
                    event: event(i, 10),
                    endpoints: endpoints.iter().map(|e| e.to_string()).collect(),
                })
                .collect(),
            ..AcceptBatch::default()
        };
        // Seqs 1..=500 go to `hook`; 501..=510 to `hook` and `other`.
        outbox.accept(small(0, 500, &["hook"])).await.unwrap();
        outbox
            .accept(small(500, 10, &["hook", "other"]))
            .await
            .unwrap();
        let done: Vec<u64> = (1..=10)
            .chain([12, 100, 101, 300])
            .chain(150..=160)
            .chain(501..=505)
            .collect();
        // Out of order, one twice, and one of an endpoint that does not have it.
        for &seq in done.iter().rev().chain([&5]) {
            outbox.complete("hook", seq);
        }
        outbox.complete("other", 7);
        outbox.complete("other", 505);
        flush(&outbox).await;

        let left: Vec<u64> = outbox
            .pending("hook", 0, 1000)
            .unwrap()
            .iter()
            .map(|d| d.seq)
            .collect();
        let expected: Vec<u64> = (1..=510).filter(|s| !done.contains(s)).collect();
        assert_eq!(left, expected);
        assert_eq!(
            *outbox.depth.borrow(),
            expected.len() as i64 + 9,
            "`other` lost 505"
        );
        let read = outbox.db.begin_read().unwrap();
        let stored: Vec<u64> = read
            .open_table(EVENTS)
            .unwrap()
            .iter()
            .unwrap()
            .map(|row| row.unwrap().0.value())
            .collect();
        // 501..=504 still wait for `other`; 505 was the last of both.
        let kept: Vec<u64> = (1..=510)
            .filter(|s| !done.contains(s) || (501..=504).contains(s))
            .collect();
        assert_eq!(stored, kept);
        let counts: Vec<(u64, u32)> = read
            .open_table(REMAINING)
            .unwrap()
            .iter()
            .unwrap()
            .map(|row| row.map(|(k, v)| (k.value(), v.value())).unwrap())
            .collect();
        let expected_counts: Vec<(u64, u32)> = (501..=510)
            .filter(|&s| s != 505)
            .map(|s| (s, if s <= 504 { 1 } else { 2 }))
            .collect();
        assert_eq!(counts, expected_counts);
        drop(read);
        outbox.close().await.unwrap();
    }

    /// Writes, as releases before the binary records did, events `seqs` in JSON to `table`,
    /// each pending for `hook` and accepted at its seq in ms.
    fn write_json_events(db: &Database, table: &str, seqs: RangeInclusive<u64>) {
        let txn = db.begin_write().unwrap();
        {
            let mut events = txn
                .open_table(TableDefinition::<u64, &[u8]>::new(table))
                .unwrap();
            let mut pending = txn.open_table(PENDING).unwrap();
            for seq in seqs {
                let json = serde_json::json!({
                    "accepted_ms": seq,
                    "event": event(seq as usize, 10),
                });
                events
                    .insert(seq, serde_json::to_vec(&json).unwrap().as_slice())
                    .unwrap();
                pending.insert(("hook", seq), (0, 0)).unwrap();
            }
        }
        txn.commit().unwrap();
    }

    /// Writes events `seqs` as records into `table`, each pending for `hook` and accepted at
    /// its seq in ms. Version 1 of the layout wrote what the current one writes for these
    /// events, which have no node or task.
    fn write_records<V>(db: &Database, table: TableDefinition<u64, V>, seqs: RangeInclusive<u64>)
    where
        V: for<'a> redb::Value<SelfType<'a> = &'a [u8]> + 'static,
    {
        let txn = db.begin_write().unwrap();
        {
            let mut events = txn.open_table(table).unwrap();
            let mut pending = txn.open_table(PENDING).unwrap();
            let mut bytes = Vec::new();
            for seq in seqs {
                bytes.clear();
                record::encode(seq, &event(seq as usize, 10), &mut bytes);
                events.insert(seq, bytes.as_slice()).unwrap();
                pending.insert(("hook", seq), (0, 0)).unwrap();
            }
        }
        txn.commit().unwrap();
    }

    /// Checks that `hook` has events `1..=n` pending, each as written, and numbers the next
    /// event `n + 1`.
    async fn assert_every_event_readable(outbox: &Redb, n: u64) {
        let pending = outbox.pending("hook", 0, usize::MAX).unwrap();
        assert_eq!(pending.len() as u64, n);
        for (delivery, seq) in pending.iter().zip(1..) {
            assert_eq!(delivery.seq, seq);
            assert_eq!(*delivery.event, event(seq as usize, 10));
            assert_eq!(delivery.accepted_us, seq * 1000);
        }
        let mut accepted = outbox.accepted();
        outbox.accept(batch(0, 1)).await.unwrap();
        accepted.wait_for(|last| *last == n + 1).await.unwrap();
    }

    /// Opens the file at `path`, whose events `1..=n` are stored in older layouts, and checks
    /// that every one of them moved to the current layout.
    async fn assert_moved_when_opened(path: &Path, n: u64) {
        let outbox = Redb::open(path).unwrap();
        assert_eq!(migrate::left_to_move(&outbox.db), 0);
        assert_eq!(outbox.backlog().unwrap()["hook"].oldest_ms, Some(1));
        assert_every_event_readable(&outbox, n).await;
        outbox.close().await.unwrap();
    }

    /// Checks that a release whose `events` table is `old` refuses the file at `path`, rather
    /// than skip its events.
    fn assert_refused_by<V: redb::Value + 'static>(path: &Path, old: TableDefinition<u64, V>) {
        let db = Database::create(path).unwrap();
        let txn = db.begin_write().unwrap();
        let opened = txn.open_table(old).map(drop);
        assert!(
            matches!(opened, Err(redb::TableError::TableTypeMismatch { .. })),
            "{opened:?}"
        );
    }

    #[tokio::test]
    async fn a_file_of_json_events_is_rewritten_when_opened_and_refused_by_older_readers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.redb");
        write_json_events(&Database::create(&path).unwrap(), "events", 1..=2500);
        assert_moved_when_opened(&path, 2500).await;
        assert_refused_by(&path, TableDefinition::<u64, &[u8]>::new("events"));
    }

    #[tokio::test]
    async fn a_file_of_version_1_records_is_moved_when_opened_and_refused_by_older_readers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.redb");
        write_records(
            &Database::create(&path).unwrap(),
            migrate::V1_EVENTS,
            1..=2500,
        );
        assert_moved_when_opened(&path, 2500).await;
        assert_refused_by(&path, migrate::V1_EVENTS);
    }

    #[tokio::test]
    async fn a_move_cut_short_by_a_kill_carries_on_when_opened_again() {
        let json_set_aside = |db: &Database| write_json_events(db, "events_json", 1001..=2500);
        let v1_set_aside = |db: &Database| {
            let table = TableDefinition::<u64, stored::StoredEventV1>::new("events_v1");
            write_records(db, table, 1001..=2500);
        };
        let moved = |db: &Database| write_records(db, EVENTS, 1..=1000);
        let moved_by_v1 = |db: &Database| write_records(db, migrate::V1_EVENTS, 1..=1000);
        // What a kill after the first chunk's commit leaves, from JSON and from version 1: the
        // first chunk moved, the rest set aside. And what a release of version 1 killed while
        // it rewrote JSON leaves: its first chunk in its own records.
        type Step<'a> = &'a dyn Fn(&Database);
        let cases: [[Step; 2]; 3] = [
            [&json_set_aside, &moved],
            [&v1_set_aside, &moved],
            [&json_set_aside, &moved_by_v1],
        ];
        for [set_aside, first_chunk] in cases {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("outbox.redb");
            {
                let db = Database::create(&path).unwrap();
                set_aside(&db);
                first_chunk(&db);
            }
            assert_moved_when_opened(&path, 2500).await;
        }
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
