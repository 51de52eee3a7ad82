//! The bundled plugins written in Python (`pagerduty`) and JavaScript (`discord-message`),
//! built with their pinned toolchains, run in the router like Rust ones: decisions, outputs,
//! configuration errors and failure isolation.

use std::sync::Arc;

use kfp_event_router::model::request::Verdict;
use kfp_event_router::payload::PayloadStage;
use kfp_event_router::telemetry::Metrics;

use crate::common::{config, config_text, endpoint_section, event, plugin_dir};
use crate::support::router::Scratch;

/// A stage with endpoint `pd` running `pagerduty` and `discord` running `discord-message`.
async fn languages_stage(pagerduty: &str) -> PayloadStage {
    let scratch = Scratch::new();
    let dir = plugin_dir(
        &scratch,
        &[
            ("pagerduty", "pagerduty"),
            ("discord-message", "discord-message"),
        ],
    );
    let mut rest = format!("[plugins.config.pagerduty]\n{pagerduty}\n\n");
    rest.push_str(&endpoint_section("pd", "kfp", &["pagerduty"]));
    rest.push_str(&endpoint_section("discord", "kfp", &["discord-message"]));
    let config = config(&scratch, &config_text(&scratch, &dir, "", &rest));
    // Compiled once per build of the components, for all tests: a Python or JavaScript
    // component takes seconds to compile.
    let cache = crate::support::built_plugins().join(".compiled");
    let stage = PayloadStage::start(
        Arc::new(config.payload()),
        None,
        Arc::new(Metrics::new()),
        Some(cache),
    )
    .await
    .expect("the plugins load");
    loaded(&stage).await;
    stage
}

/// Waits (at most 5 minutes) until no plugin of `stage` is still loading: the start does not
/// wait for large components to compile.
async fn loaded(stage: &PayloadStage) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while stage.status()["loading"] != serde_json::json!([]) {
        assert!(
            std::time::Instant::now() < deadline,
            "the plugins never loaded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn json(verdict: Verdict) -> serde_json::Value {
    let Verdict::Deliver(request) = verdict else {
        panic!("expected a delivery, got {verdict:?}");
    };
    serde_json::from_slice(&request.payload.body).unwrap()
}

#[tokio::test]
async fn pagerduty_triggers_on_failure_and_resolves_on_recovery_with_one_key() {
    let stage = languages_stage("routing_key = \"KEY\"").await;
    let trigger = json(stage.process("pd", &event("WorkflowFailed")).await);
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["routing_key"], "KEY");
    assert_eq!(trigger["payload"]["severity"], "error");
    assert_eq!(
        trigger["payload"]["summary"],
        "KFP run nightly failed in team-a: WorkflowFailed happened"
    );
    let resolve = json(stage.process("pd", &event("WorkflowSucceeded")).await);
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(resolve["dedup_key"], "kfp-run-run-1");
    assert_eq!(trigger["dedup_key"], resolve["dedup_key"]);
    assert!(matches!(
        stage.process("pd", &event("WorkflowRunning")).await,
        Verdict::Drop { by } if by == "pagerduty"
    ));
}

#[tokio::test]
async fn discord_colours_by_outcome() {
    let stage = languages_stage("routing_key = \"KEY\"").await;
    let colour = |body: serde_json::Value| body["embeds"][0]["color"].as_u64().unwrap();
    let failed = json(stage.process("discord", &event("WorkflowFailed")).await);
    assert_eq!(colour(failed.clone()), 0xe01e5a);
    assert_eq!(failed["embeds"][0]["title"], "nightly failed");
    assert_eq!(failed["allowed_mentions"]["parse"], serde_json::json!([]));
    let succeeded = json(stage.process("discord", &event("WorkflowSucceeded")).await);
    assert_eq!(colour(succeeded), 0x2eb67d);
}

#[test]
fn a_python_plugin_refusing_its_config_is_refused_with_its_message() {
    let scratch = Scratch::new();
    let config = scratch.write("pd.toml", "severity = \"loud\"\n");
    let output = std::process::Command::new(crate::support::router_bin())
        .args(["plugin", "check"])
        .arg(crate::common::built("pagerduty"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "runs:     no, the router refuses it: init failed: invalid plugin config: \
             routing_key (the integration key) is required"
        ),
        "{stdout}"
    );
}

#[tokio::test]
async fn a_large_component_compiling_does_not_hold_up_the_start_of_the_others() {
    let scratch = Scratch::new();
    let dir = plugin_dir(
        &scratch,
        &[("pagerduty", "pagerduty"), ("event-filter", "event-filter")],
    );
    let mut rest = "[plugins.config.pagerduty]\nrouting_key = \"KEY\"\n\n".to_owned();
    rest.push_str(&endpoint_section("pd", "kfp", &["pagerduty"]));
    rest.push_str(&endpoint_section("quick", "kfp", &["event-filter"]));
    let config = config(&scratch, &config_text(&scratch, &dir, "", &rest));
    // No compilation cache: the Python component compiles for seconds.
    let stage = PayloadStage::start(
        Arc::new(config.payload()),
        None,
        Arc::new(Metrics::new()),
        None,
    )
    .await
    .expect("the stage starts");
    assert_eq!(stage.status()["loading"], serde_json::json!(["pagerduty"]));
    assert!(matches!(
        stage.process("quick", &event("WorkflowFailed")).await,
        Verdict::Deliver(_)
    ));
    match stage.process("pd", &event("WorkflowFailed")).await {
        Verdict::Wait { reason } => assert!(reason.contains("still loading"), "{reason}"),
        other => panic!("pd must wait for its plugin, got {other:?}"),
    }
    // It serves once compiled.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        if let Verdict::Deliver(_) = stage.process("pd", &event("WorkflowFailed")).await {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pagerduty never loaded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(stage.status()["loading"], serde_json::json!([]));
}
