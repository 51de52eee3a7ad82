//! The history's redb file and its writer thread.
//!
//! Tables:
//! - `records`: (endpoint, webhook-id) -> the [`Record`] (JSON);
//! - `recent`: (endpoint, stamp) -> webhook-id, a stamp per change, so that the oldest of an
//!   endpoint are found first;
//! - `meta`: `next-stamp` -> the next stamp.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::Receiver;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Record, Write, take_batch};

const RECORDS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("records");
const RECENT: TableDefinition<(&str, u64), &str> = TableDefinition::new("recent");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The key of the next stamp in `meta`.
const NEXT_STAMP: &str = "next-stamp";

/// Memory for the page cache: the history is small.
const CACHE_BYTES: usize = 4 << 20;

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
            .spawn(move || {
                while let Ok(first) = queue.recv() {
                    let (records, flushed) = take_batch(first, &queue);
                    if let Err(e) = write(&db, records, keep) {
                        tracing::warn!("cannot write the console's delivery history: {e}");
                    }
                    for done in flushed {
                        let _ = done.send(());
                    }
                }
            })
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

/// Adds or merges `records` in one transaction, then trims each endpoint they touch to `keep`.
fn write(db: &Database, records: Vec<Record>, keep: usize) -> Result<(), redb::Error> {
    if records.is_empty() {
        return Ok(());
    }
    let txn = db.begin_write()?;
    {
        let mut stored = txn.open_table(RECORDS)?;
        let mut recent = txn.open_table(RECENT)?;
        let mut meta = txn.open_table(META)?;
        let mut stamp = meta.get(NEXT_STAMP)?.map_or(1, |v| v.value());
        let mut touched = std::collections::BTreeSet::new();
        for record in records {
            let key = (record.endpoint.as_str(), record.webhook_id.as_str());
            let earlier = stored
                .get(key)?
                .and_then(|bytes| serde_json::from_slice::<Stamped>(bytes.value()).ok());
            if let Some(earlier) = &earlier {
                recent.remove((key.0, earlier.stamp))?;
            }
            let merged = match earlier {
                Some(earlier) => earlier.record.merge(record.clone()),
                None => record.clone(),
            };
            let bytes = serde_json::to_vec(&StampedRef {
                stamp,
                record: &merged,
            })
            .expect("records serialise");
            stored.insert(key, bytes.as_slice())?;
            recent.insert((key.0, stamp), key.1)?;
            stamp += 1;
            touched.insert(record.endpoint);
        }
        meta.insert(NEXT_STAMP, stamp)?;
        for endpoint in touched {
            let kept: Vec<(u64, String)> = recent
                .range((endpoint.as_str(), 0)..=(endpoint.as_str(), u64::MAX))?
                .map(|entry| entry.map(|(k, v)| (k.value().1, v.value().to_owned())))
                .collect::<Result<_, _>>()?;
            for (old, id) in kept.iter().take(kept.len().saturating_sub(keep)) {
                recent.remove((endpoint.as_str(), *old))?;
                stored.remove((endpoint.as_str(), id.as_str()))?;
            }
        }
    }
    txn.commit()?;
    Ok(())
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
