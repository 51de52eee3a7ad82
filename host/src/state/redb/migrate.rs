//! Opening a file whose events are stored as JSON, as releases before the binary records of
//! [`stored`](super::stored) wrote them: the events are rewritten, a chunk per transaction,
//! before the outbox serves anything.
//!
//! The JSON table is renamed `events_json` first, in a transaction of its own, and the new
//! `events` table created; each chunk then moves events from one to the other. Every commit
//! leaves each event in exactly one of the two, so a router killed part way carries on from
//! there when it starts again. A router of a release before the records finds an `events`
//! table of a type it does not know, and refuses the file rather than skip its events.

use redb::{Database, ReadableTable, TableDefinition, TableError};
use serde::Deserialize;

use super::{EVENTS, stored};
use crate::model::event::RouterEvent;

/// The events table as releases before the records typed it.
const JSON_EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");

/// Where the JSON events wait while they are rewritten.
const MOVING: TableDefinition<u64, &[u8]> = TableDefinition::new("events_json");

/// Events rewritten per transaction: a chunk's pages are held in memory until it commits.
const CHUNK: usize = 1000;

/// An event as releases before the records stored it.
#[derive(Deserialize)]
struct JsonStored {
    accepted_ms: u64,
    event: RouterEvent,
}

/// Rewrites the events of `db` still stored as JSON, and logs how many it rewrote.
pub(super) fn events_from_json(db: &Database) -> Result<(), redb::Error> {
    set_aside(db)?;
    let mut moved = 0u64;
    loop {
        let txn = db.begin_write()?;
        let done = {
            let mut from = match txn.open_table(MOVING) {
                Ok(table) => table,
                Err(TableError::TableDoesNotExist(_)) => break,
                Err(e) => return Err(e.into()),
            };
            let mut to = txn.open_table(EVENTS)?;
            let mut chunk = Vec::with_capacity(CHUNK);
            for row in from.iter()?.take(CHUNK) {
                let (seq, json) = row?;
                chunk.push((seq.value(), json.value().to_vec()));
            }
            let mut record = Vec::new();
            for (seq, json) in &chunk {
                match serde_json::from_slice::<JsonStored>(json) {
                    Ok(JsonStored { accepted_ms, event }) => {
                        record.clear();
                        stored::encode(accepted_ms, &event, &mut record);
                        to.insert(*seq, record.as_slice())?;
                        moved += 1;
                    }
                    // Releases before skipped it on every read: it could not be delivered.
                    Err(e) => tracing::error!(seq, "outbox entry unreadable, dropped: {e}"),
                }
            }
            if let (Some((first, _)), Some((last, _))) = (chunk.first(), chunk.last()) {
                from.retain_in(*first..=*last, |_, _| false)?;
            }
            chunk.len() < CHUNK
        };
        if done {
            txn.delete_table(MOVING)?;
        }
        txn.commit()?;
        if done {
            break;
        }
    }
    if moved > 0 {
        tracing::info!(
            events = moved,
            "rewrote the outbox's events in the binary layout"
        );
    }
    Ok(())
}

/// Renames a JSON `events` table to [`MOVING`], and creates the new one, when the file has
/// one.
fn set_aside(db: &Database) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    match txn.open_table(EVENTS) {
        Ok(_) => return Ok(()),
        Err(TableError::TableTypeMismatch { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    txn.rename_table(JSON_EVENTS, MOVING)?;
    txn.open_table(EVENTS)?;
    txn.commit()?;
    Ok(())
}

/// How many events wait in [`MOVING`]: none once a file is open.
#[cfg(test)]
pub(super) fn left_to_move(db: &Database) -> u64 {
    use redb::{ReadableDatabase, ReadableTableMetadata};
    let read = db.begin_read().unwrap();
    match read.open_table(MOVING) {
        Ok(table) => table.len().unwrap(),
        Err(_) => 0,
    }
}
