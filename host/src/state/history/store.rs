//! The history's redb file and its writer thread.
//!
//! Tables:
//! - `records`: (endpoint, webhook-id) -> the [`Record`] (JSON);
//! - `recent`: (endpoint, stamp) -> webhook-id, a stamp per change, so that the oldest of an
//!   endpoint are found first;
//! - `meta`: `next-stamp` -> the next stamp.
//!
//! The writer takes what has queued up in one transaction, of which only the newest `keep`
//! deliveries of each endpoint are written, and makes its commits durable once a second
//! ([`DURABLE_EVERY`]) rather than each on its own.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Record, Write, take_batch};

const RECORDS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("records");
const RECENT: TableDefinition<(&str, u64), &str> = TableDefinition::new("recent");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The key of the next stamp in `meta`.
const NEXT_STAMP: &str = "next-stamp";

/// Memory for the page cache: the history is small.
const CACHE_BYTES: usize = 4 << 20;

/// How long a commit may wait to be made durable. The history is a view of recent deliveries,
/// not a record anything depends on: a router killed outright forgets at most this much of it,
/// and the writer spends its time writing rather than waiting for the disk.
const DURABLE_EVERY: Duration = Duration::from_secs(1);

/// The history's database.
pub(super) struct Store {
    db: Arc<Database>,
}

impl Store {
    /// Opens (or creates) the file at `path` and its tables.
    pub(super) fn open(path: &Path) -> Result<Self, redb::Error> {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)?;
        let txn = db.begin_write()?;
        txn.open_table(RECORDS)?;
        txn.open_table(RECENT)?;
        txn.open_table(META)?;
        txn.commit()?;
        Ok(Self { db: Arc::new(db) })
    }

    /// Starts the writer thread, keeping `keep` records per endpoint; it stops once every
    /// sender is gone.
    pub(super) fn spawn_writer(&self, queue: Receiver<Write>, keep: usize) {
        let db = Arc::clone(&self.db);
        std::thread::Builder::new()
            .name("history-writer".into())
            .spawn(move || run_writer(&db, &queue, keep))
            .expect("spawning a thread");
    }

    /// Every record, most recently changed first.
    pub(super) fn all(&self) -> Result<Vec<Record>, redb::Error> {
        let read = self.db.begin_read()?;
        let mut stamped = Vec::new();
        for entry in read.open_table(RECORDS)?.iter()? {
            let (_, bytes) = entry?;
            if let Ok(kept) = serde_json::from_slice::<Stamped>(bytes.value()) {
                stamped.push(kept);
            }
        }
        stamped.sort_by_key(|kept| std::cmp::Reverse(kept.stamp));
        Ok(stamped.into_iter().map(|kept| kept.record).collect())
    }
}

