//! TLS to PostgreSQL, with the rustls and aws-lc-rs stack the HTTP clients use: the server's
//! certificate is always verified, against the system's roots plus `[state.tls] ca`, and a
//! client certificate is presented when `[state.tls]` names one.
//!
//! The URL's `sslmode` decides whether TLS is used: `disable` never, `prefer` (the default)
//! when the server offers it, `require` always. libpq's `verify-ca` and `verify-full` are
//! taken as `require`: every certificate is verified here, host name included.

use std::fmt;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::crypto::aws_lc_rs;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls_platform_verifier::Verifier;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How the router connects to PostgreSQL over TLS: `[state.tls]`, read and checked.
#[derive(Clone)]
pub struct DatabaseTls {
    /// The CA bundle, client certificate and key, as read: what tells two settings apart.
    pem: Vec<Vec<u8>>,
    connector: MakeRustlsConnect,
}

impl PartialEq for DatabaseTls {
    fn eq(&self, other: &Self) -> bool {
        self.pem == other.pem
    }
}

impl fmt::Debug for DatabaseTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DatabaseTls(<redacted>)")
    }
}

impl Default for DatabaseTls {
    /// The system's roots, no client certificate.
    fn default() -> Self {
        Self::new(None, None).expect("the system's roots make a TLS client")
    }
}

impl DatabaseTls {
    /// Trusts the system's roots plus those of `ca` (a PEM bundle), and presents `identity`
    /// (a PEM certificate chain, and its PEM private key) when given. Errors never quote the
    /// key.
    pub(crate) fn new(ca: Option<&[u8]>, identity: Option<(&[u8], &[u8])>) -> Result<Self, String> {
        let mut pem = Vec::new();
        let mut roots = Vec::new();
        if let Some(ca) = ca {
            roots = certificates(ca).map_err(|e| format!("ca: {e}"))?;
            pem.push(ca.to_vec());
        }
        let provider = Arc::new(aws_lc_rs::default_provider());
        let verifier = Verifier::new_with_extra_roots(roots, Arc::clone(&provider))
            .map_err(|e| format!("ca: cannot be trusted: {e}"))?;
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        let config = match identity {
            Some((cert, key)) => {
                let chain = certificates(cert).map_err(|e| format!("cert: {e}"))?;
                let key = PrivateKeyDer::from_pem_slice(key)
                    .map_err(|_| "key: not a PEM private key".to_owned())?;
                let mut both = cert.to_vec();
                both.extend_from_slice(key.secret_der());
                pem.push(both);
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|_| "cert and key: they do not belong together".to_owned())?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(Self {
            pem,
            connector: MakeRustlsConnect::new(config),
        })
    }

    /// What connections are made with.
    pub(super) fn connector(&self) -> MakeRustlsConnect {
        self.connector.clone()
    }
}

/// The certificates of a PEM bundle; at least one.
fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| "not a PEM certificate bundle".to_owned())?;
    if certificates.is_empty() {
        return Err("no certificate in the file".into());
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_that_are_not_certificates_or_keys_are_named_and_the_key_never_quoted() {
        let e = DatabaseTls::new(Some(b"not pem"), None).unwrap_err();
        assert_eq!(e, "ca: no certificate in the file");
        let e = DatabaseTls::new(None, Some((b"", b"SECRET-KEY"))).unwrap_err();
        assert_eq!(e, "cert: no certificate in the file");
        let cert = rcgen::generate_simple_self_signed(vec!["db".to_owned()]).unwrap();
        let e =
            DatabaseTls::new(None, Some((cert.cert.pem().as_bytes(), b"SECRET-KEY"))).unwrap_err();
        assert_eq!(e, "key: not a PEM private key");
        assert!(!e.contains("SECRET"));
    }

    #[test]
    fn a_ca_and_a_client_certificate_make_a_connector() {
        let ca = rcgen::generate_simple_self_signed(vec!["ca".to_owned()]).unwrap();
        let client = rcgen::generate_simple_self_signed(vec!["client".to_owned()]).unwrap();
        let tls = DatabaseTls::new(
            Some(ca.cert.pem().as_bytes()),
            Some((
                client.cert.pem().as_bytes(),
                client.signing_key.serialize_pem().as_bytes(),
            )),
        )
        .unwrap();
        assert_ne!(tls, DatabaseTls::default());
        assert_eq!(format!("{tls:?}"), "DatabaseTls(<redacted>)");
    }
}
