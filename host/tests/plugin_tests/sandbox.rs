//! Hostile plugins: each is stopped or rejected with a clear error, only its own call fails,
//! `on_error` decides the event's fate, and every other plugin keeps working.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kfp_event_router::config::{Config, ConfigError};
use kfp_event_router::model::request::Verdict;
use kfp_event_router::payload::PayloadStage;
use kfp_event_router::telemetry::Metrics;

use crate::common::{
    config, config_text, endpoint, endpoint_section, event, metric, plugin_dir, stage,
};
use crate::support::router::Scratch;

const MODES: [&str; 9] = [
    "loop",
    "sleep",
    "poll",
    "alloc",
    "trap",
    "huge-output",
    "open-file",
    "read-env",
    "socket",
];

/// A stage with one endpoint per hostile mode (plugin named after the mode), one with a
/// huge-output plugin allowed 256 MiB, and one with a well-behaved `echo` plugin.
async fn hostile_stage(on_error: &str) -> (Config, PayloadStage, Arc<Metrics>) {
    let scratch = Scratch::new();
    let mut plugins: Vec<(&str, &str)> = MODES.iter().map(|m| (*m, "hostile")).collect();
    plugins.extend([("big-output", "hostile"), ("echo", "hostile")]);
    let dir = plugin_dir(&scratch, &plugins);
    let mut rest = String::new();
    for mode in MODES {
        rest.push_str(&format!("[plugins.config.{mode}]\nmode = {mode:?}\n"));
    }
    rest.push_str("[plugins.config.big-output]\nmode = \"huge-output\"\n");
    rest.push_str("[plugins.settings.big-output]\nmax_memory = \"256MiB\"\ntimeout = \"10s\"\n");
    rest.push_str("[plugins.config.echo]\nmode = \"echo\"\n\n");
    for (name, _) in &plugins {
        rest.push_str(&endpoint_section(name, "kfp", &[name]));
    }
    let text = config_text(&scratch, &dir, &format!("on_error = {on_error:?}"), &rest);
    let config = config(&scratch, &text);
    let (stage, metrics) = stage(config_for_stage(&config)).await;
    (config, stage, metrics)
}

/// Configs are not `Clone`; load the same file again.
fn config_for_stage(config: &Config) -> Config {
    Config::load(&config.path).unwrap()
}

async fn dead_letter_error(config: &Config, stage: &PayloadStage, name: &str) -> String {
    match stage
        .process(&endpoint(config, name), &event("WorkflowFailed"))
        .await
    {
        Verdict::DeadLetter { plugin, error, .. } => {
            assert_eq!(plugin, name);
            error
        }
        other => panic!("{name}: expected a dead letter, got {other:?}"),
    }
}

#[tokio::test]
async fn each_hostile_mode_fails_only_its_own_call_with_a_clear_error() {
    let (config, stage, metrics) = hostile_stage("dead-letter").await;
    let expectations = [
        ("loop", "stopped after its time budget of 100ms", "timeout"),
        ("sleep", "stopped after its time budget of 100ms", "timeout"),
        ("poll", "stopped after its time budget of 100ms", "timeout"),
        (
            "alloc",
            "stopped at its memory limit of 32 MiB",
            "memory_limit",
        ),
        (
            "trap",
            "trapped: wasm `unreachable` instruction executed",
            "trap",
        ),
        (
            "huge-output",
            "stopped at its memory limit of 32 MiB",
            "memory_limit",
        ),
        (
            "big-output",
            "is over its limit of 1048576 bytes",
            "output_limit",
        ),
        (
            "open-file",
            "the plugin returned an error: open /etc/passwd:",
            "error",
        ),
        ("read-env", "the plugin returned an error: no env", "error"),
        (
            "socket",
            "the plugin returned an error: connect 127.0.0.1:9:",
            "error",
        ),
    ];
    for (name, message, outcome) in expectations {
        // The message names the limit that stopped the call, so a plugin that ran on would
        // fail here without the test timing anything.
        let error = dead_letter_error(&config, &stage, name).await;
        assert!(error.contains(message), "{name}: {error}");
        let series = format!(
            "kfp_event_router_plugin_calls_total{{plugin=\"{name}\",outcome=\"{outcome}\"}}"
        );
        assert_eq!(metric(&metrics, &series), 1.0, "{series}");
        // The well-behaved plugin keeps working after each failure.
        let Verdict::Deliver(request) = stage
            .process(&endpoint(&config, "echo"), &event("WorkflowFailed"))
            .await
        else {
            panic!("echo stopped working after {name}");
        };
        let echoed: serde_json::Value = serde_json::from_slice(&request.payload.body).unwrap();
        assert_eq!(echoed["reason"], "WorkflowFailed");
    }
    // A loop, a WASI sleep and a clock poll each get their whole budget before they are
    // stopped: the limit is never cut short. (That they are stopped at all, rather than
    // going on for their 10 s, is what the messages above prove.)
    for name in ["loop", "sleep", "poll"] {
        let started = Instant::now();
        dead_letter_error(&config, &stage, name).await;
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(100), "{name}: {took:?}");
    }
}

