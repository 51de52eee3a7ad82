//! `source.from`: run events derived from Workflow status, alone or deduplicated with Events.
//!
//! The quick start recording is replayed through the real binary to a real HTTP sink: once as
//! recorded (Events), once with its Event lines removed (`from = "workflows"`, as if the
//! controller's events were off), and once with both paths on.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::json;
use support::recording::Recording;
use support::router::{RouterProcess, Scratch};
use support::sink::Sink;

/// (EventType, NodeName) -> how many payloads reported it, with one Message per key.
type Reported = BTreeMap<(String, String), (usize, String)>;

async fn replay(recording: &Path, from: &str) -> Reported {
    replay_in(&Scratch::new(), recording, from).await
}

/// Replays `recording` with the state folder of `scratch`, so runs can follow each other.
async fn replay_in(scratch: &Scratch, recording: &Path, from: &str) -> Reported {
    let mut reported = Reported::new();
    for p in payloads(scratch, recording, from).await {
        let key = (
            p["EventType"].as_str().unwrap().to_owned(),
            p["NodeName"].as_str().unwrap().to_owned(),
        );
        assert_eq!(p["KfpRunId"], "ee1c3f1f-031b-49e9-a7ff-2f7a54c11b95");
        assert_eq!(p["WorkflowName"], "tacos-vs-burritos-vw8g9");
        let entry = reported.entry(key).or_insert((0, String::new()));
        entry.0 += 1;
        entry.1 = p["Message"].as_str().unwrap().to_owned();
    }
    reported
}

/// Runs the router over `recording` with `source.from = from` and the state folder of
/// `scratch`, until it exits; returns the `kfp` payloads the sink received, in order.
async fn payloads(scratch: &Scratch, recording: &Path, from: &str) -> Vec<serde_json::Value> {
    let sink = Sink::start().await;
    let tables = scratch
        .tables(recording, None)
        .replace("[state]", &format!("from = \"{from}\"\n\n[state]"));
    let config = scratch.write(
        "router.toml",
        &format!(
            "{tables}[[endpoints]]\nname = \"kfp\"\nurl = \"{}\"\n",
            sink.url("/kfp")
        ),
    );
    let mut router = RouterProcess::start(&config);
    router.expect_success().await;
    sink.received_on("/kfp").iter().map(|r| r.json()).collect()
}

