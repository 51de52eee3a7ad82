//! The Go `kfp-event-handler`'s payload, key for key.

use serde::Serialize;

use crate::model::event::RouterEvent;

/// `{"KfpRunId","WorkflowName","NodeName","EventType","Message"}`, in that order.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct KfpPayload<'a> {
    pub(crate) kfp_run_id: &'a str,
    pub(crate) workflow_name: &'a str,
    pub(crate) node_name: &'a str,
    pub(crate) event_type: &'a str,
    pub(crate) message: &'a str,
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
