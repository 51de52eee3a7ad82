//! What an endpoint is sent for one event: the payload stage's decision, which the deliver
//! stage carries out.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;

use super::event::RouterEvent;

/// A request body and its media type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload {
    /// The bytes to send.
    pub body: Bytes,
    /// The `Content-Type` header.
    pub content_type: String,
}

/// What an endpoint will be sent for one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The body and its content type.
    pub payload: Payload,
    /// Headers set by plugins (the endpoint's own headers are added when sending).
    pub headers: Vec<(String, String)>,
}

/// What the payload stage decided for one event and endpoint.
#[derive(Debug)]
pub enum Verdict {
    /// Send this request.
    Deliver(Request),
    /// Send nothing: the named plugin dropped the event (or failed, with `on_error = "drop"`).
    Drop {
        /// The plugin that dropped it.
        by: String,
    },
    /// Send nothing and write the event to the dead-letter file: a plugin failed, with
    /// `on_error = "dead-letter"`.
    DeadLetter {
        /// The plugin that failed.
        plugin: String,
        /// How it failed.
        error: String,
        /// The payload the plugin was given.
        payload: Payload,
    },
    /// Not now: a plugin the chain needs is not loaded. The delivery stays in the outbox (its
    /// workflow's later events wait behind it) and is processed again when the plugins change.
    Wait {
        /// Which plugin is missing, for the log.
        reason: String,
    },
}

/// Turns a stored event into what one endpoint is sent: the payload stage, as the assembler
/// hands it to the deliver stage.
pub(crate) trait Render: Send + Sync {
    /// Decides what endpoint `endpoint` is sent for `event`.
    fn render<'a>(
        &'a self,
        endpoint: &'a str,
        event: &'a Arc<RouterEvent>,
    ) -> BoxFuture<'a, Verdict>;

    /// Resolves when what `render` decides may have changed (plugins loaded or removed, an
    /// endpoint's chain edited): deliveries waiting for a missing plugin look again then.
    fn changed(&self) -> BoxFuture<'_, ()>;

    /// Whether rendering for `endpoint` runs plugins now: CPU work, worth spreading over the
    /// cores.
    fn runs_plugins(&self, endpoint: &str) -> bool;
}
