//! The quick start recording replayed through the real binary to a real HTTP sink: the `kfp`
//! payloads key for key against `examples/quickstart/EXPECTED.md`, the `extended` and
//! `cloudevents` formats, exit codes, reruns, `--dry-run`, and the library entry point.

mod support;

use std::time::Duration;

use cloudevents::AttributesReader;
use serde_json::Value;
use support::router::{PATIENCE, RouterProcess, Scratch, run_command, toml_str};
use support::sink::{Received, Sink};

const RUN_ID: &str = "ee1c3f1f-031b-49e9-a7ff-2f7a54c11b95";
const WF: &str = "tacos-vs-burritos-vw8g9";

/// (EventType, NodeName, Message) of each occurrence in EXPECTED.md's table, in order.
const GOLDEN: [(&str, &str, &str); 25] = [
    ("WorkflowRunning", "", "Workflow Running"),
    (
        "WorkflowNodeRunning",
        "",
        "Running node tacos-vs-burritos-vw8g9",
    ),
    (
        "WorkflowNodeRunning",
        "dataprocessing",
        "Running node tacos-vs-burritos-vw8g9.dataprocessing",
    ),
    (
        "WorkflowNodeSucceeded",
        "dataprocessing",
        "Succeeded node tacos-vs-burritos-vw8g9.dataprocessing",
    ),
    (
        "WorkflowNodeRunning",
        "for-loop-2",
        "Running node tacos-vs-burritos-vw8g9.for-loop-2",
    ),
    (
        "WorkflowNodeRunning",
        "train",
        "Running node tacos-vs-burritos-vw8g9.train",
    ),
    (
        "WorkflowNodeRunning",
        "for-loop-2(0:a)",
        "Running node tacos-vs-burritos-vw8g9.for-loop-2(0:a)",
    ),
    (
        "WorkflowNodeRunning",
        "for-loop-2(2:c)",
        "Running node tacos-vs-burritos-vw8g9.for-loop-2(2:c)",
    ),
    (
        "WorkflowNodeRunning",
        "for-loop-2(3:d)",
        "Running node tacos-vs-burritos-vw8g9.for-loop-2(3:d)",
    ),
    (
        "WorkflowNodeRunning",
        "train",
        "Running node tacos-vs-burritos-vw8g9.train",
    ),
    (
        "WorkflowNodeRunning",
        "for-loop-2(4:e)",
        "Running node tacos-vs-burritos-vw8g9.for-loop-2(4:e)",
    ),
    (
        "WorkflowNodeRunning",
        "for-loop-2(5:f)",
        "Running node tacos-vs-burritos-vw8g9.for-loop-2(5:f)",
    ),
    (
        "WorkflowNodeRunning",
        "for-loop-2(1:b)",
        "(combined from similar events): Running node tacos-vs-burritos-vw8g9.for-loop-2(1:b)",
    ),
    (
        "WorkflowNodeRunning",
        "for-loop-2(6:g)",
        "(combined from similar events): Running node tacos-vs-burritos-vw8g9.for-loop-2(6:g)",
    ),
    (
        "WorkflowNodeSucceeded",
        "for-loop-2(0:a)",
        "Succeeded node tacos-vs-burritos-vw8g9.for-loop-2(0:a)",
    ),
    (
        "WorkflowNodeSucceeded",
        "for-loop-2(3:d)",
        "Succeeded node tacos-vs-burritos-vw8g9.for-loop-2(3:d)",
    ),
    (
        "WorkflowNodeSucceeded",
        "for-loop-2(2:c)",
        "Succeeded node tacos-vs-burritos-vw8g9.for-loop-2(2:c)",
    ),
    (
        "WorkflowNodeSucceeded",
        "for-loop-2(1:b)",
        "Succeeded node tacos-vs-burritos-vw8g9.for-loop-2(1:b)",
    ),
    (
        "WorkflowNodeSucceeded",
        "for-loop-2(4:e)",
        "Succeeded node tacos-vs-burritos-vw8g9.for-loop-2(4:e)",
    ),
    (
        "WorkflowNodeSucceeded",
        "for-loop-2(5:f)",
        "Succeeded node tacos-vs-burritos-vw8g9.for-loop-2(5:f)",
    ),
    (
        "WorkflowNodeSucceeded",
        "for-loop-2(6:g)",
        "Succeeded node tacos-vs-burritos-vw8g9.for-loop-2(6:g)",
    ),
    (
        "WorkflowNodeSucceeded",
        "for-loop-2",
        "Succeeded node tacos-vs-burritos-vw8g9.for-loop-2",
    ),
    (
        "WorkflowNodeFailed",
        "train",
        "Failed node tacos-vs-burritos-vw8g9.train: Error (exit code 1)",
    ),
    ("WorkflowFailed", "", ""),
    (
        "WorkflowNodeFailed",
        "",
        "Failed node tacos-vs-burritos-vw8g9",
    ),
];

