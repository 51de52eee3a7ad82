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

use crate::model::event::RouterEvent;
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
    /// Renders `event` in this format.
    pub fn render(self, event: &RouterEvent) -> Payload {
        let (body, content_type) = match self {
            Self::Kfp => (to_json(&kfp::KfpPayload::from(event)), "application/json"),
            Self::Extended => (
                to_json(&extended::ExtendedPayload::from(event)),
                "application/json",
            ),
            Self::Cloudevents => (
                to_json(&cloudevents::CloudEvent::from(event)),
                cloudevents::CONTENT_TYPE,
            ),
        };
        Payload {
            body: Bytes::from(body),
            content_type: content_type.to_owned(),
        }
    }
}

/// Serialises straight from the struct, so keys keep their declared order.
fn to_json(payload: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(payload).expect("payloads are plain data and always serialise")
}

#[cfg(test)]
mod tests;
