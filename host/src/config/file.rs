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

use crate::deliver::Delivery;
use crate::deliver::retry::RetryPolicy;
use crate::model::secret::SecretSource;
use crate::payload::plugins::settings::{OnError, PluginSettings, Profiler};

/// The whole `router.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigFile {
    /// Where events come from.
    pub(crate) source: SourceSection,
    /// Where the router keeps its outbox, checkpoints and dead letters.
    #[serde(default)]
    pub(crate) state: StateSection,
    /// The metrics and health server.
    #[serde(default)]
    pub(crate) server: ServerSection,
    /// The webhooks to deliver to.
    #[serde(default)]
    pub(crate) endpoints: Vec<EndpointSection>,
    /// A folder where every file holds one subscriber URL, as the Go `kfp-event-handler`'s
    /// ConfigMap does. Each becomes an endpoint named after the file, with the `kfp` format.
    pub(crate) subscribers_dir: Option<Spanned<PathBuf>>,
    /// WebAssembly plugins that filter and rewrite payloads before they are sent.
    #[serde(default)]
    pub(crate) plugins: PluginsSection,
    /// Facts about this router that go with every event.
    #[serde(default)]
    pub(crate) router: RouterSection,
}

/// `[router]`: facts about this router installation.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RouterSection {
    /// The name of the cluster the router runs in, e.g. `"prod-eu-1"`: sent with every event
    /// (`Cluster` in `extended`, the `cluster` attribute in CloudEvents, `cluster` in the
    /// plugin event), so that receivers fed by several clusters tell them apart. Not sent
    /// when absent.
    pub(crate) cluster: Option<Spanned<String>>,
}

/// `[source]`: where events come from.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SourceSection {
    /// `replay`: read a recorded JSON Lines file of Events and Workflows.
    /// `kubernetes`: watch the workflow-controller's Events in a cluster.
    pub(crate) kind: Spanned<SourceKind>,
    /// For `replay`: the recording to read.
    pub(crate) path: Option<Spanned<PathBuf>>,
    /// For `replay`: events per second to replay at; unlimited when absent.
    pub(crate) rate: Option<Spanned<f64>>,
    /// Which paths report run transitions: `events` (Kubernetes Events), `workflows`
    /// (derived from Workflow status changes) or `both` (each transition once, from whichever
    /// path reports it first, so what Events lose still arrives). Defaults to `both` for
    /// `kubernetes`, and to `events` for `replay`, which replays what was recorded.
    pub(crate) from: Option<crate::enrich::Paths>,
    /// For `kubernetes`: the namespaces to watch Events and Workflows in. `[]` (the default)
    /// is the router's own namespace (`POD_NAMESPACE`, else the kubeconfig context's);
    /// `["a", "b"]` watches those, one watch each; `["*"]` watches every namespace with one
    /// cluster-wide watch (which needs a ClusterRole).
    pub(crate) namespaces: Option<Spanned<Vec<String>>>,
    /// For `kubernetes`: what to do with the Events that already exist the very first time the
    /// router starts (no checkpoint yet). `"none"` (the default) delivers none of them; a window
    /// such as `"1h"` delivers those that happened within it, oldest first. Later starts resume
    /// from the checkpoint whatever this says: what happened while the router was down is
    /// delivered, and what it had accepted is not delivered again.
    pub(crate) history: Option<Spanned<String>>,
    /// For `kubernetes`: the ConfigMap, in the router's own namespace, that mirrors the
    /// checkpoint (the last delivered Event of each watch), so that it survives losing the pod
    /// and a new leader resumes where the old one stopped. Defaults to
    /// `"kfp-event-router-state"`; `""` keeps the checkpoint in `state.dir` only.
    pub(crate) checkpoint_configmap: Option<Spanned<String>>,
    /// For `kubernetes`: at most how often the checkpoint ConfigMap is written, e.g. `"5s"`
    /// (the default). It is written only when the delivered position moved.
    #[serde(default, deserialize_with = "optional_duration")]
    pub(crate) checkpoint_interval: Option<Duration>,
    /// For `kubernetes`: how long an Event whose Workflow is not in the cache yet waits for the
    /// Workflow watch to bring it, before the router GETs it. Defaults to `"500ms"`. A Workflow
    /// found gone (deleted, archived) is not looked up again: its Events are delivered with
    /// what the Event itself says.
    #[serde(default, deserialize_with = "optional_duration")]
    pub(crate) workflow_wait: Option<Duration>,
    /// For `kubernetes`: `[source.leader_election]`, so that several replicas are safe.
    pub(crate) leader_election: Option<LeaderElectionSection>,
}

