//! Where and how one endpoint is sent: the deliver stage's settings, with their defaults.

use std::time::Duration;

use reqwest::header::HeaderMap;
use url::Url;

use super::retry::RetryPolicy;
use super::signing::SigningKey;

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
            url,
            signing_key: None,
            headers: HeaderMap::new(),
            timeout: Self::DEFAULT_TIMEOUT,
            concurrency: Self::DEFAULT_CONCURRENCY,
            retry: RetryPolicy::default(),
        }
    }
}
