//! The dead-letter file: deliveries given up after their retry budget, one JSON object a line.
//!
//! Each line holds the endpoint, the event, the payload that was being sent, the attempts made
//! and the last error, so an operator can inspect it and send it again by hand.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::model::event::RouterEvent;

/// Appends to `dead-letter.jsonl`; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct DeadLetters {
    path: Arc<PathBuf>,
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

impl DeadLetters {
    /// Writes to `path`, creating it on first use.
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path: Arc::new(path),
            lock: Arc::default(),
        }
    }

    /// Where the dead letters are.
    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Appends one dead letter and syncs it to disk, on a blocking thread.
    pub(crate) async fn write(&self, letter: &DeadLetter<'_>) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(letter).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.append(&line))
            .await
            .map_err(std::io::Error::other)?
    }

    fn append(&self, line: &[u8]) -> std::io::Result<()> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path.as_ref())?;
        file.write_all(line)?;
        file.sync_data()
    }
}