/// The payload of the Go kfp-event-handler's README, as it printed it.
const SEED: &str = r#"{"KfpRunId":"ee1c3f1f-031b-49e9-a7ff-2f7a54c11b95","WorkflowName": "tacos-vs-burritos-vw8g9","NodeName": "dataprocessing","EventType":"WorkflowNodeSucceeded","Message":"Succeeded node tacos-vs-burritos-vw8g9.dataprocessing"}"#;

/// The exact body the `kfp` format must produce: five keys, in the Go handler's order.
fn kfp_body(event_type: &str, node: &str, message: &str) -> String {
    let s = |v: &str| serde_json::to_string(v).unwrap();
    format!(
        "{{\"KfpRunId\":{},\"WorkflowName\":{},\"NodeName\":{},\"EventType\":{},\"Message\":{}}}",
        s(RUN_ID),
        s(WF),
        s(node),
        s(event_type),
        s(message)
    )
}

fn golden_bodies() -> Vec<String> {
    GOLDEN.iter().map(|(t, n, m)| kfp_body(t, n, m)).collect()
}

fn bodies(requests: &[Received]) -> Vec<String> {
    requests
        .iter()
        .map(|r| String::from_utf8(r.body.to_vec()).expect("UTF-8 body"))
        .collect()
}

/// Asserts `keys` appear as object keys of `body` in this order (raw text order).
fn assert_key_order(body: &str, keys: &[&str]) {
    let mut last = 0;
    for key in keys {
        let at = body
            .find(&format!("\"{key}\":"))
            .unwrap_or_else(|| panic!("{key} missing from {body}"));
        assert!(at >= last, "{key} out of order in {body}");
        last = at;
    }
}

/// The quick start config: every event as `kfp`; failures as `extended`; the run outcome as
/// CloudEvents; and an endpoint whose namespace filter matches nothing.
fn quickstart_config(scratch: &Scratch, sink: &Sink) -> std::path::PathBuf {
    let text = format!(
        r#"{tables}
[[endpoints]]
name = "kfp"
url = {kfp}

[[endpoints]]
name = "extended"
url = {extended}
format = "extended"
event_types = ["WorkflowNodeFailed", "WorkflowFailed"]

[[endpoints]]
name = "outcomes"
url = {ce}
format = "cloudevents"
event_types = ["WorkflowSucceeded", "WorkflowFailed"]
namespaces = ["kubeflow"]

[[endpoints]]
name = "elsewhere"
url = {elsewhere}
namespaces = ["not-kubeflow"]
"#,
        tables = scratch.tables(&support::quickstart_recording(), None),
        kfp = toml_str(&sink.url("/kfp")),
        extended = toml_str(&sink.url("/extended")),
        ce = toml_str(&sink.url("/ce")),
        elsewhere = toml_str(&sink.url("/elsewhere")),
    );
    scratch.write("router.toml", &text)
}

#[tokio::test]
async fn quickstart_kfp_payloads_match_the_go_handler_key_for_key_and_a_rerun_delivers_again() {
    let scratch = Scratch::new();
    let sink = Sink::start().await;
    let config = quickstart_config(&scratch, &sink);

    let mut router = RouterProcess::start(&config);
    router.expect_success().await;

    let first = sink.received_on("/kfp");
    let golden = golden_bodies();
    assert_eq!(
        bodies(&first),
        golden,
        "every kfp payload, in order, byte for byte"
    );
    for request in &first {
        assert_eq!(request.header("content-type"), "application/json");
        assert!(request.header("webhook-id").starts_with("msg_"));
        assert_eq!(
            request.header("webhook-signature"),
            "",
            "the endpoint is unsigned"
        );
    }
    let seed: Value = serde_json::from_str(SEED).unwrap();
    assert_eq!(
        first.iter().filter(|r| r.json() == seed).count(),
        1,
        "the Go handler's example payload is delivered exactly once"
    );
    let ids: std::collections::HashSet<&str> =
        first.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(
        ids.len(),
        25,
        "each occurrence has its own webhook-id (repeat and roll-up included)"
    );
    assert_eq!(sink.received_on("/elsewhere").len(), 0, "namespace filter");

    // The checkpoint is cleared at completion: the same replay runs again, with the same ids.
    let mut again = RouterProcess::start(&config);
    again.expect_success().await;
    let all = sink.received_on("/kfp");
    assert_eq!(all.len(), 50, "the rerun delivers the 25 events again");
    assert_eq!(bodies(&all[25..]), golden);
    let first_ids: Vec<&str> = first.iter().map(|r| r.header("webhook-id")).collect();
    let rerun_ids: Vec<&str> = all[25..].iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(first_ids, rerun_ids, "webhook-ids are stable across runs");
}

