//! The payload formats, byte for byte where subscribers depend on it.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::*;
use crate::model::event::{EventFacts, NodeFacts, WorkflowFacts};

fn workflow() -> WorkflowFacts {
    WorkflowFacts {
        name: "wf-1".into(),
        namespace: "kubeflow".into(),
        uid: "wf-uid".into(),
        labels: BTreeMap::from([("pipeline/runid".into(), "run-1".into())]),
        phase: Some("Running".into()),
        started_at: Some("2026-11-20T09:14:05Z".into()),
        parameters: BTreeMap::from([("lr".into(), "0.1".into())]),
        run_name: Some("nightly".into()),
        pipeline_name: Some("my-pipeline".into()),
        ..WorkflowFacts::default()
    }
}

fn event(
    reason: &str,
    message: &str,
    node: Option<&str>,
    workflow: Option<WorkflowFacts>,
) -> RouterEvent {
    RouterEvent {
        id: "3f2c9d3e-0000-5000-8000-000000000001".into(),
        event: EventFacts {
            uid: "ev-uid".into(),
            namespace: "kubeflow".into(),
            reason: reason.into(),
            message: message.into(),
            severity: "Normal".into(),
            count: 1,
            time: Some("2026-11-20T09:15:16Z".into()),
            workflow_name: "wf-1".into(),
            workflow_uid: Some("wf-uid".into()),
        },
        node: node.map(|name| NodeFacts {
            id: Some("wf-1-123".into()),
            full_name: format!("wf-1.{name}"),
            name: name.into(),
            node_type: Some("Pod".into()),
            phase: Some("Failed".into()),
            message: Some("Error (exit code 1)".into()),
            ..NodeFacts::default()
        }),
        workflow: workflow.map(Into::into),
        synthesized: false,
        task: None,
        plumbing: false,
        attempt: 1,
        cluster: None,
    }
}

fn text(payload: &Payload) -> &str {
    std::str::from_utf8(&payload.body).unwrap()
}

/// The keys of a JSON object body, in the order they appear in the text.
fn keys_in_order(body: &str) -> Vec<String> {
    let Value::Object(map) = serde_json::from_str::<Value>(body).unwrap() else {
        panic!("not an object: {body}");
    };
    let mut keys: Vec<(usize, String)> = map
        .keys()
        .map(|k| {
            (
                body.find(&format!("{}:", serde_json::to_string(k).unwrap()))
                    .unwrap(),
                k.clone(),
            )
        })
        .collect();
    keys.sort();
    keys.into_iter().map(|(_, k)| k).collect()
}

#[test]
fn kfp_is_the_go_handlers_five_keys_in_order() {
    let e = event(
        "WorkflowNodeFailed",
        "Failed node wf-1.train: Error (exit code 1)",
        Some("train"),
        Some(workflow()),
    );
    let payload = Format::Kfp.render(&e);
    assert_eq!(payload.content_type, "application/json");
    assert_eq!(
        text(&payload),
        r#"{"KfpRunId":"run-1","WorkflowName":"wf-1","NodeName":"train","EventType":"WorkflowNodeFailed","Message":"Failed node wf-1.train: Error (exit code 1)"}"#
    );
}

#[test]
fn kfp_without_workflow_node_or_message_has_empty_strings() {
    let e = event("WorkflowFailed", "", None, None);
    assert_eq!(
        text(&Format::Kfp.render(&e)),
        r#"{"KfpRunId":"","WorkflowName":"wf-1","NodeName":"","EventType":"WorkflowFailed","Message":""}"#
    );
}

#[test]
fn kfp_escapes_what_json_needs() {
    let message = "Failed node wf-1.loop(0:{\"a\": \"x\\y\"}): \u{e9}\n\t";
    let e = event(
        "WorkflowNodeFailed",
        message,
        Some("loop(0:{\"a\": \"x\\y\"})"),
        None,
    );
    let body = text(&Format::Kfp.render(&e)).to_owned();
    let value: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(value["Message"], message);
    assert_eq!(value["NodeName"], "loop(0:{\"a\": \"x\\y\"})");
    assert_eq!(
        keys_in_order(&body),
        [
            "KfpRunId",
            "WorkflowName",
            "NodeName",
            "EventType",
            "Message"
        ]
    );
}

