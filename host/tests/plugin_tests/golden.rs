//! Golden outputs: each bundled plugin over the quick start recording, through the same
//! report `kfp-event-router plugin test` prints. `UPDATE_GOLDEN=1` rewrites the files in
//! `tests/golden/`; review the diff before committing it.

use std::path::PathBuf;

use kfp_event_router::payload::format::Format;
use kfp_event_router::pipeline::plugin_test::{self as tester, TestOptions};

use crate::common::built;
use crate::support;
use crate::support::router::Scratch;

/// Runs `plugin` with `config` over the quick start recording, in `format`, and compares the
/// report (less its first line, which holds the build's hash) with `tests/golden/<name>.txt`.
async fn golden(name: &str, plugin: &str, config: &str, format: Format) {
    golden_over(
        name,
        plugin,
        config,
        format,
        support::quickstart_recording(),
    )
    .await;
}

/// [`golden`] over `recording`.
async fn golden_over(name: &str, plugin: &str, config: &str, format: Format, recording: PathBuf) {
    let scratch = Scratch::new();
    let options = TestOptions {
        plugin: built(plugin),
        events: recording,
        config: Some(scratch.write("plugin.toml", config)),
        format,
        endpoint: "quickstart".into(),
        timings: false,
    };
    let mut out = Vec::new();
    let summary = tester::run(options, &mut out)
        .await
        .expect("the plugin runs");
    assert_eq!(summary.failed, 0, "{}", String::from_utf8_lossy(&out));
    let report = String::from_utf8(out).unwrap();
    let (first, rest) = report.split_once('\n').unwrap();
    assert!(
        first.starts_with(&format!("plugin {plugin} (version ")),
        "{first}"
    );
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/{name}.txt"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, rest).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    if rest != expected {
        let differs = rest.lines().zip(expected.lines()).position(|(a, b)| a != b);
        panic!(
            "{name}: the output differs from {} (first at line {:?}); run with UPDATE_GOLDEN=1 and review the diff\n{rest}",
            path.display(),
            differs.map(|l| l + 2)
        );
    }
}

#[tokio::test]
async fn event_filter_keeps_run_outcomes() {
    let config = "reasons = [\"WorkflowFailed\", \"WorkflowSucceeded\", \"WorkflowNodeFailed\"]\n";
    golden("event-filter", "event-filter", config, Format::Kfp).await;
}

#[tokio::test]
async fn redact_masks_parameters_and_node_messages() {
    let config =
        "drop = [\"Labels\"]\nmask = [\"/Node/Message\"]\nmask_parameters = [\"dataset_url\"]\n";
    golden("redact", "redact", config, Format::Extended).await;
}

#[tokio::test]
async fn teams_card_renders_adaptive_cards() {
    let config = "title_prefix = \"[prod] \"\nkfp_ui_url = \"https://kubeflow.example.com/pipeline/#/runs/details/{run_id}\"\n";
    golden("teams-card", "teams-card", config, Format::Extended).await;
}

#[tokio::test]
async fn slack_message_renders_block_kit_from_cloudevents() {
    let config = "channel = \"#ml-alerts\"\nkfp_ui_url = \"https://kubeflow.example.com/pipeline/#/runs/details/{run_id}\"\n";
    golden(
        "slack-message",
        "slack-message",
        config,
        Format::Cloudevents,
    )
    .await;
}

#[tokio::test]
async fn github_dispatch_wraps_the_payload() {
    golden(
        "github-dispatch",
        "github-dispatch",
        "event_type = \"kfp-{reason_kebab}\"\n",
        Format::Kfp,
    )
    .await;
}

/// A recording of `examples/recordings`.
fn recording(name: &str) -> PathBuf {
    support::root().join(format!("examples/recordings/{name}.jsonl"))
}

#[tokio::test]
async fn pagerduty_python_triggers_one_incident_per_run() {
    let config = "routing_key = \"R0123456789ABCDEF0123456789ABCDEF\"\n\
                  kfp_ui_url = \"https://kubeflow.example.com/pipeline/#/runs/details/{run_id}\"\n";
    golden_over(
        "pagerduty",
        "pagerduty",
        config,
        Format::Kfp,
        recording("kfp-2.4-retried-run"),
    )
    .await;
}

#[tokio::test]
async fn discord_message_js_renders_embeds_coloured_by_outcome() {
    let config = "username = \"Kubeflow\"\nevents = \"all\"\n\
                  kfp_ui_url = \"https://kubeflow.example.com/pipeline/#/runs/details/{run_id}\"\n";
    golden("discord-message", "discord-message", config, Format::Kfp).await;
}
