//! Secrets named in the config: read from the environment or a file, never written anywhere.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

/// Where a secret comes from: `{ env = "NAME" }` or `{ file = "/path" }`. A secret written
/// inline is refused, and the error does not quote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable of the router process.
    Env(String),
    /// A file, e.g. a mounted Kubernetes Secret. Surrounding whitespace is trimmed.
    File(PathBuf),
}

impl<'de> Deserialize<'de> for SecretSource {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        use serde::de::{EnumAccess, VariantAccess};
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = SecretSource;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("{ env = \"NAME\" } or { file = \"/path\" }")
            }
            fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<SecretSource, A::Error> {
                match data.variant()? {
                    (Form::Env, value) => value.newtype_variant().map(SecretSource::Env),
                    (Form::File, value) => value.newtype_variant().map(SecretSource::File),
                }
            }
        }
        de.deserialize_enum("SecretSource", FORMS, Visitor)
    }
}

/// The keys of the written forms.
const FORMS: &[&str] = &["env", "file"];

/// `env` or `file`: the key of a written secret.
enum Form {
    Env,
    File,
}

impl<'de> Deserialize<'de> for Form {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Form;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`env` or `file`")
            }
            fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Form, E> {
                match key {
                    "env" => Ok(Form::Env),
                    "file" => Ok(Form::File),
                    // A plain string lands here too, and may be the secret itself: it is
                    // never quoted; the error's place shows what was written.
                    _ => Err(E::custom(
                        "expected `env` or `file`: a secret is written { env = \"NAME\" } or \
                         { file = \"/path\" }, never inline",
                    )),
                }
            }
        }
        de.deserialize_identifier(Visitor)
    }
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
