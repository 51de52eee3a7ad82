//! The `extended` payload: the `kfp` keys plus everything the router knows of the run.

use std::collections::BTreeMap;

use serde::Serialize;

use super::kfp::KfpPayload;
use crate::model::event::{NodeFacts, NodeView, RouterEvent, TaskFacts};

/// The `kfp` keys, then run, workflow and node facts, all in PascalCase.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ExtendedPayload<'a> {
    #[serde(flatten)]
    kfp: KfpPayload<'a>,
    namespace: &'a str,
    event_uid: &'a str,
    event_time: Option<&'a str>,
    event_severity: &'a str,
    event_count: i32,
    workflow_uid: Option<&'a str>,
    phase: Option<&'a str>,
    started_at: Option<&'a str>,
    finished_at: Option<&'a str>,
    workflow_message: Option<&'a str>,
    run_name: Option<&'a str>,
    pipeline_name: Option<&'a str>,
    recurring_run_name: Option<&'a str>,
    parameters: Option<&'a BTreeMap<String, String>>,
    labels: Option<&'a BTreeMap<String, String>>,
    node: Option<Node<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    task: Option<Task<'a>>,
    attempt: u32,
    synthesized: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<&'a str>,
}

/// The KFP task an event is about.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Task<'a> {
    name: &'a str,
    display_name: Option<&'a str>,
    iteration: Option<u32>,
    dag_path: &'a [String],
    cached: bool,
    pod_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
}

impl<'a> From<&'a TaskFacts> for Task<'a> {
    fn from(t: &'a TaskFacts) -> Self {
        Self {
            name: &t.name,
            display_name: t.display_name.as_deref(),
            iteration: t.iteration,
            dag_path: &t.dag_path,
            cached: t.cached,
            pod_name: t.pod_name.as_deref(),
            message: t.message.as_deref(),
        }
    }
}

/// The node an event is about.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Node<'a> {
    id: Option<&'a str>,
    name: &'a str,
    full_name: &'a str,
    display_name: Option<&'a str>,
    #[serde(rename = "Type")]
    node_type: Option<&'a str>,
    phase: Option<&'a str>,
    message: Option<&'a str>,
    template_name: Option<&'a str>,
    started_at: Option<&'a str>,
    finished_at: Option<&'a str>,
}

impl<'a> From<&'a NodeFacts> for Node<'a> {
    fn from(n: &'a NodeFacts) -> Self {
        Self {
            id: n.id.as_deref(),
            name: &n.name,
            full_name: &n.full_name,
            display_name: n.display_name.as_deref(),
            node_type: n.node_type.as_deref(),
            phase: n.phase.as_deref(),
            message: n.message.as_deref(),
            template_name: n.template_name.as_deref(),
            started_at: n.started_at.as_deref(),
            finished_at: n.finished_at.as_deref(),
        }
    }
}

impl<'a> ExtendedPayload<'a> {
    /// The payload of `event`, its node named as `view` says.
    pub(super) fn new(event: &'a RouterEvent, view: NodeView) -> Self {
        let wf = event.workflow.as_ref();
        Self {
            kfp: KfpPayload::new(event, view),
            namespace: &event.event.namespace,
            event_uid: &event.event.uid,
            event_time: event.event.time.as_deref(),
            event_severity: &event.event.severity,
            event_count: event.event.count,
            workflow_uid: wf
                .map(|w| w.uid.as_str())
                .or(event.event.workflow_uid.as_deref()),
            phase: wf.and_then(|w| w.phase.as_deref()),
            started_at: wf.and_then(|w| w.started_at.as_deref()),
            finished_at: wf.and_then(|w| w.finished_at.as_deref()),
            workflow_message: wf.and_then(|w| w.message.as_deref()),
            run_name: wf.and_then(|w| w.run_name.as_deref()),
            pipeline_name: wf.and_then(|w| w.pipeline_name.as_deref()),
            recurring_run_name: wf.and_then(|w| w.recurring_run_name.as_deref()),
            parameters: wf.map(|w| &w.parameters),
            labels: wf.map(|w| &w.labels),
            node: event.node.as_ref().map(Node::from),
            task: event.task.as_ref().map(Task::from),
            attempt: event.attempt,
            synthesized: event.synthesized,
            cluster: event.cluster.as_deref(),
        }
    }
}
