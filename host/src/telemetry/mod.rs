//! Logs and metrics: what the router tells its operators.
//!
//! Logs go through `tracing` (human-readable or JSON). Metrics are Prometheus counters and
//! histograms named `kfp_event_router_*`, served by the operator server. [`readiness`] is what
//! `/readyz` reports.

pub(crate) mod delivery;
pub(crate) mod readiness;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per record.
    #[default]
    Human,
    /// One JSON object per record.
    Json,
}

/// Sends logs to stderr; `RUST_LOG` overrides the default level (`info`).
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A closed stderr must not take the router down with it.
        .log_internal_errors(false);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Labels naming an endpoint.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct EndpointLabel {
    /// The endpoint's name.
    pub(crate) endpoint: String,
}

/// Labels for events dropped before delivery.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DropLabel {
    /// The endpoint's name.
    pub(crate) endpoint: String,
    /// What dropped it, e.g. a plugin's name.
    pub(crate) by: String,
}

/// Buckets of `outbox_commit_duration_seconds`: a local disk syncs in well under a
/// millisecond, a network volume or a remote database in a few.
const COMMIT_BUCKETS: [f64; 13] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
];

/// Labels naming a plugin.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PluginLabel {
    /// The plugin's name.
    pub(crate) plugin: String,
}

/// Labels of one plugin call's outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PluginCallLabel {
    /// The plugin's name.
    pub(crate) plugin: String,
    /// `pass`, `drop`, `replace`, or a failure: `error`, `trap`, `timeout`, `memory_limit`,
    /// `output_limit`, `invalid_output`; `missing` when a chain named it but it was not loaded.
    pub(crate) outcome: String,
}

/// Labels of a plugin (re)load.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PluginLoadLabel {
    /// The plugin's name.
    pub(crate) plugin: String,
    /// `loaded`, `reloaded`, `rejected` or `removed`.
    pub(crate) result: String,
}

/// A label pair list, for small families.
pub(crate) type Labels = Vec<(&'static str, &'static str)>;

