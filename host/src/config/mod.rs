//! Loads `router.toml`, checks it, and builds the settings the stages run with.
//!
//! [`file`] is the raw file, key by key (the reference of every setting); [`Config`] is the
//! checked result with secrets resolved. A bad file yields [`ConfigError::Invalid`], whose
//! lines read `file:line:col: message`, one per problem. [`watch`] reloads a changed file.

pub mod file;
pub mod secret;
pub mod watch;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName};
use url::Url;

use crate::deliver::retry::RetryPolicy;
use crate::deliver::signing::SigningKey;
use crate::format::Format;
use file::{ConfigFile, EndpointSection, HeaderValue, PluginsSection, SourceKind};

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

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file was read but is wrong; one line per problem.
    #[error("{}", Diagnostics(.0))]
    Invalid(Vec<Diagnostic>),
}

/// One problem in a config file, at a place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file (or, for a subscriber, the subscriber's file).
    pub path: PathBuf,
    /// 1-based line, when the problem has a place in the file.
    pub line: Option<usize>,
    /// 1-based column, in characters.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, ":{line}:{column}")?;
        }
        write!(f, ": {}", self.message)
    }
}

struct Diagnostics<'a>(&'a [Diagnostic]);

impl fmt::Display for Diagnostics<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

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
        let mut checker = Checker {
            path,
            text,
            problems: Vec::new(),
        };
        let file: ConfigFile = toml::from_str(text).map_err(|e| {
            let message = hint(e.message());
            ConfigError::Invalid(vec![checker.at(e.span(), message)])
        })?;
        let config = checker.build(file);
        match checker.problems.is_empty() {
            true => Ok(config),
            false => Err(ConfigError::Invalid(checker.problems)),
        }
    }
}

/// Adds advice to the parser's messages for the mistakes that are easy to make.
fn hint(message: &str) -> String {
    let message = message.trim_end().to_owned();
    if message.contains("unknown field `subscribers_dir`") {
        return format!(
            "{message}\n  `subscribers_dir` is a top-level key: move it above the first [table]"
        );
    }
    message
}

