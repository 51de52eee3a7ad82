//! The same kind of plugin in Rust, Python and JavaScript: a chat or incident message rendered
//! from the event's facts (`slack-message`, `pagerduty`, `discord-message`).
//!
//! `cargo bench -p kfp-event-router --bench languages` builds the plugins (`plugins/build.sh`,
//! which installs the Python and JavaScript toolchains) and prints, per plugin, a Markdown
//! table row: `.wasm` size, compiling it (cold, no cache), loading it from the on-disk cache,
//! starting an instance (instantiate + `init`), the mean time of one call on a pooled instance,
//! and the memories and tables one instance holds. One run on one machine: numbers to compare,
//! not to assert.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kfp_event_router::model::event::{EventFacts, NodeView, RouterEvent, WorkflowFacts};
use kfp_event_router::payload::format::Format;
use kfp_event_router::payload::plugins::bindings::Action;
use kfp_event_router::payload::plugins::cache::content_hash;
use kfp_event_router::payload::plugins::event::WitEvent;
use kfp_event_router::payload::plugins::plugin::LoadedPlugin;
use kfp_event_router::payload::plugins::runtime::Runtime;
use kfp_event_router::payload::plugins::settings::{
    DEFAULT_MAX_TOTAL_MEMORY, PluginSettings, Profiler,
};

/// (language, plugin, configuration).
const PLUGINS: [(&str, &str, &str); 3] = [
    ("Rust", "slack-message", "{}"),
    ("Python", "pagerduty", r#"{"routing_key": "R0123"}"#),
    ("JavaScript", "discord-message", "{}"),
];

fn main() {
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let status = std::process::Command::new("bash")
        .arg(root.join("plugins/build.sh"))
        .stdout(std::process::Stdio::null())
        .status()
        .expect("running plugins/build.sh");
    assert!(status.success(), "plugins/build.sh failed");
    let wasm = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("plugins");
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let event = std::sync::Arc::new(failed_run());
    let payload = Format::Extended.render(&event);
    let wit = WitEvent::new(&event, "bench", Format::Extended, NodeView::Tasks);
    let settings = PluginSettings {
        timeout: Duration::from_secs(5),
        max_memory: 256 << 20,
        ..PluginSettings::default()
    };
    println!(
        "| plugin | .wasm | compile (cold) | load (cached) | instance + init | per call | memory per instance |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (lang, name, config) in PLUGINS {
        let bytes = std::fs::read(wasm.join(format!("{name}.wasm"))).unwrap();
        let cache = tempfile::tempdir().unwrap();
        let runtime = Arc::new(
            Runtime::new(
                Some(cache.path().to_owned()),
                DEFAULT_MAX_TOTAL_MEMORY,
                Profiler::None,
            )
            .unwrap(),
        );
        let started = Instant::now();
        let (_, cached) = runtime.compile(&bytes).unwrap();
        let cold = started.elapsed();
        assert!(!cached);
        let started = Instant::now();
        let (component, cached) = runtime.compile(&bytes).unwrap();
        let warm = started.elapsed();
        assert!(cached);
        let started = Instant::now();
        let plugin = tokio
            .block_on(LoadedPlugin::new(
                &runtime,
                name,
                &component,
                content_hash(&bytes),
                settings,
                config.into(),
            ))
            .unwrap();
        let instance = started.elapsed();
        let call = || {
            let action = tokio.block_on(plugin.call(&wit, &payload, true)).unwrap();
            assert!(matches!(action, Action::Replace(_)), "{name}: {action:?}");
        };
        for _ in 0..100 {
            call();
        }
        let n = 2_000;
        let started = Instant::now();
        for _ in 0..n {
            call();
        }
        let per_call = started.elapsed() / n;
        let memory = plugin.idle_memory("bench").unwrap_or_default();
        println!(
            "| {name} ({lang}) | {:.1} MB | {:.0} ms | {:.0} ms | {:.1} ms | {:.0} µs | {:.1} MiB |",
            bytes.len() as f64 / 1e6,
            cold.as_secs_f64() * 1e3,
            warm.as_secs_f64() * 1e3,
            instance.as_secs_f64() * 1e3,
            per_call.as_secs_f64() * 1e6,
            memory as f64 / f64::from(1 << 20),
        );
    }
}

/// A failed run, as all three plugins render it.
fn failed_run() -> RouterEvent {
    RouterEvent {
        id: "bench".into(),
        event: EventFacts {
            uid: "uid-1".into(),
            namespace: "kubeflow".into(),
            reason: "WorkflowFailed".into(),
            message: "child 'train' failed".into(),
            severity: "Warning".into(),
            count: 1,
            time: Some("2026-11-20T09:14:06Z".into()),
            workflow_name: "tacos-vs-burritos-vw8g9".into(),
            workflow_uid: Some("wf-uid".into()),
        },
        node: None,
        workflow: Some(
            WorkflowFacts {
                name: "tacos-vs-burritos-vw8g9".into(),
                namespace: "kubeflow".into(),
                uid: "wf-uid".into(),
                labels: [("pipeline/runid".to_owned(), "ee1c3f1f".to_owned())].into(),
                phase: Some("Failed".into()),
                run_name: Some("tacos vs burritos (nightly)".into()),
                pipeline_name: Some("tacos-vs-burritos".into()),
                parameters: [("epochs".to_owned(), "12".to_owned())].into(),
                ..WorkflowFacts::default()
            }
            .into(),
        ),
        synthesized: false,
        task: None,
        plumbing: false,
        attempt: 1,
        cluster: None,
    }
}
