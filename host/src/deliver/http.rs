//! Sends one request to an endpoint and sorts the outcome into delivered, retry, or final.

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue};

use super::Delivery;
use super::retry::retry_after;
use crate::model::request::Request;

/// Headers the router sets itself, which plugins may not override.
const RESERVED: [&str; 4] = [
    "content-type",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// Why an attempt did not deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Worth trying again: connect errors, timeouts, 408, 429, 5xx.
    Retry {
        /// What happened.
        error: String,
        /// How long the endpoint asked us to wait.
        retry_after: Option<Duration>,
    },
    /// Not worth trying again: any other status.
    Final(String),
}

impl Failure {
    /// The error text.
    pub(crate) fn error(&self) -> &str {
        match self {
            Self::Retry { error, .. } | Self::Final(error) => error,
        }
    }
}

/// A shared HTTP client: keep-alive pools per host, TLS verified, redirects not followed (a
/// redirected POST would lose its body).
#[derive(Clone, Debug)]
pub(crate) struct HttpSender {
    client: reqwest::Client,
}

impl Default for HttpSender {
    fn default() -> Self {
        let client = reqwest::Client::builder()
            .user_agent(concat!("kfp-event-router/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()
            .expect("the HTTP client's settings are valid");
        Self { client }
    }
}

impl HttpSender {
    /// POSTs `request` to `endpoint`, signed when the endpoint has a key. Errors never include
    /// the URL, which may hold a token.
    pub(crate) async fn post(
        &self,
        endpoint: &Delivery,
        request: &Request,
        webhook_id: &str,
    ) -> Result<u16, Failure> {
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let body = request.payload.body.clone();
        let mut headers = endpoint.headers.clone();
        for (name, value) in &request.headers {
            if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
                continue;
            }
            if let (Ok(name), Ok(value)) =
                (HeaderName::try_from(name), HeaderValue::try_from(value))
            {
                headers.insert(name, value);
            }
        }
        let header = |s: &str| HeaderValue::from_str(s).expect("ids and signatures are ASCII");
        headers.insert(CONTENT_TYPE, header(&request.payload.content_type));
        headers.insert("webhook-id", header(webhook_id));
        headers.insert("webhook-timestamp", header(&timestamp.to_string()));
        if let Some(key) = &endpoint.signing_key {
            headers.insert(
                "webhook-signature",
                header(&key.sign(webhook_id, timestamp, &body)),
            );
        }
        let response = self
            .client
            .post(endpoint.url.clone())
            .timeout(endpoint.timeout)
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|e| Failure::Retry {
                error: describe(&e.without_url()),
                retry_after: None,
            })?;
        let status = response.status();
        let wait = retry_after(response.headers());
        // Reading the body lets the connection be reused; a short excerpt explains failures.
        let body = response.bytes().await.unwrap_or_default();
        let excerpt: String = String::from_utf8_lossy(&body).chars().take(200).collect();
        let code = status.as_u16();
        match code {
            200..=299 => Ok(code),
            408 | 429 | 500..=599 => Err(Failure::Retry {
                error: format!("HTTP {status}: {excerpt}"),
                retry_after: wait,
            }),
            _ => Err(Failure::Final(format!("HTTP {status}: {excerpt}"))),
        }
    }
}

/// The error and its causes on one line.
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
