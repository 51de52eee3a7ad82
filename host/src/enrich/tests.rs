//! The enrich stage on small in-memory Events and Workflows.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

use super::*;
use crate::telemetry::Metrics;

const WF: &str = "wf-abc";
const WF_UID: &str = "uid-wf-abc";

fn enricher() -> Enricher {
    Enricher::new(Paths::Events, Arc::new(Metrics::new()))
}

fn workflow(phase: &str, uid: &str) -> Workflow {
    serde_json::from_value(json!({
        "metadata": {
            "name": WF, "namespace": "kubeflow", "uid": uid,
            "labels": {"pipeline/runid": format!("run-of-{uid}")}
        },
        "status": {
            "phase": phase,
            "nodes": {
                "wf-abc-111": {
                    "id": "wf-abc-111", "name": "wf-abc.train", "displayName": "train", "type": "Pod",
                    "phase": "Failed", "message": "Error (exit code 1)", "templateName": "train-tpl",
                    "startedAt": "2026-11-20T09:15:02Z", "finishedAt": "2026-11-20T09:18:47Z"
                }
            }
        }
    }))
    .unwrap()
}

/// A workflow-controller Event about Workflow `WF`.
fn event(uid: &str, reason: &str, message: Option<&str>, annotations: Value) -> Event {
    let mut e = json!({
        "metadata": {"name": format!("{WF}.{uid}"), "namespace": "kubeflow", "uid": uid, "annotations": annotations},
        "involvedObject": {"kind": "Workflow", "name": WF, "namespace": "kubeflow", "uid": WF_UID},
        "reason": reason,
        "type": "Normal",
        "count": 1,
        "lastTimestamp": "2026-11-20T09:15:16Z",
        "source": {"component": "workflow-controller"}
    });
    if let Some(message) = message {
        e["message"] = json!(message);
    }
    serde_json::from_value(e).unwrap()
}

fn apply(enricher: &mut Enricher, item: SourceItem) {
    let _ = enricher.apply(item);
}

#[test]
fn the_node_annotation_wins_over_the_message() {
    let e = event(
        "e1",
        "WorkflowNodeRunning",
        Some("Running node wf-abc.something-else"),
        json!({
            "workflows.argoproj.io/node-name": "wf-abc.dag.train",
            "workflows.argoproj.io/node-id": "wf-abc-999",
            "workflows.argoproj.io/node-type": "Pod",
            "workflows.argoproj.io/node-start-time": "1795166102000000000"
        }),
    );
    let out = enricher().enrich(e.clone());
    let node = out.node.as_ref().unwrap();
    assert_eq!(node.full_name, "wf-abc.dag.train");
    assert_eq!(out.node_name(), "train");
    assert_eq!(node.id.as_deref(), Some("wf-abc-999"));
    assert_eq!(node.node_type.as_deref(), Some("Pod"));
    assert_eq!(
        node.phase.as_deref(),
        Some("Running"),
        "from the reason when the Workflow is unknown"
    );
    assert_eq!(
        node.started_at.as_deref(),
        Some("2026-11-20T09:15:02Z"),
        "the annotation's Unix nanoseconds, as RFC 3339"
    );
}

#[test]
fn without_annotations_the_message_names_the_node() {
    let e = event(
        "e2",
        "WorkflowNodeFailed",
        Some("Failed node wf-abc.train: Error (exit code 1)"),
        json!(null),
    );
    let out = enricher().enrich(e.clone());
    let node = out.node.as_ref().unwrap();
    assert_eq!(out.node_name(), "train");
    assert_eq!(node.full_name, "wf-abc.train");
    assert_eq!(node.message.as_deref(), Some("Error (exit code 1)"));
    assert_eq!(node.phase.as_deref(), Some("Failed"));
    assert_eq!(node.id, None);
}

