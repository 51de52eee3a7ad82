//! The plugins' settings: limits, failure policy and configuration, with their defaults.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What happens to an event when a plugin call fails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    /// Carry on with the payload as it was before the failing plugin.
    #[default]
    Pass,
    /// Send nothing to that endpoint.
    Drop,
    /// Write the event to the dead-letter file, unsent.
    DeadLetter,
}

/// Which profiler the plugins' compiled code is made visible to (`plugins.profiler`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profiler {
    /// None: plugin code shows in profiles as anonymous memory.
    #[default]
    None,
    /// Linux `perf`: each compiled function's address and name are appended to
    /// `/tmp/perf-<pid>.map`, which `perf report` and `perf top` read.
    Perfmap,
}

/// The limits and failure policy of one plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PluginSettings {
    /// What a failed call means for the event.
    pub on_error: OnError,
    /// Time one call may take, counted both in CPU and in wall time.
    pub timeout: Duration,
    /// Bytes of memories and tables one instance may use together.
    pub max_memory: usize,
    /// Bytes one call may return (body and headers).
    pub max_output: usize,
}

impl Default for PluginSettings {
    /// `pass` on error, 100 ms of CPU, 32 MiB of memory and 1 MiB of output per call.
    fn default() -> Self {
        Self {
            on_error: OnError::Pass,
            timeout: Duration::from_millis(100),
            max_memory: 32 << 20,
            max_output: 1 << 20,
        }
    }
}

/// The checked `[plugins]` section.
#[derive(Clone, Debug, PartialEq)]
pub struct PluginsSettings {
    /// Folder of `*.wasm` plugins, when configured.
    pub dir: Option<PathBuf>,
    /// The global chain, run for every endpoint before its own plugins.
    pub chain: Vec<String>,
    /// Settings of plugins without `[plugins.settings.<name>]`.
    pub defaults: PluginSettings,
    /// Settings of the plugins that override some.
    pub settings: BTreeMap<String, PluginSettings>,
    /// Each plugin's configuration, handed to its `init`.
    pub config: BTreeMap<String, serde_json::Value>,
    /// Bytes all instances of all plugins may hold together.
    pub max_total_memory: usize,
    /// The profiler plugin code is made visible to; read once, at start.
    pub profiler: Profiler,
}

/// The default of `plugins.max_total_memory`: 1 GiB.
pub const DEFAULT_MAX_TOTAL_MEMORY: usize = 1 << 30;

impl Default for PluginsSettings {
    fn default() -> Self {
        Self {
            dir: None,
            chain: Vec::new(),
            defaults: PluginSettings::default(),
            settings: BTreeMap::new(),
            config: BTreeMap::new(),
            max_total_memory: DEFAULT_MAX_TOTAL_MEMORY,
            profiler: Profiler::None,
        }
    }
}

impl PluginsSettings {
    /// The settings of plugin `name`.
    pub fn settings(&self, name: &str) -> PluginSettings {
        self.settings.get(name).copied().unwrap_or(self.defaults)
    }

    /// The JSON text handed to plugin `name`'s `init`: its configuration, or `{}`.
    pub fn init_config(&self, name: &str) -> String {
        self.config
            .get(name)
            .map_or_else(|| "{}".to_owned(), serde_json::Value::to_string)
    }
}

/// The file of plugin `name` in `dir`.
pub fn plugin_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.wasm"))
}
