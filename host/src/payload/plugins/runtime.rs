//! The shared wasmtime machinery: one [`Engine`] with epoch interruption and the thread that
//! advances its epoch, one [`Linker`] (WASI with nothing granted, plus the `host` import), the
//! per-store [`HostState`], and compilation through wasmtime's on-disk cache
//! ([`super::cache`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Cache, Engine, ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{self, Level};
use super::settings::PluginSettings;

/// How often the engine's epoch advances: the granularity of call timeouts.
pub(crate) const TICK: Duration = Duration::from_millis(10);

/// Log records one plugin call may write; later ones are dropped (and counted in a last line).
const LOGS_PER_CALL: u32 = 32;

/// Characters of one log record kept; the rest is cut.
const LOG_CHARS: usize = 2048;

/// What the runtime shares with every plugin: the engine, the linker and the cache.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache: Option<Cache>,
    _ticker: EpochTicker,
}

impl Runtime {
    /// An engine whose compiled components are cached in `cache_dir`, when given.
    pub fn new(cache_dir: Option<PathBuf>) -> wasmtime::Result<Self> {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let cache = cache_dir.map(super::cache::in_folder).transpose()?;
        config.cache(cache.clone());
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        // All of WASI 0.2, as `wasm32-wasip2` standard libraries import it; what it can reach
        // is decided by each store's `WasiCtx`, which grants nothing.
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        bindings::Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
        Ok(Self {
            _ticker: EpochTicker::start(engine.clone()),
            engine,
            linker,
            cache,
        })
    }

    /// The engine.
    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The linker every plugin is instantiated with.
    pub(crate) fn linker(&self) -> &Linker<HostState> {
        &self.linker
    }

    /// Compiles `bytes`, or loads the result of an earlier compilation from the cache.
    /// Returns the component and whether it came from the cache.
    pub fn compile(&self, bytes: &[u8]) -> wasmtime::Result<(Component, bool)> {
        if !bytes.starts_with(b"\0asm") {
            wasmtime::bail!("not a WebAssembly binary (it does not start with `\\0asm`)");
        }
        let hits = self.cache.as_ref().map(Cache::cache_hits);
        let component = Component::new(&self.engine, bytes)?;
        let cached =
            hits.is_some_and(|before| self.cache.as_ref().map(Cache::cache_hits) > Some(before));
        Ok((component, cached))
    }

    /// A store for one instance of plugin `name`, with its memory limit set and no access to
    /// files, environment, network or the host's stdio.
    pub(crate) fn store(&self, name: &Arc<str>, settings: &PluginSettings) -> Store<HostState> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(settings.max_memory)
            .table_elements(100_000)
            .instances(100)
            .tables(100)
            .memories(10)
            .trap_on_grow_failure(true)
            .build();
        let state = HostState {
            plugin: Arc::clone(name),
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limits: Limiter {
                limits,
                exceeded: false,
            },
            logs_left: LOGS_PER_CALL,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        store.epoch_deadline_trap();
        store
    }
}

/// Epoch ticks that cover `timeout`: a call is stopped after at least `timeout`, and at most
/// one [`TICK`] later.
pub(crate) fn deadline_ticks(timeout: Duration) -> u64 {
    timeout.as_nanos().div_ceil(TICK.as_nanos()) as u64 + 1
}

/// Everything one store holds: the WASI context (nothing granted), its resources, the memory
/// limits and what the `host` import needs.
pub(crate) struct HostState {
    plugin: Arc<str>,
    wasi: WasiCtx,
    table: ResourceTable,
    limits: Limiter,
    logs_left: u32,
}

/// The store's limits, remembering whether the instance asked for more than they allow.
struct Limiter {
    limits: StoreLimits,
    exceeded: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum);
        self.exceeded |= !matches!(allowed, Ok(true));
        allowed
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.table_growing(current, desired, maximum);
        self.exceeded |= !matches!(allowed, Ok(true));
        allowed
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

impl HostState {
    /// Starts a call: the plugin may log again.
    pub(crate) fn start_call(&mut self) {
        self.logs_left = LOGS_PER_CALL;
    }

    /// Whether the instance asked for more memory or table space than its limit allows.
    pub(crate) fn over_limit(&self) -> bool {
        self.limits.exceeded
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::kfp::event_router::host::Host for HostState {
    fn log(&mut self, level: Level, message: String) {
        if self.logs_left == 0 {
            return;
        }
        self.logs_left -= 1;
        let mut message = message;
        if let Some((cut, _)) = message.char_indices().nth(LOG_CHARS) {
            message.truncate(cut);
            message.push('…');
        }
        if self.logs_left == 0 {
            message.push_str(" (further log records of this call are dropped)");
        }
        let plugin = &*self.plugin;
        match level {
            Level::Trace => tracing::trace!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

/// The thread that advances the engine's epoch every [`TICK`]; stopped and joined on drop.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                while !stopping.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawning a thread");
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