#[test]
fn roll_ups_root_nodes_and_workflow_events() {
    let rollup = event(
        "e3",
        "WorkflowNodeRunning",
        Some("(combined from similar events): Running node wf-abc.for-loop-2(1:b)"),
        json!(null),
    );
    assert_eq!(
        enricher().enrich(rollup.clone()).node_name(),
        "for-loop-2(1:b)"
    );

    let root = event(
        "e4",
        "WorkflowNodeFailed",
        Some("Failed node wf-abc"),
        json!(null),
    );
    let out = enricher().enrich(root.clone());
    assert_eq!(
        out.node.as_ref().unwrap().full_name,
        WF,
        "the root is a node"
    );
    assert_eq!(out.node_name(), "", "whose step name is empty");

    let running = event(
        "e5",
        "WorkflowRunning",
        Some("Workflow Running"),
        json!(null),
    );
    let out = enricher().enrich(running.clone());
    assert_eq!(out.node, None);
    assert_eq!(out.node_name(), "");

    let failed = event("e6", "WorkflowFailed", None, json!(null));
    let out = enricher().enrich(failed.clone());
    assert_eq!(out.node, None);
    assert_eq!(out.event.message, "");
    assert_eq!(out.event.reason, "WorkflowFailed");
}

#[test]
fn the_cached_workflow_gives_run_id_and_node_status() {
    let mut enricher = enricher();
    apply(
        &mut enricher,
        SourceItem::WorkflowApplied(Box::new(workflow("Running", WF_UID))),
    );
    let e = event(
        "e7",
        "WorkflowNodeFailed",
        Some("Failed node wf-abc.train: Error (exit code 1)"),
        json!({"workflows.argoproj.io/node-name": "wf-abc.train", "workflows.argoproj.io/node-id": "wf-abc-111"}),
    );
    let out = enricher.enrich(e.clone());
    assert_eq!(out.run_id(), format!("run-of-{WF_UID}"));
    let wf = out.workflow.as_ref().unwrap();
    assert_eq!(wf.uid, WF_UID);
    assert_eq!(wf.phase.as_deref(), Some("Running"));
    let node = out.node.as_ref().unwrap();
    assert_eq!(node.display_name.as_deref(), Some("train"));
    assert_eq!(node.template_name.as_deref(), Some("train-tpl"));
    assert_eq!(
        node.node_type.as_deref(),
        Some("Pod"),
        "from the status when not annotated"
    );
    assert_eq!(node.started_at.as_deref(), Some("2026-11-20T09:15:02Z"));
    assert_eq!(node.finished_at.as_deref(), Some("2026-11-20T09:18:47Z"));
    assert_eq!(out.event.time.as_deref(), Some("2026-11-20T09:15:16Z"));
    assert_eq!(out.event.workflow_uid.as_deref(), Some(WF_UID));
    assert_eq!(out.ordering_key(), WF_UID);

    // Found by full name when the Event has no node id.
    let e = event(
        "e8",
        "WorkflowNodeFailed",
        Some("Failed node wf-abc.train: Error (exit code 1)"),
        json!(null),
    );
    assert_eq!(
        enricher.enrich(e.clone()).node.unwrap().id.as_deref(),
        Some("wf-abc-111")
    );
}

#[test]
fn pod_events_sent_as_pod_join_their_workflow_by_annotation() {
    let mut enricher = enricher();
    apply(
        &mut enricher,
        SourceItem::WorkflowApplied(Box::new(workflow("Running", WF_UID))),
    );
    let pod_event: Event = serde_json::from_value(json!({
        "metadata": {
            "name": "wf-abc-train-111.1", "namespace": "kubeflow", "uid": "pod-ev-1",
            "annotations": {
                "workflows.argoproj.io/workflow-name": WF,
                "workflows.argoproj.io/workflow-uid": WF_UID,
                "workflows.argoproj.io/node-name": "wf-abc.train",
                "workflows.argoproj.io/node-id": "wf-abc-111"
            }
        },
        "involvedObject": {"kind": "Pod", "name": "wf-abc-train-111", "namespace": "kubeflow", "uid": "pod-uid"},
        "reason": "WorkflowNodeFailed",
        "message": "Failed node wf-abc.train: Error (exit code 1)",
        "type": "Warning",
        "reportingComponent": "workflow-controller"
    }))
    .unwrap();
    assert!(crate::model::argo::is_workflow_event(&pod_event));
    let out = enricher.enrich(pod_event.clone());
    assert_eq!(
        out.event.workflow_name, WF,
        "from the annotation, not the Pod's name"
    );
    assert_eq!(out.event.workflow_uid.as_deref(), Some(WF_UID));
    assert_eq!(out.run_id(), format!("run-of-{WF_UID}"));
    assert_eq!(out.node_name(), "train");
    assert_eq!(out.event.severity, "Warning");

    let mut other_pod = pod_event.clone();
    other_pod.metadata.annotations = None;
    assert!(
        !crate::model::argo::is_workflow_event(&other_pod),
        "a Pod event without the annotation"
    );
}

