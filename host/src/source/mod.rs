//! The `source` stage: where Events and Workflows come from.
//!
//! A source sends [`SourceItem`]s, in the order things happened, into a bounded channel read by
//! [`crate::enrich`]. Each Event item may carry a [`Checkpoint`]: the outbox stores it in the
//! same transaction as the event, so a restarted source resumes after the last accepted event.
//!
//! - [`replay`]: a recorded JSON Lines file (`kubectl get -o json` objects or watch events).
//! - [`kubernetes`]: a cluster's Events and Workflows, watched through the API server.

pub mod kubernetes;
pub mod occurrence;
pub mod replay;

use k8s_openapi::api::core::v1::Event;

use crate::enrich::workflow::Workflow;

/// Argo's workflow-controller, as it names itself on the Events it records.
pub const WORKFLOW_CONTROLLER: &str = "workflow-controller";

/// Something a source saw.
#[derive(Debug)]
pub enum SourceItem {
    /// A new occurrence of an Event: its first sighting, or a repeat (higher `count`).
    Event {
        /// The Event.
        event: Box<Event>,
        /// Where to resume after this event, once it is accepted.
        checkpoint: Option<Checkpoint>,
    },
    /// A Workflow was created or changed.
    WorkflowApplied(Box<Workflow>),
    /// A Workflow was deleted.
    WorkflowDeleted(Box<Workflow>),
    /// The source moved on without an event to carry its position (e.g. past the Events that
    /// existed at its first start): store this checkpoint as it is.
    Checkpoint(Checkpoint),
}

/// A source's resume position, stored with the events it covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Which position this is, e.g. `replay:/path/to/file`.
    pub key: String,
    /// The position itself, in the source's own terms.
    pub value: String,
}

/// Whether an Event was recorded by Argo's workflow-controller about a workflow: the
/// Workflow itself, or (with `nodeEvents.sendAsPod`) one of its Pods.
pub fn is_workflow_event(event: &Event) -> bool {
    let component = event.source.as_ref().and_then(|s| s.component.as_deref());
    let reporter = event.reporting_component.as_deref();
    let from_controller =
        component == Some(WORKFLOW_CONTROLLER) || reporter == Some(WORKFLOW_CONTROLLER);
    let about_workflow = match event.involved_object.kind.as_deref() {
        Some("Workflow") => true,
        Some("Pod") => crate::enrich::node::workflow_name_annotation(event).is_some(),
        _ => false,
    };
    from_controller && about_workflow
}
