//! A dead letter as read back, its one-line summary, and its id.

use aws_lc_rs::digest::{Context, SHA256};
use serde::{Deserialize, Serialize};

use crate::model::event::RouterEvent;

/// The id of the dead letter of `webhook_id` for `endpoint`: `dl_` and 16 hex digits of the
/// SHA-256 of both. Stable (the same in every backend, across rotations and restarts), short
/// enough to copy from `dead-letters list`, and safe in a URL path.
pub(crate) fn letter_id(endpoint: &str, webhook_id: &str) -> String {
    let mut context = Context::new(&SHA256);
    context.update(endpoint.as_bytes());
    context.update(&[0]);
    context.update(webhook_id.as_bytes());
    let digest = context.finish();
    let hex: String = digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("dl_{hex}")
}

/// A whole dead letter, as stored, with its id: what `dead-letters show` prints.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct StoredLetter {
    /// Its id ([`letter_id`]); not stored, worked out when read.
    #[serde(default)]
    pub(crate) id: String,
    /// When it was given up (RFC 3339).
    pub(crate) time: String,
    /// The endpoint's name.
    pub(crate) endpoint: String,
    /// The `webhook-id` it was sent with (`msg_` and the event's id).
    pub(crate) webhook_id: String,
    /// Attempts made.
    pub(crate) attempts: u32,
    /// Why the last attempt failed.
    pub(crate) last_error: String,
    /// The body that was being sent, as text when it was UTF-8.
    pub(crate) payload: Option<String>,
    /// The event.
    pub(crate) event: RouterEvent,
}

impl StoredLetter {
    /// Parses one stored letter (a line of the file, a row's `letter`) and works out its id.
    pub(crate) fn parse(json: &str) -> serde_json::Result<Self> {
        let mut letter: Self = serde_json::from_str(json)?;
        letter.id = letter_id(&letter.endpoint, &letter.webhook_id);
        Ok(letter)
    }

    /// Its one-line summary.
    pub(crate) fn summary(&self) -> Summary {
        let workflow = match &self.event.workflow {
            Some(w) if !w.name.is_empty() => w.name.clone(),
            _ => self.event.event.workflow_name.clone(),
        };
        Summary {
            id: self.id.clone(),
            time: self.time.clone(),
            endpoint: self.endpoint.clone(),
            webhook_id: self.webhook_id.clone(),
            reason: self.event.event.reason.clone(),
            namespace: self.event.event.namespace.clone(),
            workflow,
            attempts: self.attempts,
            last_error: self.last_error.clone(),
        }
    }
}

/// What `dead-letters list` shows of one dead letter (no payload, no event body).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Summary {
    /// Its id, for `show` and `redrive`.
    pub(crate) id: String,
    /// When it was given up (RFC 3339).
    pub(crate) time: String,
    /// The endpoint's name.
    pub(crate) endpoint: String,
    /// The `webhook-id` it was sent with, and will be sent with again when redriven.
    pub(crate) webhook_id: String,
    /// The event's reason, e.g. `WorkflowFailed`.
    pub(crate) reason: String,
    /// The event's namespace.
    pub(crate) namespace: String,
    /// The workflow's name.
    pub(crate) workflow: String,
    /// Attempts made.
    pub(crate) attempts: u32,
    /// Why the last attempt failed.
    pub(crate) last_error: String,
}
