//! Opening a file whose events are stored in an older layout: as JSON, as releases before the
//! binary [records](crate::state::record) wrote them, or as records of version 1, which
//! stored a node's message apart even when it ended the Event's. The events are moved to the
//! current `events` table, a chunk per transaction, before the outbox serves anything.
//!
//! The older table is renamed first (`events_json` or `events_v1`), in a transaction of its
//! own, and the new `events` table created; each chunk then moves events from one to the
//! other. Every commit leaves each event in exactly one of the two, so a router killed part way
//! carries on from there when it starts again. A router of an older release finds an `events`
//! table of a type it does not know, and refuses the file rather than skip its events.

use redb::{Database, ReadableTable, TableDefinition, TableError, Value};
use serde::Deserialize;

use super::EVENTS;
use super::stored::StoredEventV1;
use crate::model::event::RouterEvent;
use crate::state::record;

/// The events table as releases before the records typed it.
const JSON_EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");

/// The events table as releases with records of version 1 typed it.
pub(super) const V1_EVENTS: TableDefinition<u64, StoredEventV1> = TableDefinition::new("events");

/// Where the JSON events wait while they are rewritten.
const MOVING_JSON: TableDefinition<u64, &[u8]> = TableDefinition::new("events_json");

/// Where the records of version 1 wait while they are moved.
const MOVING_V1: TableDefinition<u64, StoredEventV1> = TableDefinition::new("events_v1");

/// Events moved per transaction: a chunk's pages are held in memory until it commits.
const CHUNK: usize = 1000;

/// An event as releases before the records stored it.
#[derive(Deserialize)]
struct JsonStored {
    accepted_ms: u64,
    event: RouterEvent,
}

/// Moves the events of `db` still stored in an older layout to the current one, and logs how
/// many it moved.
pub(super) fn events_to_current(db: &Database) -> Result<(), redb::Error> {
    set_aside(db)?;
    // A record of version 1 is a record of the current layout: it moves as it is.
    let from_v1 = move_all(db, MOVING_V1, |_, bytes, out| {
        out.extend_from_slice(bytes);
        true
    })?;
    let from_json = move_all(db, MOVING_JSON, |seq, json, out| {
        match serde_json::from_slice::<JsonStored>(json) {
            Ok(JsonStored { accepted_ms, event }) => {
                record::encode(accepted_ms, &event, out);
                true
            }
            // Releases before skipped it on every read: it could not be delivered.
            Err(e) => {
                tracing::error!(seq, "outbox entry unreadable, dropped: {e}");
                false
            }
        }
    })?;
    if from_json > 0 {
        tracing::info!(
            events = from_json,
            "rewrote the outbox's events in the binary layout"
        );
    }
    if from_v1 > 0 {
        tracing::info!(
            events = from_v1,
            "moved the outbox's events to the current layout"
        );
    }
    Ok(())
}

/// Moves every event of `from` to `events`, a chunk per transaction, each as `convert` writes
/// it (nothing when it returns false); deletes `from` once empty. Returns how many it moved.
fn move_all<V>(
    db: &Database,
    from: TableDefinition<u64, V>,
    convert: impl Fn(u64, &[u8], &mut Vec<u8>) -> bool,
) -> Result<u64, redb::Error>
where
    V: for<'a> Value<SelfType<'a> = &'a [u8]> + 'static,
{
    let mut moved = 0u64;
    loop {
        let txn = db.begin_write()?;
        let done = {
            let mut source = match txn.open_table(from) {
                Ok(table) => table,
                Err(TableError::TableDoesNotExist(_)) => break,
                Err(e) => return Err(e.into()),
            };
            let mut to = txn.open_table(EVENTS)?;
            let mut chunk = Vec::with_capacity(CHUNK);
            for row in source.iter()?.take(CHUNK) {
                let (seq, bytes) = row?;
                chunk.push((seq.value(), bytes.value().to_vec()));
            }
            let mut current = Vec::new();
            for (seq, bytes) in &chunk {
                current.clear();
                if convert(*seq, bytes, &mut current) {
                    to.insert(*seq, current.as_slice())?;
                    moved += 1;
                }
            }
            if let (Some((first, _)), Some((last, _))) = (chunk.first(), chunk.last()) {
                source.retain_in(*first..=*last, |_, _| false)?;
            }
            chunk.len() < CHUNK
        };
        if done {
            txn.delete_table(from)?;
        }
        txn.commit()?;
        if done {
            break;
        }
    }
    Ok(moved)
}

/// Renames an `events` table of an older layout to where its events wait to be moved, and
/// creates the new one, when the file has one.
fn set_aside(db: &Database) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    match txn.open_table(EVENTS) {
        Ok(_) => return Ok(()),
        Err(TableError::TableTypeMismatch { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    match txn.open_table(V1_EVENTS) {
        Ok(table) => {
            drop(table);
            txn.rename_table(V1_EVENTS, MOVING_V1)?;
        }
        Err(TableError::TableTypeMismatch { .. }) => {
            txn.rename_table(JSON_EVENTS, MOVING_JSON)?;
        }
        Err(e) => return Err(e.into()),
    }
    txn.open_table(EVENTS)?;
    txn.commit()?;
    Ok(())
}

/// How many events wait to be moved: none once a file is open.
#[cfg(test)]
pub(super) fn left_to_move(db: &Database) -> u64 {
    use redb::{ReadableDatabase, ReadableTableMetadata};
    let read = db.begin_read().unwrap();
    let json = read.open_table(MOVING_JSON).map_or(0, |t| t.len().unwrap());
    let v1 = read.open_table(MOVING_V1).map_or(0, |t| t.len().unwrap());
    json + v1
}
