//! The WIT `event` record of a [`RouterEvent`]: every fact the router knows, the same facts
//! as the `extended` payload format, whatever format the endpoint renders.
//!
//! The record borrows the event's strings rather than copying them: it is built for every
//! endpoint whose chain runs plugins, and wasmtime copies each string into each instance
//! anyway. Its lists of pairs and the task's path are slices, so [`WitEvent`] holds them.

use super::bindings::{Event, Node, PayloadFormat, Task};
use crate::model::event::{NodeFacts, NodeView, RouterEvent, TaskFacts, WorkflowFacts};
use crate::payload::format::{self, Format};

/// A [`RouterEvent`] as prepared for one endpoint's plugins, from which [`WitEvent::record`]
/// borrows the WIT record.
#[derive(Debug)]
pub struct WitEvent<'a> {
    event: &'a RouterEvent,
    endpoint: &'a str,
    format: Format,
    view: NodeView,
    parameters: Vec<(&'a str, &'a str)>,
    labels: Vec<(&'a str, &'a str)>,
    dag_path: Vec<&'a str>,
}

impl<'a> WitEvent<'a> {
    /// `event` as prepared for `endpoint`, which renders `format` and names nodes as `view`
    /// says.
    pub fn new(event: &'a RouterEvent, endpoint: &'a str, format: Format, view: NodeView) -> Self {
        let pairs = |get: fn(&WorkflowFacts) -> &std::collections::BTreeMap<String, String>| {
            event.workflow.as_deref().map_or_else(Vec::new, |w| {
                get(w)
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect()
            })
        };
        Self {
            event,
            endpoint,
            format,
            view,
            parameters: pairs(|w| &w.parameters),
            labels: pairs(|w| &w.labels),
            dag_path: event.task.as_ref().map_or_else(Vec::new, |t| {
                t.dag_path.iter().map(String::as_str).collect()
            }),
        }
    }

    /// The WIT record.
    pub fn record(&self) -> Event<'_> {
        let event = self.event;
        let workflow = event.workflow.as_deref();
        let fact =
            |get: fn(&WorkflowFacts) -> &Option<String>| workflow.and_then(|w| get(w).as_deref());
        Event {
            id: &event.id,
            reason: &event.event.reason,
            event_type: &event.event.severity,
            message: &event.event.message,
            namespace: &event.event.namespace,
            cluster: event.cluster.as_deref(),
            event_uid: &event.event.uid,
            event_time: event.event.time.as_deref(),
            event_count: event.event.count,
            synthesized: event.synthesized,
            attempt: event.attempt,
            workflow_name: &event.event.workflow_name,
            workflow_uid: workflow
                .map(|w| w.uid.as_str())
                .filter(|uid| !uid.is_empty())
                .or(event.event.workflow_uid.as_deref()),
            run_id: Some(event.run_id()).filter(|id| !id.is_empty()),
            run_name: fact(|w| &w.run_name),
            pipeline_name: fact(|w| &w.pipeline_name),
            recurring_run_name: fact(|w| &w.recurring_run_name),
            phase: fact(|w| &w.phase),
            started_at: fact(|w| &w.started_at),
            finished_at: fact(|w| &w.finished_at),
            workflow_message: fact(|w| &w.message),
            parameters: &self.parameters,
            labels: &self.labels,
            node_name: format::node_name(event, self.view),
            node: event.node.as_ref().map(node),
            task: event.task.as_ref().map(|t| task(t, &self.dag_path)),
            endpoint: self.endpoint,
            format: match self.format {
                Format::Kfp => PayloadFormat::Kfp,
                Format::Extended => PayloadFormat::Extended,
                Format::Cloudevents => PayloadFormat::Cloudevents,
            },
        }
    }
}

/// The WIT record of a node.
fn node(n: &NodeFacts) -> Node<'_> {
    Node {
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

/// The WIT record of a KFP task, whose path `dag_path` is.
fn task<'a>(t: &'a TaskFacts, dag_path: &'a [&'a str]) -> Task<'a> {
    Task {
        name: &t.name,
        display_name: t.display_name.as_deref(),
        iteration: t.iteration,
        dag_path,
        cached: t.cached,
        pod_name: t.pod_name.as_deref(),
        message: t.message.as_deref(),
    }
}
