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

/// Components at least this large (bytes) compile for seconds when not cached: plugins that
/// load meanwhile do not wait for them. (They cannot come from a ConfigMap volume, whose
/// data is at most 1 MiB, so a ConfigMap swap is still applied whole.)
const LARGE: usize = 4 << 20;

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
    /// Plugins being loaded now, with their sizes in bytes.
    loading: Mutex<BTreeMap<String, usize>>,
    /// Why each plugin that last failed to load was rejected.
    errors: Mutex<BTreeMap<String, String>>,
    /// Each plugin's last load: when (Unix ms), and its result or error.
    last_loads: Mutex<BTreeMap<String, LastLoad>>,
}

/// A plugin's last load, reload or rejection, as the console shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct LastLoad {
    /// When it ended (Unix ms).
    pub(crate) at_ms: u64,
    /// `loaded`, `reloaded` or `rejected`.
    pub(crate) result: &'static str,
    /// Why it was rejected.
    pub(crate) error: Option<String>,
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
            loading: Mutex::default(),
            errors: Mutex::default(),
            last_loads: Mutex::default(),
        }
    }

    /// Each plugin's last load, by name.
    pub(crate) fn last_loads(&self) -> BTreeMap<String, LastLoad> {
        self.last_loads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Notes the end of a load of `name`.
    fn loaded(&self, name: &str, result: &'static str, error: Option<String>) {
        let load = LastLoad {
            at_ms: crate::model::clock::now_ms(),
            result,
            error,
        };
        self.last_loads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), load);
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

    /// Plugins being loaded now.
    pub(crate) fn loading(&self) -> Vec<String> {
        let loading = self.loading.lock().unwrap_or_else(|e| e.into_inner());
        loading.keys().cloned().collect()
    }

    /// Whether what is still loading is only [large](LARGE) components (and something is).
    pub(crate) fn only_large_loading(&self) -> bool {
        let loading = self.loading.lock().unwrap_or_else(|e| e.into_inner());
        !loading.is_empty() && loading.values().all(|&size| size >= LARGE)
    }

    /// Why plugin `name` was rejected the last time it failed to load, if it was.
    pub(crate) fn error(&self, name: &str) -> Option<String> {
        let errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        errors.get(name).cloned()
    }

    /// Names that a chain of `config` runs but that are neither loaded nor loading, each with
    /// where it is named.
    pub(crate) fn missing(&self, config: &PayloadSettings) -> BTreeMap<String, Vec<String>> {
        let snapshot = self.current();
        let loading = self.loading();
        let mut missing: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let chains = std::iter::once(("plugins.chain".to_owned(), &config.plugins.chain)).chain(
            config
                .endpoints
                .iter()
                .map(|(name, e)| (format!("endpoint {name:?}"), &e.plugins)),
        );
        for (place, chain) in chains {
            let absent = |n: &&String| !snapshot.plugins.contains_key(*n) && !loading.contains(n);
            for name in chain.iter().filter(absent) {
                missing.entry(name.clone()).or_default().push(place.clone());
            }
        }
        missing
    }

    /// Reads the plugin folder and swaps in a new version of what changed, with the settings,
    /// configurations and global chain of `config`. Blocking: compiles and initialises plugins.
    pub(crate) fn reload(&self, config: Arc<PayloadSettings>) {
        *self.config.lock().unwrap_or_else(|e| e.into_inner()) = Arc::clone(&config);
        let current = self.current();
        let plugins = match &self.dir {
            None => BTreeMap::new(),
            Some(dir) => match read_folder(dir) {
                Ok(files) => self.load_files(&current, &config, dir, files),
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
    }

    /// The plugins of `files`: unchanged ones kept, changed ones loaded in parallel (each on
    /// its own thread). Changes are swapped in together, except that what has loaded is
    /// swapped in without waiting for [large](LARGE) components still compiling.
    fn load_files(
        &self,
        current: &Snapshot,
        config: &PayloadSettings,
        dir: &Path,
        files: BTreeMap<String, Vec<u8>>,
    ) -> BTreeMap<String, Arc<LoadedPlugin>> {
        let mut plugins = BTreeMap::new();
        let mut jobs = Vec::new();
        let mut rejected = self.rejected.lock().unwrap_or_else(|e| e.into_inner());
        for (name, bytes) in files {
            let content = content_hash(&bytes);
            let settings = config.plugins.settings(&name);
            let init = config.plugins.init_config(&name);
            let old = current.plugins.get(&name).cloned();
            let same_content = old.as_ref().is_some_and(|p| *p.content() == content);
            if let Some(old) = &old {
                // Until a new version loads, the running one keeps serving.
                plugins.insert(name.clone(), Arc::clone(old));
                if same_content && *old.settings() == settings && old.config() == init {
                    continue;
                }
            }
            let attempt = Rejected {
                content,
                settings,
                config: init,
            };
            if rejected.get(&name) == Some(&attempt) {
                continue;
            }
            jobs.push(Job {
                name,
                bytes,
                attempt,
                old: old.filter(|_| same_content),
            });
        }
        let handle = tokio::runtime::Handle::current();
        let sizes = jobs.iter().map(|j| (j.name.clone(), j.bytes.len()));
        self.loading
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(sizes);
        std::thread::scope(|scope| {
            let (done, results) = std::sync::mpsc::channel();
            for job in jobs {
                let (done, handle) = (done.clone(), handle.clone());
                let name = job.name.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("plugin-load-{name}"))
                    .spawn_scoped(scope, move || {
                        let started = Instant::now();
                        let loaded = self.load(&job, &handle);
                        let _ = done.send((job, loaded, started.elapsed()));
                    });
                if let Err(e) = spawned {
                    tracing::error!(plugin = %name, "cannot start a thread to load the plugin: {e}");
                }
            }
            drop(done);
            for (job, loaded, took) in results.iter() {
                let path = plugin_path(dir, &job.name);
                let old = current.plugins.get(&job.name);
                match loaded {
                    Ok((plugin, cached)) => {
                        let result = if old.is_some() { "reloaded" } else { "loaded" };
                        self.metrics.plugin_load(&job.name, result);
                        self.loaded(&job.name, result, None);
                        self.health.forget(&job.name);
                        tracing::info!(
                            plugin = %job.name,
                            version = plugin.version(),
                            wit = plugin.wit(),
                            file = %path.display(),
                            cached,
                            took_ms = took.as_millis() as u64,
                            "plugin {result}"
                        );
                        rejected.remove(&job.name);
                        self.errors
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&job.name);
                        plugins.insert(job.name.clone(), Arc::new(plugin));
                    }
                    Err(error) => {
                        self.metrics.plugin_load(&job.name, "rejected");
                        self.loaded(&job.name, "rejected", Some(error.to_string()));
                        let keeps = match old {
                            Some(old) => format!("version {} keeps serving", old.version()),
                            None => "it is not loaded".to_owned(),
                        };
                        tracing::error!(plugin = %job.name, file = %path.display(), "plugin rejected: {error}; {keeps}");
                        rejected.insert(job.name.clone(), job.attempt);
                        self.errors
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(job.name.clone(), error.to_string());
                    }
                }
                self.loading
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&job.name);
                if self.only_large_loading() {
                    tracing::info!(
                        still_compiling = ?self.loading(),
                        "swapping in the plugins loaded so far; large ones follow when compiled"
                    );
                    self.snapshot.send_replace(Arc::new(Snapshot {
                        plugins: plugins.clone(),
                        global: config.plugins.chain.clone(),
                    }));
                }
            }
        });
        plugins
    }

    /// Compiles (or loads from the cache), checks, links and initialises one plugin, or
    /// re-initialises the running version with new settings; instances start on `runtime`.
    /// Returns it and whether its compilation came from the cache. Blocking.
    fn load(
        &self,
        job: &Job,
        runtime: &tokio::runtime::Handle,
    ) -> Result<(LoadedPlugin, bool), LoadError> {
        let (settings, config) = (job.attempt.settings, job.attempt.config.clone());
        if let Some(old) = &job.old {
            return runtime
                .block_on(old.reconfigured(settings, config))
                .map(|p| (p, true));
        }
        let size_mb = job.bytes.len() as f64 / 1e6;
        tracing::info!(plugin = %job.name, "loading plugin ({size_mb:.1} MB)");
        let (component, cached) = self
            .runtime
            .compile(&job.bytes)
            .map_err(|e| LoadError::Compile(first_line(&e)))?;
        let plugin = runtime.block_on(LoadedPlugin::new(
            &self.runtime,
            &job.name,
            &component,
            job.attempt.content,
            settings,
            config,
        ))?;
        Ok((plugin, cached))
    }
}

/// One plugin to load: its file, the settings to load it with, and the running version
/// when only the settings or configuration changed.
struct Job {
    name: String,
    bytes: Vec<u8>,
    attempt: Rejected,
    old: Option<Arc<LoadedPlugin>>,
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
