//! The cost of plugins, in one run on one machine.
//!
//! `cargo bench -p kfp-event-router --bench plugins` builds the plugins (`plugins/build.sh`)
//! and prints, per event:
//! - an empty plugin call (`hostile` in `pass` mode), pooled instance vs a fresh instance per
//!   call (instantiate + `init` + `handle`: why instances are pooled);
//! - `event-filter`, and the chain `event-filter` → `redact` → `teams-card`, as WebAssembly
//!   and as the same `Plugin` impls called natively through the SDK types (the baseline);
//! - the whole stage (`PayloadStage::process`: render, then the chain) with that chain;
//!
//! then compiling vs loading from the on-disk cache, and the time from a new `.wasm` landing
//! in `plugins.dir` to it serving events (debounce included): new content (compiled), and a
//! roll-back to content seen before (in the cache).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kfp_event_router::config::Config;
use kfp_event_router::model::event::{EventFacts, NodeView, RouterEvent, WorkflowFacts};
use kfp_event_router::model::request::Verdict;
use kfp_event_router::payload::PayloadStage;
use kfp_event_router::payload::format::Format;
use kfp_event_router::payload::plugins::bindings;
use kfp_event_router::payload::plugins::cache::content_hash;
use kfp_event_router::payload::plugins::chain::{self, Observer};
use kfp_event_router::payload::plugins::current::Current;
use kfp_event_router::payload::plugins::event::WitEvent;
use kfp_event_router::payload::plugins::health::PluginHealth;
use kfp_event_router::payload::plugins::plugin::LoadedPlugin;
use kfp_event_router::payload::plugins::runtime::Runtime;
use kfp_event_router::payload::plugins::settings::{
    DEFAULT_MAX_TOTAL_MEMORY, PluginSettings, Profiler,
};
use kfp_event_router::telemetry::Metrics;
use kfp_event_router_sdk::LazyPlugin as _;

const FILTER: &str = r#"{"reasons": ["WorkflowFailed", "WorkflowSucceeded"]}"#;
const REDACT: &str = r#"{"drop": ["Labels"], "mask": ["/Node/Message"], "mask_parameters": ["*"]}"#;
const TEAMS: &str = r#"{"title_prefix": "[prod] ", "kfp_ui_url": "https://kubeflow.example.com/#/runs/details/{run_id}"}"#;

