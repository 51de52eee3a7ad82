//! Runs a chain of plugins over one payload, and turns the outcome into a [`Verdict`].
//!
//! A [`Snapshot`] is one whole version of the loaded plugins and the global chain: an event
//! holds one `Arc<Snapshot>` for its whole chain run, so a reload that lands meanwhile is seen
//! by the next event, never halfway through this one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::bindings::Action;
use super::current::Current;
use super::event::WitEvent;
use super::headers;
use super::health::PluginHealth;
use super::plugin::{CallError, LoadedPlugin};
use super::settings::OnError;
use crate::model::request::{Payload, Request, Verdict};
use crate::telemetry::Metrics;

/// One version of the loaded plugins and the global chain.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    /// Loaded plugins by name.
    pub(crate) plugins: BTreeMap<String, Arc<LoadedPlugin>>,
    /// The global chain, run for every endpoint first.
    pub(crate) global: Vec<String>,
}

impl Snapshot {
    /// The plugins an endpoint's chain runs, in order: the global chain, then `own`. Err
    /// names the first that is not loaded.
    pub(crate) fn resolve(&self, own: &[String]) -> Result<Vec<Arc<LoadedPlugin>>, String> {
        self.global
            .iter()
            .chain(own)
            .map(|name| self.plugins.get(name).cloned().ok_or_else(|| name.clone()))
            .collect()
    }
}

/// Where a chain run reports what happened.
pub struct Observer<'a> {
    /// Call outcomes and durations.
    pub metrics: &'a Metrics,
    /// Repeated failures.
    pub health: &'a PluginHealth,
}

/// Runs `plugins` in order over `payload`, at first the router's rendering of `event` for its
/// endpoint ([`Current::rendering`]).
pub async fn run(
    plugins: &[Arc<LoadedPlugin>],
    event: &WitEvent<'_>,
    payload: Current,
    observer: &Observer<'_>,
) -> Verdict {
    // The payload as it stands, shared with each call rather than copied for it.
    let mut current = payload;
    let mut headers: Vec<(String, String)> = Vec::new();
    for plugin in plugins {
        let name = plugin.name();
        let meters = plugin.meters(observer.metrics);
        let started = Instant::now();
        let result = plugin.call_with(event, &current).await;
        meters.seconds.observe(started.elapsed().as_secs_f64());
        let error = match result {
            Ok(action) => {
                note_success(plugin, observer);
                match action {
                    Action::Pass => {
                        meters.pass.inc();
                        continue;
                    }
                    Action::Drop => {
                        meters.drop.inc();
                        return Verdict::Drop {
                            by: name.to_owned(),
                        };
                    }
                    Action::Replace(replacement) => {
                        meters.replace.inc();
                        current = Current::Replaced(Payload {
                            body: replacement.body.into(),
                            content_type: replacement.content_type,
                        });
                        for (header, value) in replacement.headers {
                            if headers::refused(&header) {
                                plugin.refuse_header(&header);
                                continue;
                            }
                            headers.retain(|(h, _)| !h.eq_ignore_ascii_case(&header));
                            headers.push((header, value));
                        }
                        continue;
                    }
                }
            }
            Err(error) => error,
        };
        note_failure(plugin, &error, event, observer);
        match plugin.settings().on_error {
            OnError::Pass => continue,
            OnError::Drop => {
                return Verdict::Drop {
                    by: name.to_owned(),
                };
            }
            OnError::DeadLetter => {
                return Verdict::DeadLetter {
                    plugin: name.to_owned(),
                    error: error.to_string(),
                    payload: current.into_payload(),
                };
            }
        }
    }
    Verdict::Deliver(Request {
        payload: current.into_payload(),
        headers,
    })
}

fn note_success(plugin: &LoadedPlugin, observer: &Observer<'_>) {
    if observer.health.succeeded(plugin.name()) {
        observer
            .metrics
            .plugin_failing
            .get_or_create(&Metrics::plugin(plugin.name()))
            .set(0);
        tracing::info!(
            plugin = plugin.name(),
            version = plugin.version(),
            "plugin works again"
        );
    }
}

fn note_failure(
    plugin: &LoadedPlugin,
    error: &CallError,
    event: &WitEvent<'_>,
    observer: &Observer<'_>,
) {
    let name = plugin.name();
    let lists = Default::default();
    let event = event.record_with(&lists);
    observer.metrics.plugin_call(name, error.outcome());
    let policy = match plugin.settings().on_error {
        OnError::Pass => "on_error = pass: the chain goes on without it",
        OnError::Drop => "on_error = drop: nothing is sent to this endpoint",
        OnError::DeadLetter => "on_error = dead-letter: written to the dead-letter file",
    };
    tracing::error!(
        plugin = name,
        version = plugin.version(),
        endpoint = %event.endpoint,
        reason = %event.reason,
        workflow = %event.workflow_name,
        outcome = error.outcome(),
        "plugin call failed: {error}; {policy}"
    );
    if observer.health.failed(name, &error.to_string()) {
        observer
            .metrics
            .plugin_failing
            .get_or_create(&Metrics::plugin(name))
            .set(1);
        tracing::error!(
            plugin = name,
            version = plugin.version(),
            "plugin is failing: its last calls all failed"
        );
    }
}
