//! Standard Webhooks signatures (<https://www.standardwebhooks.com>).
//!
//! Each request carries `webhook-id` (stable across retries and restarts, so receivers can
//! drop duplicates), `webhook-timestamp` (Unix seconds of the attempt) and `webhook-signature`:
//! `v1,` + base64 of HMAC-SHA256 over `{id}.{timestamp}.{body}`, keyed with the secret's bytes.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::model::secret::Secret;

/// The prefix of Standard Webhooks secrets.
const PREFIX: &str = "whsec_";

/// A signing key. Its `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

impl SigningKey {
    /// Reads a secret in the spec's form: optional `whsec_`, then base64 of the key bytes
    /// (as every Standard Webhooks library expects it on the receiving side).
    pub(crate) fn from_secret(secret: &Secret) -> Result<Self, String> {
        let text = secret.expose();
        let encoded = text.strip_prefix(PREFIX).unwrap_or(text);
        let key = STANDARD.decode(encoded).map_err(|_| {
            "the secret must be base64, optionally prefixed with `whsec_`".to_owned()
        })?;
        if key.len() < 16 {
            return Err("the secret must hold at least 16 bytes (24 base64 characters)".into());
        }
        Ok(Self(key))
    }

    /// The `webhook-signature` value for one request.
    pub(crate) fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_spec_example() {
        // The example from the Standard Webhooks specification.
        let key = SigningKey::from_secret(&Secret::new(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
        ))
        .unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            key.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn rejects_secrets_that_are_not_base64_without_echoing_them() {
        let err = SigningKey::from_secret(&Secret::new("not base64 at all!".into())).unwrap_err();
        assert!(!err.contains("not base64 at all"), "{err}");
    }
}
