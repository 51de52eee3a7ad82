//! Loads `router.toml`, checks it, and builds the settings the stages run with.
//!
//! [`file`] is the raw file, key by key (the reference of every setting); [`Config`] is the
//! checked result with secrets resolved. A bad file yields [`ConfigError::Invalid`], whose
//! lines read `file:line:col: message`, one per problem. [`watch`] reloads a changed file.

mod check;
mod diagnostic;
pub(crate) mod file;
pub(crate) mod watch;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::accept::{Route, Routes};
use crate::deliver::Delivery;
use crate::enrich::Paths;
use crate::model::secret::Secret;
use crate::payload::plugins::settings::PluginsSettings;
use crate::payload::{EndpointPayload, PayloadSettings};
use crate::source::SourceSettings;
use crate::state::StateSettings;

/// Environment variable naming the config file when `--config` is not given.
pub(crate) const CONFIG_ENV: &str = "KFP_EVENT_ROUTER_CONFIG";

/// A checked configuration, ready to run.
#[derive(Debug, PartialEq)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// Where events come from.
    pub source: SourceSettings,
    /// Which paths report run transitions (`source.from`).
    pub paths: Paths,
    /// Where the outbox, checkpoints and dead letters are (`[state]`).
    pub state: StateSettings,
    /// How long a removed endpoint's undelivered events are kept (`state.removed_endpoint_grace`).
    pub removed_endpoint_grace: Duration,
    /// Address of the metrics and health server.
    pub listen: SocketAddr,
    /// The admin API's bearer token (`server.admin_token`); the API is off without one.
    pub admin_token: Option<Secret>,
    /// Deliveries per endpoint the console keeps (`server.console_history`); 0 keeps none.
    pub console_history: usize,
    /// Every endpoint: the `[[endpoints]]` tables, then one per file of `subscribers_dir`.
    pub endpoints: Vec<Endpoint>,
    /// The plugins: their folder, the global chain, limits and configurations.
    pub plugins: PluginsSettings,
    /// The cluster's name sent with every event (`router.cluster`).
    pub cluster: Option<String>,
    /// Files and folders whose change means the config must be read again.
    pub watched: BTreeSet<PathBuf>,
}

/// One webhook receiver, checked and with its secrets resolved: what each stage needs of it.
#[derive(Debug, PartialEq)]
pub struct Endpoint {
    /// Which events it wants (the accept stage).
    pub route: Route,
    /// How its payload is made (the payload stage).
    pub payload: EndpointPayload,
    /// Where and how it is sent (the deliver stage); holds the name.
    pub delivery: Arc<Delivery>,
}

impl Endpoint {
    /// Its unique name, used in logs, metrics and dead letters.
    pub fn name(&self) -> &str {
        &self.delivery.name
    }

    /// An endpoint with default settings, as made for each subscriber file.
    pub fn subscriber(name: String, url: Url) -> Self {
        Self {
            route: Route::default(),
            payload: EndpointPayload::default(),
            delivery: Arc::new(Delivery::new(name, url)),
        }
    }
}

pub use diagnostic::{ConfigError, Diagnostic};

impl Config {
    /// Which endpoints want which events: the accept stage's settings.
    pub(crate) fn routes(&self) -> Routes {
        self.endpoints
            .iter()
            .map(|e| (e.name().to_owned(), e.route.clone()))
            .collect()
    }

    /// The plugins and every endpoint's format and chain: the payload stage's settings.
    pub fn payload(&self) -> PayloadSettings {
        PayloadSettings {
            plugins: self.plugins.clone(),
            endpoints: self
                .endpoints
                .iter()
                .map(|e| (e.name().to_owned(), e.payload.clone()))
                .collect(),
        }
    }

    /// The names of the endpoints: those a dead letter can be redriven to.
    pub(crate) fn endpoint_names(&self) -> BTreeSet<String> {
        self.endpoints.iter().map(|e| e.name().to_owned()).collect()
    }

    /// Every endpoint's delivery settings: the deliver stage's.
    pub(crate) fn deliveries(&self) -> Vec<Arc<Delivery>> {
        self.endpoints
            .iter()
            .map(|e| Arc::clone(&e.delivery))
            .collect()
    }
}

impl Config {
    /// The default of `state.removed_endpoint_grace`.
    pub const DEFAULT_REMOVED_ENDPOINT_GRACE: Duration = Duration::from_secs(24 * 3600);

    /// Deliveries per endpoint the console keeps unless configured.
    pub const DEFAULT_CONSOLE_HISTORY: usize = 200;

    /// The most `server.console_history` may be.
    pub const MAX_CONSOLE_HISTORY: usize = 100_000;

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
        check::check(path, text, false)
    }

    /// Reads and checks the file at `path` as [`Config::load`] does, but without reading the
    /// files and environment variables it names (secrets, plugins, subscribers, recordings),
    /// which may exist only where the router runs: for checking a config before it ships.
    /// Secrets are left out of the result, so it is for checking only, not for running.
    pub fn load_offline(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        check::check(path, &text, true)
    }
}

#[cfg(test)]
mod kubernetes_tests;
#[cfg(test)]
mod tests;
