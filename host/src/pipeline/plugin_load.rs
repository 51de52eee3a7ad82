//! What the `plugin` commands share: loading one `.wasm` the way the router would (with the
//! configuration and settings a router config gives it), and reading a recording's events.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::mpsc;
use wasmtime::component::Component;

use super::front::{self, CHANNEL, Source};
use crate::config::file::PluginsSection;
use crate::enrich::Paths;
use crate::model::event::RouterEvent;
use crate::payload::plugins::cache::{ContentHash, content_hash};
use crate::payload::plugins::plugin::{LoadError, LoadedPlugin};
use crate::payload::plugins::runtime::Runtime;
use crate::payload::plugins::settings::{DEFAULT_MAX_TOTAL_MEMORY, PluginSettings, Profiler};
use crate::source::replay::Replay;
use crate::telemetry::Metrics;

/// A plugin's configuration and settings, as the router would give them.
#[derive(Clone, Debug)]
pub(crate) struct PluginSetup {
    /// The JSON text handed to `init`.
    pub(crate) config: String,
    /// Limits and failure policy.
    pub(crate) settings: PluginSettings,
    /// The profiler the router config names (`plugins.profiler`).
    pub(crate) profiler: Profiler,
}

impl PluginSetup {
    /// The setup of plugin `name` from `file`: either the configuration table itself, or a
    /// router config (a file with `[source]` or `[plugins]`) whose `[plugins.config.<name>]`
    /// and `[plugins]` / `[plugins.settings.<name>]` limits are used. `{}` and the default
    /// limits without a file.
    pub(crate) fn read(file: Option<&Path>, name: &str) -> anyhow::Result<Self> {
        Self::read_first(file, &[name])
    }

    /// Like [`PluginSetup::read`], for the first of `names` that a router config configures
    /// (`[plugins.config.<name>]` or `[plugins.settings.<name>]`), else the first name.
    pub(crate) fn read_first(file: Option<&Path>, names: &[&str]) -> anyhow::Result<Self> {
        let Some(file) = file else {
            return Ok(Self {
                config: "{}".to_owned(),
                settings: PluginSettings::default(),
                profiler: Profiler::None,
            });
        };
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let table: toml::Table = toml::from_str(&text)
            .with_context(|| format!("{} is not valid TOML", file.display()))?;
        if !(table.contains_key("source") || table.contains_key("plugins")) {
            return Ok(Self {
                config: serde_json::to_value(table)?.to_string(),
                settings: PluginSettings::default(),
                profiler: Profiler::None,
            });
        }
        let plugins = table
            .get("plugins")
            .cloned()
            .unwrap_or_else(|| toml::Value::Table(toml::Table::new()));
        // Through text, so that the section's spanned fields parse as in `Config::load`.
        let section: PluginsSection = toml::from_str(&toml::to_string(&plugins)?)
            .with_context(|| format!("{}: invalid [plugins] section", file.display()))?;
        let name = names
            .iter()
            .find(|n| section.config.contains_key(**n) || section.settings.contains_key(**n))
            .or(names.first())
            .copied()
            .unwrap_or_default();
        let config = section
            .config
            .get(name)
            .map_or_else(|| Ok("{}".to_owned()), serde_json::to_string)?;
        Ok(Self {
            config,
            settings: section.settings_of(name),
            profiler: section.profiler,
        })
    }
}

/// The plugin's name: the file stem of `path`.
pub(crate) fn plugin_name(path: &Path) -> anyhow::Result<String> {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .with_context(|| format!("{} is not a file name", path.display()))
}

/// A plugin file compiled by a runtime of its own.
pub(crate) struct Compiled {
    /// The runtime it was compiled by, and is to run in.
    pub(crate) runtime: Arc<Runtime>,
    /// The component, or why it is none.
    pub(crate) component: Result<Component, LoadError>,
    /// The SHA-256 of the file.
    pub(crate) content: ContentHash,
    /// The file's size in bytes.
    pub(crate) size: usize,
}

/// Compiles the plugin at `path` (without the compilation cache), its code made visible to
/// `profiler`.
pub(crate) async fn compile(path: &Path, profiler: Profiler) -> anyhow::Result<Compiled> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let runtime = Runtime::new(None, DEFAULT_MAX_TOTAL_MEMORY, profiler)
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let runtime = Arc::new(runtime);
    let compiling = Arc::clone(&runtime);
    let (component, content, size) = tokio::task::spawn_blocking(move || {
        let component = compiling
            .compile(&bytes)
            .map(|(c, _)| c)
            .map_err(|e| LoadError::Compile(format!("{e:#}")));
        (component, content_hash(&bytes), bytes.len())
    })
    .await?;
    Ok(Compiled {
        runtime,
        component,
        content,
        size,
    })
}

/// Compiles, checks, links and initialises the plugin at `path` as `name`, as the router
/// would (without the compilation cache).
pub(crate) async fn load(
    path: &Path,
    name: &str,
    setup: &PluginSetup,
) -> anyhow::Result<Result<LoadedPlugin, LoadError>> {
    let compiled = compile(path, setup.profiler).await?;
    let component = match compiled.component {
        Ok(component) => component,
        Err(e) => return Ok(Err(e)),
    };
    Ok(LoadedPlugin::new(
        &compiled.runtime,
        name,
        &component,
        compiled.content,
        setup.settings,
        setup.config.clone(),
    )
    .await)
}

/// Like [`load`], an error when the plugin does not load.
pub(crate) async fn load_or_fail(
    path: &Path,
    name: &str,
    setup: &PluginSetup,
) -> anyhow::Result<LoadedPlugin> {
    load(path, name, setup)
        .await?
        .map_err(|e| anyhow::anyhow!("{}: plugin rejected: {e}", path.display()))
}

/// The events of the recording at `path`, enriched as the router enriches them.
pub(crate) async fn recording(path: &PathBuf) -> anyhow::Result<Vec<RouterEvent>> {
    let (items, source_rx) = mpsc::channel(CHANNEL);
    let mut source = Source::replay(Replay::new(path, None), None, None, items);
    let enricher = front::enricher(Paths::Events, None, &Arc::new(Metrics::new()), None)?;
    let (_enrich, mut intake_rx) = source.enrich(enricher, source_rx);
    let mut events = Vec::new();
    while let Some(item) = intake_rx.recv().await {
        events.extend(item.event);
    }
    source
        .task
        .await?
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(events)
}

/// A body for a report: its text, or its size when it is not UTF-8.
pub(crate) fn text(body: &[u8]) -> String {
    match std::str::from_utf8(body) {
        Ok(text) => text.to_owned(),
        Err(_) => format!("<{} bytes, not UTF-8>", body.len()),
    }
}
