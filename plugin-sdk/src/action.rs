use serde::Serialize;

/// What the host should do with a payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Keep the payload unchanged; continue with the next plugin.
    Pass,
    /// Don't deliver this payload to this endpoint; stop the chain.
    Drop,
    /// Continue with this body (and these extra HTTP headers) instead.
    Replace {
        /// New body bytes.
        body: Vec<u8>,
        /// MIME type of the new body.
        content_type: String,
        /// Extra HTTP headers as (name, value) pairs.
        headers: Vec<(String, String)>,
    },
}

impl Action {
    /// Replaces the payload with `body` of type `content_type`, without extra headers.
    pub fn replace(body: impl Into<Vec<u8>>, content_type: impl Into<String>) -> Self {
        Self::Replace {
            body: body.into(),
            content_type: content_type.into(),
            headers: Vec::new(),
        }
    }

    /// Replaces the payload with `value` serialized as `application/json`.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self, String> {
        Self::json_with_headers(value, std::iter::empty::<(String, String)>())
    }

    /// Like [`Action::json`], adding extra HTTP headers.
    pub fn json_with_headers<T, I, K, V>(value: &T, headers: I) -> Result<Self, String>
    where
        T: Serialize + ?Sized,
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let body =
            serde_json::to_vec(value).map_err(|e| format!("cannot serialize JSON body: {e}"))?;
        Ok(Self::Replace {
            body,
            content_type: "application/json".to_owned(),
            headers: headers
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        })
    }

    /// The replacement body parsed as JSON (`None` for `Pass`/`Drop` or non-JSON);
    /// handy in tests.
    pub fn json_body(&self) -> Option<serde_json::Value> {
        match self {
            Self::Replace { body, .. } => serde_json::from_slice(body).ok(),
            _ => None,
        }
    }

    /// The value of extra header `name` (case-insensitive) of a `Replace`.
    pub fn header(&self, name: &str) -> Option<&str> {
        match self {
            Self::Replace { headers, .. } => headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_helpers() {
        let a = Action::json_with_headers(&json!({"a": 1}), [("X-Test", "1")]).unwrap();
        assert_eq!(a.json_body(), Some(json!({"a": 1})));
        assert_eq!(a.header("x-test"), Some("1"));
        let Action::Replace { content_type, .. } = &a else {
            panic!()
        };
        assert_eq!(content_type, "application/json");
        assert_eq!(Action::Pass.json_body(), None);
        assert_eq!(Action::replace("x", "text/plain").header("a"), None);
    }

    #[test]
    fn json_keeps_the_payload_key_order() {
        let mut body: serde_json::Value =
            serde_json::from_str(r#"{"KfpRunId":"r","WorkflowName":"w","EventType":"e"}"#).unwrap();
        body["Cluster"] = "eu".into();
        let Action::Replace { body, .. } = Action::json(&body).unwrap() else {
            panic!()
        };
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"KfpRunId":"r","WorkflowName":"w","EventType":"e","Cluster":"eu"}"#
        );
    }
}
