//! `kfp-event-router plugin test`: runs one plugin over a recording (the JSON Lines that
//! `replay` reads) and prints, for every event, the input payload, the plugin's action and its
//! output. For plugin authors, and for checking a plugin's configuration before deploying it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::mpsc;

use super::front::{self, CHANNEL, Source};
use crate::enrich::Paths;
use crate::payload::format::Format;
use crate::payload::plugins::bindings::{self, Action};
use crate::payload::plugins::cache::content_hash;
use crate::payload::plugins::chain::wit_event;
use crate::payload::plugins::plugin::LoadedPlugin;
use crate::payload::plugins::runtime::Runtime;
use crate::payload::plugins::settings::PluginSettings;
use crate::source::replay::Replay;
use crate::telemetry::Metrics;

/// What to test.
#[derive(Clone, Debug)]
pub struct TestOptions {
    /// The plugin component (`.wasm`).
    pub plugin: PathBuf,
    /// The recording.
    pub events: PathBuf,
    /// A TOML file with the plugin's configuration: either the table itself, or a
    /// `router.toml` (a file with `[source]` or `[plugins]`) whose `[plugins.config.<name>]`
    /// is used.
    pub config: Option<PathBuf>,
    /// The format the payload is rendered in before the plugin sees it.
    pub format: Format,
    /// The endpoint name the plugin is told about.
    pub endpoint: String,
}

/// Counts of actions over the recording.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TestSummary {
    /// Events run through the plugin.
    pub events: u64,
    /// Calls that returned `pass`.
    pub passed: u64,
    /// Calls that returned `drop`.
    pub dropped: u64,
    /// Calls that returned `replace`.
    pub replaced: u64,
    /// Calls that failed.
    pub failed: u64,
}

/// Runs the test, writing the report to `out`.
pub async fn run(
    options: TestOptions,
    out: &mut (impl Write + Send),
) -> anyhow::Result<TestSummary> {
    let plugin = Arc::new(load(&options).await?);
    writeln!(
        out,
        "plugin {} (version {}, {}), config {}",
        plugin.name(),
        plugin.version(),
        plugin.wit(),
        plugin.config()
    )?;
    let (items, source_rx) = mpsc::channel(CHANNEL);
    let mut source = Source::replay(Replay::new(&options.events, None), None, None, items);
    let enricher = front::enricher(Paths::Events, None, &Arc::new(Metrics::new()), None)?;
    let (_enrich, mut intake_rx) = source.enrich(enricher, source_rx);
    let mut summary = TestSummary::default();
    while let Some(event) = intake_rx.recv().await.map(|i| i.event) {
        let Some(event) = event else {
            continue;
        };
        summary.events += 1;
        let payload = options.format.render(&event);
        let node = match event.node_name() {
            "" => String::new(),
            name => format!(" node {name}"),
        };
        writeln!(
            out,
            "--- event {}: {} {}/{}{node}",
            summary.events, event.event.reason, event.event.namespace, event.event.workflow_name
        )?;
        writeln!(
            out,
            "input:  {} {}",
            payload.content_type,
            text(&payload.body)
        )?;
        let wit = wit_event(&event, &options.endpoint);
        let input = bindings::Payload {
            body: payload.body.to_vec(),
            content_type: payload.content_type,
        };
        let calling = Arc::clone(&plugin);
        let result = tokio::task::spawn_blocking(move || calling.call(&wit, &input)).await?;
        match result {
            Ok(Action::Pass) => {
                summary.passed += 1;
                writeln!(out, "action: pass")?;
            }
            Ok(Action::Drop) => {
                summary.dropped += 1;
                writeln!(out, "action: drop")?;
            }
            Ok(Action::Replace(replacement)) => {
                summary.replaced += 1;
                writeln!(out, "action: replace")?;
                writeln!(
                    out,
                    "output: {} {}",
                    replacement.content_type,
                    text(&replacement.body)
                )?;
                for (name, value) in &replacement.headers {
                    writeln!(out, "header: {name}: {value}")?;
                }
            }
            Err(error) => {
                summary.failed += 1;
                writeln!(out, "action: failed ({}): {error}", error.outcome())?;
            }
        }
    }
    source
        .task
        .await?
        .with_context(|| format!("cannot read {}", options.events.display()))?;
    writeln!(
        out,
        "--- {} events: {} pass, {} drop, {} replace, {} failed",
        summary.events, summary.passed, summary.dropped, summary.replaced, summary.failed
    )?;
    Ok(summary)
}

async fn load(options: &TestOptions) -> anyhow::Result<LoadedPlugin> {
    let path = &options.plugin;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .with_context(|| format!("{} is not a file name", path.display()))?;
    let config = match &options.config {
        Some(file) => plugin_config(file, &name)?,
        None => "{}".to_owned(),
    };
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let label = path.display().to_string();
    tokio::task::spawn_blocking(move || {
        let runtime = Arc::new(Runtime::new(None).map_err(|e| anyhow::anyhow!("{e:#}"))?);
        let content = content_hash(&bytes);
        let (component, _) = runtime
            .compile(&bytes)
            .map_err(|e| anyhow::anyhow!("{label}: not a valid WebAssembly component: {e:#}"))?;
        LoadedPlugin::new(
            &runtime,
            &name,
            &component,
            content,
            PluginSettings::default(),
            config,
        )
        .map_err(|e| anyhow::anyhow!("{label}: plugin rejected: {e}"))
    })
    .await?
}

/// The plugin's configuration as JSON, from a TOML file holding either the table itself or a
/// router config with `[plugins.config.<name>]`.
fn plugin_config(file: &Path, name: &str) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not valid TOML", file.display()))?;
    let is_router_config = table.contains_key("source") || table.contains_key("plugins");
    let config = match is_router_config {
        true => table
            .get("plugins")
            .and_then(|p| p.get("config"))
            .and_then(|c| c.get(name))
            .cloned()
            .unwrap_or_else(|| toml::Value::Table(toml::Table::new())),
        false => toml::Value::Table(table),
    };
    Ok(serde_json::to_value(config)?.to_string())
}

/// A body for the report: its text, or its size when it is not UTF-8.
fn text(body: &[u8]) -> String {
    match std::str::from_utf8(body) {
        Ok(text) => text.to_owned(),
        Err(_) => format!("<{} bytes, not UTF-8>", body.len()),
    }
}
