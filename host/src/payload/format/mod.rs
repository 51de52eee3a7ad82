//! Payload formats: how a [`RouterEvent`] becomes the body of a webhook request.
//!
//! - [`Format::Kfp`]: the Go `kfp-event-handler`'s five keys, so its subscribers keep working;
//! - [`Format::Extended`]: those keys plus the run, workflow and node facts;
//! - [`Format::Cloudevents`]: a CloudEvents 1.0 structured-mode envelope around `extended`.

mod cloudevents;
mod extended;
mod kfp;

use bytes::Bytes;
use serde::Deserialize;

use crate::model::event::{NodeView, RouterEvent};
use crate::model::request::Payload;

/// The payload format of an endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// `{"KfpRunId","WorkflowName","NodeName","EventType","Message"}`.
    #[default]
    Kfp,
    /// The `kfp` keys plus namespace, phase, times, run names, parameters and node details.
    Extended,
    /// CloudEvents 1.0 structured JSON whose `data` is the `extended` payload.
    Cloudevents,
}

impl Format {
    /// Renders `event` in this format, naming KFP v2 nodes as tasks.
    pub fn render(self, event: &RouterEvent) -> Payload {
        self.render_as(event, NodeView::Tasks)
    }

    /// Renders `event` in this format, naming nodes as `view` says.
    pub fn render_as(self, event: &RouterEvent, view: NodeView) -> Payload {
        let (body, content_type) = match self {
            Self::Kfp => (
                to_json(&kfp::KfpPayload::new(event, view)),
                "application/json",
            ),
            Self::Extended => (
                to_json(&extended::ExtendedPayload::new(event, view)),
                "application/json",
            ),
            Self::Cloudevents => (
                to_json(&cloudevents::CloudEvent::new(event, view)),
                cloudevents::CONTENT_TYPE,
            ),
        };
        Payload {
            body: Bytes::from(body),
            content_type: content_type.to_owned(),
        }
    }
}

/// The node name subscribers see: the task's in the task view, Argo's in the raw one.
pub(crate) fn node_name(event: &RouterEvent, view: NodeView) -> &str {
    match view {
        NodeView::Tasks => event.node_name(),
        NodeView::All => event.raw_node_name(),
    }
}

/// Serialises straight from the struct, so keys keep their declared order.
fn to_json(payload: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(payload).expect("payloads are plain data and always serialise")
}

#[cfg(test)]
mod tests;
