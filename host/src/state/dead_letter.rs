//! Dead letters: deliveries given up after their retry budget.
//!
//! Each holds the endpoint, the event, the payload that was being sent, the attempts made and
//! the last error, so an operator can inspect it and send it again by hand. With redb they are
//! lines of `state.dir/dead-letter.jsonl`, which is rotated at [`ROTATE_AT`] bytes to
//! `dead-letter.jsonl.1` (the previous `.1` to `.2`, and so on), [`KEEP`] older files kept;
//! with PostgreSQL, rows of the `dead_letters` table holding the same JSON.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::postgres::Postgres;
use crate::model::event::RouterEvent;

/// The dead-letter file's name in `state.dir`.
pub(crate) const FILE_NAME: &str = "dead-letter.jsonl";

/// The size at which the dead-letter file is rotated.
pub(crate) const ROTATE_AT: u64 = 64 << 20;

/// How many rotated files (`.1` to `.4`) are kept; older ones are deleted.
const KEEP: usize = 4;

/// Where dead letters go; cheap to clone.
#[derive(Clone)]
pub(crate) enum DeadLetters {
    /// Appended to a file.
    File(DeadLetterFile),
    /// Inserted into the `dead_letters` table.
    Postgres(Postgres),
}

/// A dead-letter file, rotated at a size limit.
#[derive(Clone, Debug)]
pub(crate) struct DeadLetterFile {
    path: Arc<PathBuf>,
    rotate_at: u64,
    lock: Arc<Mutex<()>>,
}

/// One dead letter.
#[derive(Debug, Serialize)]
pub(crate) struct DeadLetter<'a> {
    /// When it was given up (RFC 3339).
    pub(crate) time: String,
    /// The endpoint's name.
    pub(crate) endpoint: &'a str,
    /// The `webhook-id` it was sent with.
    pub(crate) webhook_id: &'a str,
    /// Attempts made.
    pub(crate) attempts: u32,
    /// Why the last attempt failed.
    pub(crate) last_error: &'a str,
    /// The body that was being sent, as text when it is UTF-8.
    pub(crate) payload: Option<&'a str>,
    /// The event.
    pub(crate) event: &'a RouterEvent,
}

/// Where dead letters go, for log messages: the file, or the PostgreSQL table.
pub(crate) struct Destination<'a>(Option<&'a Path>);

impl Destination<'_> {
    /// Something to print.
    pub(crate) fn display(&self) -> &Self {
        self
    }
}

impl fmt::Display for Destination<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(path) => path.display().fmt(f),
            None => f.write_str("the PostgreSQL table dead_letters"),
        }
    }
}

impl DeadLetters {
    /// Appends to the file at `path`, created on first use and rotated once it would pass
    /// `rotate_at` bytes.
    pub(crate) fn file(path: PathBuf, rotate_at: u64) -> Self {
        Self::File(DeadLetterFile {
            path: Arc::new(path),
            rotate_at,
            lock: Arc::default(),
        })
    }

    /// Where the dead letters are.
    pub(crate) fn path(&self) -> Destination<'_> {
        match self {
            Self::File(file) => Destination(Some(&file.path)),
            Self::Postgres(_) => Destination(None),
        }
    }

    /// Stores one dead letter durably.
    pub(crate) async fn write(&self, letter: &DeadLetter<'_>) -> std::io::Result<()> {
        let json = serde_json::to_string(letter).map_err(std::io::Error::other)?;
        match self {
            Self::File(file) => {
                let file = file.clone();
                tokio::task::spawn_blocking(move || file.append(json.as_bytes()))
                    .await
                    .map_err(std::io::Error::other)?
            }
            Self::Postgres(db) => db
                .dead_letter(letter, json)
                .await
                .map_err(std::io::Error::other),
        }
    }
}

impl DeadLetterFile {
    /// Appends `json` and a newline, rotating first when the file would pass its limit, and
    /// syncs it to disk.
    fn append(&self, json: &[u8]) -> std::io::Result<()> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let size = std::fs::metadata(self.path.as_ref()).map_or(0, |m| m.len());
        if size > 0 && size + json.len() as u64 + 1 > self.rotate_at {
            self.rotate()?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path.as_ref())?;
        let mut line = Vec::with_capacity(json.len() + 1);
        line.extend_from_slice(json);
        line.push(b'\n');
        file.write_all(&line)?;
        file.sync_data()
    }

    /// `.3` to `.4` (replacing it), ..., the file to `.1`.
    fn rotate(&self) -> std::io::Result<()> {
        let numbered = |n: usize| {
            let mut name = self.path.as_os_str().to_owned();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        for n in (1..KEEP).rev() {
            match std::fs::rename(numbered(n), numbered(n + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::rename(self.path.as_ref(), numbered(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::EventFacts;

    fn letter_for(event: &RouterEvent) -> DeadLetter<'_> {
        DeadLetter {
            time: "2026-01-01T00:00:00Z".into(),
            endpoint: "hook",
            webhook_id: "msg_1",
            attempts: 3,
            last_error: "HTTP 500",
            payload: Some("{}"),
            event,
        }
    }

    #[tokio::test]
    async fn the_file_is_rotated_at_its_limit_and_four_old_ones_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let letters = DeadLetters::file(path.clone(), 1000);
        let mut written = 0;
        for i in 0..40 {
            let event = RouterEvent {
                id: format!("e{i}"),
                event: EventFacts::default(),
                node: None,
                workflow: None,
                synthesized: false,
                task: None,
                plumbing: false,
                attempt: 1,
                cluster: None,
            };
            letters.write(&letter_for(&event)).await.unwrap();
            written += 1;
        }
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
        let mut kept = 0;
        for name in [
            FILE_NAME.to_owned(),
            format!("{FILE_NAME}.1"),
            format!("{FILE_NAME}.2"),
            format!("{FILE_NAME}.3"),
            format!("{FILE_NAME}.4"),
        ] {
            let text = read(&name);
            assert!(
                !text.is_empty() && text.len() <= 1000,
                "{name}: {} bytes",
                text.len()
            );
            for line in text.lines() {
                let letter: serde_json::Value = serde_json::from_str(line).unwrap();
                assert_eq!(letter["endpoint"], "hook");
            }
            kept += text.lines().count();
        }
        assert!(!dir.path().join(format!("{FILE_NAME}.5")).exists());
        assert!(kept < written, "the oldest letters were dropped");
        // The newest letter is the last line of the current file.
        let last: serde_json::Value =
            serde_json::from_str(read(FILE_NAME).lines().last().unwrap()).unwrap();
        assert_eq!(last["event"]["id"], "e39");
        // A line of .1 is older than every line of the current file.
        let older: serde_json::Value =
            serde_json::from_str(read(&format!("{FILE_NAME}.1")).lines().last().unwrap()).unwrap();
        let first: serde_json::Value =
            serde_json::from_str(read(FILE_NAME).lines().next().unwrap()).unwrap();
        let n = |v: &serde_json::Value| v["event"]["id"].as_str().unwrap()[1..].parse::<u32>();
        assert!(n(&older).unwrap() < n(&first).unwrap());
    }
}
