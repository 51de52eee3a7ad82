use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::Payload;
use crate::bindings::kfp::event_router::types::Payload as HostPayload;
use crate::payload::{event_object, json};

/// The payload a [`LazyPlugin`](crate::LazyPlugin) handles, whose body is read
/// only when asked for.
///
/// In WebAssembly it is the host's handle and every method is a call into the
/// host: [`LazyPayload::body`] (and the helpers that parse it) copies the whole
/// body each time, so read it once. Elsewhere (unit tests) it borrows a
/// [`Payload`]: `LazyPayload::new(&payload, rendered)`.
#[derive(Clone, Copy, Debug)]
pub struct LazyPayload<'a>(Source<'a>);

/// Where a [`LazyPayload`] reads from.
#[derive(Clone, Copy, Debug)]
enum Source<'a> {
    Owned {
        payload: &'a Payload,
        rendered: bool,
    },
    Host(&'a HostPayload),
}

impl<'a> LazyPayload<'a> {
    /// `payload`, which is the router's own rendering of the event when
    /// `rendered` is true (see [`LazyPayload::rendered`]).
    pub fn new(payload: &'a Payload, rendered: bool) -> Self {
        Self(Source::Owned { payload, rendered })
    }

    /// The host's payload.
    pub(crate) fn host(payload: &'a HostPayload) -> Self {
        Self(Source::Host(payload))
    }

    /// Raw body bytes.
    pub fn body(&self) -> Cow<'a, [u8]> {
        match self.0 {
            Source::Owned { payload, .. } => Cow::Borrowed(&payload.body),
            Source::Host(h) => Cow::Owned(h.body()),
        }
    }

    /// The body's length in bytes, without reading it.
    pub fn body_length(&self) -> u64 {
        match self.0 {
            Source::Owned { payload, .. } => payload.body.len() as u64,
            Source::Host(h) => h.body_length(),
        }
    }

    /// MIME type of the body, e.g. `application/json`.
    pub fn content_type(&self) -> Cow<'a, str> {
        match self.0 {
            Source::Owned { payload, .. } => Cow::Borrowed(&payload.content_type),
            Source::Host(h) => Cow::Owned(h.content_type()),
        }
    }

    /// True when the body is the router's own rendering of the event in the
    /// endpoint's format ([`LazyEvent::format`](crate::LazyEvent::format)): no
    /// plugin before this one replaced it. Its facts are then the event's, so a
    /// plugin may read them from the event instead of parsing the body.
    pub fn rendered(&self) -> bool {
        match self.0 {
            Source::Owned { rendered, .. } => rendered,
            Source::Host(h) => h.rendered(),
        }
    }

    /// True when the content type is JSON (see [`Payload::is_json_type`]).
    pub fn is_json(&self) -> bool {
        Payload::is_json_type(&self.content_type())
    }

    /// The body as UTF-8 text, if it is.
    pub fn text(&self) -> Option<Cow<'a, str>> {
        match self.body() {
            Cow::Borrowed(body) => std::str::from_utf8(body).ok().map(Cow::Borrowed),
            Cow::Owned(body) => String::from_utf8(body).ok().map(Cow::Owned),
        }
    }

    /// Parses the body as JSON into `T` (whatever the content type says).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, String> {
        json(&self.body())
    }

    /// Parses the body as a JSON value (whatever the content type says).
    pub fn json_value(&self) -> Result<Value, String> {
        self.json()
    }

    /// The KFP event object of a JSON payload (see [`Payload::event_object`]).
    pub fn event_object(&self) -> Option<Map<String, Value>> {
        event_object(&self.body())
    }

    /// The body and content type, as an owned [`Payload`].
    pub fn to_payload(&self) -> Payload {
        match self.0 {
            Source::Owned { payload, .. } => payload.clone(),
            Source::Host(h) => Payload::new(h.body(), h.content_type()),
        }
    }
}

impl<'a> From<&'a Payload> for LazyPayload<'a> {
    /// `payload`, not the router's rendering (as if an earlier plugin wrote it).
    fn from(payload: &'a Payload) -> Self {
        Self::new(payload, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_payload() {
        let ce = json!({"specversion": "1.0", "data": {"KfpRunId": "c"}});
        let owned = Payload::new(ce.to_string(), "application/cloudevents+json");
        let p = LazyPayload::new(&owned, true);
        assert!(p.rendered() && p.is_json());
        assert!(!LazyPayload::from(&owned).rendered());
        assert_eq!(p.body_length(), owned.body.len() as u64);
        assert_eq!(p.text().as_deref(), owned.text());
        assert_eq!(p.json_value().unwrap(), ce);
        assert_eq!(p.event_object().unwrap()["KfpRunId"], "c");
        assert_eq!(p.to_payload(), owned);
        let text = Payload::new(vec![0xff], "text/plain");
        let p = LazyPayload::from(&text);
        assert!(!p.is_json() && p.text().is_none() && p.json_value().is_err());
    }
}
