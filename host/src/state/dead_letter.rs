//! The dead-letter file: deliveries given up after their retry budget, one JSON object a line.
//!
//! Each line holds the endpoint, the event, the payload that was being sent, the attempts made
//! and the last error, so an operator can inspect it and send it again by hand.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::event::RouterEvent;

/// Appends to `dead-letter.jsonl`; cheap to clone.
#[derive(Clone, Debug)]
pub struct DeadLetters {
    path: Arc<PathBuf>,
    lock: Arc<Mutex<()>>,
}

/// One dead letter.
#[derive(Debug, Serialize)]
pub struct DeadLetter<'a> {
    /// When it was given up (RFC 3339).
    pub time: String,
    /// The endpoint's name.
    pub endpoint: &'a str,
    /// The `webhook-id` it was sent with.
    pub webhook_id: &'a str,
    /// Attempts made.
    pub attempts: u32,
    /// Why the last attempt failed.
    pub last_error: &'a str,
    /// The body that was being sent, as text when it is UTF-8.
    pub payload: Option<&'a str>,
    /// The event.
    pub event: &'a RouterEvent,
}

impl DeadLetters {
    /// Writes to `path`, creating it on first use.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path: Arc::new(path),
            lock: Arc::default(),
        }
    }

    /// Where the dead letters are.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Appends one dead letter and syncs it to disk.
    pub fn write(&self, letter: &DeadLetter<'_>) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(letter).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path.as_ref())?;
        file.write_all(&line)?;
        file.sync_data()
    }
}
