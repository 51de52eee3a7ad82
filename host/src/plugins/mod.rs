//! The `plugins` stage: turns an event into the request an endpoint receives.
//!
//! The endpoint's [`Format`](crate::format::Format) renders the payload; the plugin chain then
//! passes, replaces or drops it. With no chain configured, the rendered payload is sent as is.

use crate::config::Endpoint;
use crate::event::RouterEvent;
use crate::format::Payload;

/// What an endpoint will be sent for one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The body and its content type.
    pub payload: Payload,
    /// Headers set by plugins (the endpoint's own headers are added when sending).
    pub headers: Vec<(String, String)>,
}

/// What the stage decided for one event and endpoint.
#[derive(Debug)]
pub enum Verdict {
    /// Send this request.
    Deliver(Request),
    /// Send nothing: the named plugin dropped the event.
    Drop {
        /// The plugin that dropped it.
        by: String,
    },
}

/// The stage: renders payloads and applies the plugin chain.
#[derive(Debug, Default)]
pub struct PluginStage {}

impl PluginStage {
    /// Decides what `endpoint` is sent for `event`.
    pub async fn process(&self, endpoint: &Endpoint, event: &RouterEvent) -> Verdict {
        Verdict::Deliver(Request {
            payload: endpoint.format.render(event),
            headers: Vec::new(),
        })
    }
}
