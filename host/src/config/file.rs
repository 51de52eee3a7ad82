//! The configuration file, key by key: these doc comments are the reference of `router.toml`.
//!
//! Every table rejects unknown keys, so a typo is an error rather than a silently ignored
//! setting. Values that are checked beyond their type (URLs, durations, secrets) keep their
//! position in the file so that errors can name `file:line:col`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use toml::Spanned;

use super::secret::SecretSource;

/// The whole `router.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Where events come from.
    pub source: SourceSection,
    /// Where the router keeps its outbox, checkpoints and dead letters.
    #[serde(default)]
    pub state: StateSection,
    /// The metrics and health server.
    #[serde(default)]
    pub server: ServerSection,
    /// The webhooks to deliver to.
    #[serde(default)]
    pub endpoints: Vec<EndpointSection>,
    /// A folder where every file holds one subscriber URL, as the Go `kfp-event-handler`'s
    /// ConfigMap does. Each becomes an endpoint named after the file, with the `kfp` format.
    pub subscribers_dir: Option<Spanned<PathBuf>>,
}

/// `[source]`: where events come from.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSection {
    /// `replay`: read a recorded JSON Lines file of Events and Workflows.
    pub kind: Spanned<SourceKind>,
    /// For `replay`: the recording to read.
    pub path: Option<Spanned<PathBuf>>,
    /// For `replay`: events per second to replay at; unlimited when absent.
    pub rate: Option<Spanned<f64>>,
}

/// The kinds of source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// A recorded file (JSON Lines of Kubernetes objects or watch events).
    Replay,
}

/// `[state]`: the router's durable state.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSection {
    /// Folder for the outbox database, checkpoints and the dead-letter file.
    /// Defaults to `/var/lib/kfp-event-router`.
    #[serde(default = "default_state_dir")]
    pub dir: PathBuf,
}

impl Default for StateSection {
    fn default() -> Self {
        Self {
            dir: default_state_dir(),
        }
    }
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/kfp-event-router")
}

/// `[server]`: serves `/metrics`, `/healthz` and `/readyz`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Address to listen on. Defaults to `127.0.0.1:9090`; port 0 picks a free port.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen: default_listen(),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9090))
}

/// `[[endpoints]]`: one webhook receiver.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSection {
    /// Unique name, used in logs, metrics and the dead-letter file (never the URL, which may
    /// embed a token).
    pub name: Spanned<String>,
    /// Where to POST: an `http` or `https` URL.
    pub url: Spanned<String>,
    /// Payload format: `kfp` (default, the Go handler's), `extended` or `cloudevents`.
    #[serde(default)]
    pub format: crate::format::Format,
    /// Deliver only events with these reasons (e.g. `WorkflowFailed`); all when absent.
    pub event_types: Option<Vec<String>>,
    /// Deliver only events from these namespaces; all when absent.
    pub namespaces: Option<Vec<String>>,
    /// Standard Webhooks signing secret (`whsec_` + base64), from `{ env = ".." }` or
    /// `{ file = ".." }`. Requests are unsigned when absent.
    pub signing_secret: Option<Spanned<SecretSource>>,
    /// Extra request headers; a value is a string, `{ env = ".." }` or `{ file = ".." }`.
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<HeaderValue>>,
    /// Time allowed for one request, e.g. `"10s"`. Defaults to 15 s.
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// Requests in flight at once to this endpoint (across workflows). Defaults to 64.
    #[serde(default = "default_concurrency")]
    pub concurrency: Spanned<usize>,
    /// How failed deliveries are retried.
    #[serde(default)]
    pub retry: RetrySection,
}

fn default_timeout() -> Duration {
    Duration::from_secs(15)
}

fn default_concurrency() -> Spanned<usize> {
    Spanned::new(0..0, 64)
}

/// A header value: plain text, or a secret read from the environment or a file.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum HeaderValue {
    /// Written in the file.
    Plain(String),
    /// Read from the environment or a file.
    Secret(SecretSource),
}

/// `[endpoints.retry]`: the retry budget. Connect errors, timeouts, 408, 429 and 5xx are
/// retried; any other status is final.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySection {
    /// Attempts in all, the first included. Defaults to 8.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: Spanned<u32>,
    /// Give up when this long has passed since the first attempt. Defaults to `"36h"`.
    #[serde(default = "default_max_elapsed", deserialize_with = "duration")]
    pub max_elapsed: Duration,
    /// Delay before each attempt; the last one repeats. Defaults to the Standard Webhooks
    /// schedule: `["0s", "5s", "5m", "30m", "2h", "5h", "10h", "10h"]`.
    #[serde(default = "default_schedule", deserialize_with = "durations")]
    pub schedule: Vec<Duration>,
    /// Random spread added to each delay, as a fraction of it. Defaults to 0.2.
    #[serde(default = "default_jitter")]
    pub jitter: f64,
}

impl Default for RetrySection {
    fn default() -> Self {
        Self {
            max_attempts: default_max_attempts(),
            max_elapsed: default_max_elapsed(),
            schedule: default_schedule(),
            jitter: default_jitter(),
        }
    }
}

fn default_max_attempts() -> Spanned<u32> {
    Spanned::new(0..0, 8)
}

fn default_max_elapsed() -> Duration {
    Duration::from_secs(36 * 3600)
}

fn default_schedule() -> Vec<Duration> {
    [0, 5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600]
        .into_iter()
        .map(Duration::from_secs)
        .collect()
}

fn default_jitter() -> f64 {
    0.2
}

/// Deserialises a human duration such as `"10s"`, `"5m"` or `"36h"`.
fn duration<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(de)?;
    humantime::parse_duration(&text)
        .map_err(|e| serde::de::Error::custom(format!("invalid duration {text:?}: {e}")))
}

fn durations<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<Duration>, D::Error> {
    Vec::<String>::deserialize(de)?
        .iter()
        .map(|text| {
            humantime::parse_duration(text)
                .map_err(|e| serde::de::Error::custom(format!("invalid duration {text:?}: {e}")))
        })
        .collect()
}
