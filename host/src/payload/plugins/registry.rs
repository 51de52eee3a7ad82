//! The loaded plugins, kept current: loads every `*.wasm` of `plugins.dir` at start, then
//! reloads on change (files added, replaced or removed, and `[plugins]` config changes).
//!
//! Each reload builds a new [`Snapshot`] and swaps it in whole. A file whose content did not
//! change is not loaded again; a new file must compile, be of a compatible WIT version, link
//! and pass its `init` before it replaces the running version, so a broken or half-written
//! file is rejected (logged and counted once per content) while the old version keeps
//! serving. A Kubernetes ConfigMap or Secret volume swaps its `..data` symlink to change all
//! files at once: a scan that sees `..data` change under it starts again, so it never mixes
//! two versions of the volume.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::cache::{ContentHash, content_hash};
use super::chain::{Observer, Snapshot};
use super::health::PluginHealth;
use super::plugin::{LoadError, LoadedPlugin};
use super::runtime::Runtime;
use super::settings::{PluginSettings, plugin_path};
use crate::debounce::Debounced;
use crate::payload::PayloadSettings;
use crate::telemetry::Metrics;

/// How long the plugin folder must be quiet before it is scanned again.
const QUIET: Duration = Duration::from_millis(150);

/// The symlink a Kubernetes ConfigMap or Secret volume swaps to change its files at once.
const KUBERNETES_DATA: &str = "..data";

/// A content and configuration that failed to load, not tried again until one changes.
#[derive(PartialEq)]
struct Rejected {
    content: ContentHash,
    settings: PluginSettings,
    config: String,
}

/// The plugins and their state.
pub(crate) struct Registry {
    dir: Option<PathBuf>,
    runtime: Arc<Runtime>,
    metrics: Arc<Metrics>,
    health: PluginHealth,
    snapshot: watch::Sender<Arc<Snapshot>>,
    config: Mutex<Arc<PayloadSettings>>,
    rejected: Mutex<HashMap<String, Rejected>>,
}

/// What one reload did, for the start-up check.
#[derive(Debug, Default)]
pub(crate) struct Reload {
    /// Why each plugin that failed to load was rejected.
    pub(crate) rejected: BTreeMap<String, LoadError>,
}

impl Registry {
    /// A registry of the plugins in `config`'s `plugins.dir`, with nothing loaded yet. The
    /// folder stays the same for the registry's life.
    pub(crate) fn new(
        runtime: Arc<Runtime>,
        metrics: Arc<Metrics>,
        config: Arc<PayloadSettings>,
    ) -> Self {
        Self {
            dir: config.plugins.dir.clone(),
            runtime,
            metrics,
            health: PluginHealth::default(),
            snapshot: watch::Sender::new(Arc::default()),
            config: Mutex::new(config),
            rejected: Mutex::default(),
        }
    }

    /// The current version of the plugins.
    pub(crate) fn current(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    /// Changes whenever a new version is swapped in.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshot.subscribe()
    }

