//! Helpers of the plugin tests: plugin folders, configs, events, a stage.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kfp_event_router::config::Config;
use kfp_event_router::model::event::{EventFacts, RouterEvent, WorkflowFacts};
use kfp_event_router::payload::PayloadStage;
use kfp_event_router::telemetry::Metrics;

use crate::support;
use crate::support::router::{Scratch, toml_path};

/// The built component `source` (a package name, e.g. `hostile`).
pub fn built(source: &str) -> PathBuf {
    support::built_plugins().join(format!("{source}.wasm"))
}

/// Fills `<scratch>/plugins` with copies of built components: `(name, source package)`.
pub fn plugin_dir(scratch: &Scratch, plugins: &[(&str, &str)]) -> PathBuf {
    let dir = scratch.path("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, source) in plugins {
        std::fs::copy(built(source), dir.join(format!("{name}.wasm"))).unwrap();
    }
    dir
}

/// A router config replaying the quick start recording, with `plugins` (the body of the
/// `[plugins]` table, whose `dir` is `dir`) and `rest` (endpoints, plugin configs...).
pub fn config_text(scratch: &Scratch, dir: &Path, plugins: &str, rest: &str) -> String {
    let tables = scratch.tables(&support::quickstart_recording(), None);
    format!(
        "{tables}[plugins]\ndir = {}\n{plugins}\n\n{rest}\n",
        toml_path(dir)
    )
}

/// Writes and loads a config.
pub fn config(scratch: &Scratch, text: &str) -> Config {
    let path = scratch.write("router.toml", text);
    Config::load(&path).unwrap_or_else(|e| panic!("invalid test config:\n{e}\n{text}"))
}

/// An endpoint section posting nowhere in particular, with its own plugins.
pub fn endpoint_section(name: &str, format: &str, plugins: &[&str]) -> String {
    let plugins: Vec<String> = plugins.iter().map(|p| format!("{p:?}")).collect();
    format!(
        "[[endpoints]]\nname = {name:?}\nurl = \"http://127.0.0.1:9/{name}\"\nformat = {format:?}\nplugins = [{}]\n\n",
        plugins.join(", ")
    )
}

/// A started stage (without watching) and its metrics.
pub async fn stage(config: Config) -> (PayloadStage, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let stage = PayloadStage::start(Arc::new(config.payload()), None, Arc::clone(&metrics), None)
        .await
        .expect("the plugins load");
    (stage, metrics)
}

/// The endpoint named `name`.
pub fn endpoint(config: &Config, name: &str) -> String {
    config
        .endpoints
        .iter()
        .find(|e| e.name() == name)
        .map(|e| e.name().to_owned())
        .expect("the endpoint exists")
}

/// A workflow-level event with `reason`.
pub fn event(reason: &str) -> RouterEvent {
    RouterEvent {
        id: format!("id-{reason}"),
        event: EventFacts {
            uid: "uid-1".into(),
            namespace: "team-a".into(),
            reason: reason.into(),
            message: format!("{reason} happened"),
            severity: if reason.contains("Failed") {
                "Warning"
            } else {
                "Normal"
            }
            .into(),
            count: 1,
            time: Some("2026-11-20T09:14:06Z".into()),
            workflow_name: "train-x7k2p".into(),
            workflow_uid: Some("wf-uid".into()),
        },
        node: None,
        workflow: Some(WorkflowFacts {
            name: "train-x7k2p".into(),
            namespace: "team-a".into(),
            uid: "wf-uid".into(),
            labels: [("pipeline/runid".to_owned(), "run-1".to_owned())].into(),
            phase: Some("Running".into()),
            run_name: Some("nightly".into()),
            ..WorkflowFacts::default()
        }),
        synthesized: false,
        task: None,
        plumbing: false,
        attempt: 1,
        cluster: None,
    }
}

/// The value of a metric series in Prometheus text, e.g.
/// `kfp_event_router_plugin_calls_total{plugin="x",outcome="trap"}`.
pub fn metric(metrics: &Metrics, series: &str) -> f64 {
    support::router::metric(&metrics.render(), series).unwrap_or(0.0)
}