#[test]
fn kfp_is_written_byte_for_byte_as_serde_json_writes_it() {
    let message = "Failed: \"quoted\" \\path\u{1}\u{1f}\r\n caf\u{e9} \u{1f980}".repeat(9);
    let e = event(
        "WorkflowNodeFailed",
        &message,
        Some("n\"ode"),
        Some(workflow()),
    );
    for view in [NodeView::Tasks, NodeView::All] {
        let written = Format::Kfp.render_as(&e, view).body;
        let expected = serde_json::to_vec(&kfp::KfpPayload::new(&e, view)).unwrap();
        assert_eq!(
            std::str::from_utf8(&written),
            std::str::from_utf8(&expected)
        );
    }
}

#[test]
fn extended_starts_with_the_kfp_keys_and_has_a_node_object_for_node_events() {
    let e = event(
        "WorkflowNodeFailed",
        "Failed node wf-1.train: Error (exit code 1)",
        Some("train"),
        Some(workflow()),
    );
    let payload = Format::Extended.render(&e);
    assert_eq!(payload.content_type, "application/json");
    let body = text(&payload);
    let keys = keys_in_order(body);
    assert_eq!(
        keys[..5],
        [
            "KfpRunId",
            "WorkflowName",
            "NodeName",
            "EventType",
            "Message"
        ]
    );
    assert_eq!(
        keys[5..],
        [
            "Namespace",
            "EventUid",
            "EventTime",
            "EventSeverity",
            "EventCount",
            "WorkflowUid",
            "Phase",
            "StartedAt",
            "FinishedAt",
            "WorkflowMessage",
            "RunName",
            "PipelineName",
            "RecurringRunName",
            "Parameters",
            "Labels",
            "Node",
            "Attempt",
            "Synthesized"
        ]
    );
    let v: Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        v["Node"],
        json!({
            "Id": "wf-1-123", "Name": "train", "FullName": "wf-1.train", "DisplayName": null,
            "Type": "Pod", "Phase": "Failed", "Message": "Error (exit code 1)",
            "TemplateName": null, "StartedAt": null, "FinishedAt": null
        })
    );
    assert_eq!(v["Namespace"], "kubeflow");
    assert_eq!(v["EventUid"], "ev-uid");
    assert_eq!(v["EventTime"], "2026-11-20T09:15:16Z");
    assert_eq!(v["EventCount"], 1);
    assert_eq!(v["Phase"], "Running");
    assert_eq!(v["RunName"], "nightly");
    assert_eq!(v["PipelineName"], "my-pipeline");
    assert_eq!(v["RecurringRunName"], Value::Null);
    assert_eq!(v["Parameters"], json!({"lr": "0.1"}));
    assert_eq!(v["Labels"], json!({"pipeline/runid": "run-1"}));
    assert_eq!(v["Synthesized"], false);
}

#[test]
fn extended_has_null_node_for_workflow_events_and_falls_back_to_the_events_uid() {
    let e = event("WorkflowRunning", "Workflow Running", None, None);
    let v: Value = serde_json::from_slice(&Format::Extended.render(&e).body).unwrap();
    assert_eq!(v["Node"], Value::Null);
    assert_eq!(v["NodeName"], "");
    assert_eq!(v["KfpRunId"], "");
    assert_eq!(
        v["WorkflowUid"], "wf-uid",
        "from the Event when the Workflow is unknown"
    );
    assert_eq!(v["Phase"], Value::Null);
    assert_eq!(v["Parameters"], Value::Null);
}

#[test]
fn cloudevents_is_a_structured_envelope_around_extended() {
    let e = event("WorkflowFailed", "", None, Some(workflow()));
    let payload = Format::Cloudevents.render(&e);
    assert_eq!(payload.content_type, "application/cloudevents+json");
    let v: Value = serde_json::from_slice(&payload.body).unwrap();
    assert_eq!(v["specversion"], "1.0");
    assert_eq!(v["id"], e.id);
    assert_eq!(
        v["source"],
        "/apis/argoproj.io/v1alpha1/namespaces/kubeflow/workflows/wf-1"
    );
    assert_eq!(v["type"], "org.kubeflow.pipelines.run.failed");
    assert_eq!(v["subject"], "wf-1", "the workflow, for workflow events");
    assert_eq!(v["time"], "2026-11-20T09:15:16Z");
    assert_eq!(v["datacontenttype"], "application/json");
    let extended: Value = serde_json::from_slice(&Format::Extended.render(&e).body).unwrap();
    assert_eq!(v["data"], extended);
}