fn main() {
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let wasm = build_plugins(&root);
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let runtime = Arc::new(Runtime::new(None, DEFAULT_MAX_TOTAL_MEMORY, Profiler::None).unwrap());
    let load = |name: &str, config: &str| {
        let bytes = std::fs::read(wasm.join(format!("{name}.wasm"))).unwrap();
        let content = content_hash(&bytes);
        let (component, _) = runtime.compile(&bytes).unwrap();
        Arc::new(
            tokio
                .block_on(LoadedPlugin::new(
                    &runtime,
                    name,
                    &component,
                    content,
                    PluginSettings::default(),
                    config.into(),
                ))
                .unwrap(),
        )
    };
    let empty = load("hostile", "{}");
    let filter = load("event-filter", FILTER);
    let redact = load("redact", REDACT);
    let teams = load("teams-card", TEAMS);
    let event = Arc::new(sample_event());
    let payload = Format::Extended.render(&event);
    let wit_event = WitEvent::new(&event, "bench", Format::Extended, NodeView::Tasks);
    let metrics = Metrics::new();
    let health = PluginHealth::default();
    let observer = Observer {
        metrics: &metrics,
        health: &health,
    };
    let chain_of =
        |plugins: &[&Arc<LoadedPlugin>]| plugins.iter().map(|p| Arc::clone(p)).collect::<Vec<_>>();

    println!(
        "per event (mean over the iterations; `extended` payload of {} B):",
        payload.body.len()
    );
    let pooled = per_call(20_000, || {
        tokio
            .block_on(empty.call(&wit_event, &payload, true))
            .unwrap();
    });
    let empty_bytes = std::fs::read(wasm.join("hostile.wasm")).unwrap();
    let (empty_component, _) = runtime.compile(&empty_bytes).unwrap();
    let fresh = per_call(300, || {
        let plugin = tokio
            .block_on(LoadedPlugin::new(
                &runtime,
                "hostile",
                &empty_component,
                content_hash(&empty_bytes),
                PluginSettings::default(),
                "{}".into(),
            ))
            .unwrap();
        tokio
            .block_on(plugin.call(&wit_event, &payload, true))
            .unwrap();
    });
    row("empty plugin call, pooled instance", pooled);
    row(
        "empty plugin, loaded anew (link, instance, init) per call",
        fresh,
    );

    let wasm_filter = per_call(20_000, || {
        assert!(matches!(
            tokio.block_on(chain::run(
                &chain_of(&[&filter]),
                &wit_event,
                Current::given(&wit_event, payload.clone(), true),
                &observer
            )),
            Verdict::Deliver(_)
        ));
    });
    let three = chain_of(&[&filter, &redact, &teams]);
    let wasm_chain = per_call(5_000, || {
        assert!(matches!(
            tokio.block_on(chain::run(
                &three,
                &wit_event,
                Current::given(&wit_event, payload.clone(), true),
                &observer
            )),
            Verdict::Deliver(_)
        ));
    });

    let sdk_event = sdk_event(&wit_event.record());
    let sdk_payload =
        kfp_event_router_sdk::Payload::new(payload.body.to_vec(), payload.content_type.clone());
    let config = kfp_event_router_sdk::Config::new;
    let native_filter = event_filter::EventFilter::init(config(FILTER)).unwrap();
    let native_redact = redact::Redact::init(config(REDACT)).unwrap();
    let native_teams = teams_card::TeamsCard::init(config(TEAMS)).unwrap();
    let lazy_event = kfp_event_router_sdk::LazyEvent::from(&sdk_event);
    let native_filter_cost = per_call(200_000, || {
        let rendered = kfp_event_router_sdk::LazyPayload::new(&sdk_payload, true);
        native_filter.handle(&lazy_event, &rendered).unwrap();
    });
    let native_chain = per_call(50_000, || {
        let mut current = sdk_payload.clone();
        let mut rendered = true;
        let input = kfp_event_router_sdk::LazyPayload::new(&current, rendered);
        native_filter.handle(&lazy_event, &input).unwrap();
        if let kfp_event_router_sdk::Action::Replace {
            body, content_type, ..
        } = native_redact.handle(&lazy_event, &input).unwrap()
        {
            current = kfp_event_router_sdk::Payload::new(body, content_type);
            rendered = false;
        }
        let input = kfp_event_router_sdk::LazyPayload::new(&current, rendered);
        native_teams.handle(&lazy_event, &input).unwrap();
    });
    row("event-filter, wasm (chain of 1)", wasm_filter);
    row("event-filter, native", native_filter_cost);
    row("event-filter → redact → teams-card, wasm", wasm_chain);
    row("event-filter → redact → teams-card, native", native_chain);
    println!(
        "  ratios wasm/native: event-filter {:.1}x, 3-plugin chain {:.1}x",
        ratio(wasm_filter, native_filter_cost),
        ratio(wasm_chain, native_chain)
    );

    tokio.block_on(whole_stage(&wasm, &event));

    println!("start-up:");
    tokio.block_on(cold_and_cached(&wasm));
    tokio.block_on(landing_to_serving(&wasm));
}

/// Builds every plugin once; returns the folder of `.wasm` files.
fn build_plugins(root: &Path) -> PathBuf {
    let status = std::process::Command::new("bash")
        .arg(root.join("plugins/build.sh"))
        .current_dir(root)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("running plugins/build.sh");
    assert!(status.success(), "plugins/build.sh failed");
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("plugins")
}

/// Mean time of one call of `f` over `n` calls, after a warm-up.
fn per_call(n: u32, mut f: impl FnMut()) -> Duration {
    for _ in 0..(n / 10).max(3) {
        f();
    }
    let started = Instant::now();
    for _ in 0..n {
        f();
    }
    started.elapsed() / n
}

