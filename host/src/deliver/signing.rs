//! Standard Webhooks signatures (<https://www.standardwebhooks.com>).
//!
//! Each request carries `webhook-id` (stable across retries and restarts, so receivers can
//! drop duplicates), `webhook-timestamp` (Unix seconds of the attempt) and `webhook-signature`:
//! one signature per configured key, space-separated, each over `{id}.{timestamp}.{body}`:
//! - a symmetric key (`whsec_` + base64, at least 16 bytes) signs `v1,` + base64 of its
//!   HMAC-SHA256;
//! - an asymmetric key (`whsk_` + base64 of an ed25519 secret key: the 32-byte seed, or the
//!   64-byte seed and public key) signs `v1a,` + base64 of its ed25519 signature; receivers
//!   check it with the public key (`whpk_` + base64 of the 32-byte key).
//!
//! Several keys are how a key is rotated without downtime: while both the new and the old key
//! are configured, both signatures are sent, and a receiver accepts either.

use std::sync::Arc;

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use aws_lc_rs::{constant_time, hmac};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::model::secret::Secret;

/// A symmetric secret's prefix.
const SYMMETRIC: &str = "whsec_";
/// An ed25519 secret key's prefix.
const SECRET_KEY: &str = "whsk_";
/// An ed25519 public key's prefix.
const PUBLIC_KEY: &str = "whpk_";

/// The keys an endpoint's requests are signed with, the current one first. Its `Debug` never
/// shows a key.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(Vec<Key>);

/// One signing key.
#[derive(Clone)]
enum Key {
    /// HMAC-SHA256 (`v1`), with the secret's bytes.
    Hmac(Vec<u8>),
    /// Ed25519 (`v1a`), with its seed (to compare keys) and the key pair made from it once.
    Ed25519([u8; 32], Arc<Ed25519KeyPair>),
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Key::Hmac(a), Key::Hmac(b)) => a == b,
            (Key::Ed25519(a, _), Key::Ed25519(b, _)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Key {}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey(<{} redacted>)", self.0.len())
    }
}

impl SigningKey {
    /// Reads the secrets to sign with, the current one first (more than one while a key is
    /// rotated): `whsec_` + base64 (or bare base64) for HMAC, `whsk_` + base64 for ed25519.
    /// Each request carries one signature per key, in this order. Errors never repeat a secret.
    pub(crate) fn from_secrets(secrets: &[Secret]) -> Result<Self, String> {
        if secrets.is_empty() {
            return Err("at least one secret is needed".into());
        }
        let keys = secrets
            .iter()
            .map(|s| key(s.expose()))
            .collect::<Result<_, _>>()?;
        Ok(Self(keys))
    }

    /// The `webhook-signature` value for one request.
    pub(crate) fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let content = signed_content(id, timestamp, body);
        let signatures: Vec<String> = self
            .0
            .iter()
            .map(|key| match key {
                Key::Hmac(secret) => {
                    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), &content);
                    format!("v1,{}", STANDARD.encode(tag.as_ref()))
                }
                Key::Ed25519(_, pair) => {
                    format!("v1a,{}", STANDARD.encode(pair.sign(&content).as_ref()))
                }
            })
            .collect();
        signatures.join(" ")
    }
}

/// Checks `webhook-signature` headers as a receiver does: with a symmetric secret, an ed25519
/// public key, or an ed25519 secret key (its public half). Used by `receive`.
pub(crate) struct Verifier(VerifyKey);

enum VerifyKey {
    Hmac(Vec<u8>),
    Ed25519([u8; 32]),
}

impl Verifier {
    /// Reads `whsec_…`, `whpk_…` or `whsk_…`. Errors never repeat the secret.
    pub(crate) fn from_secret(secret: &Secret) -> Result<Self, String> {
        let text = secret.expose();
        if let Some(encoded) = text.strip_prefix(PUBLIC_KEY) {
            let bytes = decode(encoded, PUBLIC_KEY)?;
            let public: [u8; 32] = bytes
                .try_into()
                .map_err(|_| "an ed25519 public key holds 32 bytes".to_owned())?;
            return Ok(Self(VerifyKey::Ed25519(public)));
        }
        Ok(Self(match key(text)? {
            Key::Hmac(secret) => VerifyKey::Hmac(secret),
            Key::Ed25519(_, pair) => {
                let public = pair.public_key().as_ref().try_into().expect("32 bytes");
                VerifyKey::Ed25519(public)
            }
        }))
    }