#[test]
fn cloudevents_subject_is_the_step_for_node_events_and_time_is_optional() {
    let mut e = event(
        "WorkflowNodeSucceeded",
        "Succeeded node wf-1.train",
        Some("train"),
        None,
    );
    e.event.time = None;
    let v: Value = serde_json::from_slice(&Format::Cloudevents.render(&e).body).unwrap();
    assert_eq!(v["type"], "org.kubeflow.pipelines.run.node.succeeded");
    assert_eq!(v["subject"], "train");
    assert!(v.get("time").is_none(), "absent rather than null: {v}");
}

#[test]
fn formats_are_named_in_snake_case_and_kfp_is_the_default() {
    let parse = |s: &str| serde_json::from_value::<Format>(json!(s));
    assert_eq!(parse("kfp").unwrap(), Format::Kfp);
    assert_eq!(parse("extended").unwrap(), Format::Extended);
    assert_eq!(parse("cloudevents").unwrap(), Format::Cloudevents);
    assert!(parse("CloudEvents").is_err());
    assert_eq!(Format::default(), Format::Kfp);
}

#[test]
fn a_kfp_task_is_named_as_the_pipeline_names_it_unless_the_endpoint_wants_all_nodes() {
    let mut e = event(
        "WorkflowNodeSucceeded",
        "Succeeded node wf-1.root.for-loop-2.iteration-iterations(1:1).iteration-item.train(0)",
        Some("train(0)"),
        Some(workflow()),
    );
    e.task = Some(crate::model::event::TaskFacts {
        name: "train".into(),
        display_name: Some("Train model".into()),
        iteration: Some(1),
        dag_path: vec!["root".into(), "for-loop-2".into()],
        cached: false,
        pod_name: None,
        message: None,
    });
    let tasks: Value = serde_json::from_slice(&Format::Kfp.render(&e).body).unwrap();
    assert_eq!(tasks["NodeName"], "train");
    let all = Format::Kfp.render_as(&e, crate::model::event::NodeView::All);
    let all: Value = serde_json::from_slice(&all.body).unwrap();
    assert_eq!(all["NodeName"], "train(0)");
    let extended: Value = serde_json::from_slice(&Format::Extended.render(&e).body).unwrap();
    assert_eq!(
        extended["Task"],
        json!({"Name": "train", "DisplayName": "Train model", "Iteration": 1,
               "DagPath": ["root", "for-loop-2"], "Cached": false, "PodName": null})
    );
    assert_eq!(extended["Attempt"], 1);
}

#[test]
fn the_cluster_is_named_in_extended_and_cloudevents_but_never_in_kfp() {
    let mut e = event("WorkflowFailed", "", None, Some(workflow()));
    for format in [Format::Kfp, Format::Extended, Format::Cloudevents] {
        let v: Value = serde_json::from_slice(&format.render(&e).body).unwrap();
        assert!(
            v.get("Cluster").is_none() && v.get("cluster").is_none(),
            "{format:?}: unset"
        );
    }
    e.cluster = Some("prod-eu-1".into());
    let kfp = Format::Kfp.render(&e);
    assert_eq!(
        keys_in_order(text(&kfp)).len(),
        5,
        "the Go handler's keys, unchanged"
    );
    let extended: Value = serde_json::from_slice(&Format::Extended.render(&e).body).unwrap();
    assert_eq!(extended["Cluster"], "prod-eu-1");
    let cloudevent: Value = serde_json::from_slice(&Format::Cloudevents.render(&e).body).unwrap();
    assert_eq!(cloudevent["cluster"], "prod-eu-1", "an extension attribute");
    assert_eq!(cloudevent["data"]["Cluster"], "prod-eu-1");
}