/// Writes what `queue` brings until every sender is gone. Commits are made durable at most
/// [`DURABLE_EVERY`] apart, at once when someone waits for them, and before the thread stops.
fn run_writer(db: &Database, queue: &Receiver<Write>, keep: usize) {
    let mut last_durable = Instant::now();
    // Whether a commit since the last durable one waits to be made durable.
    let mut unsynced = false;
    loop {
        let first = if unsynced {
            match queue.recv_timeout(DURABLE_EVERY.saturating_sub(last_durable.elapsed())) {
                Ok(first) => Some(first),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match queue.recv() {
                Ok(first) => Some(first),
                Err(_) => break,
            }
        };
        let (records, flushed) = match first {
            Some(first) => take_batch(first, queue),
            None => (Vec::new(), Vec::new()),
        };
        let durable = !flushed.is_empty() || last_durable.elapsed() >= DURABLE_EVERY;
        if !records.is_empty() || (durable && unsynced) {
            match write(db, records, keep, durable) {
                Ok(()) if durable => {
                    last_durable = Instant::now();
                    unsynced = false;
                }
                Ok(()) => unsynced = true,
                Err(e) => tracing::warn!("cannot write the console's delivery history: {e}"),
            }
        }
        for done in flushed {
            let _ = done.send(());
        }
    }
    if unsynced && let Err(e) = write(db, Vec::new(), keep, true) {
        tracing::warn!("cannot write the console's delivery history: {e}");
    }
}

/// Adds or merges `records` in one transaction, then trims each endpoint they touch to `keep`;
/// with `durable`, the commit is on disk when this returns, along with every commit before it.
fn write(
    db: &Database,
    records: Vec<Record>,
    keep: usize,
    durable: bool,
) -> Result<(), redb::Error> {
    let mut txn = db.begin_write()?;
    if !durable {
        txn.set_durability(Durability::None)?;
    }
    {
        let mut stored = txn.open_table(RECORDS)?;
        let mut recent = txn.open_table(RECENT)?;
        let mut meta = txn.open_table(META)?;
        let mut stamp = meta.get(NEXT_STAMP)?.map_or(1, |v| v.value());
        let mut touched = BTreeSet::new();
        for record in newest(records, keep) {
            let key = (record.endpoint.as_str(), record.webhook_id.as_str());
            let earlier = stored
                .get(key)?
                .and_then(|bytes| serde_json::from_slice::<Stamped>(bytes.value()).ok());
            if let Some(earlier) = &earlier {
                recent.remove((key.0, earlier.stamp))?;
            }
            let merged = match earlier {
                Some(earlier) => earlier.record.merge(record),
                None => record,
            };
            let key = (merged.endpoint.as_str(), merged.webhook_id.as_str());
            let bytes = serde_json::to_vec(&StampedRef {
                stamp,
                record: &merged,
            })
            .expect("records serialise");
            stored.insert(key, bytes.as_slice())?;
            recent.insert((key.0, stamp), key.1)?;
            stamp += 1;
            touched.insert(merged.endpoint);
        }
        meta.insert(NEXT_STAMP, stamp)?;
        for endpoint in touched {
            let range = (endpoint.as_str(), 0)..=(endpoint.as_str(), u64::MAX);
            let excess = recent.range(range.clone())?.count().saturating_sub(keep);
            let oldest: Vec<(u64, String)> = recent
                .range(range)?
                .take(excess)
                .map(|entry| entry.map(|(k, v)| (k.value().1, v.value().to_owned())))
                .collect::<Result<_, _>>()?;
            for (old, id) in oldest {
                recent.remove((endpoint.as_str(), old))?;
                stored.remove((endpoint.as_str(), id.as_str()))?;
            }
        }
    }
    txn.commit()?;
    Ok(())
}

/// `records` as their deliveries stand after all of them: the changes of one delivery merged
/// into one, in the order of each delivery's last change, and of each endpoint only the last
/// `keep` (the older ones would be trimmed at once).
fn newest(records: Vec<Record>, keep: usize) -> Vec<Record> {
    let mut merged: Vec<Option<Record>> = Vec::with_capacity(records.len());
    let mut at: HashMap<(String, String), usize> = HashMap::with_capacity(records.len());
    for record in records {
        let key = (record.endpoint.clone(), record.webhook_id.clone());
        let record = match at.get(&key).and_then(|&i| merged[i].take()) {
            Some(earlier) => earlier.merge(record),
            None => record,
        };
        at.insert(key, merged.len());
        merged.push(Some(record));
    }
    let mut left: HashMap<String, usize> = HashMap::new();
    let mut newest: Vec<Record> = merged
        .into_iter()
        .rev()
        .flatten()
        .filter(|record| {
            let left = left.entry(record.endpoint.clone()).or_insert(keep);
            let kept = *left > 0;
            *left = left.saturating_sub(1);
            kept
        })
        .collect();
    newest.reverse();
    newest
}

/// A record as stored, with its stamp in `recent`.
#[derive(serde::Deserialize)]
struct Stamped {
    stamp: u64,
    record: Record,
}

/// [`Stamped`], borrowed for writing.
#[derive(serde::Serialize)]
struct StampedRef<'a> {
    stamp: u64,
    record: &'a Record,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::history::{Attempt, Outcome};

    fn change(endpoint: &str, id: &str) -> Record {
        Record {
            endpoint: endpoint.into(),
            webhook_id: id.into(),
            time_ms: 0,
            event_time: None,
            run_id: None,
            workflow: "wf".into(),
            task: None,
            reason: "WorkflowRunning".into(),
            message: String::new(),
            outcome: Outcome::Retrying,
            note: None,
            attempts: vec![Attempt {
                at_ms: 0,
                millis: 1,
                status: Some(503),
                class: "5xx".into(),
                error: None,
            }],
            request: None,
            response: None,
        }
    }

    #[test]
    fn a_batch_keeps_each_deliverys_merged_changes_and_each_endpoints_newest() {
        let batch = ["a1", "a2", "b1", "a1", "a3"]
            .map(|k| change(&k[..1], &k[1..]))
            .to_vec();
        let kept: Vec<(String, String, usize)> = newest(batch, 2)
            .into_iter()
            .map(|r| (r.endpoint, r.webhook_id, r.attempts.len()))
            .collect();
        // `a2` was the oldest change of `a` but for two newer: it would be trimmed at once.
        let expected = [("b", "1", 1), ("a", "1", 2), ("a", "3", 1)]
            .map(|(e, id, n)| (e.to_string(), id.to_string(), n));
        assert_eq!(kept, expected);
    }
}
