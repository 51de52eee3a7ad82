//! The `payload` stage: turns an event into the request an endpoint receives.
//!
//! The endpoint's [`Format`](format::Format) renders the payload; the chain (the global
//! `plugins.chain`, then the endpoint's own `plugins`) then passes, replaces or drops it. With
//! no chain, the rendered payload is sent as is.
//!
//! - [`format`]: the payload formats (`kfp`, `extended`, `cloudevents`);
//! - [`plugins`]: WebAssembly plugins run by wasmtime, loaded from `plugins.dir` and
//!   hot-reloaded.
//!
//! Plugin calls run on the async executor: a call yields every few milliseconds of running
//! and is stopped at its time budget, whether it computes or waits.
//!
//! A failed call (error, trap, timeout, memory or output limit) affects only that event: the
//! plugin's `on_error` decides whether the chain goes on without it, the endpoint gets
//! nothing, or the event is dead-lettered. A chain that names a plugin which is not loaded
//! (its file was removed) makes the delivery [`Verdict::Wait`] in the outbox until it is.

pub mod format;
pub mod plugins;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use tokio::sync::{Semaphore, watch};

use crate::model::event::{NodeView, RouterEvent};
use crate::model::request::{Render, Request, Verdict};
use crate::telemetry::Metrics;
use crate::telemetry::readiness::Report;
use format::Format;
use plugins::chain::{self, Snapshot};
use plugins::current::Current;
use plugins::event::WitEvent;
use plugins::registry::{Registry, Reloader};
use plugins::runtime::Runtime;
use plugins::settings::{PluginsSettings, plugin_path};

/// How one endpoint's payload is made: the payload part of its config.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EndpointPayload {
    /// The payload format.
    pub format: Format,
    /// Plugins run for this endpoint, after the global chain.
    pub plugins: Vec<String>,
    /// How nodes of KFP v2 runs are named: as tasks, or as Argo names them.
    pub nodes: NodeView,
}

/// The stage's settings: the plugins, and every endpoint's format and chain.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PayloadSettings {
    /// The `[plugins]` section.
    pub plugins: PluginsSettings,
    /// Each endpoint's payload settings, by name, in config order.
    pub endpoints: Vec<(String, EndpointPayload)>,
}

impl PayloadSettings {
    /// The payload settings of endpoint `name`.
    fn endpoint(&self, name: &str) -> Option<&EndpointPayload> {
        self.endpoints
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, e)| e)
    }
}

/// The stage: renders payloads and applies the plugin chains.
pub struct PayloadStage {
    settings: watch::Receiver<Arc<PayloadSettings>>,
    active: Option<Active>,
}

struct Active {
    registry: Arc<Registry>,
    /// Plugin calls running at once at most (one per core): they are CPU work, and their
    /// time budgets count wall time too.
    slots: Arc<Semaphore>,
    _reloader: Option<Reloader>,
}

