//! Dead letters: deliveries given up after their retry budget.
//!
//! Each holds the endpoint, the event, the payload that was being sent, the attempts made and
//! the last error, so an operator can inspect it and send it again. With redb they are lines
//! of `state.dir/dead-letter.jsonl`, which is rotated at [`ROTATE_AT`] bytes to
//! `dead-letter.jsonl.1` (the previous `.1` to `.2`, and so on), four older files kept
//! ([`file`]); with PostgreSQL, rows of the `dead_letters` table holding the same JSON.
//!
//! [`DeadLetters::write`] stores one (the deliver stage); [`DeadLetters::list`],
//! [`DeadLetters::get`] and [`DeadLetters::redrive`] are what the `dead-letters` command and
//! the admin API offer ([`redrive`]). A letter is named by its id (`letter::letter_id`), a
//! short hash of its endpoint and `webhook-id`, the same in every backend and across
//! rotations.

mod file;
mod filter;
mod letter;
mod redrive;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub(crate) use file::DeadLetterFile;
pub(crate) use filter::{Filter, Page, parse_time};
pub(crate) use letter::{StoredLetter, Summary};
pub(crate) use redrive::{Redriven, Selection};

use super::postgres::Postgres;
use crate::model::event::RouterEvent;

/// The dead-letter file's name in `state.dir`.
pub(crate) const FILE_NAME: &str = "dead-letter.jsonl";

/// The size at which the dead-letter file is rotated.
pub(crate) const ROTATE_AT: u64 = 64 << 20;

/// Where dead letters go; cheap to clone.
#[derive(Clone)]
pub(crate) enum DeadLetters {
    /// Appended to a file.
    File(DeadLetterFile),
    /// Inserted into the `dead_letters` table.
    Postgres(Postgres),
}

/// One dead letter, as the deliver stage writes it.
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
        Self::File(DeadLetterFile::new(path, rotate_at))
    }

    /// Where the dead letters are.
    pub(crate) fn path(&self) -> Destination<'_> {
        match self {
            Self::File(file) => Destination(Some(file.path())),
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

#[cfg(test)]
mod tests;
