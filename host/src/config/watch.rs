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

use tokio::sync::watch;

use super::Config;
use crate::debounce::Debounced;
use crate::telemetry::Metrics;

/// How long the files must be quiet before they are read again.
const QUIET: Duration = Duration::from_millis(300);

/// Watches the files of `initial` and publishes each valid change until `updates` is dropped.
pub(crate) fn spawn(
    initial: Arc<Config>,
    metrics: Arc<Metrics>,
) -> notify::Result<watch::Receiver<Arc<Config>>> {
    let mut files = Debounced::new(QUIET)?;
    watch_folders(&mut files, &initial.watched);
    let (updates, receiver) = watch::channel(Arc::clone(&initial));
    tokio::spawn(async move {
        let mut current = initial;
        while !updates.is_closed() {
            tokio::select! {
                () = files.changed() => {}
                () = updates.closed() => break,
            }
            let path = current.path.clone();
            let loaded = tokio::task::spawn_blocking(move || Config::load(&path)).await;
            let Ok(loaded) = loaded else {
                continue;
            };
            match loaded {
                Ok(new) if new == *current => {}
                Ok(new) => {
                    warn_about_restart_only_changes(&current, &new);
                    watch_folders(&mut files, &new.watched);
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

/// Watches the folder holding each path (or the path itself, for a folder). Folders that are
/// no longer needed are left watched: harmless, and rare.
fn watch_folders(files: &mut Debounced, paths: &BTreeSet<PathBuf>) {
    for path in paths {
        let folder = if path.is_dir() {
            path.clone()
        } else {
            path.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_owned()
        };
        if let Err(e) = files.watch(&folder) {
            tracing::warn!(folder = %folder.display(), "cannot watch for config changes: {e}")
        }
    }
}

fn warn_about_restart_only_changes(old: &Config, new: &Config) {
    for message in restart_only_changes(old, new) {
        tracing::warn!("{message}");
    }
}

/// What changed from `old` to `new` that a running router does not apply, as log messages.
pub(super) fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut messages = Vec::new();
    if old.source != new.source
        || old.state != new.state
        || old.listen != new.listen
        || old.cluster != new.cluster
    {
        messages.push(
            "changes to [source], [state], [server] and [router] take effect on the next start",
        );
    }
    // Both are settings of the plugin runtime, which is made once.
    if old.plugins.max_total_memory != new.plugins.max_total_memory
        || old.plugins.profiler != new.plugins.profiler
    {
        messages.push(
            "changes to plugins.max_total_memory and plugins.profiler take effect on the next start",
        );
    }
    messages
}
