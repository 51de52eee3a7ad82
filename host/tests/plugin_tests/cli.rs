//! `kfp-event-router plugin test`, as a user runs it.

use std::process::Command;

use crate::common::built;
use crate::support;
use crate::support::router::Scratch;

fn plugin_test(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(support::router_bin())
        .args(["plugin", "test"])
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        output.status.code().unwrap_or(-1),
        text(&output.stdout),
        text(&output.stderr),
    )
}

#[test]
fn prints_input_action_and_output_per_event() {
    let scratch = Scratch::new();
    let config = scratch.write("tag.toml", "mode = \"tag\"\ntag = \"v7\"\n");
    let recording = support::quickstart_recording();
    let plugin = built("hostile");
    let (code, out, err) = plugin_test(&[
        plugin.to_str().unwrap(),
        "--events",
        recording.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--format",
        "extended",
        "--endpoint",
        "teams",
    ]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("plugin hostile (version "),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].ends_with(
            ", kfp:event-router/transform@0.1.0), config {\"mode\":\"tag\",\"tag\":\"v7\"}"
        ),
        "{}",
        lines[0]
    );
    assert_eq!(
        lines[1],
        "--- event 1: WorkflowRunning kubeflow/tacos-vs-burritos-vw8g9"
    );
    assert!(
        lines[2].starts_with("input:  application/json {\"KfpRunId\":\"ee1c3f1f-"),
        "{}",
        lines[2]
    );
    assert_eq!(lines[3], "action: replace");
    assert_eq!(lines[4], lines[2].replacen("input: ", "output:", 1));
    assert_eq!(lines[5], "header: x-plugin-version: v7");
    let events = lines.iter().filter(|l| l.starts_with("--- event ")).count();
    assert!(events > 10);
    assert_eq!(
        lines.last().unwrap(),
        &format!("--- {events} events: 0 pass, 0 drop, {events} replace, 0 failed")
    );
}

#[test]
fn failed_calls_are_shown_and_set_the_exit_code() {
    let scratch = Scratch::new();
    let config = scratch.write(
        "router.toml",
        "[source]\nkind = \"replay\"\n[plugins.config.hostile]\nmode = \"loop\"\n",
    );
    let recording = support::quickstart_recording();
    let plugin = built("hostile");
    let (code, out, _) = plugin_test(&[
        plugin.to_str().unwrap(),
        "--events",
        recording.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(
        out.contains("\naction: failed (timeout): stopped after its time budget of 100ms\n"),
        "{out}"
    );
}

#[test]
fn a_plugin_of_another_wit_version_is_refused() {
    let recording = support::quickstart_recording();
    let plugin = built("wrong-version");
    let (code, out, err) = plugin_test(&[
        plugin.to_str().unwrap(),
        "--events",
        recording.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert!(
        err.contains("plugin rejected: built for kfp:event-router/transform@9.0.0, which this router does not support"),
        "{err}"
    );
}