/// `[source.leader_election]`: with several replicas, only the holder of a
/// `coordination.k8s.io` Lease in the router's own namespace watches and delivers; the others
/// stand by (`/readyz` reports `"role": "leader"` or `"standby"`; both are ready) and one takes
/// over within `lease_duration` when the leader goes away, resuming from the checkpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LeaderElectionSection {
    /// Whether to elect a leader. Defaults to `true`. Turn it off only when a single replica
    /// runs: two routers without it both deliver every event.
    #[serde(default = "default_true")]
    pub(crate) enabled: bool,
    /// The Lease's name. Defaults to `"kfp-event-router"`.
    pub(crate) lease_name: Option<Spanned<String>>,
    /// How long a leader's claim lasts without renewal, e.g. `"15s"` (the default; at least
    /// `"1s"`). The leader renews every third of it and steps down when it could not renew
    /// for two thirds of it; a standby looks every fifth of it.
    #[serde(default, deserialize_with = "optional_duration")]
    pub(crate) lease_duration: Option<Duration>,
    /// A prefix for this replica's name in the Lease: the name is the prefix plus `-POD_NAME`
    /// (or a random suffix), so replicas that share one config never share a name. Without
    /// it, the name is `POD_NAME`, else the host name with a random suffix.
    pub(crate) identity: Option<String>,
}

fn default_true() -> bool {
    true
}

fn optional_duration<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Duration>, D::Error> {
    duration(de).map(Some)
}

/// The kinds of source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SourceKind {
    /// A recorded file (JSON Lines of Kubernetes objects or watch events).
    Replay,
    /// A cluster: the workflow-controller's Events and the Workflows, through the Kubernetes
    /// API, as the pod's ServiceAccount (in a cluster) or from `KUBECONFIG` / `~/.kube/config`.
    Kubernetes,
}

/// `[state]`: the router's durable state.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StateSection {
    /// Folder for the outbox database, checkpoints and the dead-letter file (with the `redb`
    /// backend), and the plugin cache. Defaults to `/var/lib/kfp-event-router`.
    #[serde(default = "default_state_dir")]
    pub(crate) dir: PathBuf,
    /// How long the undelivered events of an endpoint that left the config (a reload, or a
    /// restart with a half-edited ConfigMap) are kept, e.g. `"24h"` (the default). An endpoint
    /// that comes back within it resumes them, in order; after it they are dropped, with a
    /// warning. `"0s"` drops them at once.
    #[serde(default, deserialize_with = "optional_duration")]
    pub(crate) removed_endpoint_grace: Option<Duration>,
    /// Where the outbox and dead letters are kept: `"redb"` (the default: `outbox.redb` and
    /// `dead-letter.jsonl` in `dir`, for one router) or `"postgres"` (tables of the database at
    /// `url`, which a replacement router anywhere continues from; `dir` then holds only the
    /// plugin cache).
    pub(crate) backend: Option<Spanned<StateBackend>>,
    /// With `backend = "postgres"`: the connection URL, `{ env = "NAME" }` or
    /// `{ file = "/path" }`, e.g. `postgresql://router:PASSWORD@db:5432/router`. It is a secret:
    /// never logged. Its `sslmode` says whether TLS is used (see `tls`).
    pub(crate) url: Option<Spanned<UrlSource>>,
    /// With `backend = "postgres"`: `[state.tls]`, the CA bundle to trust besides the system's
    /// (`ca`) and a client certificate (`cert`, `key`), as for endpoints. The server's
    /// certificate is always verified when TLS is used: with `sslmode=require` (or libpq's
    /// `verify-ca`, `verify-full`), and with the default `prefer` when the server offers TLS;
    /// `sslmode=disable` connects without. Read at start.
    pub(crate) tls: Option<TlsSection>,
    /// With `backend = "postgres"` and a `kubernetes` source, every replica delivers, each the
    /// workflows it has claimed: how long a claim lasts unless renewed, e.g. `"15s"` (the
    /// default; at least 3s). A replica renews its claims every third of this; one that cannot
    /// stops delivering them after two thirds, and another takes them once they expire: a
    /// dead replica's workflows wait about this long.
    #[serde(default, deserialize_with = "optional_duration")]
    pub(crate) claim_ttl: Option<Duration>,
}

