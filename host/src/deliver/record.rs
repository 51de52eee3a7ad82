//! What the deliver stage writes to the console's [`History`]: one [`Record`] per attempt
//! and per outcome, built only when the history is on. What was sent and received is kept
//! with secrets redacted: header values that are secrets (configured from a secret, or
//! credentials by name) and the endpoint URL's secrets wherever they appear.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;

use super::Delivery;
use super::http::{Failure, redact};
use super::worker::Shared;
use crate::model::clock::now_ms;
use crate::model::event::RouterEvent;
use crate::state::history::{Attempt, Message, Outcome, Record};

/// Bytes of an answer's body kept.
const RESPONSE_BODY: usize = 1024;

/// Request bodies longer than this are cut.
const REQUEST_BODY: usize = 64 * 1024;

/// Headers whose values are credentials, whatever their source.
const CREDENTIALS: [&str; 5] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
];

/// What a redacted value reads.
const REDACTED: &str = "<redacted>";

/// One attempt's exchange, as the HTTP client saw it.
#[derive(Default)]
pub(crate) struct Exchange {
    /// The headers sent.
    pub(crate) sent: HeaderMap,
    /// The body sent.
    pub(crate) body: Bytes,
    /// The answer's status, headers and body, when one came.
    pub(crate) answer: Option<(u16, HeaderMap, Bytes)>,
}

/// An attempt that took `took` and ended with `result`: delivered, or retrying.
pub(super) fn attempted(
    shared: &Shared,
    event: &RouterEvent,
    webhook_id: &str,
    took: Duration,
    result: &Result<u16, Failure>,
    exchange: Option<Exchange>,
) {
    let Some(exchange) = exchange else { return };
    let endpoint = shared.endpoint.borrow().clone();
    let millis = took.as_millis() as u64;
    let status = exchange.answer.as_ref().map(|(status, ..)| *status);
    let (outcome, class, error) = match result {
        Ok(_) => (Outcome::Delivered, "2xx", None),
        Err(failure) => (
            Outcome::Retrying,
            failure.class(),
            Some(failure.error().to_owned()),
        ),
    };
    let mut record = base(&endpoint, event, webhook_id, outcome);
    record.attempts.push(Attempt {
        at_ms: now_ms().saturating_sub(millis),
        millis,
        status,
        class: class.into(),
        error,
    });
    let body = &exchange.body[..exchange.body.len().min(REQUEST_BODY)];
    record.request = Some(Message {
        status: None,
        headers: headers(&exchange.sent, &endpoint),
        body: redact(&String::from_utf8_lossy(body), &endpoint.url),
    });
    record.response = exchange.answer.map(|(status, received, body)| Message {
        status: Some(status),
        headers: headers(&received, &endpoint),
        body: excerpt(&body, &endpoint),
    });
    shared.history.append(record);
}

/// A plugin (`by`) dropped the delivery.
pub(super) fn dropped(shared: &Shared, event: &RouterEvent, webhook_id: &str, by: &str) {
    ended(
        shared,
        event,
        webhook_id,
        Outcome::Dropped,
        &format!("dropped by {by}"),
    );
}

/// The delivery was given up (dead-lettered) after `error`.
pub(super) fn given_up(shared: &Shared, event: &RouterEvent, webhook_id: &str, error: &str) {
    ended(shared, event, webhook_id, Outcome::DeadLettered, error);
}

/// The delivery ended with `outcome`, for the reason `note`.
fn ended(shared: &Shared, event: &RouterEvent, webhook_id: &str, outcome: Outcome, note: &str) {
    if !shared.history.is_on() {
        return;
    }
    let endpoint = shared.endpoint.borrow().clone();
    let mut record = base(&endpoint, event, webhook_id, outcome);
    record.note = Some(redact(note, &endpoint.url));
    shared.history.append(record);
}

/// A record of `event` for `endpoint` with no attempt yet.
fn base(endpoint: &Delivery, event: &RouterEvent, webhook_id: &str, outcome: Outcome) -> Record {
    let workflow = event
        .workflow
        .as_ref()
        .map_or(&event.event.workflow_name, |w| &w.name);
    Record {
        endpoint: endpoint.name.clone(),
        webhook_id: webhook_id.to_owned(),
        time_ms: now_ms(),
        event_time: event.event.time.clone(),
        run_id: Some(event.run_id().to_owned()).filter(|id| !id.is_empty()),
        workflow: workflow.clone(),
        task: Some(event.node_name().to_owned()).filter(|n| !n.is_empty()),
        reason: event.event.reason.clone(),
        message: event.event.message.clone(),
        outcome,
        note: None,
        attempts: Vec::new(),
        request: None,
        response: None,
    }
}

/// `map`'s headers, credentials and secrets redacted, the URL's secrets too.
fn headers(map: &HeaderMap, endpoint: &Delivery) -> Vec<(String, String)> {
    map.iter()
        .map(|(name, value)| {
            let secret = value.is_sensitive()
                || CREDENTIALS.contains(&name.as_str())
                || endpoint
                    .headers
                    .get(name)
                    .is_some_and(|configured| configured.is_sensitive());
            let text = match secret {
                true => REDACTED.to_owned(),
                false => redact(&String::from_utf8_lossy(value.as_bytes()), &endpoint.url),
            };
            (name.as_str().to_owned(), text)
        })
        .collect()
}

/// The first [`RESPONSE_BODY`] bytes of `body` as text, the URL's secrets redacted (a window
/// longer by the URL's length is redacted first, so that a secret cut at the end is too).
fn excerpt(body: &[u8], endpoint: &Delivery) -> String {
    let window = RESPONSE_BODY + endpoint.url.as_str().len();
    let text = String::from_utf8_lossy(&body[..body.len().min(window)]);
    redact(&text, &endpoint.url)
        .chars()
        .take(RESPONSE_BODY)
        .collect()
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;
    use url::Url;

    use super::*;

    #[test]
    fn secrets_are_redacted_and_the_signature_kept() {
        let url = Url::parse("http://sink/hooks/SECRET-TOKEN-123").unwrap();
        let mut endpoint = Delivery::new("hook".into(), url);
        let mut secret = HeaderValue::from_static("k3y-from-a-secret");
        secret.set_sensitive(true);
        endpoint.headers.insert("x-custom-key", secret.clone());
        let mut sent = HeaderMap::new();
        sent.insert(
            "x-custom-key",
            HeaderValue::from_static("k3y-from-a-secret"),
        );
        sent.insert("authorization", HeaderValue::from_static("Bearer abc"));
        sent.insert("webhook-signature", HeaderValue::from_static("v1,sig"));
        sent.insert(
            "x-echo",
            HeaderValue::from_static("/hooks/SECRET-TOKEN-123"),
        );
        let shown = headers(&sent, &endpoint);
        let text = format!("{shown:?}");
        assert!(!text.contains("k3y-from"), "{text}");
        assert!(!text.contains("Bearer abc"), "{text}");
        assert!(!text.contains("SECRET-TOKEN-123"), "{text}");
        assert!(text.contains("v1,sig"), "{text}");
        let body = format!("{}/hooks/SECRET-TOKEN-123", "x".repeat(RESPONSE_BODY - 10));
        let cut = excerpt(body.as_bytes(), &endpoint);
        assert_eq!(cut.chars().count(), RESPONSE_BODY);
        assert!(!cut.contains("SECRET-TO"), "{cut}");
    }
}
