//! One loaded plugin: a compiled component checked against our WIT version, linked once
//! (`InstancePre`), with a pool of initialised instances that calls borrow.
//!
//! An instance is created (and its `init` called with the plugin's configuration) when the
//! pool is empty, and returned after a call that ended normally, the plugin's own `Err`
//! included. After a trap, a timeout or a limit hit it is thrown away: the next call gets a
//! fresh one. Pooling skips instantiation and `init` on every event (see the `plugins` bench).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::component::Component;
use wasmtime::{Store, Trap};

use super::bindings::{self, Action, Event, Payload, PluginPre};
use super::cache::{ContentHash, hex};
use super::runtime::{HostState, Runtime, deadline_ticks};
use super::settings::PluginSettings;

/// Idle instances kept per plugin at most.
const POOL: usize = 16;

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read it: {0}")]
    Read(#[from] std::io::Error),
    /// It is not a valid WebAssembly component (or is still being written).
    #[error("not a valid WebAssembly component: {0}")]
    Compile(String),
    /// It does not export the `transform` interface at all.
    #[error(
        "not a kfp-event-router plugin: it exports no `{package}/transform` interface (its exports: {0})",
        package = bindings::PACKAGE
    )]
    NotAPlugin(String),
    /// It was built against an incompatible version of the WIT package.
    #[error(
        "built for {found}, which this router does not support: it implements {package}@{version} \
         (components built for {package}@{major_minor}.x load); rebuild the plugin with a matching \
         kfp-event-router-sdk",
        package = bindings::PACKAGE,
        version = bindings::VERSION,
        major_minor = bindings::VERSION.rsplit_once('.').map_or(bindings::VERSION, |(mm, _)| mm)
    )]
    Incompatible {
        /// The interface and version it was built for, e.g. `kfp:event-router/transform@9.0.0`.
        found: String,
    },
    /// Its imports cannot be satisfied: it asks for something the sandbox does not offer.
    #[error("cannot be linked: {0}")]
    Link(String),
    /// Its `init` refused the configuration.
    #[error("init failed: {0}")]
    Init(String),
    /// Its `init` trapped, timed out or hit a limit.
    #[error("init failed: {0}")]
    InitCrashed(CallError),
}

/// Why one call did not return an action.
#[derive(Clone, Debug, thiserror::Error)]
pub enum CallError {
    /// The plugin returned an error.
    #[error("the plugin returned an error: {0}")]
    Failed(String),
    /// The call ran past its CPU time budget and was stopped.
    #[error("stopped after its time budget of {0:?}")]
    Timeout(Duration),
    /// The plugin tried to use more memory than allowed.
    #[error("stopped at its memory limit of {} MiB", .0 >> 20)]
    MemoryLimit(usize),
    /// The plugin trapped (a panic, an invalid operation, ...).
    #[error("trapped: {0}")]
    Trap(String),
    /// The output was larger than allowed.
    #[error("output of {size} bytes is over its limit of {max} bytes")]
    OutputTooLarge {
        /// Body and header bytes returned.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The output is not usable, e.g. an invalid header.
    #[error("invalid output: {0}")]
    InvalidOutput(String),
}

impl CallError {
    /// The `outcome` label of the `plugin_calls` metric for this error.
    pub(crate) fn outcome(&self) -> &'static str {
        match self {
            Self::Failed(_) => "error",
            Self::Timeout(_) => "timeout",
            Self::MemoryLimit(_) => "memory_limit",
            Self::Trap(_) => "trap",
            Self::OutputTooLarge { .. } => "output_limit",
            Self::InvalidOutput(_) => "invalid_output",
        }
    }

    /// Sorts an error raised by wasmtime during a call.
    fn from_wasmtime(
        error: &wasmtime::Error,
        store: &Store<HostState>,
        settings: &PluginSettings,
    ) -> Self {
        if matches!(error.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
            return Self::Timeout(settings.timeout);
        }
        if store.data().over_limit() {
            return Self::MemoryLimit(settings.max_memory);
        }
        // The trap itself, without the wasm backtrace (of little use for stripped plugins).
        Self::Trap(match error.downcast_ref::<Trap>() {
            Some(Trap::UnreachableCodeReached) => {
                "wasm `unreachable` instruction executed (a Rust plugin panicked, or aborted)"
                    .to_owned()
            }
            Some(trap) => trap.to_string(),
            None => error.root_cause().to_string(),
        })
    }
}

/// An initialised instance and its store.
struct Instance {
    store: Store<HostState>,
    plugin: bindings::Plugin,
}

/// A plugin ready to be called; shared by every chain that names it.
pub struct LoadedPlugin {
    name: Arc<str>,
    content: ContentHash,
    wit: String,
    pre: PluginPre<HostState>,
    runtime: Arc<Runtime>,
    settings: PluginSettings,
    config: String,
    pool: Mutex<Vec<Instance>>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("version", &self.version())
            .finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    /// Checks `component`'s WIT version, links it, and makes a first instance, whose `init`
    /// must accept `config`.
    pub fn new(
        runtime: &Arc<Runtime>,
        name: &str,
        component: &Component,
        content: ContentHash,
        settings: PluginSettings,
        config: String,
    ) -> Result<Self, LoadError> {
        let wit = check_version(runtime, component)?;
        let instance_pre = runtime
            .linker()
            .instantiate_pre(component)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let pre = PluginPre::new(instance_pre).map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let plugin = Self {
            name: Arc::from(name),
            content,
            wit,
            pre,
            runtime: Arc::clone(runtime),
            settings,
            config,
            pool: Mutex::new(Vec::new()),
        };
        let first = plugin.instantiate()?;
        plugin.give_back(first);
        Ok(plugin)
    }

