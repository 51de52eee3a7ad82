//! The `enrich` stage: joins each Event with its Workflow into a [`RouterEvent`].
//!
//! Workflows come from the source as items of the same stream (so a replay sees each Workflow
//! as it was when the Event happened) and are kept in a [`cache::WorkflowCache`]: no API call
//! per event. An Event whose Workflow is unknown (deleted, archived, not yet seen) is still
//! delivered, with what the Event itself says.

pub mod cache;
pub mod node;
pub mod workflow;

use k8s_openapi::api::core::v1::Event;
use tokio::sync::mpsc;

use crate::event::{EventFacts, NodeFacts, RouterEvent};
use crate::source::{Checkpoint, SourceItem};
use cache::WorkflowCache;

/// An enriched event, with the source position it was read at.
#[derive(Debug)]
pub struct Intake {
    /// The event.
    pub event: RouterEvent,
    /// Where the source resumes once this event is accepted.
    pub checkpoint: Option<Checkpoint>,
}

/// Joins Events with the Workflows seen so far.
#[derive(Debug, Default)]
pub struct Enricher {
    workflows: WorkflowCache,
}

impl Enricher {
    /// Takes one source item; returns the enriched event for an Event item.
    pub fn apply(&mut self, item: SourceItem) -> Option<Intake> {
        match item {
            SourceItem::WorkflowApplied(wf) => self.workflows.apply(*wf),
            SourceItem::WorkflowDeleted(wf) => self.workflows.delete(&wf),
            SourceItem::Event { event, checkpoint } => {
                return Some(Intake {
                    event: self.enrich(&event),
                    checkpoint,
                });
            }
        }
        None
    }

    /// Builds the router event for `event` from it and its cached Workflow.
    pub fn enrich(&self, event: &Event) -> RouterEvent {
        let facts = event_facts(event);
        let event_reason = facts.reason.clone();
        let cached =
            self.workflows
                .get(&facts.namespace, &facts.workflow_name, facts.workflow_uid.as_deref());
        let node = node::node_ref(event).map(|r| {
            let status = cached.as_ref().and_then(|c| {
                let nodes = &c.workflow.status.as_ref()?.nodes;
                match &r.id {
                    Some(id) => nodes.get(id),
                    None => nodes.values().find(|n| n.name == r.full_name),
                }
            });
            NodeFacts {
                id: r.id.or_else(|| status.map(|s| s.id.clone())),
                name: node::short_name(&r.full_name, &facts.workflow_name).to_owned(),
                display_name: status.and_then(|s| s.display_name.clone()),
                node_type: r.node_type.or_else(|| status.and_then(|s| s.node_type.clone())),
                phase: status
                    .and_then(|s| s.phase.clone())
                    .or_else(|| facts.reason.strip_prefix("WorkflowNode").map(str::to_owned)),
                message: status.and_then(|s| s.message.clone()).or(r.message),
                template_name: status.and_then(|s| s.template_name.clone()),
                started_at: r.start_time.or_else(|| status.and_then(|s| s.started_at.clone())),
                finished_at: status.and_then(|s| s.finished_at.clone()),
                full_name: r.full_name,
            }
        });
        let workflow = cached.map(|c| {
            let mut facts = c.facts.clone();
            facts.phase = phase_at(&event_reason, facts.phase.take());
            facts
        });
        RouterEvent {
            id: occurrence_id(event),
            node,
            workflow,
            event: facts,
            synthesized: false,
        }
    }
}

/// Runs the stage: reads `input` until it closes, writes enriched events to `output`.
pub async fn run(mut input: mpsc::Receiver<SourceItem>, output: mpsc::Sender<Intake>) {
    let mut enricher = Enricher::default();
    while let Some(item) = input.recv().await {
        if let Some(intake) = enricher.apply(item)
            && output.send(intake).await.is_err()
        {
            return;
        }
    }
}

fn event_facts(event: &Event) -> EventFacts {
    let involved = &event.involved_object;
    let is_workflow = involved.kind.as_deref() == Some("Workflow");
    let annotation = |key| {
        event
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .cloned()
    };
    let workflow_name = match is_workflow {
        true => involved.name.clone(),
        false => annotation(node::WORKFLOW_NAME),
    };
    let workflow_uid = match is_workflow {
        true => involved.uid.clone(),
        false => annotation(node::WORKFLOW_UID),
    };
    let time = event
        .last_timestamp
        .as_ref()
        .map(|t| t.0.to_string())
        .or_else(|| event.event_time.as_ref().map(|t| t.0.to_string()))
        .or_else(|| event.first_timestamp.as_ref().map(|t| t.0.to_string()))
        .or_else(|| event.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string()));
    EventFacts {
        uid: event.metadata.uid.clone().unwrap_or_default(),
        namespace: event
            .metadata
            .namespace
            .clone()
            .or_else(|| involved.namespace.clone())
            .unwrap_or_default(),
        reason: event.reason.clone().unwrap_or_default(),
        message: event.message.clone().unwrap_or_default(),
        severity: event.type_.clone().unwrap_or_else(|| "Normal".into()),
        count: event.count.unwrap_or(1),
        time,
        workflow_name: workflow_name.unwrap_or_default(),
        workflow_uid,
    }
}

/// The workflow phase when the event happened. The controller records a workflow's last Event
/// before it writes the final status back, so a cached phase can lag behind the reason.
fn phase_at(reason: &str, cached: Option<String>) -> Option<String> {
    let terminal = |p: &str| matches!(p, "Succeeded" | "Failed" | "Error");
    let implied = match reason {
        "WorkflowSucceeded" => "Succeeded",
        "WorkflowFailed" | "WorkflowTimedOut" => "Failed",
        _ => return cached,
    };
    match cached {
        Some(phase) if terminal(&phase) => Some(phase),
        _ => Some(implied.to_owned()),
    }
}

/// A stable id for one occurrence: the same Event uid and count always give the same id.
pub fn occurrence_id(event: &Event) -> String {
    let identity = crate::source::occurrence::identity(event);
    let name = format!("{identity}/{}", event.count.unwrap_or(1));
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes()).to_string()
}

#[cfg(test)]
mod tests;