    /// Where chain runs report.
    pub(crate) fn observer(&self) -> Observer<'_> {
        Observer {
            metrics: &self.metrics,
            health: &self.health,
        }
    }

    /// Plugins failing now.
    pub(crate) fn health(&self) -> &PluginHealth {
        &self.health
    }

    /// The settings the plugins were last loaded for.
    pub(crate) fn config(&self) -> Arc<PayloadSettings> {
        self.config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Names that a chain of `config` runs but that are not loaded, each with where it is named.
    pub(crate) fn missing(&self, config: &PayloadSettings) -> BTreeMap<String, Vec<String>> {
        let snapshot = self.current();
        let mut missing: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let chains = std::iter::once(("plugins.chain".to_owned(), &config.plugins.chain)).chain(
            config
                .endpoints
                .iter()
                .map(|(name, e)| (format!("endpoint {name:?}"), &e.plugins)),
        );
        for (place, chain) in chains {
            for name in chain.iter().filter(|n| !snapshot.plugins.contains_key(*n)) {
                missing.entry(name.clone()).or_default().push(place.clone());
            }
        }
        missing
    }

    /// Reads the plugin folder and swaps in a new version of what changed, with the settings,
    /// configurations and global chain of `config`. Blocking: compiles and initialises plugins.
    pub(crate) fn reload(&self, config: Arc<PayloadSettings>) -> Reload {
        *self.config.lock().unwrap_or_else(|e| e.into_inner()) = Arc::clone(&config);
        let mut report = Reload::default();
        let current = self.current();
        let plugins = match &self.dir {
            None => BTreeMap::new(),
            Some(dir) => match read_folder(dir) {
                Ok(files) => self.load_files(&current, &config, dir, files, &mut report),
                Err(e) => {
                    tracing::error!(dir = %dir.display(), "cannot read the plugin folder; plugins stay as they are: {e}");
                    current.plugins.clone()
                }
            },
        };
        for name in current.plugins.keys().filter(|n| !plugins.contains_key(*n)) {
            self.metrics.plugin_load(name, "removed");
            self.health.forget(name);
            tracing::warn!(plugin = %name, "plugin removed");
        }
        let unchanged = plugins.len() == current.plugins.len()
            && plugins
                .iter()
                .zip(&current.plugins)
                .all(|((a, pa), (b, pb))| a == b && Arc::ptr_eq(pa, pb))
            && config.plugins.chain == current.global;
        if !unchanged {
            self.snapshot.send_replace(Arc::new(Snapshot {
                plugins,
                global: config.plugins.chain.clone(),
            }));
        }
        for (name, places) in self.missing(&config) {
            tracing::warn!(
                plugin = %name,
                "{} runs plugin {name:?}, which is not loaded: deliveries that need it wait in the outbox until it is",
                places.join(" and ")
            );
        }
        report
    }

    fn load_files(
        &self,
        current: &Snapshot,
        config: &PayloadSettings,
        dir: &Path,
        files: BTreeMap<String, Vec<u8>>,
        report: &mut Reload,
    ) -> BTreeMap<String, Arc<LoadedPlugin>> {
        let mut plugins = BTreeMap::new();
        let mut rejected = self.rejected.lock().unwrap_or_else(|e| e.into_inner());
        for (name, bytes) in files {
            let content = content_hash(&bytes);
            let settings = config.plugins.settings(&name);
            let init = config.plugins.init_config(&name);
            let old = current.plugins.get(&name);
            let same_content = old.is_some_and(|p| *p.content() == content);
            if same_content && old.is_some_and(|p| *p.settings() == settings && p.config() == init)
            {
                plugins.insert(name, Arc::clone(old.expect("checked above")));
                continue;
            }
            let attempt = Rejected {
                content,
                settings,
                config: init,
            };
            if rejected.get(&name) == Some(&attempt) {
                if let Some(old) = old {
                    plugins.insert(name, Arc::clone(old));
                }
                continue;
            }
            let started = Instant::now();
            let loaded = match old.filter(|_| same_content) {
                Some(old) => old
                    .reconfigured(settings, attempt.config.clone())
                    .map(|p| (p, true)),
                None => self.load(&name, &bytes, content, settings, attempt.config.clone()),
            };
            let path = plugin_path(dir, &name);
            match loaded {
                Ok((plugin, cached)) => {
                    let result = if old.is_some() { "reloaded" } else { "loaded" };
                    self.metrics.plugin_load(&name, result);
                    self.health.forget(&name);
                    tracing::info!(
                        plugin = %name,
                        version = plugin.version(),
                        wit = plugin.wit(),
                        file = %path.display(),
                        cached,
                        took_ms = started.elapsed().as_millis() as u64,
                        "plugin {result}"
                    );
                    rejected.remove(&name);
                    plugins.insert(name, Arc::new(plugin));
                }
                Err(error) => {
                    self.metrics.plugin_load(&name, "rejected");
                    let keeps = match old {
                        Some(old) => format!("version {} keeps serving", old.version()),
                        None => "it is not loaded".to_owned(),
                    };
                    tracing::error!(plugin = %name, file = %path.display(), "plugin rejected: {error}; {keeps}");
                    if let Some(old) = old {
                        plugins.insert(name.clone(), Arc::clone(old));
                    }
                    rejected.insert(name.clone(), attempt);
                    report.rejected.insert(name, error);
                }
            }
        }
        plugins
    }

    /// Compiles (or loads from the cache), checks, links and initialises one plugin.
    fn load(
        &self,
        name: &str,
        bytes: &[u8],
        content: ContentHash,
        settings: PluginSettings,
        config: String,
    ) -> Result<(LoadedPlugin, bool), LoadError> {
        let (component, cached) = self
            .runtime
            .compile(bytes)
            .map_err(|e| LoadError::Compile(first_line(&e)))?;
        let plugin = LoadedPlugin::new(&self.runtime, name, &component, content, settings, config)?;
        Ok((plugin, cached))
    }
}

fn first_line(error: &wasmtime::Error) -> String {
    let text = format!("{error:#}");
    text.lines().next().unwrap_or_default().to_owned()
}

/// The `*.wasm` files of `dir` by plugin name (hidden files left out), read whole. Scans again
/// when a ConfigMap `..data` swap happened meanwhile.
fn read_folder(dir: &Path) -> std::io::Result<BTreeMap<String, Vec<u8>>> {
    let link = dir.join(KUBERNETES_DATA);
    loop {
        let before = std::fs::read_link(&link).ok();
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let (Some(stem), Some(extension)) = (path.file_stem(), path.extension()) else {
                continue;
            };
            let name = stem.to_string_lossy();
            if extension != "wasm" || name.starts_with('.') || !path.is_file() {
                continue;
            }
            // A file removed since the listing is simply absent.
            if let Ok(bytes) = std::fs::read(&path) {
                files.insert(name.into_owned(), bytes);
            }
        }
        if std::fs::read_link(&link).ok() == before {
            return Ok(files);
        }
    }
}

/// Follows the plugin folder and the config; stops when dropped.
pub(crate) struct Reloader {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Reloader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Reloader {
    /// Watches `dir` and `config` and reloads `registry` on every change.
    pub(crate) fn start(
        registry: Arc<Registry>,
        dir: &Path,
        config: watch::Receiver<Arc<PayloadSettings>>,
    ) -> notify::Result<Self> {
        let mut files = Debounced::new(QUIET)?;
        files.watch(dir)?;
        let task = tokio::spawn(follow(registry, files, config));
        Ok(Self { task })
    }
}

async fn follow(
    registry: Arc<Registry>,
    files: Debounced,
    mut updates: watch::Receiver<Arc<PayloadSettings>>,
) {
    let mut config = registry.config();
    let mut following = true;
    loop {
        tokio::select! {
            () = files.changed() => {}
            update = updates.changed(), if following => {
                if update.is_err() {
                    following = false;
                    continue;
                }
                let new = updates.borrow_and_update().clone();
                if new == config {
                    continue;
                }
                if new.plugins.dir != config.plugins.dir {
                    tracing::warn!("a change of plugins.dir takes effect on the next start");
                }
                config = new;
            }
        }
        let registry = Arc::clone(&registry);
        let config = Arc::clone(&config);
        let _ = tokio::task::spawn_blocking(move || registry.reload(config)).await;
    }
}
