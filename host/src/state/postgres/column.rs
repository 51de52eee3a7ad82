//! The `events.event` column: since schema version 4 a [record](crate::state::record) after a
//! 0 byte; before, the event's JSON, which starts with `{`. Rows of both kinds are read, so that
//! a backlog written before an upgrade is delivered after it.

use crate::model::event::RouterEvent;
use crate::state::record;

/// The first byte of a record's column: JSON never starts with it.
const RECORD: u8 = 0;

/// The column of `event`, accepted at `accepted_ms`.
pub(super) fn write(accepted_ms: u64, event: &RouterEvent) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(1 + record::CAPACITY);
    bytes.push(RECORD);
    record::encode(accepted_ms, event, &mut bytes);
    bytes
}

/// The event a column holds; `Err` says what is wrong with it.
pub(super) fn read(bytes: &[u8]) -> Result<RouterEvent, String> {
    match bytes.split_first() {
        Some((&RECORD, rest)) => record::decode(rest)
            .map(|(_, event)| event)
            .map_err(|e| e.to_string()),
        _ => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::EventFacts;

    #[test]
    fn records_and_the_json_of_earlier_versions_both_read_back() {
        let event = RouterEvent::bare(
            "id-1",
            EventFacts {
                uid: "uid-1".into(),
                message: "Failed node wf.train: OOMKilled".into(),
                ..EventFacts::default()
            },
        );
        let column = write(1_764_633_600_123, &event);
        assert_eq!(column[0], RECORD);
        assert_eq!(read(&column), Ok(event.clone()));
        let json = serde_json::to_vec(&event).unwrap();
        assert_eq!(json[0], b'{');
        assert_eq!(read(&json), Ok(event));
        assert!(read(&column[..column.len() - 1]).is_err());
        assert!(read(b"{\"not\": \"an event\"}").is_err());
    }
}
