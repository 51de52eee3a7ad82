//! The router's durable state, in `state.dir`: the outbox, source checkpoints and dead letters.
//!
//! The folder is locked while a router uses it, so two processes never share one outbox.

pub(crate) mod dead_letter;
pub(crate) mod outbox;

use std::fs::File;
use std::path::{Path, PathBuf};

pub(crate) use dead_letter::DeadLetters;
pub(crate) use outbox::Outbox;

/// The state folder, held open and locked.
pub(crate) struct State {
    /// The outbox database.
    pub(crate) outbox: Outbox,
    /// The dead-letter file.
    pub(crate) dead_letters: DeadLetters,
    _lock: File,
}

/// Why the state folder could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StateError {
    /// The folder or its lock could not be created.
    #[error("state dir {}: {source}", dir.display())]
    Io {
        /// The folder.
        dir: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Another router holds the lock.
    #[error("state dir {} is in use by another kfp-event-router process", .0.display())]
    Locked(PathBuf),
    /// The outbox could not be opened.
    #[error("state dir {}: {source}", dir.display())]
    Outbox {
        /// The folder.
        dir: PathBuf,
        /// The outbox error.
        source: outbox::OutboxError,
    },
}

impl State {
    /// Opens the state in `dir`, creating it when needed.
    pub(crate) fn open(dir: &Path) -> Result<Self, StateError> {
        let io = |source| StateError::Io {
            dir: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let lock = File::create(dir.join("lock")).map_err(io)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StateError::Locked(dir.to_owned()));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let outbox =
            Outbox::open(&dir.join("outbox.redb")).map_err(|source| StateError::Outbox {
                dir: dir.to_owned(),
                source,
            })?;
        Ok(Self {
            outbox,
            dead_letters: DeadLetters::new(dir.join("dead-letter.jsonl")),
            _lock: lock,
        })
    }
}
