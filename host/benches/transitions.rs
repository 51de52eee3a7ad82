//! What lossless mode costs: deriving run events from Workflow status, against the Events path.
//!
//! `cargo bench -p kfp-event-router --bench transitions` replays, through the enrich stage, a
//! stream of Workflow updates for 20 workflows of 200 nodes, each update moving one node
//! (Running, then Succeeded), and prints:
//! - transitions derived per second, and CPU per update with `from = "workflows"`;
//! - CPU per update with `from = "events"` (the update only refreshes the cache), so the
//!   difference is the cost of diffing;
//! - CPU per Event on the Events path, for the same transitions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Event;
use kfp_event_router::enrich::{Enricher, Paths};
use kfp_event_router::model::item::SourceItem;
use kfp_event_router::model::workflow::Workflow;
use kfp_event_router::telemetry::Metrics;
use serde_json::json;

const WORKFLOWS: usize = 20;
const NODES: usize = 200;

fn main() {
    let (status_time, derived, updates) = updates_through(Paths::Workflows);
    let (cache_time, _, _) = updates_through(Paths::Events);
    let (event_time, events) = events_through();
    let per = |d: Duration, n: usize| d.as_secs_f64() * 1e6 / n as f64;
    println!(
        "{WORKFLOWS} workflows x {NODES} nodes, {updates} Workflow updates, one node changing in each"
    );
    println!(
        "status path:  {derived} transitions derived, {:.0} transitions/s, {:.1} us CPU per update",
        derived as f64 / status_time.as_secs_f64(),
        per(status_time, updates)
    );
    println!(
        "events path:  {:.1} us CPU per update (cache refresh only), {:.1} us per Event ({events} Events)",
        per(cache_time, updates),
        per(event_time, events)
    );
    println!(
        "cost of diffing: {:.1} us per update of a {NODES}-node workflow",
        per(status_time.saturating_sub(cache_time), updates)
    );
}

fn enricher(paths: Paths) -> Enricher {
    Enricher::new(paths, Arc::new(Metrics::new()))
}

/// Feeds every update to an enricher; returns the time spent in it, the events it derived and
/// the number of updates.
fn updates_through(paths: Paths) -> (Duration, usize, usize) {
    let mut enricher = enricher(paths);
    let mut workflows: Vec<Workflow> = (0..WORKFLOWS).map(workflow).collect();
    let (mut spent, mut derived, mut updates) = (Duration::ZERO, 0, 0);
    for phase in ["Running", "Succeeded"] {
        for n in 0..NODES {
            for (w, wf) in workflows.iter_mut().enumerate() {
                let status = wf.status.get_or_insert_default();
                let node = serde_json::from_value(json!({
                    "id": format!("wf-{w}-{n}"), "name": format!("wf-{w}.dag.step-{n}"), "type": "Pod",
                    "phase": phase, "startedAt": "2026-11-20T10:00:00Z",
                }))
                .unwrap();
                status.nodes.insert(format!("wf-{w}-{n}"), node);
                let item = SourceItem::WorkflowApplied(Box::new(wf.clone()));
                let started = Instant::now();
                derived += enricher
                    .apply(item)
                    .iter()
                    .filter(|i| i.event.is_some())
                    .count();
                spent += started.elapsed();
                updates += 1;
            }
        }
    }
    (spent, derived, updates)
}

/// Feeds the Events the controller records for the same transitions, with the Workflows cached.
fn events_through() -> (Duration, usize) {
    let mut enricher = enricher(Paths::Events);
    for w in 0..WORKFLOWS {
        enricher.apply(SourceItem::WorkflowApplied(Box::new(workflow(w))));
    }
    let (mut spent, mut events) = (Duration::ZERO, 0);
    for phase in ["Running", "Succeeded"] {
        for n in 0..NODES {
            for w in 0..WORKFLOWS {
                let full = format!("wf-{w}.dag.step-{n}");
                let event: Event = serde_json::from_value(json!({
                    "metadata": {"name": format!("e-{w}-{n}-{phase}"), "namespace": "kubeflow",
                                 "uid": format!("e-{w}-{n}-{phase}"),
                                 "annotations": {"workflows.argoproj.io/node-name": full,
                                                 "workflows.argoproj.io/node-id": format!("wf-{w}-{n}")}},
                    "involvedObject": {"kind": "Workflow", "name": format!("wf-{w}"), "namespace": "kubeflow",
                                       "uid": format!("uid-{w}")},
                    "reason": format!("WorkflowNode{phase}"), "message": format!("{phase} node {full}"),
                    "source": {"component": "workflow-controller"}, "count": 1, "type": "Normal",
                }))
                .unwrap();
                let item = SourceItem::Event {
                    event: Box::new(event),
                    checkpoint: None,
                };
                let started = Instant::now();
                enricher.apply(item);
                spent += started.elapsed();
                events += 1;
            }
        }
    }
    (spent, events)
}

fn workflow(w: usize) -> Workflow {
    serde_json::from_value(json!({
        "metadata": {"name": format!("wf-{w}"), "namespace": "kubeflow", "uid": format!("uid-{w}"),
                     "labels": {"pipeline/runid": format!("run-{w}")}},
        "status": {"phase": "Running", "startedAt": "2026-11-20T10:00:00Z", "nodes": {}},
    }))
    .unwrap()
}
