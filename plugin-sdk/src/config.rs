use serde::de::DeserializeOwned;

/// A plugin's configuration: the JSON text the host passes to `init`
/// (`{}` when the router config has none for the plugin).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    json: String,
}

impl Config {
    /// Wraps configuration JSON text (handy in tests: `Config::new(r#"{"a": 1}"#)`).
    pub fn new(json: impl Into<String>) -> Self {
        Self { json: json.into() }
    }

    /// The raw JSON text.
    pub fn as_str(&self) -> &str {
        &self.json
    }

    /// Deserializes the configuration. Empty text counts as `{}`.
    ///
    /// Errors name the offending field, e.g.
    /// `invalid plugin config at reasons[1]: invalid type: integer `3`, expected a string`.
    /// Add `#[serde(deny_unknown_fields)]` to your type to catch typos.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, String> {
        let text = if self.json.trim().is_empty() {
            "{}"
        } else {
            &self.json
        };
        let de = &mut serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                format!("invalid plugin config: {}", e.inner())
            } else {
                format!("invalid plugin config at {path}: {}", e.inner())
            }
        })
    }

    /// The configuration as a JSON value.
    pub fn value(&self) -> Result<serde_json::Value, String> {
        self.parse()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::new("{}")
    }
}

impl From<serde_json::Value> for Config {
    fn from(value: serde_json::Value) -> Self {
        Self::new(value.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Settings {
        #[serde(default)]
        reasons: Vec<String>,
        #[serde(default)]
        nested: Option<Nested>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Nested {
        limit: u32,
    }

    #[test]
    fn errors_name_the_field() {
        let err = Config::new(r#"{"reasons": ["a", 3]}"#)
            .parse::<Settings>()
            .unwrap_err();
        assert!(
            err.starts_with("invalid plugin config at reasons[1]: invalid type"),
            "{err}"
        );
        let err = Config::new(r#"{"nested": {"limit": "x"}}"#)
            .parse::<Settings>()
            .unwrap_err();
        assert!(err.contains("at nested.limit:"), "{err}");
        let err = Config::new(r#"{"reasns": []}"#)
            .parse::<Settings>()
            .unwrap_err();
        assert!(err.contains("unknown field `reasns`"), "{err}");
    }

    #[test]
    fn empty_is_an_empty_object() {
        let s: Settings = Config::new("").parse().unwrap();
        assert!(s.reasons.is_empty());
        let s: Settings = Config::default().parse().unwrap();
        assert!(s.nested.is_none());
    }
}
