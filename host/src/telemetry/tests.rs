//! The metrics contract: every exported metric is in the README's table, and the Grafana
//! dashboard in `deploy/grafana` queries only exported metrics.

use std::collections::BTreeSet;
use std::path::Path;

use super::*;

/// The full name of every series family, with each metric used once so that it renders.
fn exported() -> BTreeSet<String> {
    let m = Metrics::new();
    m.events_received.inc();
    m.delivery.succeeded("e").count(0.01, 0.01);
    m.delivery.retried("e");
    m.delivery.dead_lettered("e");
    m.delivery.dropped("e", "p".into());
    m.outbox_depth.set(1);
    m.outbox_pending
        .get_or_create(&Metrics::endpoint("e"))
        .set(1);
    m.outbox_oldest_pending_age
        .get_or_create(&Metrics::endpoint("e"))
        .set(1.0);
    m.removed_endpoint_backlog
        .get_or_create(&Metrics::endpoint("e"))
        .set(1);
    m.dead_letters_redriven
        .get_or_create(&Metrics::endpoint("e"))
        .inc();
    m.outbox_read_back
        .get_or_create(&Metrics::endpoint("e"))
        .inc();
    m.config_reloads
        .get_or_create(&vec![("result", "applied")])
        .inc();
    m.transitions.get_or_create(&vec![("path", "events")]).inc();
    m.offloaded_workflows.inc();
    m.plugin_call("p", "pass");
    m.plugin_call_seconds
        .get_or_create(&Metrics::plugin("p"))
        .observe(0.001);
    m.plugin_load("p", "loaded");
    m.plugin_failing.get_or_create(&Metrics::plugin("p")).set(0);
    m.kube.request("get", "events");
    m.kube.leader.set(1);
    m.kube.watch_error("events");
    m.kube.skipped.inc();
    m.render()
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .map(|line| {
            let (name, kind) = line.split_once(' ').expect("# TYPE <name> <kind>");
            match kind {
                "counter" => format!("{name}_total"),
                "info" => format!("{name}_info"),
                _ => name.to_owned(),
            }
        })
        .collect()
}

fn read(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_metric_is_in_the_readme() {
    let readme = read("README.md");
    let exported = exported();
    assert!(exported.len() >= 20, "{exported:?}");
    for name in &exported {
        let short = name.strip_prefix("kfp_event_router_").expect("the prefix");
        assert!(
            [
                format!("`{short}`"),
                format!("`{short}{{"),
                format!("`{name}")
            ]
            .iter()
            .any(|form| readme.contains(form.as_str())),
            "{name} is not in the README's metrics table"
        );
    }
}

#[test]
fn the_dashboard_queries_only_exported_metrics() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/kfp-event-router.json")).expect("JSON");
    let exported = exported();
    let mut queried = BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("an expression");
            for (at, _) in expr.match_indices("kfp_event_router_") {
                let name: String = expr[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                queried.insert(name);
            }
        }
    }
    assert!(queried.len() >= 12, "{queried:?}");
    for name in &queried {
        let family = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        assert!(
            exported.contains(family),
            "the dashboard queries {name}, which is not exported"
        );
    }
}
