//! One loaded plugin: a compiled component of a known contract, linked once (`InstancePre`),
//! with a pool of initialised instances per endpoint that calls borrow.
//!
//! An instance is created (and its `init` called with the plugin's configuration) when its
//! endpoint's pool is empty, and returned after a call that ended normally, the plugin's own
//! `Err` included. After a trap, a timeout or a limit hit it is thrown away: the next call gets
//! a fresh one. Pools are per endpoint, so no instance state crosses endpoints; pooling skips
//! instantiation and `init` on every event (see the `plugins` bench).

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::component::Component;
use wasmtime::{Store, Trap};

use super::bindings::{Action, Contract, ContractError};
use super::cache::{ContentHash, hex};
use super::current::Current;
use super::event::WitEvent;
use super::instance::{Input, Instance, Pre};
use super::limits::Exceeded;
use super::meters::{MeterCache, Meters};
use super::runtime::{HostState, Runtime, TICK};
use super::settings::PluginSettings;
use crate::model::request::Payload;
use crate::telemetry::Metrics;

/// Idle instances kept per plugin and endpoint at most.
const POOL: usize = 8;

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read it: {0}")]
    Read(#[from] std::io::Error),
    /// It is not a valid WebAssembly component (or is still being written).
    #[error("not a valid WebAssembly component: {0}")]
    Compile(String),
    /// It is not a plugin of a contract this host runs.
    #[error(transparent)]
    Contract(#[from] ContractError),
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
    /// The call ran past its time budget (CPU or wall time) and was stopped.
    #[error("stopped after its time budget of {0:?}")]
    Timeout(Duration),
    /// The plugin tried to use more memory than allowed.
    #[error("stopped at its memory limit of {} MiB", .0 >> 20)]
    MemoryLimit(usize),
    /// The instances of all plugins together hold the whole memory budget.
    #[error("stopped: the plugins' total memory budget of {} MiB is used up", .0 >> 20)]
    MemoryBudget(usize),
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
            Self::MemoryLimit(_) | Self::MemoryBudget(_) => "memory_limit",
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
        runtime: &Runtime,
    ) -> Self {
        if matches!(error.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
            return Self::Timeout(settings.timeout);
        }
        match store.data().over_limit() {
            Some(Exceeded::Instance) => return Self::MemoryLimit(settings.max_memory),
            Some(Exceeded::Budget) => return Self::MemoryBudget(runtime.memory_budget()),
            None => {}
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

/// A plugin ready to be called; shared by every chain that names it.
pub struct LoadedPlugin {
    name: Arc<str>,
    content: ContentHash,
    wit: String,
    pre: Pre,
    runtime: Arc<Runtime>,
    settings: PluginSettings,
    config: String,
    pools: Mutex<HashMap<String, Vec<Instance>>>,
    refused: Mutex<BTreeSet<String>>,
    meters: MeterCache,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("version", &self.version())
            .field("wit", &self.wit)
            .finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    /// Checks `component`'s contract, links it, and makes a first instance, whose `init`
    /// must accept `config`.
    pub async fn new(
        runtime: &Arc<Runtime>,
        name: &str,
        component: &Component,
        content: ContentHash,
        settings: PluginSettings,
        config: String,
    ) -> Result<Self, LoadError> {
        let contract = Contract::of(runtime.engine(), component)?;
        let link = |e: wasmtime::Error| LoadError::Link(format!("{e:#}"));
        let instance_pre = runtime.linker().instantiate_pre(component).map_err(link)?;
        let pre = Pre::new(contract, instance_pre).map_err(link)?;
        let plugin = Self {
            name: Arc::from(name),
            content,
            wit: format!(
                "{}/transform@{}",
                super::bindings::PACKAGE,
                contract.version()
            ),
            pre,
            runtime: Arc::clone(runtime),
            settings,
            config,
            pools: Mutex::default(),
            refused: Mutex::default(),
            meters: MeterCache::default(),
        };
        plugin.instantiate().await?;
        Ok(plugin)
    }

    /// The same component with other settings or configuration; `init` must accept it.
    pub(crate) async fn reconfigured(
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
            pools: Mutex::default(),
            refused: Mutex::default(),
            meters: MeterCache::default(),
        };
        plugin.instantiate().await?;
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

    /// The WIT interface it exports, e.g. `kfp:event-router/transform@0.2.0`.
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

    /// Its call metrics in `metrics`.
    pub(crate) fn meters(&self, metrics: &Metrics) -> Cow<'_, Meters> {
        self.meters.get(metrics, &self.name)
    }

    /// Logs, once per header, that the plugin tried to set header `name`, which it may not.
    pub(crate) fn refuse_header(&self, name: &str) {
        let first = self
            .refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_ascii_lowercase());
        if first {
            tracing::warn!(
                plugin = self.name(),
                version = self.version(),
                header = name,
                "header refused: only the router sets it; the rest of the plugin's output is used (logged once per header)"
            );
        }
    }

    /// Calls `handle` for `event`'s endpoint with `payload`, the router's own rendering of the
    /// event when `rendered`, with a budget of CPU and wall time, memory and output.
    pub async fn call(
        &self,
        event: &WitEvent<'_>,
        payload: &Payload,
        rendered: bool,
    ) -> Result<Action, CallError> {
        let current = Current::given(event, payload.clone(), rendered);
        self.call_with(event, &current).await
    }

    /// Calls `handle` for `event`'s endpoint with the payload as it stands in a chain.
    pub(crate) async fn call_with(
        &self,
        event: &WitEvent<'_>,
        payload: &Current,
    ) -> Result<Action, CallError> {
        let endpoint = event.endpoint();
        let pooled = self
            .pools
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(endpoint)
            .and_then(Vec::pop);
        let mut instance = match pooled {
            Some(instance) => instance,
            None => self.instantiate().await.map_err(|e| match e {
                LoadError::InitCrashed(e) => e,
                other => CallError::Trap(format!("cannot start an instance: {other}")),
            })?,
        };
        self.arm(&mut instance.store);
        let input = Input { event, payload };
        let called = tokio::time::timeout(self.wall(), instance.handle(&input)).await;
        match called {
            Err(_elapsed) => Err(CallError::Timeout(self.settings.timeout)),
            Ok(Ok(Ok(action))) => {
                self.give_back(endpoint, instance);
                self.check_output(action)
            }
            Ok(Ok(Err(message))) => {
                self.give_back(endpoint, instance);
                Err(CallError::Failed(message))
            }
            Ok(Err(e)) => Err(CallError::from_wasmtime(
                &e,
                &instance.store,
                &self.settings,
                &self.runtime,
            )),
        }
    }

    /// Bytes the idle instance of `endpoint` holds, for measurements; `None` when it has none.
    pub fn idle_memory(&self, endpoint: &str) -> Option<usize> {
        let pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools
            .get(endpoint)
            .and_then(|pool| pool.last())
            .map(|i| i.store.data().memory())
    }

    /// A new instance, initialised with the plugin's configuration, within the call budget.
    async fn instantiate(&self) -> Result<Instance, LoadError> {
        let mut store = self.runtime.store(&self.name, &self.settings);
        self.arm(&mut store);
        let crashed = |e: &wasmtime::Error, store: &Store<HostState>| {
            LoadError::InitCrashed(CallError::from_wasmtime(
                e,
                store,
                &self.settings,
                &self.runtime,
            ))
        };
        let timed_out = || LoadError::InitCrashed(CallError::Timeout(self.settings.timeout));
        let started = tokio::time::timeout(self.wall(), self.pre.instantiate(store)).await;
        let mut instance = match started {
            Err(_elapsed) => return Err(timed_out()),
            Ok(Err((e, store))) => return Err(crashed(&e, &store)),
            Ok(Ok(instance)) => instance,
        };
        self.arm(&mut instance.store);
        match tokio::time::timeout(self.wall(), instance.init(&self.config)).await {
            Err(_elapsed) => Err(timed_out()),
            Ok(Ok(Ok(()))) => Ok(instance),
            Ok(Ok(Err(message))) => Err(LoadError::Init(message)),
            Ok(Err(e)) => Err(crashed(&e, &instance.store)),
        }
    }

    /// The wall time a call may take: its budget, and a tick for the epoch to notice.
    fn wall(&self) -> Duration {
        self.settings.timeout + TICK
    }

    /// Sets the CPU budget of the next call.
    fn arm(&self, store: &mut Store<HostState>) {
        store.data_mut().start_call(self.settings.timeout);
        store.set_epoch_deadline(1);
    }

    /// Keeps `instance` for `endpoint`'s next call, unless its pool is full or the
    /// instances of all plugins hold more than half the memory budget.
    fn give_back(&self, endpoint: &str, instance: Instance) {
        if self.runtime.memory_used() > self.runtime.memory_budget() / 2 {
            return;
        }
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        match pools.get_mut(endpoint) {
            Some(pool) if pool.len() < POOL => pool.push(instance),
            Some(_) => {}
            None => {
                pools.insert(endpoint.to_owned(), vec![instance]);
            }
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