#[test]
fn a_deleted_workflow_still_enriches_late_events() {
    let mut enricher = enricher();
    let wf = workflow("Succeeded", WF_UID);
    apply(
        &mut enricher,
        SourceItem::WorkflowApplied(Box::new(wf.clone())),
    );
    apply(&mut enricher, SourceItem::WorkflowDeleted(Box::new(wf)));
    let out = enricher.enrich(event(
        "e9",
        "WorkflowSucceeded",
        Some("Workflow completed"),
        json!(null),
    ));
    assert_eq!(
        out.run_id(),
        format!("run-of-{WF_UID}"),
        "from the recently deleted cache"
    );
    assert_eq!(out.workflow.unwrap().phase.as_deref(), Some("Succeeded"));
}

#[test]
fn a_recreated_workflow_of_the_same_name_is_told_apart_by_uid() {
    let mut enricher = enricher();
    let old = workflow("Failed", WF_UID);
    apply(
        &mut enricher,
        SourceItem::WorkflowApplied(Box::new(old.clone())),
    );
    apply(&mut enricher, SourceItem::WorkflowDeleted(Box::new(old)));
    apply(
        &mut enricher,
        SourceItem::WorkflowApplied(Box::new(workflow("Running", "uid-new"))),
    );
    let late = enricher.enrich(event("e10", "WorkflowFailed", None, json!(null)));
    assert_eq!(
        late.run_id(),
        format!("run-of-{WF_UID}"),
        "the old run's late Event"
    );
    let mut new = event(
        "e11",
        "WorkflowRunning",
        Some("Workflow Running"),
        json!(null),
    );
    new.involved_object.uid = Some("uid-new".into());
    assert_eq!(enricher.enrich(new.clone()).run_id(), "run-of-uid-new");
}

#[test]
fn an_unknown_workflow_gives_an_empty_run_id_but_the_event_is_delivered() {
    let mut enricher = enricher();
    let item = SourceItem::Event {
        event: Box::new(event(
            "e12",
            "WorkflowNodeSucceeded",
            Some("Succeeded node wf-abc.prep"),
            json!(null),
        )),
        checkpoint: None,
    };
    let out: Vec<RouterEvent> = enricher
        .apply(item)
        .into_iter()
        .filter_map(|i| i.event)
        .collect();
    assert_eq!(out.len(), 1, "delivered all the same");
    let out = &out[0];
    assert_eq!(out.workflow, None);
    assert_eq!(out.run_id(), "");
    assert_eq!(out.event.workflow_name, WF);
    assert_eq!(out.node_name(), "prep");
    assert_eq!(out.event.uid, "e12");
    assert_eq!(out.event.namespace, "kubeflow");
    assert_eq!(
        out.ordering_key(),
        WF_UID,
        "the Event's workflow uid orders it"
    );
}

#[test]
fn the_phase_follows_a_final_reason_when_the_cache_lags() {
    let mut enricher = enricher();
    apply(
        &mut enricher,
        SourceItem::WorkflowApplied(Box::new(workflow("Running", WF_UID))),
    );
    let phase = |enricher: &Enricher, reason: &str| {
        enricher
            .enrich(event("e13", reason, None, json!(null)))
            .workflow
            .unwrap()
            .phase
            .clone()
    };
    assert_eq!(
        phase(&enricher, "WorkflowFailed").as_deref(),
        Some("Failed")
    );
    assert_eq!(
        phase(&enricher, "WorkflowTimedOut").as_deref(),
        Some("Failed")
    );
    assert_eq!(
        phase(&enricher, "WorkflowSucceeded").as_deref(),
        Some("Succeeded")
    );
    assert_eq!(
        phase(&enricher, "WorkflowNodeFailed").as_deref(),
        Some("Running"),
        "node events keep it"
    );
    apply(
        &mut enricher,
        SourceItem::WorkflowApplied(Box::new(workflow("Error", WF_UID))),
    );
    assert_eq!(
        phase(&enricher, "WorkflowFailed").as_deref(),
        Some("Error"),
        "a final cached phase stays"
    );
    assert_eq!(phase_at("WorkflowSucceeded", None), Some("Succeeded"));
    assert_eq!(
        phase_at("WorkflowSucceeded", Some("Running")),
        Some("Succeeded")
    );
    assert_eq!(phase_at("WorkflowSucceeded", Some("Failed")), None);
    assert_eq!(phase_at("WorkflowRunning", None), None);
}

