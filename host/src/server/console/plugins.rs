//! The Plugins view: what the payload stage reports (loaded plugins with their hash and WIT
//! version, each plugin's last load, failing ones) with each plugin's calls, drops, errors and
//! 99th-percentile call time read from the metrics.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// The metric of plugin calls by outcome.
const CALLS: &str = "kfp_event_router_plugin_calls_total{";

/// The buckets of the plugin call time histogram.
const BUCKETS: &str = "kfp_event_router_plugin_call_duration_seconds_bucket{";

/// Call outcomes that are not errors.
const FINE: [&str; 3] = ["pass", "drop", "replace"];

/// Counts of one plugin, from the metrics.
#[derive(Default)]
struct Calls {
    calls: f64,
    drops: f64,
    errors: f64,
    /// (upper bound in seconds, calls at most that long).
    buckets: Vec<(f64, f64)>,
}

/// The view: `report` (the payload stage's `/readyz` report) with `calls`, `drops`, `errors`
/// and `p99_ms` added to each loaded plugin, read from `metrics` (the Prometheus text).
pub(super) fn view(report: Option<Value>, metrics: &str) -> Value {
    let mut report = report.unwrap_or_else(|| json!({ "loaded": [] }));
    let counts = read(metrics);
    if let Some(loaded) = report["loaded"].as_array_mut() {
        for plugin in loaded {
            let name = plugin["name"].as_str().unwrap_or_default().to_owned();
            let own = counts.get(&name);
            plugin["calls"] = json!(own.map_or(0.0, |c| c.calls));
            plugin["drops"] = json!(own.map_or(0.0, |c| c.drops));
            plugin["errors"] = json!(own.map_or(0.0, |c| c.errors));
            plugin["p99_ms"] = json!(own.and_then(p99_ms));
        }
    }
    report
}

/// Each plugin's counts in the metrics text.
fn read(metrics: &str) -> BTreeMap<String, Calls> {
    let mut counts: BTreeMap<String, Calls> = BTreeMap::new();
    for line in metrics.lines() {
        if let Some(rest) = line.strip_prefix(CALLS) {
            let Some((labels, value)) = sample(rest) else {
                continue;
            };
            let Some(plugin) = label(labels, "plugin") else {
                continue;
            };
            let outcome = label(labels, "outcome").unwrap_or_default();
            let own = counts.entry(plugin).or_default();
            own.calls += value;
            match outcome.as_str() {
                "drop" => own.drops += value,
                o if FINE.contains(&o) => {}
                _ => own.errors += value,
            }
        } else if let Some(rest) = line.strip_prefix(BUCKETS) {
            let Some((labels, value)) = sample(rest) else {
                continue;
            };
            let (Some(plugin), Some(le)) = (label(labels, "plugin"), label(labels, "le")) else {
                continue;
            };
            let bound = match le.as_str() {
                "+Inf" => f64::INFINITY,
                le => le.parse().unwrap_or(f64::INFINITY),
            };
            counts
                .entry(plugin)
                .or_default()
                .buckets
                .push((bound, value));
        }
    }
    counts
}

/// The labels and value of a sample line after its `{`.
fn sample(rest: &str) -> Option<(&str, f64)> {
    let (labels, value) = rest.split_once("} ")?;
    let value = value.split_whitespace().next()?.parse().ok()?;
    Some((labels, value))
}

/// The value of label `name` in `labels` (`a="x",b="y"`).
fn label(labels: &str, name: &str) -> Option<String> {
    let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
    let end = labels[start..].find('"')?;
    Some(labels[start..start + end].to_owned())
}

/// The upper bound of the bucket holding the 99th percentile, in ms (a bound, not exact).
fn p99_ms(calls: &Calls) -> Option<f64> {
    let total = calls.buckets.iter().map(|b| b.1).fold(0.0, f64::max);
    if total == 0.0 {
        return None;
    }
    let mut buckets = calls.buckets.clone();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
        .iter()
        .find(|(_, count)| *count >= total * 0.99)
        .map(|(bound, _)| bound * 1000.0)
        .filter(|ms| ms.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_drops_errors_and_p99_come_from_the_metrics() {
        let text = "\
kfp_event_router_plugin_calls_total{plugin=\"f\",outcome=\"pass\"} 90
kfp_event_router_plugin_calls_total{plugin=\"f\",outcome=\"drop\"} 8
kfp_event_router_plugin_calls_total{plugin=\"f\",outcome=\"trap\"} 2
kfp_event_router_plugin_call_duration_seconds_bucket{le=\"0.001\",plugin=\"f\"} 50
kfp_event_router_plugin_call_duration_seconds_bucket{le=\"0.004\",plugin=\"f\"} 99
kfp_event_router_plugin_call_duration_seconds_bucket{le=\"+Inf\",plugin=\"f\"} 100
";
        let report = json!({ "loaded": [{ "name": "f" }, { "name": "idle" }] });
        let view = view(Some(report), text);
        let f = &view["loaded"][0];
        assert_eq!(
            (f["calls"].as_f64(), f["drops"].as_f64()),
            (Some(100.0), Some(8.0))
        );
        assert_eq!(f["errors"].as_f64(), Some(2.0));
        assert_eq!(f["p99_ms"].as_f64(), Some(4.0));
        assert_eq!(view["loaded"][1]["calls"].as_f64(), Some(0.0));
        assert!(view["loaded"][1]["p99_ms"].is_null());
    }
}
