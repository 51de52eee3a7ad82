//! `kfp-event-router plugin test`: runs one plugin over a recording (the JSON Lines that
//! `replay` reads) and prints, for every event, the facts the plugin is given, the input
//! payload, the plugin's action with the time it took, and its output. For plugin authors,
//! and for checking a plugin's configuration before deploying it.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use super::plugin_load::{self, PluginSetup, text};
use crate::model::event::NodeView;
use crate::payload::format::Format;
use crate::payload::plugins::bindings::{self, Action};
use crate::payload::plugins::event::WitEvent;

/// What to test.
#[derive(Clone, Debug)]
pub struct TestOptions {
    /// The plugin component (`.wasm`).
    pub plugin: PathBuf,
    /// The recording.
    pub events: PathBuf,
    /// A TOML file with the plugin's configuration: either the table itself, or a
    /// `router.toml` (a file with `[source]` or `[plugins]`) whose `[plugins.config.<name>]`
    /// and limits (`[plugins]`, `[plugins.settings.<name>]`) are used.
    pub config: Option<PathBuf>,
    /// The format the payload is rendered in before the plugin sees it.
    pub format: Format,
    /// The endpoint name the plugin is told about.
    pub endpoint: String,
    /// Whether to print how long each call took (off for reports compared with golden files).
    pub timings: bool,
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
    let name = plugin_load::plugin_name(&options.plugin)?;
    let setup = PluginSetup::read(options.config.as_deref(), &name)?;
    let plugin = Arc::new(plugin_load::load_or_fail(&options.plugin, &name, &setup).await?);
    let limits = plugin.settings();
    writeln!(
        out,
        "plugin {} (version {}, {}; timeout {:?}, max_memory {} MiB, on_error {:?}), config {}",
        plugin.name(),
        plugin.version(),
        plugin.wit(),
        limits.timeout,
        limits.max_memory >> 20,
        limits.on_error,
        plugin.config()
    )?;
    let mut summary = TestSummary::default();
    for event in plugin_load::recording(&options.events).await? {
        summary.events += 1;
        let payload = options.format.render(&event);
        let event = std::sync::Arc::new(event);
        let wit = WitEvent::new(&event, &options.endpoint, options.format, NodeView::Tasks);
        let node = match event.node_name() {
            "" => String::new(),
            name => format!(" node {name}"),
        };
        writeln!(
            out,
            "--- event {}: {} {}/{}{node}",
            summary.events, event.event.reason, event.event.namespace, event.event.workflow_name
        )?;
        writeln!(out, "facts:  {}", facts(&wit.record()))?;
        writeln!(
            out,
            "input:  {} {}",
            payload.content_type,
            text(&payload.body)
        )?;
        let started = Instant::now();
        let result = plugin.call(&wit, &payload, true).await;
        let took = match options.timings {
            true => format!(" ({:.2} ms)", started.elapsed().as_secs_f64() * 1e3),
            false => String::new(),
        };
        match result {
            Ok(Action::Pass) => {
                summary.passed += 1;
                writeln!(out, "action: pass{took}")?;
            }
            Ok(Action::Drop) => {
                summary.dropped += 1;
                writeln!(out, "action: drop{took}")?;
            }
            Ok(Action::Replace(replacement)) => {
                summary.replaced += 1;
                writeln!(out, "action: replace{took}")?;
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
                writeln!(out, "action: failed ({}){took}: {error}", error.outcome())?;
            }
        }
    }
    writeln!(
        out,
        "--- {} events: {} pass, {} drop, {} replace, {} failed",
        summary.events, summary.passed, summary.dropped, summary.replaced, summary.failed
    )?;
    Ok(summary)
}

/// The facts a plugin decides on, on one line: type, run, pipeline, phase, attempt, node and
/// task, those known.
pub(crate) fn facts(e: &bindings::Event<'_>) -> String {
    let mut parts = vec![format!("type={}", e.event_type)];
    let mut add = |key: &str, value: Option<&str>| {
        if let Some(value) = value {
            parts.push(format!("{key}={value:?}"));
        }
    };
    add("run-id", e.run_id);
    add("run-name", e.run_name);
    add("pipeline", e.pipeline_name);
    add("phase", e.phase);
    parts.push(format!("attempt={}", e.attempt));
    if let Some(node) = &e.node {
        let kind = node.node_type.unwrap_or("?");
        let phase = node.phase.unwrap_or("?");
        parts.push(format!("node={:?} ({kind}, {phase})", node.name));
    }
    if let Some(task) = &e.task {
        parts.push(format!("task={:?}", task.name));
    }
    if e.synthesized {
        parts.push("synthesized".to_owned());
    }
    parts.join(" ")
}