#[test]
fn occurrence_ids_are_stable_and_differ_per_count() {
    let e = event(
        "e14",
        "WorkflowNodeRunning",
        Some("Running node wf-abc.train"),
        json!(null),
    );
    let id = occurrence_id(&e);
    assert_eq!(
        id,
        occurrence_id(&e.clone()),
        "the same occurrence, the same id"
    );
    assert_eq!(enricher().enrich(e.clone()).id, id);
    let mut repeat = e.clone();
    repeat.count = Some(2);
    assert_ne!(
        occurrence_id(&repeat),
        id,
        "a count bump is a new occurrence"
    );
    let other = event(
        "e15",
        "WorkflowNodeRunning",
        Some("Running node wf-abc.train"),
        json!(null),
    );
    assert_ne!(occurrence_id(&other), id);
    assert!(uuid::Uuid::parse_str(&id).is_ok());
}

/// The events delivered for `item`.
fn delivered(enricher: &mut Enricher, item: SourceItem) -> Vec<RouterEvent> {
    enricher
        .apply(item)
        .into_iter()
        .filter_map(|i| i.event)
        .collect()
}

#[test]
fn an_offloaded_workflow_s_node_events_are_delivered_with_the_status_path_only() {
    let metrics = Arc::new(Metrics::new());
    let mut enricher = Enricher::new(Paths::Workflows, Arc::clone(&metrics));
    let mut offloaded = workflow("Running", WF_UID);
    let status = offloaded.status.as_mut().unwrap();
    status.nodes.clear();
    status.offload_node_status_version = Some("fnv:784127654".into());
    let derived = delivered(
        &mut enricher,
        SourceItem::WorkflowApplied(Box::new(offloaded.clone())),
    );
    assert_eq!(derived.len(), 1, "the status still tells the run's phase");
    assert_eq!(derived[0].event.reason, "WorkflowRunning");
    apply(
        &mut enricher,
        SourceItem::WorkflowApplied(Box::new(offloaded)),
    );
    let mut normal = workflow("Running", "uid-normal");
    normal.metadata.name = Some("wf-normal".into());
    apply(&mut enricher, SourceItem::WorkflowApplied(Box::new(normal)));

    let node_event = |uid: &str, wf: &str, wf_uid: &str| {
        let mut e = event(
            uid,
            "WorkflowNodeRunning",
            Some(&format!("Running node {wf}.train")),
            json!({"workflows.argoproj.io/node-name": format!("{wf}.train")}),
        );
        e.involved_object.name = Some(wf.into());
        e.involved_object.uid = Some(wf_uid.into());
        SourceItem::Event {
            event: Box::new(e),
            checkpoint: None,
        }
    };
    let out = delivered(&mut enricher, node_event("e20", WF, WF_UID));
    assert_eq!(
        out.len(),
        1,
        "the offloaded workflow's node Event is delivered"
    );
    assert_eq!(out[0].node_name(), "train");
    assert_eq!(out[0].run_id(), format!("run-of-{WF_UID}"));
    assert!(
        delivered(&mut enricher, node_event("e21", WF, WF_UID)).is_empty(),
        "once"
    );
    let run_event = SourceItem::Event {
        event: Box::new(event(
            "e22",
            "WorkflowRunning",
            Some("Workflow Running"),
            json!(null),
        )),
        checkpoint: None,
    };
    assert!(
        delivered(&mut enricher, run_event).is_empty(),
        "the status path reported the run's Running already"
    );
    assert!(
        delivered(&mut enricher, node_event("e23", "wf-normal", "uid-normal")).is_empty(),
        "a normal workflow's Events are not read for delivery"
    );
    assert_eq!(metrics.offloaded_workflows.get(), 1, "counted once");
}

