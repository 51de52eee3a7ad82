//! Logs and metrics: what the router tells its operators.
//!
//! Logs go through `tracing` (human-readable or JSON). Metrics are Prometheus counters and
//! histograms named `kfp_event_router_*`, served by [`crate::server`].

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
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
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Labels naming an endpoint.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabel {
    /// The endpoint's name.
    pub endpoint: String,
}

/// Labels for events dropped before delivery.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabel {
    /// The endpoint's name.
    pub endpoint: String,
    /// What dropped it, e.g. a plugin's name.
    pub by: String,
}

/// A label pair list, for small families.
pub type Labels = Vec<(&'static str, &'static str)>;

/// Every metric the router exports.
pub struct Metrics {
    registry: Registry,
    /// Events accepted into the outbox.
    pub events_received: Counter,
    /// Deliveries answered with 2xx, per endpoint.
    pub delivered: Family<EndpointLabel, Counter>,
    /// Attempts that failed and will be tried again, per endpoint.
    pub retried: Family<EndpointLabel, Counter>,
    /// Deliveries given up and written to the dead-letter file, per endpoint.
    pub dead_lettered: Family<EndpointLabel, Counter>,
    /// Deliveries a plugin chose not to send, per endpoint and plugin.
    pub dropped: Family<DropLabel, Counter>,
    /// Seconds from an event's acceptance to its successful delivery, per endpoint.
    pub delivery_latency: Family<EndpointLabel, Histogram>,
    /// Deliveries waiting in the outbox.
    pub outbox_depth: Gauge,
    /// Config reloads by result (`applied`, `rejected`).
    pub config_reloads: Family<Labels, Counter>,
    /// Dead letters over all endpoints, for the run summary.
    dead_lettered_total: Counter,
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
        let events_received = Counter::default();
        let delivered = Family::default();
        let retried = Family::default();
        let dead_lettered = Family::default();
        let dropped = Family::default();
        let delivery_latency = Family::<EndpointLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 20))
        });
        let outbox_depth = Gauge::default();
        let config_reloads = Family::default();
        registry.register(
            "events_received",
            "Events accepted into the outbox",
            events_received.clone(),
        );
        registry.register("events_delivered", "Deliveries answered with 2xx", delivered.clone());
        registry.register("delivery_retries", "Failed attempts that will be retried", retried.clone());
        registry.register(
            "events_dead_lettered",
            "Deliveries given up and written to the dead-letter file",
            dead_lettered.clone(),
        );
        registry.register("events_dropped", "Deliveries a plugin chose not to send", dropped.clone());
        registry.register(
            "delivery_latency_seconds",
            "Time from acceptance to successful delivery",
            delivery_latency.clone(),
        );
        registry.register("outbox_depth", "Deliveries waiting in the outbox", outbox_depth.clone());
        registry.register("config_reloads", "Config reloads by result", config_reloads.clone());
        Self {
            registry,
            events_received,
            delivered,
            retried,
            dead_lettered,
            dropped,
            delivery_latency,
            outbox_depth,
            config_reloads,
            dead_lettered_total: Counter::default(),
        }
    }

    /// Counts a dead letter for `endpoint`.
    pub fn dead_letter(&self, endpoint: &str) {
        self.dead_lettered.get_or_create(&Self::endpoint(endpoint)).inc();
        self.dead_lettered_total.inc();
    }

    /// Dead letters so far, over all endpoints.
    pub fn dead_lettered_total(&self) -> u64 {
        self.dead_lettered_total.get()
    }

    /// The registry, for modules that register metrics of their own.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Renders every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// The labels of one endpoint.
    pub fn endpoint(name: &str) -> EndpointLabel {
        EndpointLabel {
            endpoint: name.to_owned(),
        }
    }
}