    /// Whether one of the space-separated signatures of `header` is valid for this request.
    pub(crate) fn verify(&self, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
        let content = signed_content(id, timestamp, body);
        header.split(' ').any(|signature| {
            let Some((version, encoded)) = signature.split_once(',') else {
                return false;
            };
            let Ok(bytes) = STANDARD.decode(encoded) else {
                return false;
            };
            match (&self.0, version) {
                (VerifyKey::Hmac(secret), "v1") => {
                    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), &content);
                    constant_time::verify_slices_are_equal(tag.as_ref(), &bytes).is_ok()
                }
                (VerifyKey::Ed25519(public), "v1a") => UnparsedPublicKey::new(&ED25519, public)
                    .verify(&content, &bytes)
                    .is_ok(),
                _ => false,
            }
        })
    }
}

/// `{id}.{timestamp}.{body}`, what every signature covers.
fn signed_content(id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut content = format!("{id}.{timestamp}.").into_bytes();
    content.extend_from_slice(body);
    content
}

/// One secret in the spec's forms.
fn key(text: &str) -> Result<Key, String> {
    if let Some(encoded) = text.strip_prefix(SECRET_KEY) {
        let bytes = decode(encoded, SECRET_KEY)?;
        let pair = match bytes.len() {
            32 => Ed25519KeyPair::from_seed_unchecked(&bytes),
            64 => Ed25519KeyPair::from_seed_and_public_key(&bytes[..32], &bytes[32..]),
            _ => {
                return Err("an ed25519 secret key holds 32 bytes (the seed) or 64 (the seed and the public key)".into());
            }
        }
        .map_err(|_| "not a valid ed25519 secret key".to_owned())?;
        let seed = bytes[..32].try_into().expect("32 bytes");
        return Ok(Key::Ed25519(seed, Arc::new(pair)));
    }
    if text.starts_with(PUBLIC_KEY) {
        return Err("a public key (whpk_) cannot sign: give the secret key (whsk_)".into());
    }
    let encoded = text.strip_prefix(SYMMETRIC).unwrap_or(text);
    let secret = decode(encoded, SYMMETRIC)?;
    if secret.len() < 16 {
        return Err("the secret must hold at least 16 bytes (24 base64 characters)".into());
    }
    Ok(Key::Hmac(secret))
}

fn decode(encoded: &str, prefix: &str) -> Result<Vec<u8>, String> {
    STANDARD
        .decode(encoded)
        .map_err(|_| format!("the secret must be base64, prefixed with `{prefix}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn secret(text: &str) -> Secret {
        Secret::new(text.to_owned())
    }

    #[test]
    fn matches_the_spec_example() {
        // The example from the Standard Webhooks specification.
        let key = SigningKey::from_secrets(&[secret(SPEC_SECRET)]).unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            key.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn rejects_secrets_that_are_not_base64_without_echoing_them() {
        for text in ["not base64 at all!", "whsk_not base64 either!", "whsk_AAAA"] {
            let err = SigningKey::from_secrets(&[secret(text)]).unwrap_err();
            assert!(
                !err.contains("base64 at all") && !err.contains("either"),
                "{err}"
            );
        }
        let public = format!("{PUBLIC_KEY}{}", STANDARD.encode([7u8; 32]));
        assert!(SigningKey::from_secrets(&[secret(&public)]).is_err());
    }

    #[test]
    fn a_rotation_signs_with_every_key_and_a_receiver_of_either_accepts() {
        let seed = [42u8; 32];
        let asymmetric = format!("{SECRET_KEY}{}", STANDARD.encode(seed));
        let key = SigningKey::from_secrets(&[secret(&asymmetric), secret(SPEC_SECRET)]).unwrap();
        let header = key.sign("msg_1", 1_700_000_000, b"{}");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert!(
            parts[0].starts_with("v1a,") && parts[1].starts_with("v1,"),
            "{header}"
        );
        for receiver in [SPEC_SECRET, asymmetric.as_str()] {
            let verifier = Verifier::from_secret(&secret(receiver)).unwrap();
            assert!(verifier.verify("msg_1", 1_700_000_000, b"{}", &header));
            assert!(!verifier.verify("msg_1", 1_700_000_000, b"{ }", &header));
            assert!(!verifier.verify("msg_2", 1_700_000_000, b"{}", &header));
        }
        // The 64-byte form (seed, then public key) is the same key.
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
        let mut long = seed.to_vec();
        long.extend_from_slice(pair.public_key().as_ref());
        let long = format!("{SECRET_KEY}{}", STANDARD.encode(long));
        assert_eq!(
            SigningKey::from_secrets(&[secret(&long)]).unwrap(),
            SigningKey::from_secrets(&[secret(&asymmetric)]).unwrap()
        );
        let public = format!(
            "{PUBLIC_KEY}{}",
            STANDARD.encode(pair.public_key().as_ref())
        );
        let verifier = Verifier::from_secret(&secret(&public)).unwrap();
        assert!(verifier.verify("msg_1", 1_700_000_000, b"{}", &header));
    }
}
