//! The Go `kfp-event-handler`'s payload, key for key.

use serde::Serialize;

use super::json::write_str;
use crate::model::event::{NodeView, RouterEvent};

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

impl<'a> KfpPayload<'a> {
    /// The payload of `event`, its node named as `view` says.
    pub(super) fn new(event: &'a RouterEvent, view: NodeView) -> Self {
        Self {
            kfp_run_id: event.run_id(),
            workflow_name: &event.event.workflow_name,
            node_name: super::node_name(event, view),
            event_type: &event.event.reason,
            message: &event.event.message,
        }
    }

    /// Appends this payload's JSON to `body`: what `serde_json` writes, with the strings
    /// checked for escapes a word at a time rather than a byte.
    pub(super) fn write_json(&self, body: &mut Vec<u8>) {
        let fields = [
            ("{\"KfpRunId\":", self.kfp_run_id),
            (",\"WorkflowName\":", self.workflow_name),
            (",\"NodeName\":", self.node_name),
            (",\"EventType\":", self.event_type),
            (",\"Message\":", self.message),
        ];
        for (key, value) in fields {
            body.extend_from_slice(key.as_bytes());
            write_str(body, value);
        }
        body.push(b'}');
    }
}