/// Where `state.url` comes from. A URL written inline is refused without being echoed in the
/// error, since it may hold a password.
#[derive(Debug)]
pub(crate) struct UrlSource(pub(crate) SecretSource);

impl<'de> Deserialize<'de> for UrlSource {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        secret_only(
            de,
            "the URL may hold a password: write url = { env = \"NAME\" } or \
             { file = \"/path\" }, not the URL itself",
        )
        .map(UrlSource)
    }
}

/// Where `server.admin_token` comes from. A token written inline is refused without being
/// echoed in the error.
#[derive(Debug)]
pub(crate) struct TokenSource(pub(crate) SecretSource);

impl<'de> Deserialize<'de> for TokenSource {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        secret_only(
            de,
            "the token is a secret: write admin_token = { env = \"NAME\" } or \
             { file = \"/path\" }, not the token itself",
        )
        .map(TokenSource)
    }
}

/// Reads `{ env = "NAME" }` or `{ file = "/path" }`; a plain string is refused with
/// `refusal`, which must not quote it.
fn secret_only<'de, D: Deserializer<'de>>(
    de: D,
    refusal: &'static str,
) -> Result<SecretSource, D::Error> {
    struct Visitor(&'static str);
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = SecretSource;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("{ env = \"NAME\" } or { file = \"/path\" }")
        }
        fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<SecretSource, E> {
            Err(E::custom(self.0))
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<SecretSource, A::Error> {
            SecretSource::deserialize(serde::de::value::MapAccessDeserializer::new(map))
        }
    }
    de.deserialize_any(Visitor(refusal))
}

/// The values of `state.backend`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StateBackend {
    /// Files in `state.dir`.
    Redb,
    /// A PostgreSQL database.
    Postgres,
}

impl Default for StateSection {
    fn default() -> Self {
        Self {
            dir: default_state_dir(),
            removed_endpoint_grace: None,
            backend: None,
            url: None,
            tls: None,
            claim_ttl: None,
        }
    }
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/kfp-event-router")
}

/// `[server]`: serves `/metrics`, `/healthz` and `/readyz`, and the admin API.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServerSection {
    /// Address to listen on. Defaults to `127.0.0.1:9090`; port 0 picks a free port.
    #[serde(default = "default_listen")]
    pub(crate) listen: SocketAddr,
    /// The bearer token of the admin API (`/admin/dead-letters`: list, show and redrive dead
    /// letters), `{ env = "NAME" }` or `{ file = "/path" }`. A secret: never logged. When
    /// absent (the default), the admin API is off and its routes answer 404.
    pub(crate) admin_token: Option<Spanned<TokenSource>>,
    /// Deliveries per endpoint the console keeps (`/console`, on with `admin_token`), where
    /// the outbox is: `state.dir/history.redb` with redb, the `delivery_history` table (shared
    /// by the replicas) with PostgreSQL. From 0 (none kept) to 100000; 200 when absent.
    pub(crate) console_history: Option<Spanned<i64>>,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            admin_token: None,
            console_history: None,
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9090))
}

