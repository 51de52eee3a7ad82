//! The Go `kfp-event-handler`'s payload, key for key.

use serde::Serialize;

use crate::event::RouterEvent;

/// `{"KfpRunId","WorkflowName","NodeName","EventType","Message"}`, in that order.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct KfpPayload<'a> {
    pub kfp_run_id: &'a str,
    pub workflow_name: &'a str,
    pub node_name: &'a str,
    pub event_type: &'a str,
    pub message: &'a str,
}

impl<'a> From<&'a RouterEvent> for KfpPayload<'a> {
    fn from(event: &'a RouterEvent) -> Self {
        Self {
            kfp_run_id: event.run_id(),
            workflow_name: &event.event.workflow_name,
            node_name: event.node_name(),
            event_type: &event.event.reason,
            message: &event.event.message,
        }
    }
}