fn row(what: &str, time: Duration) {
    println!("  {what:<48} {:>10.2} µs", time.as_secs_f64() * 1e6);
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

/// `PayloadStage::process` with the 3-plugin chain: render, resolve, a blocking thread, the chain.
async fn whole_stage(wasm: &Path, event: &Arc<RouterEvent>) {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    for name in ["event-filter", "redact", "teams-card"] {
        std::fs::copy(
            wasm.join(format!("{name}.wasm")),
            plugins.join(format!("{name}.wasm")),
        )
        .unwrap();
    }
    let text = format!(
        "[source]\nkind = \"replay\"\npath = {recording:?}\n[plugins]\ndir = {plugins:?}\nchain = [\"event-filter\"]\n\
         [plugins.config.event-filter]\nreasons = [\"WorkflowFailed\"]\n\
         [[endpoints]]\nname = \"teams\"\nurl = \"http://127.0.0.1:9/\"\nformat = \"extended\"\nplugins = [\"redact\", \"teams-card\"]\n",
        recording = dir.path().join("none.jsonl"),
    );
    std::fs::write(dir.path().join("none.jsonl"), "").unwrap();
    let config = Config::parse(&dir.path().join("router.toml"), &text).unwrap();
    let endpoint = config.endpoints[0].name().to_owned();
    let stage = PayloadStage::start(
        Arc::new(config.payload()),
        None,
        Arc::new(Metrics::new()),
        None,
    )
    .await
    .unwrap();
    let n = 5_000;
    for _ in 0..500 {
        stage.process(&endpoint, event).await;
    }
    let started = Instant::now();
    for _ in 0..n {
        assert!(matches!(
            stage.process(&endpoint, event).await,
            Verdict::Deliver(_)
        ));
    }
    row(
        "whole stage (process) with that chain",
        started.elapsed() / n,
    );
}

/// Compiling each bundled plugin vs loading it from the cache, and instantiating it.
async fn cold_and_cached(wasm: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Arc::new(
        Runtime::new(
            Some(dir.path().to_owned()),
            DEFAULT_MAX_TOTAL_MEMORY,
            Profiler::None,
        )
        .unwrap(),
    );
    let (mut compile, mut cached, mut instantiate) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let names = [
        "event-filter",
        "redact",
        "teams-card",
        "slack-message",
        "github-dispatch",
    ];
    for name in names {
        let bytes = std::fs::read(wasm.join(format!("{name}.wasm"))).unwrap();
        let content = content_hash(&bytes);
        let started = Instant::now();
        let (_, from_cache) = runtime.compile(&bytes).unwrap();
        compile += started.elapsed();
        assert!(!from_cache);
        let started = Instant::now();
        let (component, from_cache) = runtime.compile(&bytes).unwrap();
        cached += started.elapsed();
        assert!(from_cache);
        let started = Instant::now();
        LoadedPlugin::new(
            &runtime,
            name,
            &component,
            content,
            PluginSettings::default(),
            "{}".into(),
        )
        .await
        .unwrap();
        instantiate += started.elapsed();
    }
    let n = names.len() as u32;
    let ms = |d: Duration| d.as_secs_f64() * 1e3 / f64::from(n);
    println!(
        "  compile (cold), per plugin of the 5 bundled      {:>10.1} ms",
        ms(compile)
    );
    println!(
        "  load from the cache, per plugin                  {:>10.1} ms",
        ms(cached)
    );
    println!(
        "  link + first instance + init, per plugin         {:>10.1} ms",
        ms(instantiate)
    );
}

/// From a new `.wasm` renamed into a watched `plugins.dir` to an event served by it.
async fn landing_to_serving(wasm: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let hostile = std::fs::read(wasm.join("hostile.wasm")).unwrap();
    let variant = |k: usize| {
        let needle = b"x-plugin-version";
        let at = hostile
            .windows(needle.len())
            .position(|w| w == needle)
            .expect("the tag header name");
        let mut bytes = hostile.clone();
        bytes[at..at + needle.len()].copy_from_slice(format!("x-plugin-ver{k:04}").as_bytes());
        bytes
    };
    let file = plugins.join("tagger.wasm");
    std::fs::write(&file, variant(0)).unwrap();
    std::fs::write(dir.path().join("none.jsonl"), "").unwrap();
    let text = format!(
        "[source]\nkind = \"replay\"\npath = {:?}\n[state]\ndir = {:?}\n[plugins]\ndir = {plugins:?}\n\
         [plugins.config.tagger]\nmode = \"tag\"\n\
         [[endpoints]]\nname = \"ep\"\nurl = \"http://127.0.0.1:9/\"\nplugins = [\"tagger\"]\n",
        dir.path().join("none.jsonl"),
        dir.path().join("state"),
    );
    let config = Config::parse(&dir.path().join("router.toml"), &text).unwrap();
    let endpoint = config.endpoints[0].name().to_owned();
    let settings = Arc::new(config.payload());
    let (_updates, receiver) = tokio::sync::watch::channel(Arc::clone(&settings));
    let stage = PayloadStage::start(
        settings,
        Some(receiver),
        Arc::new(Metrics::new()),
        Some(dir.path().join("cache")),
    )
    .await
    .unwrap();
    let event = Arc::new(sample_event());
    let measure = |k: usize| {
        let bytes = variant(k);
        let header = format!("x-plugin-ver{k:04}");
        let (stage, endpoint, event, file) = (&stage, &endpoint, &event, &file);
        async move {
            let partial = file.with_extension("partial");
            std::fs::write(&partial, &bytes).unwrap();
            let started = Instant::now();
            std::fs::rename(&partial, file).unwrap();
            loop {
                if let Verdict::Deliver(request) = stage.process(endpoint, event).await
                    && request.headers.iter().any(|(h, _)| *h == header)
                {
                    return started.elapsed();
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    };
    // Three new contents (compiled), then the same three again (loaded from the cache).
    let mut compiled = Duration::ZERO;
    let mut cached = Duration::ZERO;
    for k in 1..=3 {
        compiled += measure(k).await / 3;
    }
    for k in 1..=3 {
        cached += measure(k).await / 3;
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "  new .wasm landing → serving, compiled            {:>10.1} ms (150 ms of it debounce)",
        ms(compiled)
    );
    println!(
        "  new .wasm landing → serving, in the cache        {:>10.1} ms",
        ms(cached)
    );
}

/// A representative run failure, with labels, parameters and a node.
fn sample_event() -> RouterEvent {
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
                labels: [(
                    "pipeline/runid".to_owned(),
                    "ee1c3f1f-031b-49e9-a7ff-2f7a54c11b95".to_owned(),
                )]
                .into(),
                phase: Some("Failed".into()),
                run_name: Some("tacos vs burritos (nightly)".into()),
                parameters: [
                    ("learning_rate".to_owned(), "0.001".to_owned()),
                    ("epochs".to_owned(), "12".to_owned()),
                ]
                .into(),
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

fn sdk_event(e: &bindings::Event<'_>) -> kfp_event_router_sdk::Event {
    let text = |v: Option<&str>| v.unwrap_or_default().to_owned();
    let pairs = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    kfp_event_router_sdk::Event {
        id: e.id.to_owned(),
        reason: e.reason.to_owned(),
        event_type: e.event_type.to_owned(),
        message: e.message.to_owned(),
        namespace: e.namespace.to_owned(),
        workflow_name: e.workflow_name.to_owned(),
        run_id: text(e.run_id),
        run_name: text(e.run_name),
        pipeline_name: text(e.pipeline_name),
        node_name: e.node_name.to_owned(),
        phase: text(e.phase),
        event_time: text(e.event_time),
        parameters: pairs(e.parameters),
        labels: pairs(e.labels),
        endpoint: e.endpoint.to_owned(),
        synthesized: e.synthesized,
        attempt: e.attempt,
        ..kfp_event_router_sdk::Event::default()
    }
}
