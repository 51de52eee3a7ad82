//! The deliver stage's settings: where and how each endpoint is sent, with their defaults,
//! and how long a removed endpoint's backlog is kept.

use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use reqwest::header::HeaderMap;
use url::Url;

use super::lean::lean_uri;
use super::retry::RetryPolicy;
use super::signing::SigningKey;
use super::tls::EndpointTls;

/// The deliver stage's part of the config, followed as it changes.
#[derive(Debug, PartialEq)]
pub(crate) struct Settings {
    /// Every endpoint, in config order.
    pub(crate) endpoints: Vec<Arc<Delivery>>,
    /// How long a removed endpoint's undelivered events are kept
    /// (`state.removed_endpoint_grace`).
    pub(crate) removed_grace: Duration,
}

/// One endpoint's delivery settings, checked and with its secrets resolved.
#[derive(Debug, PartialEq)]
pub struct Delivery {
    /// Unique name, used in logs, metrics and dead letters.
    pub name: String,
    /// Where to POST. Never logged: webhook URLs often embed a token.
    pub url: Url,
    /// Key for Standard Webhooks signatures, when configured.
    pub signing_key: Option<SigningKey>,
    /// Extra headers; the ones read from secrets are marked sensitive.
    pub headers: HeaderMap,
    /// Time allowed for one request.
    pub timeout: Duration,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// How failures are retried.
    pub retry: RetryPolicy,
    /// At most this many attempts per second, when set.
    pub rate: Option<f64>,
    /// The endpoint's own trust roots and client certificate, when set.
    pub tls: Option<EndpointTls>,
    /// Where the lean client sends, when it can (see [`lean_uri`]): derived from `url`.
    pub(crate) lean: Option<Uri>,
}

impl Delivery {
    /// Time allowed for one request unless configured.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
    /// Requests in flight at once unless configured.
    pub const DEFAULT_CONCURRENCY: usize = 64;

    /// Settings for `name` at `url` with every default: unsigned, no extra headers, 15 s per
    /// request, 64 in flight, the Standard Webhooks retry schedule.
    pub fn new(name: String, url: Url) -> Self {
        Self {
            name,
            signing_key: None,
            headers: HeaderMap::new(),
            timeout: Self::DEFAULT_TIMEOUT,
            concurrency: Self::DEFAULT_CONCURRENCY,
            retry: RetryPolicy::default(),
            rate: None,
            tls: None,
            lean: lean_uri(&url),
            url,
        }
    }
}