#[tokio::test]
async fn quickstart_extended_and_cloudevents_payloads() {
    let scratch = Scratch::new();
    let sink = Sink::start().await;
    let config = quickstart_config(&scratch, &sink);
    let mut router = RouterProcess::start(&config);
    router.expect_success().await;

    // extended: the train failure, the workflow failure and the root node failure.
    let extended = sink.received_on("/extended");
    let reasons: Vec<String> = extended
        .iter()
        .map(|r| r.json()["EventType"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        reasons,
        ["WorkflowNodeFailed", "WorkflowFailed", "WorkflowNodeFailed"]
    );
    for request in &extended {
        let body = std::str::from_utf8(&request.body).unwrap();
        assert_key_order(
            body,
            &[
                "KfpRunId",
                "WorkflowName",
                "NodeName",
                "EventType",
                "Message",
                "Namespace",
            ],
        );
        assert_eq!(request.header("content-type"), "application/json");
    }
    let train = extended[0].json();
    assert_eq!(train["KfpRunId"], RUN_ID);
    assert_eq!(train["NodeName"], "train");
    assert_eq!(train["Namespace"], "kubeflow");
    assert_eq!(train["EventSeverity"], "Warning");
    assert_eq!(train["RunName"], "tacos vs burritos (nightly 2026-11-20)");
    assert_eq!(train["PipelineName"], "tacos-vs-burritos");
    assert_eq!(train["Parameters"]["learning_rate"], "0.001");
    assert_eq!(train["Synthesized"], false);
    let node = &train["Node"];
    assert_eq!(node["Name"], "train");
    assert_eq!(node["FullName"], "tacos-vs-burritos-vw8g9.train");
    assert_eq!(node["Id"], "tacos-vs-burritos-vw8g9-2403497328");
    assert_eq!(node["Type"], "Pod");
    assert_eq!(node["Phase"], "Failed");
    assert_eq!(node["Message"], "Error (exit code 1)");
    assert_eq!(
        node["StartedAt"], "2026-11-20T09:15:02Z",
        "RFC 3339, as the Workflow status has it (the annotation is Unix nanoseconds)"
    );

    let failed = extended[1].json();
    assert_eq!(
        failed["Node"],
        Value::Null,
        "workflow-level events have no node"
    );
    assert_eq!(failed["Message"], "");
    assert_eq!(
        failed["Phase"], "Failed",
        "the Workflow line saying Failed comes after this Event; the phase follows the reason"
    );
    assert_eq!(failed["EventUid"], "7ac0cddb-0346-4e06-8b21-ea852a848829");
    assert_eq!(
        failed["WorkflowUid"],
        "5c3e1d2a-8b4f-4f6e-9a1c-7d2b0e4f8a63"
    );
    let root = extended[2].json();
    assert_eq!(root["NodeName"], "", "the root node has no step name");
    assert_eq!(root["Node"]["FullName"], WF);
    assert_eq!(root["Node"]["Type"], "DAG");

    // cloudevents: validated by the official SDK.
    let ce = sink.received_on("/ce");
    assert_eq!(
        ce.len(),
        1,
        "only WorkflowFailed passes the outcomes filter"
    );
    let request = &ce[0];
    assert_eq!(
        request.header("content-type"),
        "application/cloudevents+json"
    );
    let event: cloudevents::Event =
        serde_json::from_slice(&request.body).expect("a valid CloudEvent");
    assert_eq!(event.specversion(), cloudevents::event::SpecVersion::V10);
    assert_eq!(event.ty(), "org.kubeflow.pipelines.run.failed");
    assert_eq!(
        event.source().to_string(),
        "/apis/argoproj.io/v1alpha1/namespaces/kubeflow/workflows/tacos-vs-burritos-vw8g9"
    );
    assert_eq!(
        format!("msg_{}", event.id()),
        request.header("webhook-id"),
        "id is the router event id"
    );
    assert_eq!(event.subject(), Some(WF));
    assert_eq!(
        event.time().map(|t| t.to_rfc3339()).as_deref(),
        Some("2026-11-20T09:18:49+00:00")
    );
    assert_eq!(event.datacontenttype(), Some("application/json"));
    let data = match event.data() {
        Some(cloudevents::Data::Json(value)) => value.clone(),
        other => panic!("JSON data expected, got {other:?}"),
    };
    assert_eq!(data["KfpRunId"], RUN_ID);
    assert_eq!(data["EventType"], "WorkflowFailed");
    assert_eq!(data["Phase"], "Failed");
}

#[tokio::test]
async fn dry_run_prints_every_payload_with_its_endpoint_and_sends_nothing() {
    let scratch = Scratch::new();
    let sink = Sink::start().await;
    let config = quickstart_config(&scratch, &sink);
    let mut command = run_command(&config);
    command.arg("--dry-run");
    let mut router = RouterProcess::spawn(command);
    router.expect_success().await;

    let stdout = router.stdout();
    let lines: Vec<&str> = stdout.lines().collect();
    let mut kfp = Vec::new();
    let mut headers = Vec::new();
    for pair in lines.chunks(2) {
        let [header, body] = pair else {
            panic!("unpaired output line: {pair:?}\n{stdout}");
        };
        assert!(header.starts_with("==> "), "{header}");
        headers.push(header.to_string());
        if *header == "==> kfp (application/json)" {
            kfp.push(body.to_string());
        }
    }
    assert_eq!(kfp, golden_bodies(), "the kfp payloads, in order");
    assert_eq!(
        headers
            .iter()
            .filter(|h| h.starts_with("==> extended (application/json)"))
            .count(),
        3
    );
    assert_eq!(
        headers
            .iter()
            .filter(|h| *h == "==> outcomes (application/cloudevents+json)")
            .count(),
        1
    );
    assert!(
        !headers.iter().any(|h| h.contains("elsewhere")),
        "the filtered endpoint is not shown"
    );
    assert_eq!(headers.len(), 29);

    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sink.received().len(), 0, "a dry run POSTs nothing");
    assert!(!scratch.state_dir().exists(), "a dry run stores nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_library_runs_a_replay_in_process() {
    let scratch = Scratch::new();
    let sink = Sink::start().await;
    let text = format!(
        "{}[[endpoints]]\nname = \"kfp\"\nurl = {}\n",
        scratch.tables(&support::quickstart_recording(), None),
        toml_str(&sink.url("/kfp"))
    );
    let path = scratch.write("router.toml", &text);
    let config = kfp_event_router::config::Config::parse(&path, &text).expect("a valid config");
    let token = tokio_util::sync::CancellationToken::new();
    let summary = tokio::time::timeout(PATIENCE, kfp_event_router::pipeline::run(config, token))
        .await
        .expect("the replay finishes")
        .expect("the run succeeds");
    assert_eq!(summary.events, 25);
    assert_eq!(summary.dead_lettered, 0);
    assert_eq!(bodies(&sink.received_on("/kfp")), golden_bodies());
}

/// `router::run` returning should free the state folder, so that a process can run the
/// router again (tests, embedders). It does not yet: the `/metrics` server task, which holds
/// a handle to the outbox, outlives `run`, so the outbox database stays open (and the port
/// stays bound) and the second run fails with "Database already open. Cannot acquire lock".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_library_can_run_twice_on_one_state_dir() {
    let scratch = Scratch::new();
    let sink = Sink::start().await;
    let text = format!(
        "{}[[endpoints]]\nname = \"kfp\"\nurl = {}\n",
        scratch.tables(&support::quickstart_recording(), None),
        toml_str(&sink.url("/kfp"))
    );
    let path = scratch.write("router.toml", &text);
    for run in 1..=2 {
        let config = kfp_event_router::config::Config::parse(&path, &text).unwrap();
        let token = tokio_util::sync::CancellationToken::new();
        let summary =
            tokio::time::timeout(PATIENCE, kfp_event_router::pipeline::run(config, token))
                .await
                .expect("the replay finishes")
                .unwrap_or_else(|e| panic!("run {run}: {e:#}"));
        assert_eq!(summary.events, 25);
        assert_eq!(sink.received_on("/kfp").len(), 25 * run);
    }
}
