//! The WIT `event` record of a [`RouterEvent`]: every fact the router knows, the same facts
//! as the `extended` payload format, whatever format the endpoint renders.

use super::bindings::{Event, Node, PayloadFormat, Task};
use crate::model::event::{NodeFacts, NodeView, RouterEvent, TaskFacts};
use crate::payload::format::{self, Format};

/// The WIT record of `event`, as prepared for `endpoint`, which renders `format` and names
/// nodes as `view` says.
pub fn wit_event(event: &RouterEvent, endpoint: &str, format: Format, view: NodeView) -> Event {
    let workflow = event.workflow.as_ref();
    let fact = |get: fn(&crate::model::event::WorkflowFacts) -> &Option<String>| {
        workflow.and_then(|w| get(w).clone())
    };
    let pairs = |get: fn(
        &crate::model::event::WorkflowFacts,
    ) -> &std::collections::BTreeMap<String, String>| {
        workflow.map_or_else(Vec::new, |w| {
            get(w).iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        })
    };
    Event {
        id: event.id.clone(),
        reason: event.event.reason.clone(),
        event_type: event.event.severity.clone(),
        message: event.event.message.clone(),
        namespace: event.event.namespace.clone(),
        cluster: event.cluster.clone(),
        event_uid: event.event.uid.clone(),
        event_time: event.event.time.clone(),
        event_count: event.event.count,
        synthesized: event.synthesized,
        attempt: event.attempt,
        workflow_name: event.event.workflow_name.clone(),
        workflow_uid: workflow
            .map(|w| w.uid.clone())
            .filter(|uid| !uid.is_empty())
            .or_else(|| event.event.workflow_uid.clone()),
        run_id: Some(event.run_id().to_owned()).filter(|id| !id.is_empty()),
        run_name: fact(|w| &w.run_name),
        pipeline_name: fact(|w| &w.pipeline_name),
        recurring_run_name: fact(|w| &w.recurring_run_name),
        phase: fact(|w| &w.phase),
        started_at: fact(|w| &w.started_at),
        finished_at: fact(|w| &w.finished_at),
        workflow_message: fact(|w| &w.message),
        parameters: pairs(|w| &w.parameters),
        labels: pairs(|w| &w.labels),
        node_name: format::node_name(event, view).to_owned(),
        node: event.node.as_ref().map(node),
        task: event.task.as_ref().map(task),
        endpoint: endpoint.to_owned(),
        format: match format {
            Format::Kfp => PayloadFormat::Kfp,
            Format::Extended => PayloadFormat::Extended,
            Format::Cloudevents => PayloadFormat::Cloudevents,
        },
    }
}

/// The WIT record of a node.
fn node(n: &NodeFacts) -> Node {
    Node {
        id: n.id.clone(),
        name: n.name.clone(),
        full_name: n.full_name.clone(),
        display_name: n.display_name.clone(),
        node_type: n.node_type.clone(),
        phase: n.phase.clone(),
        message: n.message.clone(),
        template_name: n.template_name.clone(),
        started_at: n.started_at.clone(),
        finished_at: n.finished_at.clone(),
    }
}

/// The WIT record of a KFP task.
fn task(t: &TaskFacts) -> Task {
    Task {
        name: t.name.clone(),
        display_name: t.display_name.clone(),
        iteration: t.iteration,
        dag_path: t.dag_path.clone(),
        cached: t.cached,
        pod_name: t.pod_name.clone(),
        message: t.message.clone(),
    }
}
