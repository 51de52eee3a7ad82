//! The `plugins` stage: turns an event into the request an endpoint receives.
//!
//! The endpoint's [`Format`](crate::format::Format) renders the payload; the chain (the global
//! `plugins.chain`, then the endpoint's own `plugins`) then passes, replaces or drops it. With
//! no chain, the rendered payload is sent as is.
//!
//! Plugins are WebAssembly components run by wasmtime:
//! - [`runtime`]: one engine (epoch interruption for CPU budgets), one linker, the sandboxed
//!   per-store state; [`cache`] keeps compilations on disk across restarts;
//! - [`plugin`]: one loaded plugin, its WIT version check and its pool of instances;
//! - [`registry`]: loads `plugins.dir` and hot-reloads it; [`chain`] runs plugins in order;
//! - [`health`]: plugins that keep failing, for `/readyz`; [`tester`]: `plugin test`.
//!
//! A failed call (error, trap, timeout, memory or output limit) affects only that event: the
//! plugin's `on_error` decides whether the chain goes on without it, the endpoint gets
//! nothing, or the event is dead-lettered. A chain that names a plugin which is not loaded
//! (its file was removed) makes the delivery [`Verdict::Wait`] in the outbox until it is.

pub mod bindings;
pub mod cache;
pub mod chain;
pub mod health;
pub mod plugin;
pub mod registry;
pub mod runtime;
pub mod tester;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::{Semaphore, watch};

use crate::config::{Config, Endpoint};
use crate::event::RouterEvent;
use crate::format::Payload;
use crate::telemetry::Metrics;
use chain::Snapshot;
use registry::{Registry, Reloader};
use runtime::Runtime;

/// What an endpoint will be sent for one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The body and its content type.
    pub payload: Payload,
    /// Headers set by plugins (the endpoint's own headers are added when sending).
    pub headers: Vec<(String, String)>,
}

/// What the stage decided for one event and endpoint.
#[derive(Debug)]
pub enum Verdict {
    /// Send this request.
    Deliver(Request),
    /// Send nothing: the named plugin dropped the event (or failed, with `on_error = "drop"`).
    Drop {
        /// The plugin that dropped it.
        by: String,
    },
    /// Send nothing and write the event to the dead-letter file: a plugin failed, with
    /// `on_error = "dead-letter"`.
    DeadLetter {
        /// The plugin that failed.
        plugin: String,
        /// How it failed.
        error: String,
        /// The payload the plugin was given.
        payload: Payload,
    },
    /// Not now: a plugin the chain needs is not loaded. The delivery stays in the outbox (its
    /// workflow's later events wait behind it) and is processed again when the plugins change.
    Wait {
        /// Which plugin is missing, for the log.
        reason: String,
    },
}

/// The stage: renders payloads and applies the plugin chains. The default has no plugins.
#[derive(Default)]
pub struct PluginStage {
    active: Option<Active>,
}

struct Active {
    registry: Arc<Registry>,
    /// Plugin calls running at once at most: they are CPU work.
    slots: Arc<Semaphore>,
    _reloader: Option<Reloader>,
}

impl PluginStage {
    /// Loads the plugins of `config` (compilations cached in `cache_dir`, when given) and,
    /// with `updates`, follows the plugin folder and the config. Fails when a plugin that a
    /// chain names cannot be loaded.
    pub async fn start(
        config: Arc<Config>,
        updates: Option<watch::Receiver<Arc<Config>>>,
        metrics: Arc<Metrics>,
        cache_dir: Option<PathBuf>,
    ) -> anyhow::Result<Self> {
        let Some(dir) = config.plugins.dir.clone() else {
            return Ok(Self::default());
        };
        let runtime = Arc::new(Runtime::new(cache_dir).map_err(|e| anyhow::anyhow!("{e:#}"))?);
        let registry = Arc::new(Registry::new(runtime, metrics, Arc::clone(&config)));
        // Watch before the first scan, so that nothing landing meanwhile is missed.
        let reloader = updates
            .map(|updates| Reloader::start(Arc::clone(&registry), &dir, updates))
            .transpose()
            .with_context(|| format!("cannot watch the plugin folder {}", dir.display()))?;
        let loading = Arc::clone(&registry);
        let report = tokio::task::spawn_blocking(move || loading.reload(config.clone()))
            .await
            .context("loading the plugins failed")?;
        let missing = registry.missing(&registry.config());
        if !missing.is_empty() {
            let lines: Vec<String> = missing
                .iter()
                .map(|(name, places)| {
                    let why = report.rejected.get(name).map_or_else(
                        || {
                            format!(
                                "{} does not exist",
                                crate::config::plugin_path(&dir, name).display()
                            )
                        },
                        ToString::to_string,
                    );
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
            active: Some(Active {
                registry,
                slots: Arc::new(Semaphore::new(parallel * 2)),
                _reloader: reloader,
            }),
        })
    }

    /// Decides what `endpoint` is sent for `event`.
    pub async fn process(&self, endpoint: &Endpoint, event: &RouterEvent) -> Verdict {
        let Some(active) = &self.active else {
            if let Some(name) = endpoint.plugins.first() {
                return Verdict::Wait {
                    reason: format!("plugin {name:?} is not loaded: this router runs no plugins"),
                };
            }
            return Verdict::Deliver(Request {
                payload: endpoint.format.render(event),
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
                return Verdict::Wait {
                    reason: format!(
                        "plugin {missing:?} is not loaded (its file is not in plugins.dir)"
                    ),
                };
            }
        };
        let payload = endpoint.format.render(event);
        if plugins.is_empty() {
            return Verdict::Deliver(Request {
                payload,
                headers: Vec::new(),
            });
        }
        let wit_event = chain::wit_event(event, &endpoint.name);
        let Ok(_slot) = active.slots.acquire().await else {
            unreachable!("the semaphore is never closed");
        };
        let registry = Arc::clone(&active.registry);
        let run = tokio::task::spawn_blocking(move || {
            chain::run(&plugins, &wit_event, payload, &registry.observer())
        });
        match run.await {
            Ok(verdict) => verdict,
            Err(e) => Verdict::Wait {
                reason: format!("the plugin chain stopped unexpectedly: {e}"),
            },
        }
    }

    /// Changes whenever the loaded plugins change; `None` without plugins.
    pub fn changes(&self) -> Option<watch::Receiver<Arc<Snapshot>>> {
        self.active.as_ref().map(|a| a.registry.subscribe())
    }

    /// What `/readyz` shows about plugins: those loaded, failing, and missing.
    pub fn status(&self) -> serde_json::Value {
        let Some(active) = &self.active else {
            return serde_json::json!({ "loaded": [], "failing": [], "missing": [] });
        };
        let registry = &active.registry;
        let loaded: Vec<serde_json::Value> = registry
            .current()
            .plugins
            .values()
            .map(
                |p| serde_json::json!({ "name": p.name(), "version": p.version(), "wit": p.wit() }),
            )
            .collect();
        let missing: Vec<serde_json::Value> = registry
            .missing(&registry.config())
            .into_iter()
            .map(|(name, places)| serde_json::json!({ "name": name, "run_by": places }))
            .collect();
        serde_json::json!({
            "loaded": loaded,
            "failing": registry.health().failing(),
            "missing": missing,
        })
    }
}