/// Every metric the router exports.
pub struct Metrics {
    registry: Registry,
    /// Events accepted into the outbox.
    pub(crate) events_received: Counter,
    /// How deliveries end and how each attempt went, per endpoint.
    pub(crate) delivery: delivery::DeliveryMetrics,
    /// Deliveries waiting in the outbox.
    pub(crate) outbox_depth: Gauge,
    /// With a shared outbox: how many of the 64 workflow buckets this replica holds the
    /// delivery claims of (it delivers their workflows' events).
    pub(crate) delivery_claims: Gauge,
    /// Deliveries waiting, per endpoint (read from the outbox when scraped, at most every few
    /// seconds).
    pub(crate) outbox_pending: Family<EndpointLabel, Gauge>,
    /// Seconds since the oldest delivery waiting for an endpoint was accepted; 0 when none.
    pub(crate) outbox_oldest_pending_age: Family<EndpointLabel, Gauge<f64, AtomicU64>>,
    /// Undelivered events kept for an endpoint removed from the config, per endpoint, until
    /// it comes back or its grace period ends.
    pub(crate) removed_endpoint_backlog: Family<EndpointLabel, Gauge>,
    /// Dead letters put back into the outbox by a redrive (the admin API), per endpoint.
    pub(crate) dead_letters_redriven: Family<EndpointLabel, Counter>,
    /// Deliveries an endpoint's worker read back from the outbox rather than took in memory
    /// as they were accepted, per endpoint.
    pub(crate) outbox_read_back: Family<EndpointLabel, Counter>,
    /// Config reloads by result (`applied`, `rejected`).
    pub(crate) config_reloads: Family<Labels, Counter>,
    /// Run transitions by the path that reported them: `events`, `workflows` (derived from
    /// status), `both-deduplicated` (an Event for a transition already delivered).
    pub(crate) transitions: Family<Labels, Counter>,
    /// Workflows whose node status Argo offloaded to its database, seen with the status path
    /// on: their node transitions are taken from Events.
    pub(crate) offloaded_workflows: Counter,
    /// Plugin calls by plugin and outcome.
    pub(crate) plugin_calls: Family<PluginCallLabel, Counter>,
    /// Seconds one plugin call took, per plugin.
    pub(crate) plugin_call_seconds: Family<PluginLabel, Histogram>,
    /// Plugin loads, reloads, rejections and removals, per plugin.
    pub(crate) plugin_loads: Family<PluginLoadLabel, Counter>,
    /// 1 while a plugin is failing (its last calls all failed), per plugin.
    pub(crate) plugin_failing: Family<PluginLabel, Gauge>,
    /// The kubernetes source's metrics: API requests, leadership, watch errors.
    pub(crate) kube: KubeMetrics,
    /// Console history records dropped because its writer was behind.
    pub(crate) console_history_dropped: Counter,
    /// Seconds each outbox transaction took to commit (with redb, its disk sync included).
    pub(crate) outbox_commit_seconds: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kfp_event_router");
        registry.register(
            "build",
            "The running build: its version, and the plugin interface versions it serves",
            Info::new(vec![
                ("version", env!("CARGO_PKG_VERSION")),
                ("wit", "kfp:event-router@0.1.0"),
            ]),
        );
        let events_received = Counter::default();
        let delivery = delivery::DeliveryMetrics::register(&mut registry);
        let outbox_depth = Gauge::default();
        let delivery_claims = Gauge::default();
        registry.register(
            "delivery_claims",
            "With a shared PostgreSQL outbox: workflow buckets (of 64) whose events this replica \
             delivers",
            delivery_claims.clone(),
        );
        let outbox_pending = Family::default();
        let outbox_oldest_pending_age = Family::default();
        registry.register(
            "outbox_pending",
            "Deliveries waiting, per endpoint: how far behind it is",
            outbox_pending.clone(),
        );
        registry.register(
            "outbox_oldest_pending_age_seconds",
            "Seconds since the oldest delivery waiting for an endpoint was accepted",
            outbox_oldest_pending_age.clone(),
        );
        let removed_endpoint_backlog = Family::default();
        let config_reloads = Family::default();
        let dead_letters_redriven = Family::default();
        registry.register(
            "dead_letters_redriven",
            "Dead letters put back into the outbox by a redrive, per endpoint",
            dead_letters_redriven.clone(),
        );
        let outbox_read_back = Family::default();
        registry.register(
            "outbox_read_back",
            "Deliveries read back from the outbox rather than handed over in memory as they \
             were accepted, per endpoint: after a restart, by an endpoint that fell behind, \
             or accepted by another replica",
            outbox_read_back.clone(),
        );
        let kube = KubeMetrics::register(&mut registry);
        let plugin_calls = Family::default();
        let plugin_call_seconds = Family::<PluginLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_002, 4.0, 12))
        });
        let plugin_loads = Family::default();
        let plugin_failing = Family::default();
        registry.register(
            "events_received",
            "Events accepted into the outbox",
            events_received.clone(),
        );
        registry.register(
            "outbox_depth",
            "Deliveries waiting in the outbox",
            outbox_depth.clone(),
        );
        registry.register(
            "removed_endpoint_backlog",
            "Undelivered events kept for an endpoint removed from the config, until it comes back \
             or its grace period ends",
            removed_endpoint_backlog.clone(),
        );
        registry.register(
            "config_reloads",
            "Config reloads by result",
            config_reloads.clone(),
        );
        let transitions = Family::default();
        registry.register(
            "transitions",
            "Run transitions by the path that reported them; workflows minus both-deduplicated \
             is what Events alone would have lost",
            transitions.clone(),
        );
        let console_history_dropped = Counter::default();
        registry.register(
            "console_history_dropped",
            "Console history records dropped because its writer was behind",
            console_history_dropped.clone(),
        );
        let offloaded_workflows = Counter::default();
        let outbox_commit_seconds = Histogram::new(COMMIT_BUCKETS);
        registry.register(
            "outbox_commit_duration_seconds",
            "Time one outbox transaction took to commit: for the transactions that accept \
             events, the floor under every delivery's latency",
            outbox_commit_seconds.clone(),
        );
        registry.register(
            "offloaded_workflows",
            "Workflows whose node status Argo offloaded to its database, their node transitions \
             taken from Events",
            offloaded_workflows.clone(),
        );
        registry.register(
            "plugin_calls",
            "Plugin calls by plugin and outcome",
            plugin_calls.clone(),
        );
        registry.register(
            "plugin_call_duration_seconds",
            "Time one plugin call took",
            plugin_call_seconds.clone(),
        );
        registry.register(
            "plugin_loads",
            "Plugin loads, reloads, rejections and removals",
            plugin_loads.clone(),
        );
        registry.register(
            "plugin_failing",
            "1 while a plugin's recent calls all failed",
            plugin_failing.clone(),
        );
        Self {
            registry,
            events_received,
            delivery,
            outbox_depth,
            delivery_claims,
            outbox_pending,
            outbox_oldest_pending_age,
            removed_endpoint_backlog,
            dead_letters_redriven,
            outbox_read_back,
            config_reloads,
            plugin_calls,
            plugin_call_seconds,
            plugin_loads,
            plugin_failing,
            transitions,
            offloaded_workflows,
            kube,
            console_history_dropped,
            outbox_commit_seconds,
        }
    }

    /// Dead letters so far, over all endpoints.
    pub(crate) fn dead_lettered_total(&self) -> u64 {
        self.delivery.dead_lettered_total()
    }

    /// Renders every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// Counts one plugin call's outcome.
    pub(crate) fn plugin_call(&self, plugin: &str, outcome: &str) {
        self.plugin_calls
            .get_or_create(&Self::plugin_call_label(plugin, outcome))
            .inc();
    }

    /// The labels of one plugin call's outcome.
    pub(crate) fn plugin_call_label(plugin: &str, outcome: &str) -> PluginCallLabel {
        PluginCallLabel {
            plugin: plugin.to_owned(),
            outcome: outcome.to_owned(),
        }
    }

    /// Counts a plugin load, reload, rejection or removal.
    pub(crate) fn plugin_load(&self, plugin: &str, result: &str) {
        let labels = PluginLoadLabel {
            plugin: plugin.to_owned(),
            result: result.to_owned(),
        };
        self.plugin_loads.get_or_create(&labels).inc();
    }

    /// The labels of one plugin.
    pub(crate) fn plugin(name: &str) -> PluginLabel {
        PluginLabel {
            plugin: name.to_owned(),
        }
    }

    /// The labels of one endpoint.
    pub(crate) fn endpoint(name: &str) -> EndpointLabel {
        EndpointLabel {
            endpoint: name.to_owned(),
        }
    }
}

