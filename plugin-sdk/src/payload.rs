use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// The body the host will POST, as rendered by the host or by earlier plugins.
///
/// The host renders KFP events as JSON objects with PascalCase keys
/// (`KfpRunId`, `WorkflowName`, ...; the `extended` format adds `Phase`,
/// `Parameters`, `Node`, ...) or as CloudEvents whose `data` is such an object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Payload {
    /// Raw body bytes.
    pub body: Vec<u8>,
    /// MIME type of `body`, e.g. `application/json`.
    pub content_type: String,
}

impl Payload {
    /// A payload with the given body and content type.
    pub fn new(body: impl Into<Vec<u8>>, content_type: impl Into<String>) -> Self {
        Self {
            body: body.into(),
            content_type: content_type.into(),
        }
    }

    /// An `application/json` payload holding `value` (handy in tests).
    pub fn from_json(value: &Value) -> Self {
        Self::new(value.to_string(), "application/json")
    }

    /// True when the content type is JSON (see [`Payload::is_json_type`]).
    pub fn is_json(&self) -> bool {
        Self::is_json_type(&self.content_type)
    }

    /// True when `content_type` is JSON: `application/json` or any `+json` type,
    /// whatever its parameters (`; charset=utf-8`).
    pub fn is_json_type(content_type: &str) -> bool {
        let mime = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        mime == "application/json" || mime.ends_with("+json")
    }

    /// The body as UTF-8 text, if it is.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }

    /// Parses the body as JSON into `T` (whatever the content type says).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, String> {
        json(&self.body)
    }

    /// Parses the body as a JSON value (whatever the content type says).
    pub fn json_value(&self) -> Result<Value, String> {
        self.json()
    }

    /// The KFP event object of a JSON payload: the top-level object, or the
    /// `data` object of a CloudEvents envelope. `None` if the payload is not a
    /// JSON object.
    pub fn event_object(&self) -> Option<Map<String, Value>> {
        event_object(&self.body)
    }
}

/// Parses `body` as JSON into `T`.
pub(crate) fn json<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("payload is not valid JSON: {e}"))
}

/// The KFP event object of a JSON `body` (see [`Payload::event_object`]).
pub(crate) fn event_object(body: &[u8]) -> Option<Map<String, Value>> {
    match json(body).ok()? {
        Value::Object(mut obj) => {
            if is_cloudevent(&obj) {
                match obj.remove("data") {
                    Some(Value::Object(data)) => Some(data),
                    _ => None,
                }
            } else {
                Some(obj)
            }
        }
        _ => None,
    }
}

/// True for a structured-mode CloudEvents object (has `specversion` and an object `data`).
pub(crate) fn is_cloudevent(obj: &Map<String, Value>) -> bool {
    obj.contains_key("specversion") && obj.get("data").is_some_and(Value::is_object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_detection() {
        assert!(Payload::new("", "application/json; charset=utf-8").is_json());
        assert!(Payload::new("", "application/cloudevents+json").is_json());
        assert!(!Payload::new("", "text/plain").is_json());
    }

    #[test]
    fn event_object_unwraps_cloudevents() {
        let plain = Payload::from_json(&json!({"KfpRunId": "r"}));
        assert_eq!(plain.event_object().unwrap()["KfpRunId"], "r");
        let ce = Payload::from_json(&json!({"specversion": "1.0", "data": {"KfpRunId": "c"}}));
        assert_eq!(ce.event_object().unwrap()["KfpRunId"], "c");
        assert!(
            Payload::new("[1]", "application/json")
                .event_object()
                .is_none()
        );
        assert!(Payload::new("nope", "text/plain").event_object().is_none());
        assert!(Payload::new("nope", "text/plain").json_value().is_err());
    }
}