/// `[[endpoints]]`: one webhook receiver.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EndpointSection {
    /// Unique name, used in logs, metrics and the dead-letter file (never the URL, which may
    /// embed a token).
    pub(crate) name: Spanned<String>,
    /// Where to POST: an `http` or `https` URL.
    pub(crate) url: Spanned<String>,
    /// Payload format: `kfp` (default, the Go handler's), `extended` or `cloudevents`.
    #[serde(default)]
    pub(crate) format: crate::payload::format::Format,
    /// Deliver only events with these reasons (e.g. `WorkflowFailed`); all when absent.
    /// `event_types` is accepted as another name for it.
    #[serde(alias = "event_types")]
    pub(crate) reasons: Option<Vec<String>>,
    /// Deliver only events from these namespaces; all when absent.
    pub(crate) namespaces: Option<Vec<String>>,
    /// Standard Webhooks signing secret, from `{ env = ".." }` or `{ file = ".." }`:
    /// `whsec_` + base64 signs with HMAC-SHA256 (`v1`), `whsk_` + base64 (an ed25519 secret
    /// key) with ed25519 (`v1a`). Requests are unsigned when absent.
    pub(crate) signing_secret: Option<Spanned<SecretSource>>,
    /// Instead of `signing_secret`, several secrets, the current one first: each request
    /// carries one signature per secret (space-separated), so that a key can be rotated without
    /// downtime, or `v1` and `v1a` receivers served at once.
    pub(crate) signing_secrets: Option<Spanned<Vec<SecretSource>>>,
    /// Extra request headers; a value is a string, `{ env = ".." }` or `{ file = ".." }`.
    #[serde(default)]
    pub(crate) headers: BTreeMap<String, Spanned<HeaderValue>>,
    /// Time allowed for one request, e.g. `"10s"`. Defaults to 15 s.
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub(crate) timeout: Duration,
    /// Requests in flight at once to this endpoint (across workflows). Defaults to 64.
    #[serde(default = "default_concurrency")]
    pub(crate) concurrency: Spanned<usize>,
    /// How failed deliveries are retried.
    #[serde(default)]
    pub(crate) retry: RetrySection,
    /// At most this many requests per second to this endpoint, retries included, e.g. `5.0`
    /// (evenly spaced). Unlimited when absent; `concurrency` still applies.
    pub(crate) rate: Option<Spanned<f64>>,
    /// The endpoint's own trust roots and client certificate.
    pub(crate) tls: Option<TlsSection>,
    /// Which nodes of a KFP 2.x run this endpoint hears of: `"tasks"` (the default: the
    /// pipeline's tasks, named as the pipeline names them, each transition once; the
    /// compiler's drivers, executor wrappers and iteration DAGs are not sent) or `"all"`
    /// (every node, named as Argo names it). Runs of KFP v1 and plain Argo are the same in both.
    #[serde(default)]
    pub nodes: crate::model::event::NodeView,
    /// Plugins run for this endpoint only, in order, after the global `plugins.chain`,
    /// e.g. `["teams-card"]`. Each must be a file `<name>.wasm` in `plugins.dir`.
    #[serde(default)]
    pub(crate) plugins: Vec<Spanned<String>>,
}

fn default_timeout() -> Duration {
    Delivery::DEFAULT_TIMEOUT
}

fn default_concurrency() -> Spanned<usize> {
    Spanned::new(0..0, Delivery::DEFAULT_CONCURRENCY)
}

/// `[endpoints.tls]`: for an endpoint behind a private CA, or one that wants mutual TLS. The
/// server's certificate is always verified; the files are read again when they change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsSection {
    /// PEM file of CA certificates to trust for this endpoint, besides the system's.
    pub(crate) ca: Option<Spanned<PathBuf>>,
    /// PEM file of the client certificate (chain) to present; needs `key`.
    pub(crate) cert: Option<Spanned<PathBuf>>,
    /// The client certificate's PEM private key, from `{ file = ".." }` or `{ env = ".." }`.
    pub(crate) key: Option<Spanned<SecretSource>>,
}

impl TlsSection {
    /// Where the table is: the first of its keys.
    pub(crate) fn span(&self) -> Option<std::ops::Range<usize>> {
        let ca = self.ca.as_ref().map(Spanned::span);
        ca.or_else(|| self.cert.as_ref().map(Spanned::span))
            .or_else(|| self.key.as_ref().map(Spanned::span))
    }
}

/// A header value: plain text, or a secret read from the environment or a file.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum HeaderValue {
    /// Written in the file.
    Plain(String),
    /// Read from the environment or a file.
    Secret(SecretSource),
}

