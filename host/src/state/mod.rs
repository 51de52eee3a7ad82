//! The router's durable state: the outbox (events waiting for their endpoints, source
//! checkpoints, workflow states) and the dead letters, in one of two backends:
//!
//! - `redb` (the default): files in `state.dir` ([`redb`]); the folder is locked
//!   while a router uses it, so two processes never share one outbox;
//! - `postgres`: tables of a PostgreSQL database ([`postgres`]), so that a process anywhere
//!   continues where the last one stopped (`state.dir` then holds only the plugin cache).
//!
//! [`Outbox`] and [`DeadLetters`] are one API over both.

pub(crate) mod dead_letter;
pub(crate) mod handoff;
pub(crate) mod history;
pub(crate) mod outbox;
mod postgres;
mod record;
mod redb;

use std::fs::File;
use std::path::{Path, PathBuf};

pub(crate) use dead_letter::DeadLetters;
pub(crate) use history::History;
pub(crate) use outbox::Outbox;
pub(crate) use postgres::check_url;
pub use postgres::tls::DatabaseTls;

use crate::model::secret::Secret;

/// The checked `[state]` table: where the state is kept.
#[derive(Clone, Debug, PartialEq)]
pub struct StateSettings {
    /// `state.dir`: the redb outbox and dead-letter file, and the plugin cache.
    pub dir: PathBuf,
    /// `state.backend`: where the outbox and dead letters are.
    pub backend: Backend,
    /// `state.claim_ttl`: how long a replica's claim on the workflows it delivers lasts
    /// (PostgreSQL, kubernetes source).
    pub claim_ttl: std::time::Duration,
}

/// Where the outbox and dead letters are kept.
#[derive(Clone, Debug, PartialEq)]
pub enum Backend {
    /// `outbox.redb` and `dead-letter.jsonl` in `state.dir`.
    Redb,
    /// A PostgreSQL database.
    Postgres {
        /// Its connection URL (which may hold a password).
        url: Secret,
        /// How to connect over TLS, when the URL's `sslmode` asks for it.
        tls: DatabaseTls,
    },
}

/// The state, held open (and its folder locked, with redb).
pub(crate) struct State {
    /// The outbox.
    pub(crate) outbox: Outbox,
    /// Where given-up deliveries go.
    pub(crate) dead_letters: DeadLetters,
    _lock: Option<File>,
}

/// Why the state could not be opened.
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
    /// The redb outbox could not be opened.
    #[error("state dir {}: {source}", dir.display())]
    Outbox {
        /// The folder.
        dir: PathBuf,
        /// The outbox error.
        source: outbox::OutboxError,
    },
    /// The PostgreSQL outbox could not be opened.
    #[error("cannot open the state: {0}")]
    Postgres(outbox::OutboxError),
}

impl State {
    /// Opens the state `settings` name, creating the folder (and with redb, the files) when
    /// needed.
    pub(crate) fn open(settings: &StateSettings) -> Result<Self, StateError> {
        let dir = &settings.dir;
        let io = |source| StateError::Io {
            dir: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        match &settings.backend {
            Backend::Redb => {
                let lock = lock(dir)?;
                let outbox = Outbox::open_redb(&dir.join("outbox.redb")).map_err(|source| {
                    StateError::Outbox {
                        dir: dir.to_owned(),
                        source,
                    }
                })?;
                Ok(Self {
                    outbox,
                    dead_letters: DeadLetters::file(
                        dir.join(dead_letter::FILE_NAME),
                        dead_letter::ROTATE_AT,
                    ),
                    _lock: Some(lock),
                })
            }
            Backend::Postgres { url, tls } => {
                let outbox = postgres::Postgres::open(url, tls).map_err(StateError::Postgres)?;
                Ok(Self {
                    dead_letters: DeadLetters::Postgres(outbox.clone()),
                    outbox: Outbox::Postgres(outbox),
                    _lock: None,
                })
            }
        }
    }
}

/// Locks `dir/lock`, so that no other router opens the same redb outbox.
fn lock(dir: &Path) -> Result<File, StateError> {
    let io = |source| StateError::Io {
        dir: dir.to_owned(),
        source,
    };
    let lock = File::create(dir.join("lock")).map_err(io)?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(StateError::Locked(dir.to_owned())),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}