#[test]
fn offloaded_workflows_are_not_noted_with_the_events_path() {
    let metrics = Arc::new(Metrics::new());
    let mut enricher = Enricher::new(Paths::Events, Arc::clone(&metrics));
    let mut offloaded = workflow("Running", WF_UID);
    offloaded
        .status
        .as_mut()
        .unwrap()
        .offload_node_status_version = Some("fnv:1".into());
    apply(
        &mut enricher,
        SourceItem::WorkflowApplied(Box::new(offloaded)),
    );
    assert_eq!(metrics.offloaded_workflows.get(), 0);
}

/// `event` as a source item.
fn event_item(event: Event) -> SourceItem {
    SourceItem::Event {
        event: Box::new(event),
        checkpoint: None,
    }
}

#[test]
fn with_both_paths_a_transition_has_one_id_whichever_path_reports_it() {
    let both = || Enricher::new(Paths::Both, Arc::new(Metrics::new()));
    let mut running = workflow("Running", WF_UID);
    let train = running
        .status
        .as_mut()
        .unwrap()
        .nodes
        .get_mut("wf-abc-111")
        .unwrap();
    train.phase = Some("Running".into());
    train.message = None;
    train.finished_at = None;
    let run_event = event(
        "e30",
        "WorkflowRunning",
        Some("Workflow Running"),
        json!(null),
    );
    let failed_event = event(
        "e31",
        "WorkflowNodeFailed",
        Some("Failed node wf-abc.train: Error (exit code 1)"),
        json!({"workflows.argoproj.io/node-name": "wf-abc.train", "workflows.argoproj.io/node-id": "wf-abc-111"}),
    );

    // This leader reads the run's Running and the node's failure from their Events.
    let mut by_events = both();
    let run = delivered(&mut by_events, event_item(run_event.clone()));
    assert_eq!(run.len(), 1);
    let derived = delivered(
        &mut by_events,
        SourceItem::WorkflowApplied(Box::new(running.clone())),
    );
    assert_eq!(
        derived
            .iter()
            .map(|e| e.event.reason.as_str())
            .collect::<Vec<_>>(),
        ["WorkflowNodeRunning"]
    );
    let failed = delivered(&mut by_events, event_item(failed_event.clone()));
    assert_eq!(failed.len(), 1);
    assert!(!run[0].synthesized && !failed[0].synthesized);

    // That one derives them from the status.
    let mut by_status = both();
    apply(
        &mut by_status,
        SourceItem::WorkflowApplied(Box::new(running.clone())),
    );
    let derived = delivered(
        &mut by_status,
        SourceItem::WorkflowApplied(Box::new(workflow("Running", WF_UID))),
    );
    assert_eq!(derived.len(), 1);
    assert_eq!(derived[0].event.reason, "WorkflowNodeFailed");
    assert_eq!(failed[0].id, derived[0].id, "the node's failure");
    let mut from_scratch = both();
    let derived = delivered(
        &mut from_scratch,
        SourceItem::WorkflowApplied(Box::new(workflow("Running", WF_UID))),
    );
    assert_eq!(derived[0].event.reason, "WorkflowRunning");
    assert_eq!(run[0].id, derived[0].id, "the run's Running");

    // Without the node-id annotation, the cached status names the node.
    let mut unannotated = failed_event.clone();
    unannotated.metadata.annotations = None;
    unannotated.metadata.uid = Some("e32".into());
    let mut by_name = both();
    apply(
        &mut by_name,
        SourceItem::WorkflowApplied(Box::new(running.clone())),
    );
    let out = delivered(&mut by_name, event_item(unannotated));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].id, failed[0].id, "the node found by its name");

    // With Events only, each occurrence keeps its own id.
    let mut events = enricher();
    let out = delivered(&mut events, event_item(failed_event.clone()));
    assert_eq!(out[0].id, occurrence_id(&failed_event));
}

