//! The shared wasmtime machinery: one [`Engine`] with epoch interruption and the thread that
//! advances its epoch, one [`Linker`] (WASI with nothing granted, plus the imports of every
//! contract), the per-store [`HostState`], the memory budget all instances share, and
//! compilation through wasmtime's on-disk cache ([`super::cache`]).
//!
//! Calls run asynchronously: every [`TICK`] of running wasm the call yields to the executor
//! and one tick of its CPU budget is spent (the epoch callback); the caller also bounds the
//! call's wall time, so a plugin that sleeps or waits on WASI is stopped too.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Cache, Engine, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{v0_1, v0_2, v0_3};
use super::limits::{Exceeded, Limiter, MemoryBudget};
use super::log::LogBudget;
use super::settings::{PluginSettings, Profiler};

/// How often the engine's epoch advances: the granularity of call timeouts.
pub(crate) const TICK: Duration = Duration::from_millis(10);

/// Handles one instance's store may hold at once: a 0.3 call lends two, and a guest's
/// standard library holds a few of WASI's streams. A handle left behind on every call reaches
/// it after a few hundred calls instead of growing the store's tables for hours.
pub(crate) const HANDLES: usize = 1_000;

/// What the runtime shares with every plugin: the engine, the linker, the cache and the
/// memory budget.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache: Option<Cache>,
    budget: Arc<MemoryBudget>,
    _ticker: EpochTicker,
}

impl Runtime {
    /// An engine whose compiled components are cached in `cache_dir`, when given, whose
    /// instances hold `max_total_memory` bytes together at most, and whose compiled code is
    /// made visible to `profiler`.
    pub fn new(
        cache_dir: Option<PathBuf>,
        max_total_memory: usize,
        profiler: Profiler,
    ) -> wasmtime::Result<Self> {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        if profiler == Profiler::Perfmap {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let cache = cache_dir.map(super::cache::in_folder).transpose()?;
        config.cache(cache.clone());
        let engine = Engine::new(&config).map_err(|e| match profiler {
            Profiler::Perfmap => e.context(format!(
                "plugins.profiler = \"perfmap\": cannot open /tmp/perf-{}.map",
                std::process::id()
            )),
            Profiler::None => e,
        })?;
        let mut linker = Linker::new(&engine);
        // All of WASI 0.2, as guest standard libraries import it; what it can reach is
        // decided by each store's `WasiCtx`, which grants nothing.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        v0_1::Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
        v0_2::Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
        v0_3::Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
        Ok(Self {
            _ticker: EpochTicker::start(engine.clone()),
            engine,
            linker,
            cache,
            budget: MemoryBudget::new(max_total_memory),
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

    /// Bytes all instances hold together now.
    pub(crate) fn memory_used(&self) -> usize {
        self.budget.used()
    }

    /// The budget of all instances together, in bytes.
    pub(crate) fn memory_budget(&self) -> usize {
        self.budget.total()
    }

    /// Compiles `bytes`, or loads the result of an earlier compilation from the cache.
    /// Returns the component and whether it came from the cache. Blocking: CPU work.
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
        let state = HostState {
            plugin: Arc::clone(name),
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limits: Limiter::new(settings.max_memory, Arc::clone(&self.budget)),
            logs: LogBudget::default(),
            ticks_left: 0,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        store.set_max_component_handles(HANDLES);
        // Every tick of running wasm: yield to the executor, and spend one tick of the CPU
        // budget; none left stops the call.
        store.epoch_deadline_callback(|mut store| {
            let state = store.data_mut();
            if state.ticks_left == 0 {
                return Ok(UpdateDeadline::Interrupt);
            }
            state.ticks_left -= 1;
            Ok(UpdateDeadline::Yield(1))
        });
        store
    }
}

/// Epoch ticks that cover `timeout`: a call is stopped after at least `timeout` of running,
/// and at most one [`TICK`] later.
pub(crate) fn deadline_ticks(timeout: Duration) -> u64 {
    timeout.as_nanos().div_ceil(TICK.as_nanos()) as u64
}

/// Everything one store holds: the WASI context (nothing granted), its resources, the memory
/// limits and what the `host` import needs.
pub(crate) struct HostState {
    pub(super) plugin: Arc<str>,
    wasi: WasiCtx,
    table: ResourceTable,
    limits: Limiter,
    pub(super) logs: LogBudget,
    ticks_left: u64,
}

impl HostState {
    /// Starts a call with a CPU budget of `timeout`: the plugin may log again.
    pub(crate) fn start_call(&mut self, timeout: Duration) {
        self.logs = LogBudget::default();
        self.ticks_left = deadline_ticks(timeout);
    }

    /// The store's resources: WASI's, and the handles a 0.3 call is given.
    pub(crate) fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    /// Which memory limit the instance hit, if it did.
    pub(crate) fn over_limit(&self) -> Option<Exceeded> {
        self.limits.exceeded()
    }

    /// Bytes of memories and tables the instance holds.
    pub(crate) fn memory(&self) -> usize {
        self.limits.held()
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
