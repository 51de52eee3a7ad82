//! Follows folders for file changes, debounced: a burst of changes (an editor's save, a
//! ConfigMap's `..data` swap) is reported once, after the folders have been quiet a while.
//!
//! Folders are watched rather than files, so that files replaced by rename and Kubernetes
//! ConfigMap/Secret volumes (which swap a `..data` symlink) are both seen.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;

/// A debounced watch of some folders; stops watching when dropped.
pub(crate) struct Debounced {
    watcher: RecommendedWatcher,
    changed: Arc<Notify>,
    folders: BTreeSet<PathBuf>,
    quiet: Duration,
}

impl Debounced {
    /// Watches nothing yet; a change is reported once the folders were quiet for `quiet`.
    pub(crate) fn new(quiet: Duration) -> notify::Result<Self> {
        let changed = Arc::new(Notify::new());
        let signal = Arc::clone(&changed);
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|e| !e.kind.is_access()) {
                signal.notify_one();
            }
        })?;
        Ok(Self {
            watcher,
            changed,
            folders: BTreeSet::new(),
            quiet,
        })
    }

    /// Also watches `folder` (not its subfolders); watching it twice is harmless.
    pub(crate) fn watch(&mut self, folder: &Path) -> notify::Result<()> {
        if !self.folders.contains(folder) {
            self.watcher.watch(folder, RecursiveMode::NonRecursive)?;
            self.folders.insert(folder.to_owned());
        }
        Ok(())
    }

    /// Waits for a change, then until the folders have been quiet for the debounce time.
    pub(crate) async fn changed(&self) {
        self.changed.notified().await;
        while tokio::time::timeout(self.quiet, self.changed.notified())
            .await
            .is_ok()
        {}
    }
}