#[test]
fn a_workflow_first_seen_through_an_event_keeps_the_since_cutoff() {
    let since: Timestamp = "2026-11-20T12:00:00Z".parse().unwrap();
    let mut enricher = Enricher::new(Paths::Both, Arc::new(Metrics::new())).since(Some(since));
    let node = |n: usize, phase: &str, started: &str, finished: Option<&str>| {
        let id = format!("wf-abc-{n}");
        let status = json!({"id": id, "name": format!("wf-abc.step-{n}"), "type": "Pod",
                            "phase": phase, "startedAt": started, "finishedAt": finished});
        (id, status)
    };
    let version = |late: (String, Value)| {
        let mut nodes: serde_json::Map<String, Value> = (0..5)
            .map(|n| {
                node(
                    n,
                    "Succeeded",
                    "2026-11-20T10:00:00Z",
                    Some("2026-11-20T11:00:00Z"),
                )
            })
            .collect();
        nodes.insert(late.0, late.1);
        let wf: Workflow = serde_json::from_value(json!({
            "metadata": {"name": WF, "namespace": "kubeflow", "uid": WF_UID},
            "status": {"phase": "Running", "startedAt": "2026-11-20T10:00:00Z", "nodes": nodes}
        }))
        .unwrap();
        SourceItem::WorkflowApplied(Box::new(wf))
    };
    // The first the stage hears of the run is the Event of a node that starts after `since`.
    let first = delivered(
        &mut enricher,
        event_item(event(
            "e40",
            "WorkflowNodeRunning",
            Some("Running node wf-abc.step-5"),
            json!({"workflows.argoproj.io/node-name": "wf-abc.step-5", "workflows.argoproj.io/node-id": "wf-abc-5"}),
        )),
    );
    assert_eq!(first.len(), 1);
    let old = delivered(
        &mut enricher,
        version(node(5, "Running", "2026-11-20T12:00:05Z", None)),
    );
    assert!(
        old.is_empty(),
        "history before `since` is not news: {:?}",
        old.iter()
            .map(|e| (&e.event.reason, e.node_name()))
            .collect::<Vec<_>>()
    );
    let new = delivered(
        &mut enricher,
        version(node(
            5,
            "Succeeded",
            "2026-11-20T12:00:05Z",
            Some("2026-11-20T12:01:00Z"),
        )),
    );
    assert_eq!(new.len(), 1);
    assert_eq!(new[0].event.reason, "WorkflowNodeSucceeded");
    assert_eq!(new[0].node_name(), "step-5");

    // A Workflow that began while the router watched is all news, cutoff or not.
    let mut live = Enricher::new(Paths::Both, Arc::new(Metrics::new())).since(Some(since));
    apply(
        &mut live,
        event_item(event(
            "e41",
            "WorkflowRunning",
            Some("Workflow Running"),
            json!(null),
        )),
    );
    let SourceItem::WorkflowApplied(wf) = version(node(5, "Running", "2026-11-20T12:00:05Z", None))
    else {
        unreachable!()
    };
    let all = delivered(&mut live, SourceItem::WorkflowLive(wf));
    assert_eq!(all.len(), 5 * 2 + 1, "every node of the live run");
}

/// A lookup that takes 200 ms to find any Workflow, counting its calls and how many of them
/// run at once at most.
#[derive(Debug, Default)]
struct SlowLookup {
    calls: AtomicUsize,
    running: AtomicUsize,
    most: AtomicUsize,
}

impl WorkflowLookup for SlowLookup {
    fn find<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        uid: Option<&'a str>,
    ) -> futures::future::BoxFuture<'a, Option<Workflow>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let running = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(running, Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            self.running.fetch_sub(1, Ordering::SeqCst);
            let mut wf = workflow("Running", uid.unwrap_or_default());
            wf.metadata.name = Some(name.to_owned());
            wf.metadata.namespace = Some(namespace.to_owned());
            Some(wf)
        })
    }
}

