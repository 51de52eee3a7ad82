//! The redb backend's dead letters: `dead-letter.jsonl` and its rotated files.
//!
//! Every change takes the file's lock: appends (the deliver stage), rotation, and the rewrite
//! that removes redriven letters, so a rewrite never loses a letter appended meanwhile.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::letter::StoredLetter;

/// How many rotated files (`.1` to `.4`) are kept; older ones are deleted.
const KEEP: usize = 4;

/// A dead-letter file, rotated at a size limit.
#[derive(Clone, Debug)]
pub(crate) struct DeadLetterFile {
    path: Arc<PathBuf>,
    rotate_at: u64,
    lock: Arc<Mutex<()>>,
    /// Held by a redrive from its reading to its rewrite, so that two redrives in one process
    /// never take the same letter.
    redrive: Arc<tokio::sync::Mutex<()>>,
}

impl DeadLetterFile {
    /// The file at `path`, rotated once it would pass `rotate_at` bytes.
    pub(super) fn new(path: PathBuf, rotate_at: u64) -> Self {
        Self {
            path: Arc::new(path),
            rotate_at,
            lock: Arc::default(),
            redrive: Arc::default(),
        }
    }

    /// The current file.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Serialises redrives in this process.
    pub(super) async fn redrive_turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.redrive.lock().await
    }

    /// Appends `json` and a newline, rotating first when the file would pass its limit, and
    /// syncs it to disk.
    pub(super) fn append(&self, json: &[u8]) -> std::io::Result<()> {
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

    /// Every letter, oldest first (`.4` to `.1`, then the current file). Lines that do not
    /// parse are skipped, and logged by their file and line number only.
    pub(super) fn read_all(&self) -> std::io::Result<Vec<StoredLetter>> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut letters = Vec::new();
        for path in self.files() {
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for (n, line) in text.lines().enumerate() {
                match StoredLetter::parse(line) {
                    Ok(letter) => letters.push(letter),
                    Err(e) => tracing::warn!(
                        file = %path.display(),
                        line = n + 1,
                        "dead letter unreadable, skipped: {e}"
                    ),
                }
            }
        }
        Ok(letters)
    }

    /// Removes the letters named by (id, time) in `gone` from every file that holds one,
    /// rewriting it (a temporary file, synced, renamed over it); returns how many lines went.
    pub(super) fn remove(&self, gone: &HashSet<(String, String)>) -> std::io::Result<usize> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut removed = 0;
        for path in self.files() {
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let mut kept = String::with_capacity(text.len());
            let mut dropped = 0;
            for line in text.lines() {
                let goes = StoredLetter::parse(line).is_ok_and(|l| gone.contains(&(l.id, l.time)));
                if goes {
                    dropped += 1;
                } else {
                    kept.push_str(line);
                    kept.push('\n');
                }
            }
            if dropped == 0 {
                continue;
            }
            let mut temporary = path.clone().into_os_string();
            temporary.push(".tmp");
            let temporary = PathBuf::from(temporary);
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(kept.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&temporary, &path)?;
            removed += dropped;
        }
        if removed > 0
            && let Some(dir) = self.path.parent()
            && let Ok(dir) = std::fs::File::open(dir)
        {
            let _ = dir.sync_all();
        }
        Ok(removed)
    }

    /// The files, oldest first: `.4` … `.1`, then the current one.
    fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = (1..=KEEP).rev().map(|n| self.numbered(n)).collect();
        files.push(self.path.as_ref().clone());
        files
    }

    fn numbered(&self, n: usize) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// `.3` to `.4` (replacing it), ..., the file to `.1`.
    fn rotate(&self) -> std::io::Result<()> {
        for n in (1..KEEP).rev() {
            match std::fs::rename(self.numbered(n), self.numbered(n + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::rename(self.path.as_ref(), self.numbered(1))
    }
}