/// `[endpoints.retry]`: the retry budget. Connect errors, timeouts, 408, 429 and 5xx are
/// retried; any other status is final.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetrySection {
    /// Attempts in all, the first included. Defaults to 8.
    #[serde(default = "default_max_attempts")]
    pub(crate) max_attempts: Spanned<u32>,
    /// Give up when this long has passed since the first attempt. Defaults to `"36h"`.
    #[serde(default = "default_max_elapsed", deserialize_with = "duration")]
    pub(crate) max_elapsed: Duration,
    /// Delay before each attempt; the last one repeats. Defaults to the Standard Webhooks
    /// schedule: `["0s", "5s", "5m", "30m", "2h", "5h", "10h", "10h"]`.
    #[serde(default = "default_schedule", deserialize_with = "durations")]
    pub(crate) schedule: Vec<Duration>,
    /// How much each delay varies at random, as a fraction of it, either way: `0.2` (the
    /// default) waits between 80% and 120% of the delay. From 0 to 1.
    #[serde(default = "default_jitter")]
    pub(crate) jitter: Spanned<f64>,
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
    Spanned::new(0..0, RetryPolicy::default().max_attempts)
}

fn default_max_elapsed() -> Duration {
    RetryPolicy::default().max_elapsed
}

fn default_schedule() -> Vec<Duration> {
    RetryPolicy::default().schedule
}

fn default_jitter() -> Spanned<f64> {
    Spanned::new(0..0, RetryPolicy::default().jitter)
}

/// `[plugins]`: WebAssembly components (`wasm32-wasip2`, world `kfp:event-router/plugin`) that
/// see each payload before it is sent and pass, drop or replace it.
///
/// Each plugin runs sandboxed: no files, no environment, no network; its CPU time, memory and
/// output are bounded per call. The limits below are defaults for every plugin;
/// `[plugins.settings.<name>]` overrides them for one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PluginsSection {
    /// Folder of plugin components, `*.wasm`; a plugin's name is its file stem
    /// (`/plugins/teams-card.wasm` is `teams-card`). Required when a chain names a plugin.
    /// Watched: adding, replacing or removing a file takes effect without a restart (a
    /// Kubernetes ConfigMap or Secret volume works, `..data` swaps included). A new file that
    /// does not load is rejected and the previous version of that plugin keeps serving.
    pub(crate) dir: Option<Spanned<PathBuf>>,
    /// The global chain: plugins run for every endpoint, in order, before the endpoint's own
    /// `plugins`. Empty by default.
    #[serde(default)]
    pub(crate) chain: Vec<Spanned<String>>,
    /// What happens to an event when a plugin call fails (the plugin returned an error,
    /// trapped, ran out of time or memory, or produced too much output): `pass` (default:
    /// carry on with the payload as it was before that plugin), `drop` (send nothing to that
    /// endpoint) or `dead-letter` (write it to the dead-letter file, unsent).
    #[serde(default)]
    pub(crate) on_error: OnError,
    /// Time one call may take, e.g. `"250ms"`, counted both in CPU time and in wall time (a
    /// plugin that sleeps or waits is stopped too); it also bounds starting an instance and
    /// its `init`. Defaults to `"100ms"`. Enforced with a granularity of 10 ms.
    #[serde(
        default = "default_plugin_timeout",
        deserialize_with = "plugin_timeout"
    )]
    pub(crate) timeout: Duration,
    /// Memory one plugin instance may use, all its linear memories and tables together
    /// (a table element counts 8 bytes), e.g. `"64MiB"` or a number of bytes. Defaults to
    /// `"32MiB"`.
    #[serde(default = "default_max_memory", deserialize_with = "byte_size")]
    pub(crate) max_memory: u64,
    /// Memory all instances of all plugins may hold together (each endpoint has its own
    /// instances of a plugin, and idle ones are kept for the next call), e.g. `"2GiB"`.
    /// Defaults to `"1GiB"`. A call that would go past it fails as over its memory limit;
    /// idle instances are not kept while more than half of it is held.
    #[serde(default = "default_max_total_memory", deserialize_with = "byte_size")]
    pub(crate) max_total_memory: u64,
    /// Largest output a call may return (body plus headers), e.g. `"4MiB"`. Defaults to
    /// `"1MiB"`; a larger output fails the call.
    #[serde(default = "default_max_output", deserialize_with = "byte_size")]
    pub(crate) max_output: u64,
    /// `perfmap` makes the plugins' compiled functions, by name, visible to Linux `perf`
    /// (`perf top`, `perf record` then `perf report`): their addresses are appended to
    /// `/tmp/perf-<pid>.map`, which must be writable. `none` by default. Read at start.
    #[serde(default)]
    pub(crate) profiler: Profiler,
    /// `[plugins.config.<name>]`: each plugin's configuration, handed to its `init` as JSON
    /// (`{}` when absent). Changing it in a running router re-initialises that plugin.
    #[serde(default)]
    pub(crate) config: BTreeMap<String, toml::Table>,
    /// `[plugins.settings.<name>]`: per-plugin overrides of `on_error`, `timeout`,
    /// `max_memory` and `max_output`.
    #[serde(default)]
    pub(crate) settings: BTreeMap<String, PluginSettingsSection>,
}

