//! An endpoint's own TLS settings (`[endpoints.tls]`): trust roots beyond the system's (a
//! private CA) and a client certificate (mutual TLS). Server certificates are always verified.

use std::fmt;

use super::http::client_builder;

/// PEM files of one endpoint, and the HTTP client made from them once.
#[derive(Clone)]
pub struct EndpointTls {
    /// The CA bundle, client certificate and key, as read: what tells two settings apart.
    pem: Vec<Vec<u8>>,
    client: reqwest::Client,
}

impl PartialEq for EndpointTls {
    fn eq(&self, other: &Self) -> bool {
        self.pem == other.pem
    }
}

impl fmt::Debug for EndpointTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EndpointTls(<redacted>)")
    }
}

impl EndpointTls {
    /// A client trusting the system's roots plus those of `ca` (a PEM bundle), presenting
    /// `identity` (a PEM certificate chain, and its PEM private key) when given. Errors never
    /// quote the key.
    pub(crate) fn new(ca: Option<&[u8]>, identity: Option<(&[u8], &[u8])>) -> Result<Self, String> {
        let mut builder = client_builder();
        let mut pem = Vec::new();
        if let Some(ca) = ca {
            let roots = reqwest::Certificate::from_pem_bundle(ca)
                .map_err(|_| "ca: not a PEM certificate bundle".to_owned())?;
            if roots.is_empty() {
                return Err("ca: no certificate in the file".into());
            }
            for root in roots {
                builder = builder.add_root_certificate(root);
            }
            pem.push(ca.to_vec());
        }
        if let Some((cert, key)) = identity {
            let mut both = cert.to_vec();
            both.push(b'\n');
            both.extend_from_slice(key);
            let identity = reqwest::Identity::from_pem(&both).map_err(|_| {
                "cert and key: not a PEM certificate and its private key".to_owned()
            })?;
            builder = builder.identity(identity);
            pem.push(both);
        }
        let client = builder
            .build()
            .map_err(|_| "the certificate or key cannot be used for TLS".to_owned())?;
        Ok(Self { pem, client })
    }

    /// The client to send with.
    pub(super) fn client(&self) -> &reqwest::Client {
        &self.client
    }
}