    /// The same component with other settings or configuration; `init` must accept it.
    pub(crate) fn reconfigured(
        &self,
        settings: PluginSettings,
        config: String,
    ) -> Result<Self, LoadError> {
        let plugin = Self {
            name: Arc::clone(&self.name),
            content: self.content,
            wit: self.wit.clone(),
            pre: self.pre.clone(),
            runtime: Arc::clone(&self.runtime),
            settings,
            config,
            pool: Mutex::new(Vec::new()),
        };
        let first = plugin.instantiate()?;
        plugin.give_back(first);
        Ok(plugin)
    }

    /// The plugin's name: its file stem.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Its version: the first 12 hex digits of the SHA-256 of its file.
    pub(crate) fn version(&self) -> String {
        hex(&self.content[..6])
    }

    /// The SHA-256 of its file.
    pub(crate) fn content(&self) -> &ContentHash {
        &self.content
    }

    /// The WIT interface it exports, e.g. `kfp:event-router/transform@0.1.0`.
    pub(crate) fn wit(&self) -> &str {
        &self.wit
    }

    /// Its limits and failure policy.
    pub(crate) fn settings(&self) -> &PluginSettings {
        &self.settings
    }

    /// The configuration its `init` accepted.
    pub(crate) fn config(&self) -> &str {
        &self.config
    }

    /// Calls `handle` with a budget of CPU time, memory and output.
    pub fn call(&self, event: &Event, payload: &Payload) -> Result<Action, CallError> {
        let pooled = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut instance = match pooled {
            Some(instance) => instance,
            None => self.instantiate().map_err(|e| match e {
                LoadError::InitCrashed(e) => e,
                other => CallError::Trap(format!("cannot start an instance: {other}")),
            })?,
        };
        self.arm(&mut instance.store);
        let transform = instance.plugin.kfp_event_router_transform();
        match transform.call_handle(&mut instance.store, event, payload) {
            Ok(Ok(action)) => {
                self.give_back(instance);
                self.check_output(action)
            }
            Ok(Err(message)) => {
                self.give_back(instance);
                Err(CallError::Failed(message))
            }
            Err(e) => Err(CallError::from_wasmtime(
                &e,
                &instance.store,
                &self.settings,
            )),
        }
    }

    /// A new instance, initialised with the plugin's configuration.
    fn instantiate(&self) -> Result<Instance, LoadError> {
        let mut store = self.runtime.store(&self.name, &self.settings);
        self.arm(&mut store);
        let crashed = |e: wasmtime::Error, store: &Store<HostState>| {
            LoadError::InitCrashed(CallError::from_wasmtime(&e, store, &self.settings))
        };
        let plugin = match self.pre.instantiate(&mut store) {
            Ok(plugin) => plugin,
            Err(e) => return Err(crashed(e, &store)),
        };
        match plugin
            .kfp_event_router_transform()
            .call_init(&mut store, &self.config)
        {
            Ok(Ok(())) => Ok(Instance { store, plugin }),
            Ok(Err(message)) => Err(LoadError::Init(message)),
            Err(e) => Err(crashed(e, &store)),
        }
    }

    /// Sets the time budget of the next call.
    fn arm(&self, store: &mut Store<HostState>) {
        store.data_mut().start_call();
        store.set_epoch_deadline(deadline_ticks(self.settings.timeout));
    }

    fn give_back(&self, instance: Instance) {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < POOL {
            pool.push(instance);
        }
    }

    fn check_output(&self, action: Action) -> Result<Action, CallError> {
        let Action::Replace(replacement) = &action else {
            return Ok(action);
        };
        let headers: usize = replacement
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum();
        let size = replacement.body.len() + replacement.content_type.len() + headers;
        if size > self.settings.max_output {
            return Err(CallError::OutputTooLarge {
                size,
                max: self.settings.max_output,
            });
        }
        if reqwest::header::HeaderValue::from_str(&replacement.content_type).is_err() {
            return Err(CallError::InvalidOutput(format!(
                "content type {:?} is not a valid header value",
                replacement.content_type
            )));
        }
        for (name, value) in &replacement.headers {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(CallError::InvalidOutput(format!(
                    "{name:?} is not a valid header name"
                )));
            }
            if reqwest::header::HeaderValue::from_str(value).is_err() {
                return Err(CallError::InvalidOutput(format!(
                    "header {name}: not a valid header value"
                )));
            }
        }
        Ok(action)
    }
}

/// Finds the `transform` interface the component exports and checks its version; returns its
/// full name.
fn check_version(runtime: &Runtime, component: &Component) -> Result<String, LoadError> {
    let engine = runtime.engine();
    let ty = component.component_type();
    let interface = format!("{}/transform@", bindings::PACKAGE);
    let exports: Vec<&str> = ty.exports(engine).map(|(name, _)| name).collect();
    let Some(found) = exports.iter().find(|name| name.starts_with(&interface)) else {
        let listed = match exports.is_empty() {
            true => "none".to_owned(),
            false => exports.join(", "),
        };
        return Err(LoadError::NotAPlugin(listed));
    };
    let version = &found[interface.len()..];
    if !bindings::compatible(version) {
        return Err(LoadError::Incompatible {
            found: (*found).to_owned(),
        });
    }
    let host = format!("{}/host@", bindings::PACKAGE);
    for (import, _) in ty.imports(engine) {
        if let Some(version) = import.strip_prefix(&host)
            && !bindings::compatible(version)
        {
            return Err(LoadError::Incompatible {
                found: import.to_owned(),
            });
        }
    }
    Ok((*found).to_owned())
}
