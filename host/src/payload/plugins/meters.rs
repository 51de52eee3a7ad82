//! A plugin's call metrics, looked up once rather than on every call: each lookup builds a
//! label set (copying the plugin's name and the outcome) and searches a metric family.

use std::borrow::Cow;
use std::sync::OnceLock;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

use crate::telemetry::Metrics;

/// The call metrics of one plugin in one [`Metrics`]: its call durations, and its calls that
/// ended normally, by what they asked for.
#[derive(Clone, Debug)]
pub(crate) struct Meters {
    /// `plugin_call_duration_seconds{plugin}`.
    pub(crate) seconds: Histogram,
    /// `plugin_calls{plugin, outcome="pass"}`.
    pub(crate) pass: Counter,
    /// `plugin_calls{plugin, outcome="drop"}`.
    pub(crate) drop: Counter,
    /// `plugin_calls{plugin, outcome="replace"}`.
    pub(crate) replace: Counter,
}

impl Meters {
    /// Looks up the metrics of plugin `name` in `metrics`.
    fn of(metrics: &Metrics, name: &str) -> Self {
        let calls = |outcome: &str| {
            metrics
                .plugin_calls
                .get_or_create(&Metrics::plugin_call_label(name, outcome))
                .clone()
        };
        Self {
            seconds: metrics
                .plugin_call_seconds
                .get_or_create(&Metrics::plugin(name))
                .clone(),
            pass: calls("pass"),
            drop: calls("drop"),
            replace: calls("replace"),
        }
    }
}

/// A plugin's [`Meters`] in the [`Metrics`] its calls first reported to, which is its
/// registry's for all of its life. A call that reports elsewhere looks its meters up again.
#[derive(Debug, Default)]
pub(crate) struct MeterCache(OnceLock<(usize, Meters)>);

impl MeterCache {
    /// The meters of plugin `name` in `metrics`.
    pub(crate) fn get<'a>(&'a self, metrics: &Metrics, name: &str) -> Cow<'a, Meters> {
        let at = std::ptr::from_ref(metrics) as usize;
        match self.0.get_or_init(|| (at, Meters::of(metrics, name))) {
            (cached, meters) if *cached == at => Cow::Borrowed(meters),
            _ => Cow::Owned(Meters::of(metrics, name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `plugin_calls` of plugin `p` by outcome (pass, drop, replace), and how many durations
    /// `plugin_call_duration_seconds` holds for it, as `metrics` renders them.
    fn counted(metrics: &Metrics) -> [u64; 4] {
        let text = metrics.render();
        let value = |prefix: &str| {
            text.lines()
                .find(|l| l.starts_with(prefix))
                .and_then(|l| l.rsplit(' ').next()?.parse().ok())
                .unwrap_or(0)
        };
        let calls = |outcome| {
            value(&format!(
                "kfp_event_router_plugin_calls_total{{plugin=\"p\",outcome=\"{outcome}\"}}"
            ))
        };
        [
            calls("pass"),
            calls("drop"),
            calls("replace"),
            value("kfp_event_router_plugin_call_duration_seconds_count{plugin=\"p\"}"),
        ]
    }

    #[test]
    fn cached_meters_count_into_the_metrics_they_were_looked_up_in() {
        let (first, second) = (Metrics::default(), Metrics::default());
        let cache = MeterCache::default();
        let meters = cache.get(&first, "p");
        assert!(
            matches!(meters, Cow::Borrowed(_)),
            "the first lookup is kept"
        );
        meters.pass.inc();
        meters.seconds.observe(0.001);
        cache.get(&first, "p").replace.inc();
        let elsewhere = cache.get(&second, "p");
        assert!(
            matches!(elsewhere, Cow::Owned(_)),
            "other metrics are looked up"
        );
        elsewhere.drop.inc();
        assert_eq!(counted(&first), [1, 0, 1, 1]);
        assert_eq!(counted(&second), [0, 1, 0, 0]);
    }
}