/// Labels of one Kubernetes API request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KubeRequestLabel {
    /// `get`, `list`, `watch`, `create`, `update`, `patch` or `delete`.
    pub(crate) verb: String,
    /// The resource, e.g. `events` or `workflows.argoproj.io`.
    pub(crate) resource: String,
}

/// The kubernetes source's metrics.
pub(crate) struct KubeMetrics {
    /// Kubernetes API requests, by verb and resource (`kfp_event_router_kube_requests_total`).
    pub(crate) requests: Family<KubeRequestLabel, Counter>,
    /// 1 while this replica holds the leader lease, 0 on standby.
    pub(crate) leader: Gauge,
    /// Watch errors (each is retried after a backoff), by resource.
    pub(crate) watch_errors: Family<Labels, Counter>,
    /// Events passed over because they were delivered already (relists, restarts, updates that
    /// are not new occurrences) or predate the first start.
    pub(crate) skipped: Counter,
}

impl KubeMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            leader: Gauge::default(),
            watch_errors: Family::default(),
            skipped: Counter::default(),
        };
        registry.register(
            "kube_requests",
            "Kubernetes API requests by verb and resource",
            metrics.requests.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            metrics.leader.clone(),
        );
        registry.register(
            "kube_watch_errors",
            "Kubernetes watch errors (retried), by resource",
            metrics.watch_errors.clone(),
        );
        registry.register(
            "kube_events_skipped",
            "Events passed over as delivered already or older than the first start",
            metrics.skipped.clone(),
        );
        metrics
    }

    /// Counts one API request.
    pub(crate) fn request(&self, verb: &str, resource: &str) {
        let labels = KubeRequestLabel {
            verb: verb.to_owned(),
            resource: resource.to_owned(),
        };
        self.requests.get_or_create(&labels).inc();
    }

    /// Counts one watch error on `resource`.
    pub(crate) fn watch_error(&self, resource: &'static str) {
        self.watch_errors
            .get_or_create(&vec![("resource", resource)])
            .inc();
    }
}

#[cfg(test)]
mod tests;
