//! Loads `router.toml`, checks it, and builds the settings the stages run with.
//!
//! [`file`] is the raw file, key by key (the reference of every setting); [`Config`] is the
//! checked result with secrets resolved. A bad file yields [`ConfigError::Invalid`], whose
//! lines read `file:line:col: message`, one per problem. [`watch`] reloads a changed file.

mod check;
mod diagnostic;
pub mod file;
pub mod secret;
pub mod watch;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderMap;
use url::Url;

use crate::deliver::retry::RetryPolicy;
use crate::deliver::signing::SigningKey;
use crate::format::Format;

/// Environment variable naming the config file when `--config` is not given.
pub const CONFIG_ENV: &str = "KFP_EVENT_ROUTER_CONFIG";

/// A checked configuration, ready to run.
#[derive(Debug, PartialEq)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// Where events come from.
    pub source: SourceConfig,
    /// Which paths report run transitions (`source.from`).
    pub paths: crate::enrich::Paths,
    /// Folder of the outbox, checkpoints and dead letters.
    pub state_dir: PathBuf,
    /// Address of the metrics and health server.
    pub listen: SocketAddr,
    /// Every endpoint: the `[[endpoints]]` tables, then one per file of `subscribers_dir`.
    pub endpoints: Vec<Arc<Endpoint>>,
    /// The plugins: their folder, the global chain, limits and configurations.
    pub plugins: PluginsConfig,
    /// Files and folders whose change means the config must be read again.
    pub watched: BTreeSet<PathBuf>,
}

/// Where events come from.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceConfig {
    /// Replay a recorded JSON Lines file.
    Replay {
        /// The recording.
        path: PathBuf,
        /// Events per second, or unlimited.
        rate: Option<f64>,
    },
    /// Watch a cluster.
    Kubernetes(crate::source::kubernetes::KubernetesSettings),
}

/// One webhook receiver, checked and with its secrets resolved.
#[derive(Debug, PartialEq)]
pub struct Endpoint {
    /// Unique name, used in logs, metrics and dead letters.
    pub name: String,
    /// Where to POST. Never logged: webhook URLs often embed a token.
    pub url: Url,
    /// The payload format.
    pub format: Format,
    /// Reasons to deliver, or all.
    pub event_types: Option<HashSet<String>>,
    /// Namespaces to deliver from, or all.
    pub namespaces: Option<HashSet<String>>,
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
    /// Plugins run for this endpoint, after the global chain.
    pub plugins: Vec<String>,
}

impl Endpoint {
    /// Whether this endpoint wants events of this reason from this namespace.
    pub fn accepts(&self, reason: &str, namespace: &str) -> bool {
        self.event_types.as_ref().is_none_or(|t| t.contains(reason))
            && self
                .namespaces
                .as_ref()
                .is_none_or(|n| n.contains(namespace))
    }

    /// An endpoint with default settings, as made for each subscriber file.
    pub fn subscriber(name: String, url: Url) -> Self {
        Self {
            name,
            url,
            format: Format::Kfp,
            event_types: None,
            namespaces: None,
            signing_key: None,
            headers: HeaderMap::new(),
            timeout: Duration::from_secs(15),
            concurrency: 64,
            retry: RetryPolicy::default(),
            plugins: Vec::new(),
        }
    }
}

/// What happens to an event when a plugin call fails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    /// Carry on with the payload as it was before the failing plugin.
    #[default]
    Pass,
    /// Send nothing to that endpoint.
    Drop,
    /// Write the event to the dead-letter file, unsent.
    DeadLetter,
}

/// The limits and failure policy of one plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PluginSettings {
    /// What a failed call means for the event.
    pub on_error: OnError,
    /// CPU time one call may take.
    pub timeout: Duration,
    /// Bytes of memory one instance may use.
    pub max_memory: usize,
    /// Bytes one call may return (body and headers).
    pub max_output: usize,
}

impl Default for PluginSettings {
    fn default() -> Self {
        Self {
            on_error: OnError::Pass,
            timeout: Duration::from_millis(100),
            max_memory: 32 << 20,
            max_output: 1 << 20,
        }
    }
}

/// The checked `[plugins]` section.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PluginsConfig {
    /// Folder of `*.wasm` plugins, when configured.
    pub dir: Option<PathBuf>,
    /// The global chain, run for every endpoint before its own plugins.
    pub chain: Vec<String>,
    /// Settings of plugins without `[plugins.settings.<name>]`.
    pub defaults: PluginSettings,
    /// Settings of the plugins that override some.
    pub settings: BTreeMap<String, PluginSettings>,
    /// Each plugin's configuration, handed to its `init`.
    pub config: BTreeMap<String, serde_json::Value>,
}

impl PluginsConfig {
    /// The settings of plugin `name`.
    pub fn settings(&self, name: &str) -> PluginSettings {
        self.settings.get(name).copied().unwrap_or(self.defaults)
    }

    /// The JSON text handed to plugin `name`'s `init`: its configuration, or `{}`.
    pub fn init_config(&self, name: &str) -> String {
        self.config
            .get(name)
            .map_or_else(|| "{}".to_owned(), serde_json::Value::to_string)
    }
}

/// The file of plugin `name` in `dir`.
pub fn plugin_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.wasm"))
}

pub use diagnostic::{ConfigError, Diagnostic};

impl Config {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Checks `text` as the contents of the file at `path`; relative paths in it are taken
    /// from the current directory, as the router runs.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        check::check(path, text)
    }
}

#[cfg(test)]
mod tests;