// Tokio's paused clock needs its `test-util` feature, which this crate does not enable: the
// overlap is measured as how many lookups run at once instead of as elapsed time.
#[tokio::test]
async fn lookups_of_different_workflows_overlap_and_items_keep_their_order() {
    let lookup = Arc::new(SlowLookup::default());
    let enricher = enricher().with_fallback(Arc::clone(&lookup) as Arc<dyn WorkflowLookup>);
    let (items, input) = mpsc::channel(64);
    let (output, mut intakes) = mpsc::channel(64);
    for n in 0..20 {
        let mut e = event(
            &format!("e-{n:02}"),
            "WorkflowRunning",
            Some("Workflow Running"),
            json!(null),
        );
        e.involved_object.name = Some(format!("wf-{n:02}"));
        e.involved_object.uid = Some(format!("uid-{n:02}"));
        items.send(event_item(e)).await.unwrap();
    }
    drop(items);
    let stage = tokio::spawn(run(enricher, input, output));
    let mut out = Vec::new();
    while let Some(intake) = intakes.recv().await {
        out.push(intake.event.unwrap());
    }
    stage.await.unwrap();
    let order: Vec<_> = out.iter().map(|e| e.event.uid.clone()).collect();
    let expected: Vec<_> = (0..20).map(|n| format!("e-{n:02}")).collect();
    assert_eq!(order, expected, "in input order");
    for (n, e) in out.iter().enumerate() {
        assert_eq!(
            e.run_id(),
            format!("run-of-uid-{n:02}"),
            "joined with its Workflow"
        );
    }
    assert_eq!(lookup.calls.load(Ordering::SeqCst), 20, "one lookup each");
    let most = lookup.most.load(Ordering::SeqCst);
    assert!(most >= 10, "the lookups overlap: at most {most} at once");
}

/// The uids whose stored state the intakes remove.
fn removed(intakes: &[Intake]) -> Vec<String> {
    let mut uids: Vec<String> = intakes
        .iter()
        .filter_map(|i| match &i.seen {
            Some((uid, None)) => Some(uid.clone()),
            _ => None,
        })
        .collect();
    uids.sort();
    uids
}

#[test]
fn a_list_forgets_the_workflows_of_its_scope_deleted_unseen() {
    let state = |namespace: Option<&str>| {
        let seen = Seen {
            namespace: namespace.map(str::to_owned),
            ..Seen::default()
        };
        serde_json::to_vec(&seen).unwrap()
    };
    let mut enricher = Enricher::new(Paths::Both, Arc::new(Metrics::new())).restore(vec![
        ("gone-here".to_owned(), state(Some("kubeflow"))),
        ("elsewhere".to_owned(), state(Some("team-b"))),
        ("stored-long-ago".to_owned(), state(None)),
        ("still-here".to_owned(), state(Some("kubeflow"))),
    ]);
    // Heard of in this run, before the first list: it may postdate the list.
    apply(
        &mut enricher,
        SourceItem::WorkflowApplied(Box::new(workflow("Running", "new"))),
    );
    let listed = |namespace: Option<&str>, uids: &[&str]| SourceItem::WorkflowsListed {
        namespace: namespace.map(str::to_owned),
        uids: uids.iter().map(|u| u.to_string()).collect(),
    };

    let out = enricher.apply(listed(Some("kubeflow"), &["still-here"]));
    assert_eq!(removed(&out), ["gone-here"]);

    let out = enricher.apply(listed(None, &["still-here"]));
    assert_eq!(
        removed(&out),
        ["elsewhere", "stored-long-ago"],
        "a list of every namespace also covers states stored without one"
    );

    // Not heard of since the last list of every namespace, and not in this one: gone.
    let out = enricher.apply(listed(None, &["still-here"]));
    assert_eq!(removed(&out), ["new"]);
    assert!(enricher.apply(listed(None, &["still-here"])).is_empty());
}

#[test]
fn every_event_names_the_configured_cluster() {
    let mut enricher = enricher().cluster(Some("prod-eu-1".into()));
    apply(
        &mut enricher,
        SourceItem::WorkflowApplied(Box::new(workflow("Running", WF_UID))),
    );
    let out = enricher.apply(SourceItem::Event {
        event: Box::new(event("e1", "WorkflowRunning", None, json!({}))),
        checkpoint: None,
    });
    let event = out[0].event.as_ref().expect("delivered");
    assert_eq!(event.cluster.as_deref(), Some("prod-eu-1"));
}
