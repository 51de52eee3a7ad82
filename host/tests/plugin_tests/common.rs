//! Helpers of the plugin tests: plugin folders, configs, events, a stage.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kfp_event_router::config::Config;
use kfp_event_router::model::event::{EventFacts, RouterEvent, WorkflowFacts};
use kfp_event_router::payload::PayloadStage;
use kfp_event_router::telemetry::Metrics;
use tokio_util::sync::CancellationToken;

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

/// Runs a router with config `text` until its replay ends (within a minute).
pub async fn replay_to_end(scratch: &Scratch, text: &str) {
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        kfp_event_router::pipeline::run(config(scratch, text), CancellationToken::new()),
    )
    .await
    .expect("the replay finishes")
    .expect("the router runs");
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
pub fn event(reason: &str) -> Arc<RouterEvent> {
    Arc::new(RouterEvent {
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
        workflow: Some(
            WorkflowFacts {
                name: "train-x7k2p".into(),
                namespace: "team-a".into(),
                uid: "wf-uid".into(),
                labels: [("pipeline/runid".to_owned(), "run-1".to_owned())].into(),
                phase: Some("Running".into()),
                run_name: Some("nightly".into()),
                ..WorkflowFacts::default()
            }
            .into(),
        ),
        synthesized: false,
        task: None,
        plumbing: false,
        attempt: 1,
        cluster: None,
    })
}

/// The value of a metric series in Prometheus text, e.g.
/// `kfp_event_router_plugin_calls_total{plugin="x",outcome="trap"}`.
pub fn metric(metrics: &Metrics, series: &str) -> f64 {
    support::router::metric(&metrics.render(), series).unwrap_or(0.0)
}

/// A hostile component for the 0.2 contract with two linear memories: the first holds
/// 20 MiB from the start, and `handle` grows the second by 15 MiB. Either stays under a
/// 32 MiB limit alone; together they do not. `init` accepts anything.
pub fn two_memories_component() -> Vec<u8> {
    let module = wat::parse_str(
        r#"(module
            (memory (export "memory") 320)
            (memory $second 1)
            (global $next (mut i32) (i32.const 1024))
            (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
                (local $at i32)
                (local.set $at (i32.and (i32.add (global.get $next) (i32.const 7)) (i32.const -8)))
                (global.set $next (i32.add (local.get $at) (local.get 3)))
                (local.get $at))
            (func (export "kfp:event-router/transform@0.2.0#init") (param i32 i32) (result i32)
                (i32.store8 (i32.const 16) (i32.const 0))
                (i32.const 16))
            (func (export "kfp:event-router/transform@0.2.0#handle") (param i32) (result i32)
                (drop (memory.grow $second (i32.const 240)))
                unreachable))"#,
    )
    .expect("valid WAT");
    let mut resolve = wit_parser::Resolve::default();
    let package = resolve
        .push_file(support::root().join("wit/0.2.0/world.wit"))
        .expect("the WIT parses");
    let world = resolve
        .select_world(&[package], Some("plugin"))
        .expect("the plugin world");
    let mut module = module;
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .expect("metadata embeds");
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .expect("the module is accepted")
        .encode()
        .expect("the component encodes")
}