/// The quick start recording without its Event lines: Workflows only.
fn workflows_only(scratch: &Scratch) -> std::path::PathBuf {
    let text = std::fs::read_to_string(support::quickstart_recording()).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains(r#""kind":"Event""#))
        .collect();
    assert!(
        kept.len() < text.lines().count(),
        "the recording has Events to remove"
    );
    scratch.write("workflows.jsonl", &(kept.join("\n") + "\n"))
}

fn without_rollup(message: &str) -> &str {
    message
        .strip_prefix("(combined from similar events): ")
        .unwrap_or(message)
}

#[tokio::test]
async fn with_events_off_every_transition_still_arrives_once_with_the_same_payload() {
    let scratch = Scratch::new();
    let from_events = replay(&support::quickstart_recording(), "events").await;
    let from_status = replay(&workflows_only(&scratch), "workflows").await;

    for ((reason, node), (count, _)) in &from_status {
        assert_eq!(*count, 1, "{reason} {node:?} delivered {count} times");
    }
    // Every transition the Events reported is derived, with Argo's own message — except the
    // node that only a rolled-up Event's count bump named, whose message is the roll-up's.
    for ((reason, node), (_, message)) in &from_events {
        let derived = from_status
            .get(&(reason.clone(), node.clone()))
            .unwrap_or_else(|| panic!("{reason} {node:?} was not derived from status"));
        assert_eq!(without_rollup(message), derived.1, "{reason} {node:?}");
    }
    let expected_nodes: BTreeSet<&str> = [
        "",
        "dataprocessing",
        "train",
        "for-loop-2",
        "for-loop-2(0:a)",
        "for-loop-2(6:g)",
    ]
    .into_iter()
    .collect();
    let derived_nodes: BTreeSet<&str> = from_status.keys().map(|(_, n)| n.as_str()).collect();
    assert!(
        derived_nodes.is_superset(&expected_nodes),
        "{derived_nodes:?}"
    );
    assert!(from_status.contains_key(&("WorkflowFailed".into(), String::new())));
}

#[tokio::test]
async fn with_both_paths_each_transition_is_delivered_once() {
    let both = replay(&support::quickstart_recording(), "both").await;
    for ((reason, node), (count, _)) in &both {
        assert_eq!(*count, 1, "{reason} {node:?} delivered {count} times");
    }
    // The roll-up hid `for-loop-2(1:b)`'s and later items' own Running Events; the status
    // path fills in every item.
    for item in ["0:a", "1:b", "2:c", "3:d", "4:e", "5:f", "6:g"] {
        for reason in ["WorkflowNodeRunning", "WorkflowNodeSucceeded"] {
            let key = (reason.to_owned(), format!("for-loop-2({item})"));
            assert!(both.contains_key(&key), "{key:?} missing");
        }
    }
}

#[tokio::test]
async fn after_a_restart_only_the_transitions_missed_meanwhile_arrive() {
    let scratch = Scratch::new();
    let text = std::fs::read_to_string(workflows_only(&scratch)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // The router sees the run up to the middle, then is down while it finishes; when it is
    // back, the Workflow's final state is all there is to see.
    let before = scratch.write(
        "before.jsonl",
        &(lines[..lines.len() / 2].join("\n") + "\n"),
    );
    let after = scratch.write("after.jsonl", &(lines[lines.len() - 1].to_owned() + "\n"));
    let first = replay_in(&scratch, &before, "workflows").await;
    let second = replay_in(&scratch, &after, "workflows").await;
    let all = replay(&workflows_only(&Scratch::new()), "workflows").await;

    let overlap: Vec<_> = first.keys().filter(|k| second.contains_key(*k)).collect();
    assert!(
        overlap.is_empty(),
        "delivered again after the restart: {overlap:?}"
    );
    let mut together: BTreeSet<_> = first.keys().collect();
    together.extend(second.keys());
    assert_eq!(
        together,
        all.keys().collect(),
        "nothing missed, nothing extra"
    );
    assert!(
        second.contains_key(&("WorkflowFailed".into(), String::new())),
        "{second:?}"
    );
    assert!(!first.is_empty() && !second.is_empty());
}

/// A workflow's life as a recording: the Workflow object after each change, and (when
/// `events` is true) the Events the controller records for it, each right after its change.
/// Nodes are `<wf>.dag-<d>.step-<n>` (nested under DAGs), ids `<wf>-<n>`.
fn run_of(wf: &support::recording::Wf, nodes: usize, events: bool, out: &mut Recording) {
    let time = |s: usize| format!("2026-11-20T10:{:02}:{:02}Z", s / 60 % 60, s % 60);
    let mut statuses: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let version = |phase: &str, statuses: &BTreeMap<String, serde_json::Value>| {
        let mut object = wf.object(Some(phase));
        object["status"]["nodes"] = serde_json::to_value(statuses).unwrap();
        if phase == "Succeeded" {
            object["status"]["finishedAt"] = json!(time(3000));
        }
        object
    };
    out.watch("MODIFIED", version("Running", &statuses));
    if events {
        out.watch(
            "ADDED",
            wf.event(
                &format!("{}-running", wf.uid),
                "WorkflowRunning",
                Some("Workflow Running"),
            ),
        );
    }
    for phase in ["Running", "Succeeded"] {
        for n in 0..nodes {
            let id = format!("{}-{n}", wf.name);
            let name = format!("{}.dag-{}.step-{n}", wf.name, n % 3);
            let mut status = json!({"id": id, "name": name, "displayName": format!("step-{n}"), "type": "Pod",
                                    "phase": phase, "startedAt": time(n)});
            if phase == "Succeeded" {
                status["finishedAt"] = json!(time(1000 + n));
            }
            statuses.insert(id.clone(), status);
            out.watch("MODIFIED", version("Running", &statuses));
            if events {
                let mut event = wf.node_event(
                    &format!("{id}-{phase}"),
                    phase,
                    &format!("dag-{}.step-{n}", n % 3),
                );
                event["metadata"]["annotations"]["workflows.argoproj.io/node-id"] = json!(id);
                out.watch("ADDED", event);
            }
        }
    }
    out.watch("MODIFIED", version("Succeeded", &statuses));
    if events {
        out.watch(
            "ADDED",
            wf.event(
                &format!("{}-done", wf.uid),
                "WorkflowSucceeded",
                Some("Workflow completed"),
            ),
        );
    }
}

/// Every delivery as (workflow, reason, node), with how many times each arrived.
async fn deliveries(
    scratch: &Scratch,
    recording: &Recording,
    from: &str,
) -> BTreeMap<(String, String, String), usize> {
    let path = scratch.path("generated.jsonl");
    recording.write(&path);
    let mut counts = BTreeMap::new();
    for p in payloads(scratch, &path, from).await {
        let key = |k: &str| p[k].as_str().unwrap().to_owned();
        *counts
            .entry((key("WorkflowName"), key("EventType"), key("NodeName")))
            .or_insert(0) += 1;
    }
    counts
}

#[tokio::test]
async fn both_paths_deliver_a_thousand_transitions_without_duplicates() {
    let workflows: Vec<_> = (0..20)
        .map(|w| support::recording::Wf::new(format!("wf-{w:02}")))
        .collect();
    let mut recording = Recording::new();
    for wf in &workflows {
        recording.push(wf.object(None));
    }
    for wf in &workflows {
        run_of(wf, 25, true, &mut recording);
    }
    let counts = deliveries(&Scratch::new(), &recording, "both").await;
    let duplicates: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "{duplicates:?}");
    // 20 workflows x (25 nodes x 2 phases + Running + Succeeded).
    assert_eq!(counts.len(), 20 * (25 * 2 + 2));
    assert!(counts.contains_key(&(
        "wf-07".into(),
        "WorkflowNodeSucceeded".into(),
        "step-24".into()
    )));
}

#[tokio::test]
async fn a_roll_up_that_hides_thirty_nodes_still_delivers_each_once() {
    let wf = support::recording::Wf::new("rolled");
    let mut recording = Recording::new();
    recording.push(wf.object(None));
    // The status path sees every node; the Events path sees 10 node events, then one
    // aggregated Event without annotations whose count is bumped for the other 20.
    run_of(&wf, 30, false, &mut recording);
    let mut lines = Vec::new();
    for n in 0..30 {
        let full = format!("rolled.dag-{}.step-{n}", n % 3);
        let event = if n < 10 {
            wf.node_event(
                &format!("ev-{n}"),
                "Running",
                &format!("dag-{}.step-{n}", n % 3),
            )
        } else {
            let mut e = wf.event(
                "combined",
                "WorkflowNodeRunning",
                Some(&format!(
                    "(combined from similar events): Running node {full}"
                )),
            );
            e["count"] = json!(n - 9);
            e
        };
        lines.push(json!({"type": if n <= 10 { "ADDED" } else { "MODIFIED" }, "object": event}));
    }
    recording.lines.splice(2..2, lines);
    let counts = deliveries(&Scratch::new(), &recording, "both").await;
    for n in 0..30 {
        for reason in ["WorkflowNodeRunning", "WorkflowNodeSucceeded"] {
            let key = ("rolled".to_owned(), reason.to_owned(), format!("step-{n}"));
            assert_eq!(counts.get(&key), Some(&1), "{key:?} in {counts:?}");
        }
    }
    assert_eq!(counts.len(), 30 * 2 + 2, "{counts:?}");
}

#[tokio::test]
async fn with_both_paths_a_transition_has_one_webhook_id_whichever_path_reports_it() {
    let wf = support::recording::Wf::new("ids");
    let mut events_first = Recording::new();
    events_first.push(wf.object(None));
    run_of(&wf, 5, true, &mut events_first);
    // Each Event before the status that shows its change: the Events path reports it.
    for i in 1..events_first.lines.len() {
        if events_first.lines[i]["object"]["kind"] == "Event" {
            events_first.lines.swap(i - 1, i);
        }
    }
    let mut status_only = events_first.clone();
    status_only.lines.retain(|l| l["object"]["kind"] != "Event");
    let mut ids = Vec::new();
    for recording in [&events_first, &status_only] {
        let scratch = Scratch::new();
        let path = scratch.path("generated.jsonl");
        recording.write(&path);
        let sink = Sink::start().await;
        let tables = scratch
            .tables(&path, None)
            .replace("[state]", "from = \"both\"\n\n[state]");
        let config = scratch.write(
            "router.toml",
            &format!(
                "{tables}[[endpoints]]\nname = \"kfp\"\nurl = \"{}\"\n",
                sink.url("/kfp")
            ),
        );
        RouterProcess::start(&config).expect_success().await;
        let by_transition: BTreeMap<(String, String), String> = sink
            .received_on("/kfp")
            .iter()
            .map(|r| {
                let p = r.json();
                let key = |k: &str| p[k].as_str().unwrap().to_owned();
                (
                    (key("EventType"), key("NodeName")),
                    r.header("webhook-id").to_owned(),
                )
            })
            .collect();
        ids.push(by_transition);
    }
    assert_eq!(ids[0].len(), 5 * 2 + 2, "{:?}", ids[0]);
    assert_eq!(ids[0], ids[1], "the same transition, the same id");
}
