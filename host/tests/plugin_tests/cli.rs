//! `kfp-event-router plugin test`, `check` and `diff`, as a user runs them.

use std::process::Command;

use crate::common::built;
use crate::support;
use crate::support::router::Scratch;

fn plugin_test(args: &[&str]) -> (i32, String, String) {
    plugin(&[&["test"], args].concat())
}

/// Runs `kfp-event-router plugin ARGS...`: exit code, stdout, stderr.
fn plugin(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(support::router_bin())
        .arg("plugin")
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
            ", kfp:event-router/transform@0.3.0; timeout 100ms, max_memory 32 MiB, on_error Pass), config {\"mode\":\"tag\",\"tag\":\"v7\"}"
        ),
        "{}",
        lines[0]
    );
    assert_eq!(
        lines[1],
        "--- event 1: WorkflowRunning kubeflow/tacos-vs-burritos-vw8g9"
    );
    assert_eq!(
        lines[2],
        "facts:  type=Normal run-id=\"ee1c3f1f-031b-49e9-a7ff-2f7a54c11b95\" \
         run-name=\"tacos vs burritos (nightly 2026-11-20)\" pipeline=\"tacos-vs-burritos\" attempt=1"
    );
    assert!(
        lines[3].starts_with("input:  application/json {\"KfpRunId\":\"ee1c3f1f-"),
        "{}",
        lines[3]
    );
    let took = lines[4]
        .strip_prefix("action: replace (")
        .and_then(|rest| rest.strip_suffix(" ms)"))
        .unwrap_or_else(|| panic!("{}", lines[4]));
    assert!(took.parse::<f64>().unwrap() < 100.0, "{took}");
    assert_eq!(lines[5], lines[3].replacen("input: ", "output:", 1));
    assert_eq!(lines[6], "header: x-plugin-version: v7");
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
        "[source]\nkind = \"replay\"\n[plugins.config.hostile]\nmode = \"loop\"\n\
         [plugins.settings.hostile]\ntimeout = \"50ms\"\n",
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
    // The router config's settings for the plugin apply: its own 50 ms timeout.
    assert!(out.contains(", max_memory 32 MiB, on_error Pass), config {\"mode\":\"loop\"}"));
    assert!(
        out.lines()
            .any(|l| l.starts_with("action: failed (timeout) (")
                && l.ends_with(" ms): stopped after its time budget of 50ms")),
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
        err.contains("plugin rejected: built for kfp:event-router/transform@9.0.0, which this router does not run"),
        "{err}"
    );
}

#[test]
fn plugin_log_records_are_escaped_and_cut() {
    let scratch = Scratch::new();
    let config = scratch.write("log.toml", "mode = \"log-control\"\n");
    let recording = support::quickstart_recording();
    let plugin = built("hostile");
    let (code, _, err) = plugin_test(&[
        plugin.to_str().unwrap(),
        "--events",
        recording.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let records: Vec<&str> = err.lines().filter(|l| l.contains("line one")).collect();
    assert!(!records.is_empty(), "{err}");
    for record in records {
        assert!(
            record.contains(r"line one\nFAKE level=ERROR forged line\u{1b}[31mred"),
            "{record}"
        );
        assert!(record.contains("xxxx…"), "cut, and marked as cut: {record}");
        assert!(record.len() < 2300, "{} bytes", record.len());
    }
    // The router colours its own log; the plugin's escape sequence is never written raw.
    assert!(
        !err.contains("\u{1b}[31mred"),
        "no raw escape sequence from the plugin reaches the log"
    );
    assert!(
        !err.lines().any(|l| l.starts_with("FAKE")),
        "no forged line: {err}"
    );
}

#[test]
fn check_reports_contract_imports_exports_and_size() {
    let (code, out, err) = plugin(&["check", built("event-filter").to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let line = |key: &str| {
        out.lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no {key} in {out}"))
            .to_owned()
    };
    assert!(line("file:").ends_with(" KB)"), "{out}");
    assert_eq!(line("world:"), "world:    kfp:event-router/plugin@0.3.0");
    assert_eq!(
        line("exports:"),
        "exports:  kfp:event-router/transform@0.3.0"
    );
    assert!(
        line("imports:").contains("kfp:event-router/host@0.3.0")
            && line("imports:").contains("kfp:event-router/types@0.3.0"),
        "{out}"
    );
    assert!(line("runs:").starts_with("runs:     yes"), "{out}");

    let fixture = support::root().join("host/tests/fixtures/event-filter-0.1.0.wasm");
    let (code, out, _) = plugin(&["check", fixture.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("world:    kfp:event-router/plugin@0.1.0 (an older contract, still run"));
    let fixture = support::root().join("host/tests/fixtures/event-filter-0.2.0.wasm");
    let (code, out, _) = plugin(&["check", fixture.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("world:    kfp:event-router/plugin@0.2.0 (an older contract, still run"));

    let (code, out, _) = plugin(&["check", built("wrong-version").to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("world:    not kfp:event-router/plugin"),
        "{out}"
    );
    assert!(
        out.contains(
            "runs:     no, the router refuses it: built for kfp:event-router/transform@9.0.0"
        ),
        "{out}"
    );

    let scratch = Scratch::new();
    let loose = scratch.write("loop.toml", "mode = \"alloc\"\n");
    let (code, out, _) = plugin(&[
        "check",
        built("hostile").to_str().unwrap(),
        "--config",
        loose.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "alloc only misbehaves in handle: {out}");
    let refusing = scratch.write("bad.toml", "mode = \"init-fail\"\n");
    let (code, out, _) = plugin(&[
        "check",
        built("hostile").to_str().unwrap(),
        "--config",
        refusing.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("init failed: refusing to start"), "{out}");
}

#[test]
fn diff_shows_where_two_versions_decide_or_render_differently() {
    let scratch = Scratch::new();
    let recording = support::quickstart_recording();
    let copy = |name: &str, source: &str| {
        let path = scratch.path(name);
        std::fs::copy(built(source), &path).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (filter, v1, v2) = (
        copy("filter.wasm", "event-filter"),
        copy("v1.wasm", "hostile"),
        copy("v2.wasm", "hostile"),
    );
    let legacy = support::root().join("host/tests/fixtures/event-filter-0.1.0.wasm");
    let config = scratch.write(
        "router.toml",
        "[plugins.config.filter]\nreasons = [\"WorkflowFailed\", \"WorkflowSucceeded\"]\n\
         [plugins.config.v1]\nmode = \"tag\"\ntag = \"v1\"\n\
         [plugins.config.v2]\nmode = \"tag\"\ntag = \"v2\"\n",
    );
    let diff = |old: &str, new: &str| {
        plugin(&[
            "diff",
            old,
            new,
            "--events",
            recording.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ])
    };
    // The 0.1 build of event-filter, given the same config, decides exactly as the 0.2 one.
    let (code, out, err) = diff(&filter, legacy.to_str().unwrap());
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(" 0 decided differently, 0 rendered differently"),
        "{out}"
    );

    let (code, out, _) = diff(&v1, &v2);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "  headers: [(\"x-plugin-version\", \"v1\")] → [(\"x-plugin-version\", \"v2\")]"
        ),
        "{out}"
    );
    assert!(
        out.lines()
            .last()
            .unwrap()
            .contains(" 0 decided differently"),
        "{out}"
    );

    let (code, out, _) = diff(&v1, &filter);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("  decides: replace → drop"), "{out}");
    assert!(out.contains("  decides: replace → pass"), "{out}");
}
