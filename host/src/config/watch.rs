//! Reloads the config when its file, its subscribers folder or its secret files change.
//!
//! The parent folders are watched rather than the files, so that editors that replace a file
//! and Kubernetes ConfigMap/Secret volumes (which swap a `..data` symlink) are both seen. A
//! burst of changes is read once, after a quiet moment. A valid new config is published; an
//! invalid one is logged and the running config stays.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::{Notify, watch};

use super::Config;
use crate::telemetry::Metrics;

/// How long the files must be quiet before they are read again.
const QUIET: Duration = Duration::from_millis(300);

/// Watches the files of `initial` and publishes each valid change until `updates` is dropped.
pub fn spawn(
    initial: Arc<Config>,
    metrics: Arc<Metrics>,
) -> notify::Result<watch::Receiver<Arc<Config>>> {
    let changed = Arc::new(Notify::new());
    let signal = Arc::clone(&changed);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            signal.notify_one();
        }
    })?;
    let mut folders = watch_folders(&mut watcher, &initial.watched, &BTreeSet::new());
    let (updates, receiver) = watch::channel(Arc::clone(&initial));
    tokio::spawn(async move {
        let mut current = initial;
        while !updates.is_closed() {
            tokio::select! {
                () = changed.notified() => {}
                () = updates.closed() => break,
            }
            while tokio::time::timeout(QUIET, changed.notified())
                .await
                .is_ok()
            {}
            match Config::load(&current.path) {
                Ok(new) if new == *current => {}
                Ok(new) => {
                    warn_about_restart_only_changes(&current, &new);
                    folders = watch_folders(&mut watcher, &new.watched, &folders);
                    current = Arc::new(new);
                    metrics.config_reloads.get_or_create(&ok_label(true)).inc();
                    tracing::info!(endpoints = current.endpoints.len(), "config reloaded");
                    updates.send_replace(Arc::clone(&current));
                }
                Err(error) => {
                    metrics.config_reloads.get_or_create(&ok_label(false)).inc();
                    tracing::error!("config change rejected, the running config stays:\n{error}");
                }
            }
        }
    });
    Ok(receiver)
}

fn ok_label(ok: bool) -> Vec<(&'static str, &'static str)> {
    vec![("result", if ok { "applied" } else { "rejected" })]
}

/// Watches the folder holding each path (or the path itself, for a folder); returns the set
/// now watched. Folders that are no longer needed are left watched: harmless, and rare.
fn watch_folders(
    watcher: &mut RecommendedWatcher,
    paths: &BTreeSet<PathBuf>,
    already: &BTreeSet<PathBuf>,
) -> BTreeSet<PathBuf> {
    let mut folders = already.clone();
    for path in paths {
        let folder = if path.is_dir() {
            path.clone()
        } else {
            path.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_owned()
        };
        if folders.contains(&folder) {
            continue;
        }
        match watcher.watch(&folder, RecursiveMode::NonRecursive) {
            Ok(()) => {
                folders.insert(folder);
            }
            Err(e) => {
                tracing::warn!(folder = %folder.display(), "cannot watch for config changes: {e}")
            }
        }
    }
    folders
}

fn warn_about_restart_only_changes(old: &Config, new: &Config) {
    if old.source != new.source || old.state_dir != new.state_dir || old.listen != new.listen {
        tracing::warn!("changes to [source], [state] and [server] take effect on the next start");
    }
}