impl PayloadStage {
    /// Loads the plugins of `settings` (compilations cached in `cache_dir`, when given) and,
    /// with `updates`, follows the plugin folder and the settings. Fails when a plugin that a
    /// chain names cannot be loaded.
    pub async fn start(
        settings: Arc<PayloadSettings>,
        updates: Option<watch::Receiver<Arc<PayloadSettings>>>,
        metrics: Arc<Metrics>,
        cache_dir: Option<PathBuf>,
    ) -> anyhow::Result<Self> {
        let current = match &updates {
            Some(updates) => updates.clone(),
            None => watch::channel(Arc::clone(&settings)).1,
        };
        let Some(dir) = settings.plugins.dir.clone() else {
            return Ok(Self {
                settings: current,
                active: None,
            });
        };
        let plugins = &settings.plugins;
        let runtime = Runtime::new(cache_dir, plugins.max_total_memory, plugins.profiler)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let runtime = Arc::new(runtime);
        let registry = Arc::new(Registry::new(runtime, metrics, Arc::clone(&settings)));
        // Watch before the first scan, so that nothing landing meanwhile is missed.
        let reloader = updates
            .map(|updates| Reloader::start(Arc::clone(&registry), &dir, updates))
            .transpose()
            .with_context(|| format!("cannot watch the plugin folder {}", dir.display()))?;
        // Large components still compiling do not hold up the start: endpoints that run them
        // wait in the outbox until they load.
        let loading = Arc::clone(&registry);
        let mut first = tokio::task::spawn_blocking(move || loading.reload(settings));
        let mut changes = registry.subscribe();
        loop {
            tokio::select! {
                done = &mut first => {
                    done.context("loading the plugins failed")?;
                    break;
                }
                _ = changes.changed() => {
                    if registry.only_large_loading() {
                        break;
                    }
                }
            }
        }
        let missing = registry.missing(&registry.config());
        if !missing.is_empty() {
            let lines: Vec<String> = missing
                .iter()
                .map(|(name, places)| {
                    let why = registry.error(name).unwrap_or_else(|| {
                        format!("{} does not exist", plugin_path(&dir, name).display())
                    });
                    format!(
                        "plugin {name:?} (run by {}) cannot be loaded: {why}",
                        places.join(" and ")
                    )
                })
                .collect();
            anyhow::bail!("{}", lines.join("\n"));
        }
        let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Self {
            settings: current,
            active: Some(Active {
                registry,
                slots: Arc::new(Semaphore::new(parallel)),
                _reloader: reloader,
            }),
        })
    }

    /// Decides what endpoint `name` is sent for `event`.
    pub async fn process(&self, name: &str, event: &Arc<RouterEvent>) -> Verdict {
        let Some(endpoint) = self.settings.borrow().endpoint(name).cloned() else {
            return Verdict::Wait {
                reason: format!("endpoint {name:?} is no longer configured"),
            };
        };
        let Some(active) = &self.active else {
            if let Some(plugin) = endpoint.plugins.first() {
                return Verdict::Wait {
                    reason: format!("plugin {plugin:?} is not loaded: this router runs no plugins"),
                };
            }
            return Verdict::Deliver(Request {
                payload: endpoint.format.render_as(event, endpoint.nodes),
                headers: Vec::new(),
            });
        };
        let snapshot = active.registry.current();
        let plugins = match snapshot.resolve(&endpoint.plugins) {
            Ok(plugins) => plugins,
            Err(missing) => {
                active
                    .registry
                    .observer()
                    .metrics
                    .plugin_call(&missing, "missing");
                let why = match active.registry.loading().contains(&missing) {
                    true => "it is still loading (compiling)",
                    false => "its file is not in plugins.dir, or it was rejected",
                };
                return Verdict::Wait {
                    reason: format!("plugin {missing:?} is not loaded: {why}"),
                };
            }
        };
        if plugins.is_empty() {
            return Verdict::Deliver(Request {
                payload: endpoint.format.render_as(event, endpoint.nodes),
                headers: Vec::new(),
            });
        }
        let wit = WitEvent::new(event, name, endpoint.format, endpoint.nodes);
        let Ok(_slot) = active.slots.acquire().await else {
            unreachable!("the semaphore is never closed");
        };
        // Rendered only if a plugin reads the body or the chain ends with it.
        let payload = Current::rendering(&wit);
        chain::run(&plugins, &wit, payload, &active.registry.observer()).await
    }

    /// Changes whenever the loaded plugins change; `None` without plugins.
    pub(crate) fn changes(&self) -> Option<watch::Receiver<Arc<Snapshot>>> {
        self.active.as_ref().map(|a| a.registry.subscribe())
    }
}

impl Render for PayloadStage {
    fn render<'a>(
        &'a self,
        endpoint: &'a str,
        event: &'a Arc<RouterEvent>,
    ) -> BoxFuture<'a, Verdict> {
        self.process(endpoint, event).boxed()
    }

    fn changed(&self) -> BoxFuture<'_, ()> {
        let mut settings = self.settings.clone();
        settings.mark_unchanged();
        let plugins = self.changes();
        async move {
            let plugins_changed = async {
                match plugins {
                    Some(mut changes) => {
                        changes.mark_unchanged();
                        let _ = changes.changed().await;
                    }
                    None => std::future::pending().await,
                }
            };
            let settings_changed = async {
                if settings.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                () = plugins_changed => {}
                () = settings_changed => {}
            }
        }
        .boxed()
    }

    fn runs_plugins(&self, endpoint: &str) -> bool {
        let settings = self.settings.borrow();
        self.active.is_some()
            && (!settings.plugins.chain.is_empty()
                || settings
                    .endpoint(endpoint)
                    .is_some_and(|e| !e.plugins.is_empty()))
    }
}

impl Report for PayloadStage {
    fn report(&self) -> serde_json::Value {
        self.status()
    }
}

impl PayloadStage {
    /// What `/readyz` shows about plugins: those loaded, loading, failing, and missing.
    pub fn status(&self) -> serde_json::Value {
        let Some(active) = &self.active else {
            return serde_json::json!({
                "loaded": [], "loading": [], "failing": [], "missing": [], "last_loads": {}
            });
        };
        let registry = &active.registry;
        let loaded: Vec<serde_json::Value> = registry
            .current()
            .plugins
            .values()
            .map(|p| {
                serde_json::json!({
                    "name": p.name(),
                    "version": p.version(),
                    "wit": p.wit(),
                    "sha256": plugins::cache::hex(p.content()),
                })
            })
            .collect();
        let missing: Vec<serde_json::Value> = registry
            .missing(&registry.config())
            .into_iter()
            .map(|(name, places)| serde_json::json!({ "name": name, "run_by": places }))
            .collect();
        serde_json::json!({
            "loaded": loaded,
            "loading": registry.loading(),
            "failing": registry.health().failing(),
            "missing": missing,
            "last_loads": registry.last_loads(),
        })
    }
}
