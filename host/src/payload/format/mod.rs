//! Payload formats: how a [`RouterEvent`] becomes the body of a webhook request.
//!
//! - [`Format::Kfp`]: the Go `kfp-event-handler`'s five keys, so its subscribers keep working;
//! - [`Format::Extended`]: those keys plus the run, workflow and node facts;
//! - [`Format::Cloudevents`]: a CloudEvents 1.0 structured-mode envelope around `extended`.

mod cloudevents;
mod extended;
mod json;
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
        // The message is most of a body: room for it and the other keys, grown only for more.
        let mut body = Vec::with_capacity(event.event.message.len() + BODY_ROOM);
        match self {
            Self::Kfp => kfp::KfpPayload::new(event, view).write_json(&mut body),
            Self::Extended => to_json(&mut body, &extended::ExtendedPayload::new(event, view)),
            Self::Cloudevents => to_json(&mut body, &cloudevents::CloudEvent::new(event, view)),
        }
        Payload {
            body: Bytes::from(body),
            content_type: self.content_type().to_owned(),
        }
    }

    /// The `Content-Type` of a body rendered in this format.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Self::Kfp | Self::Extended => "application/json",
            Self::Cloudevents => cloudevents::CONTENT_TYPE,
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

/// Bytes a body is given beyond its event's message before it is written.
const BODY_ROOM: usize = 512;

/// Serialises straight from the struct into `body`, so keys keep their declared order.
fn to_json(body: &mut Vec<u8>, payload: &impl serde::Serialize) {
    serde_json::to_writer(body, payload).expect("payloads are plain data and always serialise");
}

#[cfg(test)]
mod tests;
