//! The deliver stage's metrics, per endpoint. One scheme: `deliveries_total{outcome}` counts
//! how each delivery ended, `delivery_attempts_total{result}` each HTTP attempt, and the
//! `delivery_*_seconds` histograms their timing. The older per-outcome counters
//! (`events_delivered_total`, `events_dead_lettered_total`, `events_dropped_total`,
//! `delivery_retries_total`) are still exported, with the same values, for existing dashboards.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::{DropLabel, EndpointLabel};

/// Upper bounds of `delivery_latency_seconds`, acceptance to 2xx: from half a millisecond (a
/// healthy local endpoint answers within one or two) to the retry schedule's 36 hours.
const LATENCY_BUCKETS: [f64; 25] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 57600.0, 129_600.0,
];

/// Upper bounds of `delivery_attempt_duration_seconds`, one request: up to a long timeout.
const ATTEMPT_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 30.0,
];

/// Labels of how a delivery ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabel {
    /// The endpoint's name.
    pub(crate) endpoint: String,
    /// `delivered`, `dead_lettered` or `dropped` (by a plugin).
    pub(crate) outcome: &'static str,
}

/// Labels of one HTTP attempt.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct AttemptLabel {
    /// The endpoint's name.
    pub(crate) endpoint: String,
    /// `2xx`, `3xx`, `4xx`, `5xx`, or `timeout`, `connect`, `error` when nothing answered.
    pub(crate) result: &'static str,
}

/// Every delivery metric.
pub(crate) struct DeliveryMetrics {
    deliveries: Family<OutcomeLabel, Counter>,
    attempts: Family<AttemptLabel, Counter>,
    attempt_seconds: Family<EndpointLabel, Histogram>,
    latency: Family<EndpointLabel, Histogram>,
    delivered: Family<EndpointLabel, Counter>,
    retried: Family<EndpointLabel, Counter>,
    dead_lettered: Family<EndpointLabel, Counter>,
    dropped: Family<DropLabel, Counter>,
    dead_lettered_total: Counter,
}

impl DeliveryMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub(super) fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            deliveries: Family::default(),
            attempts: Family::default(),
            attempt_seconds: Family::new_with_constructor(|| Histogram::new(ATTEMPT_BUCKETS)),
            latency: Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS)),
            delivered: Family::default(),
            retried: Family::default(),
            dead_lettered: Family::default(),
            dropped: Family::default(),
            dead_lettered_total: Counter::default(),
        };
        let m = &metrics;
        registry.register(
            "deliveries",
            "Deliveries ended, per endpoint and outcome: delivered, dead_lettered, dropped",
            m.deliveries.clone(),
        );
        registry.register(
            "delivery_attempts",
            "HTTP attempts per endpoint and result: 2xx, 3xx, 4xx, 5xx, timeout, connect, error",
            m.attempts.clone(),
        );
        registry.register(
            "delivery_attempt_duration_seconds",
            "Time one HTTP attempt took, answered or not",
            m.attempt_seconds.clone(),
        );
        registry.register(
            "delivery_latency_seconds",
            "Time from acceptance to successful delivery, retries included",
            m.latency.clone(),
        );
        registry.register(
            "events_delivered",
            "Deliveries answered with 2xx (also deliveries_total{outcome=\"delivered\"})",
            m.delivered.clone(),
        );
        registry.register(
            "delivery_retries",
            "Failed attempts that will be retried",
            m.retried.clone(),
        );
        registry.register(
            "events_dead_lettered",
            "Deliveries given up and dead-lettered (also deliveries_total{outcome=\"dead_lettered\"})",
            m.dead_lettered.clone(),
        );
        registry.register(
            "events_dropped",
            "Deliveries a plugin chose not to send (also deliveries_total{outcome=\"dropped\"})",
            m.dropped.clone(),
        );
        metrics
    }

    /// The metrics one endpoint's successful deliveries update, looked up once. Taking them
    /// creates their series, as the endpoint's first success would.
    pub(crate) fn succeeded(&self, endpoint: &str) -> Succeeded {
        let attempt = AttemptLabel {
            endpoint: endpoint.to_owned(),
            result: "2xx",
        };
        let outcome = OutcomeLabel {
            endpoint: endpoint.to_owned(),
            outcome: "delivered",
        };
        Succeeded {
            attempts: self.attempts.get_or_create(&attempt).clone(),
            attempt_seconds: self.attempt_seconds.get_or_create(&label(endpoint)).clone(),
            deliveries: self.deliveries.get_or_create(&outcome).clone(),
            delivered: self.delivered.get_or_create(&label(endpoint)).clone(),
            latency: self.latency.get_or_create(&label(endpoint)).clone(),
        }
    }

    /// Counts one HTTP attempt to `endpoint` that ended as `result`, after `seconds`.
    pub(crate) fn attempt(&self, endpoint: &str, result: &'static str, seconds: f64) {
        let labels = AttemptLabel {
            endpoint: endpoint.to_owned(),
            result,
        };
        self.attempts.get_or_create(&labels).inc();
        self.attempt_seconds
            .get_or_create(&label(endpoint))
            .observe(seconds);
    }

    /// Counts a failed attempt that will be retried.
    pub(crate) fn retried(&self, endpoint: &str) {
        self.retried.get_or_create(&label(endpoint)).inc();
    }

    /// Counts a delivery given up and dead-lettered.
    pub(crate) fn dead_lettered(&self, endpoint: &str) {
        self.ended(endpoint, "dead_lettered");
        self.dead_lettered.get_or_create(&label(endpoint)).inc();
        self.dead_lettered_total.inc();
    }

    /// Counts a delivery that `by` (a plugin) chose not to send.
    pub(crate) fn dropped(&self, endpoint: &str, by: String) {
        self.ended(endpoint, "dropped");
        let labels = DropLabel {
            endpoint: endpoint.to_owned(),
            by,
        };
        self.dropped.get_or_create(&labels).inc();
    }

    /// Dead letters so far, over all endpoints.
    pub(crate) fn dead_lettered_total(&self) -> u64 {
        self.dead_lettered_total.get()
    }

    fn ended(&self, endpoint: &str, outcome: &'static str) {
        let labels = OutcomeLabel {
            endpoint: endpoint.to_owned(),
            outcome,
        };
        self.deliveries.get_or_create(&labels).inc();
    }
}

/// The metrics of one endpoint's successful deliveries, the common case: counting one costs no
/// label to build and no family to search ([`DeliveryMetrics::succeeded`]).
#[derive(Clone, Debug)]
pub(crate) struct Succeeded {
    attempts: Counter,
    attempt_seconds: Histogram,
    deliveries: Counter,
    delivered: Counter,
    latency: Histogram,
}

impl Succeeded {
    /// Counts a delivery answered with 2xx by an attempt of `seconds`, `latency` seconds after
    /// its event was accepted: as [`DeliveryMetrics::attempt`] and
    /// [`DeliveryMetrics::delivered`] together would.
    pub(crate) fn count(&self, seconds: f64, latency: f64) {
        self.attempts.inc();
        self.attempt_seconds.observe(seconds);
        self.deliveries.inc();
        self.delivered.inc();
        self.latency.observe(latency);
    }
}

fn label(endpoint: &str) -> EndpointLabel {
    EndpointLabel {
        endpoint: endpoint.to_owned(),
    }
}