#[tokio::test]
async fn other_events_keep_flowing_while_a_plugin_loops() {
    let (config, stage, _) = hostile_stage("drop").await;
    let stage = Arc::new(stage);
    let looping = {
        let (stage, endpoint) = (Arc::clone(&stage), endpoint(&config, "loop"));
        tokio::spawn(async move { stage.process(&endpoint, &event("WorkflowFailed")).await })
    };
    let echo = endpoint(&config, "echo");
    for _ in 0..50 {
        assert!(matches!(
            stage.process(&echo, &event("WorkflowRunning")).await,
            Verdict::Deliver(_)
        ));
    }
    assert!(matches!(looping.await.unwrap(), Verdict::Drop { by } if by == "loop"));
}

#[tokio::test]
async fn on_error_decides_the_fate_of_the_event() {
    let scratch = Scratch::new();
    let dir = plugin_dir(
        &scratch,
        &[
            ("trap-pass", "hostile"),
            ("trap-drop", "hostile"),
            ("trap-letter", "hostile"),
            ("echo", "hostile"),
        ],
    );
    let mut rest = String::new();
    for name in ["trap-pass", "trap-drop", "trap-letter"] {
        rest.push_str(&format!("[plugins.config.{name}]\nmode = \"trap\"\n"));
    }
    rest.push_str("[plugins.config.echo]\nmode = \"echo\"\n");
    rest.push_str("[plugins.settings.trap-drop]\non_error = \"drop\"\n");
    rest.push_str("[plugins.settings.trap-letter]\non_error = \"dead-letter\"\n\n");
    rest.push_str(&endpoint_section("pass", "kfp", &["trap-pass", "echo"]));
    rest.push_str(&endpoint_section("drop", "kfp", &["trap-drop", "echo"]));
    rest.push_str(&endpoint_section("letter", "kfp", &["trap-letter", "echo"]));
    let config = config(
        &scratch,
        &config_text(&scratch, &dir, "on_error = \"pass\"", &rest),
    );
    let (stage, metrics) = stage(config_for_stage(&config)).await;
    let failed = event("WorkflowFailed");

    // pass: the chain goes on with the payload the failing plugin was given.
    let Verdict::Deliver(request) = stage.process(&endpoint(&config, "pass"), &failed).await else {
        panic!("on_error = pass must deliver");
    };
    let echoed: serde_json::Value = serde_json::from_slice(&request.payload.body).unwrap();
    let pass = config
        .endpoints
        .iter()
        .find(|e| e.name() == "pass")
        .unwrap();
    let original = pass.payload.format.render(&failed);
    assert_eq!(
        echoed["payload"]["body"],
        std::str::from_utf8(&original.body).unwrap()
    );

    assert!(matches!(
        stage.process(&endpoint(&config, "drop"), &failed).await,
        Verdict::Drop { by } if by == "trap-drop"
    ));
    let Verdict::DeadLetter {
        plugin,
        error,
        payload,
    } = stage.process(&endpoint(&config, "letter"), &failed).await
    else {
        panic!("on_error = dead-letter must dead-letter");
    };
    assert_eq!(plugin, "trap-letter");
    assert!(error.contains("trapped"), "{error}");
    assert_eq!(payload, original);

    // Repeated failures: reported in /readyz's detail and the `plugin_failing` gauge.
    for _ in 0..2 {
        stage.process(&endpoint(&config, "pass"), &failed).await;
    }
    let status = stage.status();
    let failing: Vec<&str> = status["failing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["plugin"].as_str().unwrap())
        .collect();
    assert_eq!(failing, ["trap-pass"], "{status}");
    assert!(
        status["failing"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("trapped")
    );
    assert_eq!(
        metric(
            &metrics,
            "kfp_event_router_plugin_failing{plugin=\"trap-pass\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &metrics,
            "kfp_event_router_plugin_calls_total{plugin=\"trap-pass\",outcome=\"trap\"}"
        ),
        3.0
    );
    assert_eq!(
        metric(
            &metrics,
            "kfp_event_router_plugin_calls_total{plugin=\"echo\",outcome=\"replace\"}"
        ),
        3.0
    );
}

/// Starts a stage whose global chain runs the plugin `file` (the bytes of component `source`,
/// or `bytes`), returning the start-up error.
async fn start_error(source: Option<&str>, bytes: Option<&[u8]>, plugin_config: &str) -> String {
    let scratch = Scratch::new();
    let dir = plugin_dir(
        &scratch,
        &source.map(|s| vec![("suspect", s)]).unwrap_or_default(),
    );
    if let Some(bytes) = bytes {
        std::fs::write(dir.join("suspect.wasm"), bytes).unwrap();
    }
    let rest = format!("[plugins.config.suspect]\n{plugin_config}\n");
    let config = config(
        &scratch,
        &config_text(&scratch, &dir, "chain = [\"suspect\"]", &rest),
    );
    let started = PayloadStage::start(
        Arc::new(config.payload()),
        None,
        Arc::new(Metrics::new()),
        None,
    )
    .await;
    format!("{:#}", started.err().expect("the plugin must be refused"))
}

#[tokio::test]
async fn a_component_built_for_another_wit_version_is_refused() {
    let error = start_error(Some("wrong-version"), None, "").await;
    assert!(
        error.contains("plugin \"suspect\" (run by plugins.chain) cannot be loaded: built for kfp:event-router/transform@9.0.0")
            && error.contains("it runs kfp:event-router 0.3.x, 0.2.x, 0.1.x"),
        "{error}"
    );
}

#[tokio::test]
async fn a_failing_init_is_refused() {
    let error = start_error(Some("hostile"), None, "mode = \"init-fail\"").await;
    assert!(error.contains("init failed: refusing to start"), "{error}");
}

#[tokio::test]
async fn files_that_are_not_components_are_refused() {
    let error = start_error(None, Some(b"not wasm at all"), "").await;
    assert!(
        error.contains("not a valid WebAssembly component: not a WebAssembly binary"),
        "{error}"
    );
    let truncated = std::fs::read(crate::common::built("event-filter")).unwrap();
    let error = start_error(None, Some(&truncated[..truncated.len() / 2]), "").await;
    assert!(
        error.contains("not a valid WebAssembly component"),
        "{error}"
    );
}

#[tokio::test]
async fn a_chain_naming_a_missing_plugin_is_a_config_error_at_its_position() {
    let scratch = Scratch::new();
    let dir = plugin_dir(&scratch, &[("event-filter", "event-filter")]);
    let rest = endpoint_section("teams", "kfp", &["teams-card"]);
    let text = config_text(
        &scratch,
        &dir,
        "chain = [\"event-filter\", \"nope\"]",
        &rest,
    );
    let path = scratch.write("router.toml", &text);
    let Err(ConfigError::Invalid(problems)) = Config::load(&path) else {
        panic!("the config must be refused");
    };
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let line_of = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let chain_line = line_of("chain = ");
    let column = text
        .lines()
        .nth(chain_line - 1)
        .unwrap()
        .find("\"nope\"")
        .unwrap()
        + 1;
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[0].starts_with(&format!(
            "{}:{chain_line}:{column}: plugins.chain[1]: no plugin \"nope\"",
            path.display()
        )) && lines[0].ends_with("(plugins there: event-filter)"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains(&format!(":{}:", line_of("plugins = [\"teams-card\"]")))
            && lines[1].contains("endpoints[0].plugins[0]: no plugin \"teams-card\""),
        "{}",
        lines[1]
    );
}

#[tokio::test]
async fn compiled_plugins_are_cached_and_reused() {
    let scratch = Scratch::new();
    let dir = plugin_dir(&scratch, &[("event-filter", "event-filter")]);
    let config = config(
        &scratch,
        &config_text(
            &scratch,
            &dir,
            "chain = [\"event-filter\"]",
            &endpoint_section("plain", "kfp", &[]),
        ),
    );
    let cache = scratch.path("cache");
    let start = || async {
        let config = Arc::new(config_for_stage(&config).payload());
        let started = Instant::now();
        let stage =
            PayloadStage::start(config, None, Arc::new(Metrics::new()), Some(cache.clone()))
                .await
                .unwrap();
        (stage, started.elapsed())
    };
    let (_, cold) = start().await;
    let files = cache_entries(&cache);
    assert_eq!(files.len(), 1, "one compiled component: {files:?}");
    let written = std::fs::metadata(&files[0]).unwrap().modified().unwrap();
    let (stage, warm) = start().await;
    assert_eq!(cache_entries(&cache), files, "nothing compiled anew");
    assert_eq!(
        std::fs::metadata(&files[0]).unwrap().modified().unwrap(),
        written,
        "the entry was read, not written again"
    );
    eprintln!("cached start {warm:?} vs compile {cold:?}");
    assert!(matches!(
        stage.process("plain", &event("WorkflowFailed")).await,
        Verdict::Deliver(_)
    ));
    drop(stage);

    // A damaged entry is dropped and the plugin compiled again.
    std::fs::write(&files[0], b"garbage").unwrap();
    let (stage, _) = start().await;
    assert!(matches!(
        stage.process("plain", &event("WorkflowFailed")).await,
        Verdict::Deliver(_)
    ));
    assert!(std::fs::read(&files[0]).unwrap().len() > 1000);
}

/// The compiled components in the cache folder (wasmtime's bookkeeping files left out).
fn cache_entries(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut folders = vec![dir.to_owned()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_none() {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// A stage whose endpoints `a` and `b` each run plugin `name` (hostile `mode`), with
/// `settings` under `[plugins]`, and whose endpoint `echo` runs a well-behaved plugin.
async fn two_endpoint_stage(mode: &str, settings: &str) -> (PayloadStage, Arc<Metrics>) {
    let scratch = Scratch::new();
    let dir = plugin_dir(&scratch, &[(mode, "hostile"), ("echo", "hostile")]);
    let mut rest = format!(
        "[plugins.config.{mode}]\nmode = {mode:?}\n[plugins.config.echo]\nmode = \"echo\"\n\n"
    );
    for name in ["a", "b"] {
        rest.push_str(&endpoint_section(name, "kfp", &[mode]));
    }
    rest.push_str(&endpoint_section("echo", "kfp", &["echo"]));
    let config = config(&scratch, &config_text(&scratch, &dir, settings, &rest));
    stage(config).await
}

/// Whether the well-behaved `echo` endpoint of a stage still delivers.
async fn echo_flows(stage: &PayloadStage) -> bool {
    matches!(
        stage.process("echo", &event("WorkflowFailed")).await,
        Verdict::Deliver(_)
    )
}

#[tokio::test]
async fn no_instance_state_crosses_endpoints() {
    let (stage, _) = two_endpoint_stage("remember", "").await;
    let mut seen = Vec::new();
    for endpoint in ["a", "b", "a", "b", "a"] {
        let Verdict::Deliver(request) = stage.process(endpoint, &event("WorkflowFailed")).await
        else {
            panic!("remember must deliver");
        };
        let body: serde_json::Value = serde_json::from_slice(&request.payload.body).unwrap();
        assert_eq!(body["endpoint"], endpoint);
        seen.push(body["previous"].as_str().unwrap().to_owned());
    }
    // Each endpoint's instance only ever saw that endpoint.
    assert_eq!(seen, ["", "", "a", "b", "a"]);
}

#[tokio::test]
async fn headers_only_the_router_sets_are_refused_and_the_event_still_goes() {
    let (stage, metrics) = two_endpoint_stage("forbidden-headers", "").await;
    for _ in 0..2 {
        let Verdict::Deliver(request) = stage.process("a", &event("WorkflowFailed")).await else {
            panic!("the event must still be delivered");
        };
        assert_eq!(
            request.headers,
            [("x-allowed".to_owned(), "yes".to_owned())],
            "only the allowed header is kept"
        );
    }
    assert_eq!(
        metric(
            &metrics,
            "kfp_event_router_plugin_calls_total{plugin=\"forbidden-headers\",outcome=\"replace\"}"
        ),
        2.0
    );
    assert!(echo_flows(&stage).await);
}

#[tokio::test]
async fn memories_of_one_instance_count_together() {
    let scratch = Scratch::new();
    let dir = plugin_dir(&scratch, &[("echo", "hostile")]);
    std::fs::write(
        dir.join("two-memories.wasm"),
        crate::common::two_memories_component(),
    )
    .unwrap();
    let mut rest = "[plugins.config.echo]\nmode = \"echo\"\n\n".to_owned();
    rest.push_str(&endpoint_section("two", "kfp", &["two-memories"]));
    rest.push_str(&endpoint_section("echo", "kfp", &["echo"]));
    let text = config_text(&scratch, &dir, "on_error = \"dead-letter\"", &rest);
    let config = config(&scratch, &text);
    let (stage, metrics) = stage(config).await;
    let Verdict::DeadLetter { error, .. } = stage.process("two", &event("WorkflowFailed")).await
    else {
        panic!("the second memory's growth must fail the call");
    };
    assert!(
        error.contains("stopped at its memory limit of 32 MiB"),
        "{error}"
    );
    assert_eq!(
        metric(
            &metrics,
            "kfp_event_router_plugin_calls_total{plugin=\"two-memories\",outcome=\"memory_limit\"}"
        ),
        1.0
    );
    assert!(echo_flows(&stage).await);
}

#[tokio::test]
async fn all_instances_together_stay_within_the_total_budget() {
    // Each instance may take 256 MiB, all of them together 64 MiB.
    // (A generous timeout: touching 64 MiB takes a while on a loaded machine.)
    let settings = "on_error = \"dead-letter\"\nmax_memory = \"256MiB\"\n\
                    max_total_memory = \"64MiB\"\ntimeout = \"10s\"";
    let (stage, _) = two_endpoint_stage("alloc", settings).await;
    for _ in 0..2 {
        let Verdict::DeadLetter { error, .. } = stage.process("a", &event("WorkflowFailed")).await
        else {
            panic!("alloc must hit the budget");
        };
        assert!(
            error.contains("the plugins' total memory budget of 64 MiB is used up"),
            "{error}"
        );
        // The failed instance gave its memory back: others still start and run.
        assert!(echo_flows(&stage).await);
    }
}
