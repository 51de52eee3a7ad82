//! The headers plugins may not set or remove: the router's signature headers, the
//! endpoint's credentials and the transport's own. A plugin that returns one has that header
//! refused (logged once per plugin and header); the rest of its output is used and the event
//! is still delivered.

/// Headers only the router sets, lower case.
pub const REFUSED: [&str; 12] = [
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "authorization",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
];

/// Whether plugins may not set header `name`.
pub(crate) fn refused(name: &str) -> bool {
    REFUSED.iter().any(|r| name.eq_ignore_ascii_case(r))
}

#[cfg(test)]
mod tests {
    use super::refused;

    #[test]
    fn signature_credential_and_transport_headers_are_refused_in_any_case() {
        for name in [
            "Webhook-Signature",
            "webhook-id",
            "WEBHOOK-TIMESTAMP",
            "Authorization",
            "Host",
            "content-length",
        ] {
            assert!(refused(name), "{name}");
        }
        assert!(!refused("x-github-api-version"));
        assert!(!refused("accept"));
    }
}