impl PluginsSection {
    /// The limits and failure policy of every plugin without `[plugins.settings.<name>]`.
    pub(crate) fn defaults(&self) -> PluginSettings {
        PluginSettings {
            on_error: self.on_error,
            timeout: self.timeout,
            max_memory: usize::try_from(self.max_memory).unwrap_or(usize::MAX),
            max_output: usize::try_from(self.max_output).unwrap_or(usize::MAX),
        }
    }

    /// The limits and failure policy of plugin `name`: its overrides, else the defaults.
    pub(crate) fn settings_of(&self, name: &str) -> PluginSettings {
        let defaults = self.defaults();
        let Some(own) = self.settings.get(name) else {
            return defaults;
        };
        let size = |v: Option<u64>, default| {
            v.map_or(default, |v| usize::try_from(v).unwrap_or(usize::MAX))
        };
        PluginSettings {
            on_error: own.on_error.unwrap_or(defaults.on_error),
            timeout: own.timeout.unwrap_or(defaults.timeout),
            max_memory: size(own.max_memory, defaults.max_memory),
            max_output: size(own.max_output, defaults.max_output),
        }
    }
}

/// `[plugins.settings.<name>]`: limits and failure policy of one plugin; absent keys take the
/// `[plugins]` value.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PluginSettingsSection {
    /// `pass`, `drop` or `dead-letter`, as `plugins.on_error`.
    pub(crate) on_error: Option<OnError>,
    /// Time one call may take, as `plugins.timeout`.
    #[serde(default, deserialize_with = "optional_plugin_timeout")]
    pub(crate) timeout: Option<Duration>,
    /// Memory one instance may use, as `plugins.max_memory`.
    #[serde(default, deserialize_with = "optional_byte_size")]
    pub(crate) max_memory: Option<u64>,
    /// Largest output of one call, as `plugins.max_output`.
    #[serde(default, deserialize_with = "optional_byte_size")]
    pub(crate) max_output: Option<u64>,
}

fn default_plugin_timeout() -> Duration {
    PluginSettings::default().timeout
}

fn default_max_memory() -> u64 {
    PluginSettings::default().max_memory as u64
}

fn default_max_total_memory() -> u64 {
    crate::payload::plugins::settings::DEFAULT_MAX_TOTAL_MEMORY as u64
}

fn default_max_output() -> u64 {
    PluginSettings::default().max_output as u64
}

/// Deserialises a size: a number of bytes, or a string such as `"512KiB"`, `"32MiB"`, `"1GiB"`
/// (`KB`/`MB`/`GB` are powers of 1000).
fn byte_size<'de, D: Deserializer<'de>>(de: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    let bytes = match Size::deserialize(de)? {
        Size::Bytes(n) => n,
        Size::Text(text) => parse_byte_size(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid size {text:?}: use a number of bytes or e.g. \"512KiB\", \"32MiB\", \"1GiB\""
            ))
        })?,
    };
    match bytes {
        0 => Err(serde::de::Error::custom("the size must be above 0")),
        n => Ok(n),
    }
}

fn optional_byte_size<'de, D: Deserializer<'de>>(de: D) -> Result<Option<u64>, D::Error> {
    byte_size(de).map(Some)
}

/// A plugin call's time budget: a duration of at least 1 ms.
fn plugin_timeout<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    match duration(de)? {
        d if d < Duration::from_millis(1) => {
            Err(serde::de::Error::custom("the timeout must be at least 1ms"))
        }
        d => Ok(d),
    }
}

fn optional_plugin_timeout<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Duration>, D::Error> {
    plugin_timeout(de).map(Some)
}

/// Parses `"32MiB"`, `"512 KiB"`, `"4MB"` or `"1000"` into bytes.
pub(crate) fn parse_byte_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    number.checked_mul(factor)
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