/// Collects every problem of one file while building its [`Config`].
struct Checker<'a> {
    path: &'a Path,
    text: &'a str,
    problems: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn at(&self, span: Option<Range<usize>>, message: String) -> Diagnostic {
        let (line, column) = match span {
            Some(span) => {
                let (l, c) = line_column(self.text, span.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        Diagnostic {
            path: self.path.to_owned(),
            line,
            column,
            message,
        }
    }

    fn problem(&mut self, span: Range<usize>, message: impl Into<String>) {
        let d = self.at(Some(span), message.into());
        self.problems.push(d);
    }

    fn build(&mut self, file: ConfigFile) -> Config {
        let mut watched = BTreeSet::from([self.path.to_owned()]);
        let source = self.source(&file.source);
        let plugins = self.plugins(&file.plugins);
        let mut endpoints: Vec<Arc<Endpoint>> = Vec::new();
        let mut names = HashSet::new();
        for (i, section) in file.endpoints.iter().enumerate() {
            if !names.insert(section.name.get_ref().clone()) {
                self.problem(
                    section.name.span(),
                    format!(
                        "endpoints[{i}].name: another endpoint is already named {:?}",
                        section.name.get_ref()
                    ),
                );
            }
            self.chain(
                &format!("endpoints[{i}].plugins"),
                &section.plugins,
                &file.plugins,
            );
            if let Some(endpoint) = self.endpoint(i, section, &mut watched) {
                endpoints.push(Arc::new(endpoint));
            }
        }
        if let Some(dir) = &file.subscribers_dir {
            watched.insert(dir.get_ref().clone());
            for endpoint in self.subscribers(dir) {
                if !names.insert(endpoint.name.clone()) {
                    self.problem(
                        dir.span(),
                        format!(
                            "subscribers_dir: subscriber file {:?} has the name of an endpoint",
                            endpoint.name
                        ),
                    );
                }
                endpoints.push(Arc::new(endpoint));
            }
        }
        Config {
            path: self.path.to_owned(),
            paths: file
                .source
                .from
                .unwrap_or(match file.source.kind.get_ref() {
                    SourceKind::Replay => crate::enrich::Paths::Events,
                    SourceKind::Kubernetes => crate::enrich::Paths::Both,
                }),
            source,
            state_dir: file.state.dir,
            listen: file.server.listen,
            endpoints,
            plugins,
            watched,
        }
    }

    fn plugins(&mut self, section: &PluginsSection) -> PluginsConfig {
        if let Some(dir) = &section.dir
            && !dir.get_ref().is_dir()
        {
            let message = format!(
                "plugins.dir: {} is not a readable folder",
                dir.get_ref().display()
            );
            self.problem(dir.span(), message);
        }
        self.chain("plugins.chain", &section.chain, section);
        let defaults = PluginSettings {
            on_error: section.on_error,
            timeout: section.timeout,
            max_memory: usize::try_from(section.max_memory).unwrap_or(usize::MAX),
            max_output: usize::try_from(section.max_output).unwrap_or(usize::MAX),
        };
        let settings = section
            .settings
            .iter()
            .map(|(name, s)| {
                let size = |v: Option<u64>, default| {
                    v.map_or(default, |v| usize::try_from(v).unwrap_or(usize::MAX))
                };
                let resolved = PluginSettings {
                    on_error: s.on_error.unwrap_or(defaults.on_error),
                    timeout: s.timeout.unwrap_or(defaults.timeout),
                    max_memory: size(s.max_memory, defaults.max_memory),
                    max_output: size(s.max_output, defaults.max_output),
                };
                (name.clone(), resolved)
            })
            .collect();
        let config = section
            .config
            .iter()
            .map(|(name, table)| {
                let json = serde_json::to_value(table).unwrap_or(serde_json::Value::Null);
                (name.clone(), json)
            })
            .collect();
        PluginsConfig {
            dir: section.dir.as_ref().map(|d| d.get_ref().clone()),
            chain: section.chain.iter().map(|n| n.get_ref().clone()).collect(),
            defaults,
            settings,
            config,
        }
    }

    /// Checks that every plugin a chain names is a file of `plugins.dir`.
    fn chain(&mut self, key: &str, names: &[toml::Spanned<String>], section: &PluginsSection) {
        for (i, name) in names.iter().enumerate() {
            let text = name.get_ref();
            let message = if text.is_empty() || text.starts_with('.') || text.contains(['/', '\\'])
            {
                format!(
                    "{key}[{i}]: {text:?} is not a plugin name (the file stem of a .wasm in plugins.dir)"
                )
            } else {
                match &section.dir {
                    None => format!(
                        "{key}[{i}]: plugin {text:?} needs plugins.dir, the folder of plugins"
                    ),
                    Some(dir)
                        if dir.get_ref().is_dir()
                            && !plugin_path(dir.get_ref(), text).is_file() =>
                    {
                        format!(
                            "{key}[{i}]: no plugin {text:?}: {} does not exist{}",
                            plugin_path(dir.get_ref(), text).display(),
                            available(dir.get_ref())
                        )
                    }
                    Some(_) => continue,
                }
            };
            self.problem(name.span(), message);
        }
    }

    fn source(&mut self, section: &file::SourceSection) -> SourceConfig {
        match section.kind.get_ref() {
            SourceKind::Kubernetes => {
                if let Some(key) = [
                    ("path", section.path.as_ref().map(|p| p.span())),
                    ("rate", section.rate.as_ref().map(|r| r.span())),
                ]
                .into_iter()
                .find_map(|(key, span)| Some((key, span?)))
                {
                    self.problem(
                        key.1,
                        format!("source.{}: only for kind = \"replay\"", key.0),
                    );
                }
                SourceConfig::Kubernetes(self.kubernetes(section))
            }
            SourceKind::Replay => {
                let kube_only = [
                    ("namespaces", section.namespaces.as_ref().map(|v| v.span())),
                    ("history", section.history.as_ref().map(|v| v.span())),
                    (
                        "checkpoint_configmap",
                        section.checkpoint_configmap.as_ref().map(|v| v.span()),
                    ),
                ];
                for (key, span) in kube_only {
                    if let Some(span) = span {
                        self.problem(
                            span,
                            format!("source.{key}: only for kind = \"kubernetes\""),
                        );
                    }
                }
                if section.checkpoint_interval.is_some()
                    || section.workflow_wait.is_some()
                    || section.leader_election.is_some()
                {
                    self.problem(
                        section.kind.span(),
                        "source: checkpoint_interval, workflow_wait and leader_election are only for kind = \"kubernetes\"",
                    );
                }
                let path = match &section.path {
                    Some(path) if !path.get_ref().is_file() => {
                        let message = format!(
                            "source.path: {} is not a readable file",
                            path.get_ref().display()
                        );
                        self.problem(path.span(), message);
                        path.get_ref().clone()
                    }
                    Some(path) => path.get_ref().clone(),
                    None => {
                        self.problem(
                            section.kind.span(),
                            "source.path: kind = \"replay\" needs the path of a recording",
                        );
                        PathBuf::new()
                    }
                };
                let rate = section.rate.as_ref().and_then(|rate| {
                    let value = *rate.get_ref();
                    if value > 0.0 {
                        Some(value)
                    } else {
                        self.problem(rate.span(), "source.rate: must be above 0");
                        None
                    }
                });
                SourceConfig::Replay { path, rate }
            }
        }
    }

    /// Checks the `kubernetes` keys of `[source]`.
    fn kubernetes(
        &mut self,
        section: &file::SourceSection,
    ) -> crate::source::kubernetes::KubernetesSettings {
        use crate::source::kubernetes::{KubernetesSettings, Namespaces, leader::LeaderSettings};
        let mut settings = KubernetesSettings::default();
        if let Some(namespaces) = &section.namespaces {
            let names = namespaces.get_ref();
            settings.namespaces = match names.as_slice() {
                [] => Namespaces::Own,
                [all] if all == "*" => Namespaces::All,
                names => {
                    let mut seen = HashSet::new();
                    for name in names {
                        let problem = if name == "*" {
                            Some("\"*\" (every namespace) must be the only entry".to_owned())
                        } else if !is_dns_label(name) {
                            Some(format!("{name:?} is not a namespace name"))
                        } else if !seen.insert(name.as_str()) {
                            Some(format!("{name:?} is listed twice"))
                        } else {
                            None
                        };
                        if let Some(problem) = problem {
                            self.problem(
                                namespaces.span(),
                                format!("source.namespaces: {problem}"),
                            );
                        }
                    }
                    Namespaces::Listed(names.to_vec())
                }
            };
        }
        if let Some(history) = &section.history {
            settings.history = match history.get_ref().as_str() {
                "none" | "" => None,
                text => match humantime::parse_duration(text) {
                    Ok(window) => Some(window),
                    Err(e) => {
                        let message = format!(
                            "source.history: {text:?} is neither \"none\" nor a window such as \"1h\": {e}"
                        );
                        self.problem(history.span(), message);
                        None
                    }
                },
            };
        }
        if let Some(name) = &section.checkpoint_configmap {
            let text = name.get_ref();
            settings.checkpoint_configmap = match text.as_str() {
                "" => None,
                text if is_dns_subdomain(text) => Some(text.to_owned()),
                text => {
                    self.problem(
                        name.span(),
                        format!("source.checkpoint_configmap: {text:?} is not a ConfigMap name"),
                    );
                    None
                }
            };
        }
        if let Some(interval) = section.checkpoint_interval {
            settings.checkpoint_interval = interval.max(Duration::from_millis(100));
        }
        if let Some(wait) = section.workflow_wait {
            settings.workflow_wait = wait;
        }
        if let Some(election) = &section.leader_election {
            settings.leader_election = election.enabled.then(|| {
                let mut leader = LeaderSettings::default();
                if let Some(name) = &election.lease_name {
                    if is_dns_subdomain(name.get_ref()) {
                        leader.lease_name = name.get_ref().clone();
                    } else {
                        self.problem(
                            name.span(),
                            format!(
                                "source.leader_election.lease_name: {:?} is not a Lease name",
                                name.get_ref()
                            ),
                        );
                    }
                }
                if let Some(duration) = election.lease_duration {
                    if duration < Duration::from_secs(1) {
                        self.problem(
                            section.kind.span(),
                            "source.leader_election.lease_duration: must be at least 1s",
                        );
                    }
                    leader.lease_duration = duration.max(Duration::from_secs(1));
                }
                leader.identity = election.identity.clone().filter(|i| !i.is_empty());
                leader
            });
        }
        settings
    }

    fn endpoint(
        &mut self,
        i: usize,
        section: &EndpointSection,
        watched: &mut BTreeSet<PathBuf>,
    ) -> Option<Endpoint> {
        let key = format!("endpoints[{i}]");
        let url = match parse_url(section.url.get_ref()) {
            Ok(url) => Some(url),
            Err(message) => {
                self.problem(section.url.span(), format!("{key}.url: {message}"));
                None
            }
        };
        let signing_key = section.signing_secret.as_ref().and_then(|spanned| {
            watch_secret(spanned.get_ref(), watched);
            let parsed = spanned
                .get_ref()
                .resolve()
                .and_then(|secret| SigningKey::from_secret(&secret));
            parsed
                .map_err(|e| self.problem(spanned.span(), format!("{key}.signing_secret: {e}")))
                .ok()
        });
        let mut headers = HeaderMap::new();
        for (name, value) in &section.headers {
            let name_ok = HeaderName::from_bytes(name.as_bytes());
            let (text, sensitive) = match value.get_ref() {
                HeaderValue::Plain(text) => (Ok(text.clone()), false),
                HeaderValue::Secret(source) => {
                    watch_secret(source, watched);
                    (source.resolve().map(|s| s.expose().to_owned()), true)
                }
            };
            let built = name_ok
                .map_err(|_| "not a valid header name".to_owned())
                .and_then(|name| {
                    let mut value = reqwest::header::HeaderValue::from_str(&text?)
                        .map_err(|_| "not a valid header value".to_owned())?;
                    value.set_sensitive(sensitive);
                    Ok((name, value))
                });
            match built {
                Ok((name, value)) => {
                    headers.insert(name, value);
                }
                Err(e) => self.problem(value.span(), format!("{key}.headers.{name}: {e}")),
            }
        }
        let concurrency = *section.concurrency.get_ref();
        if concurrency == 0 {
            self.problem(
                section.concurrency.span(),
                format!("{key}.concurrency: must be at least 1"),
            );
        }
        let retry = &section.retry;
        if *retry.max_attempts.get_ref() == 0 {
            self.problem(
                retry.max_attempts.span(),
                format!("{key}.retry.max_attempts: must be at least 1"),
            );
        }
        let policy = RetryPolicy {
            max_attempts: *retry.max_attempts.get_ref(),
            max_elapsed: retry.max_elapsed,
            schedule: retry.schedule.clone(),
            jitter: retry.jitter.clamp(0.0, 1.0),
        };
        Some(Endpoint {
            name: section.name.get_ref().clone(),
            url: url?,
            format: section.format,
            event_types: section
                .event_types
                .as_ref()
                .map(|t| t.iter().cloned().collect()),
            namespaces: section
                .namespaces
                .as_ref()
                .map(|n| n.iter().cloned().collect()),
            signing_key,
            headers,
            timeout: section.timeout,
            concurrency: concurrency.max(1),
            retry: policy,
            plugins: section
                .plugins
                .iter()
                .map(|n| n.get_ref().clone())
                .collect(),
        })
    }

    /// One endpoint per regular, non-hidden file of the folder, named after the file.
    fn subscribers(&mut self, dir: &toml::Spanned<PathBuf>) -> Vec<Endpoint> {
        let entries = match std::fs::read_dir(dir.get_ref()) {
            Ok(entries) => entries,
            Err(e) => {
                let message = format!(
                    "subscribers_dir: cannot read {}: {e}",
                    dir.get_ref().display()
                );
                self.problem(dir.span(), message);
                return Vec::new();
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| {
                let hidden = path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'));
                !hidden && path.is_file()
            })
            .collect();
        files.sort();
        let mut endpoints = Vec::new();
        for file in files {
            let name = file
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let url = std::fs::read_to_string(&file)
                .map_err(|e| format!("cannot read: {e}"))
                .and_then(|text| parse_url(text.trim()));
            match url {
                Ok(url) => endpoints.push(Endpoint::subscriber(name, url)),
                Err(message) => self.problems.push(Diagnostic {
                    path: file,
                    line: None,
                    column: None,
                    message: format!("subscriber {name:?}: {message}"),
                }),
            }
        }
        endpoints
    }
}

/// `" (plugins there: a, b)"`, listing the `.wasm` files of `dir`.
fn available(dir: &Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let path = entry.path();
            let stem = path.file_stem()?.to_string_lossy().into_owned();
            (path.extension()? == "wasm" && !stem.starts_with('.')).then_some(stem)
        })
        .collect();
    names.sort();
    match names.is_empty() {
        true => " (there are no plugins there)".to_owned(),
        false => format!(" (plugins there: {})", names.join(", ")),
    }
}

/// Whether `name` is a DNS label, as namespace names are (RFC 1123, at most 63 characters).
fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Whether `name` is a DNS subdomain, as most object names are (at most 253 characters).
fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns_label)
}

/// Parses a webhook URL. The message never repeats the URL, which may hold a token.
fn parse_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("invalid URL: {e}"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        "http" | "https" => Err("invalid URL: it has no host".into()),
        other => Err(format!(
            "invalid URL: scheme {other:?} is not http or https"
        )),
    }
}

fn watch_secret(source: &secret::SecretSource, watched: &mut BTreeSet<PathBuf>) {
    if let secret::SecretSource::File(path) = source {
        watched.insert(path.clone());
    }
}

/// 1-based line and character column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests;
