//! Secrets named in the config: read from the environment or a file, never written anywhere.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

/// Where a secret comes from: `{ env = "NAME" }` or `{ file = "/path" }`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SecretSource {
    /// An environment variable of the router process.
    Env(String),
    /// A file, e.g. a mounted Kubernetes Secret. Surrounding whitespace is trimmed.
    File(PathBuf),
}

impl SecretSource {
    /// Reads the secret. Errors name the variable or file, never the value.
    pub fn resolve(&self) -> Result<Secret, String> {
        match self {
            Self::Env(name) => std::env::var(name)
                .map_err(|_| format!("environment variable {name} is not set"))
                .map(Secret::new),
            Self::File(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))
                .map(|text| Secret::new(text.trim().to_owned())),
        }
    }
}

/// A secret value. Its `Debug` and `Display` print `<redacted>`, so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The value itself: call only where it is used, never to print it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print_their_value() {
        let secret = Secret::new("hunter2".into());
        assert_eq!(format!("{secret:?} {secret}"), "<redacted> <redacted>");
    }

    #[test]
    fn missing_env_names_the_variable() {
        let err = SecretSource::Env("KFP_ROUTER_TEST_UNSET_VAR".into())
            .resolve()
            .unwrap_err();
        assert_eq!(
            err,
            "environment variable KFP_ROUTER_TEST_UNSET_VAR is not set"
        );
    }

    #[test]
    fn file_secret_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "whsec_abc\n").unwrap();
        let secret = SecretSource::File(path).resolve().unwrap();
        assert_eq!(secret.expose(), "whsec_abc");
    }
}
