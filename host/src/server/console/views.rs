//! What the console's JSON routes answer, computed from the delivery history, the outbox's
//! backlog and the metrics: endpoint health, filtered delivery lists and run timelines.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::state::history::{Outcome, Record};
use crate::state::outbox::Backlog;

/// The window of an endpoint's success rate and latency.
const WINDOW_MS: u64 = 3600 * 1000;

/// Deliveries a list shows unless asked for fewer.
pub(super) const LIST_LIMIT: usize = 200;

/// One endpoint's line in the Endpoints view.
#[derive(Debug, Serialize)]
pub(super) struct EndpointView {
    /// The endpoint's name (never its URL).
    name: String,
    /// `healthy`, `retrying` or `failing`.
    state: &'static str,
    /// Deliveries waiting in the outbox.
    backlog: u64,
    /// Seconds since the oldest waiting delivery was accepted.
    oldest_pending_seconds: Option<u64>,
    /// Attempts in the last hour.
    attempts: usize,
    /// Share of those that got a 2xx, from 0 to 1.
    success_rate: Option<f64>,
    /// The 99th percentile of their durations, in ms.
    p99_ms: Option<u64>,
    /// The class of the last failed attempt (`5xx`, `timeout`, ...), or of the last give-up.
    last_error: Option<String>,
}

/// The Endpoints view: every endpoint configured or in the history, by name.
pub(super) fn endpoints(
    configured: &BTreeSet<String>,
    records: &[Record],
    backlog: &std::collections::HashMap<String, Backlog>,
    now_ms: u64,
) -> Vec<EndpointView> {
    let mut names: BTreeSet<&str> = configured.iter().map(String::as_str).collect();
    names.extend(records.iter().map(|r| r.endpoint.as_str()));
    names
        .into_iter()
        .map(|name| {
            let own: Vec<&Record> = records.iter().filter(|r| r.endpoint == name).collect();
            let mut recent: Vec<(u64, u64, bool, &str)> = own
                .iter()
                .flat_map(|r| &r.attempts)
                .filter(|a| a.at_ms + WINDOW_MS >= now_ms)
                .map(|a| (a.at_ms, a.millis, a.class == "2xx", a.class.as_str()))
                .collect();
            recent.sort_unstable_by_key(|a| a.0);
            let succeeded = recent.iter().filter(|a| a.2).count();
            let mut millis: Vec<u64> = recent.iter().map(|a| a.1).collect();
            millis.sort_unstable();
            let last_failed = recent.iter().rev().find(|a| !a.2).map(|a| a.3.to_owned());
            let retrying = own.iter().any(|r| r.outcome == Outcome::Retrying);
            let state = match recent.last() {
                Some(last) if !last.2 && retrying => "retrying",
                Some(last) if !last.2 => "failing",
                _ if retrying => "retrying",
                _ => "healthy",
            };
            let waiting = backlog.get(name);
            EndpointView {
                name: name.to_owned(),
                state,
                backlog: waiting.map_or(0, |b| b.pending),
                oldest_pending_seconds: waiting
                    .and_then(|b| b.oldest_ms)
                    .map(|ms| now_ms.saturating_sub(ms) / 1000),
                attempts: recent.len(),
                success_rate: (!recent.is_empty()).then(|| succeeded as f64 / recent.len() as f64),
                p99_ms: percentile(&millis, 99),
                last_error: last_failed.or_else(|| {
                    own.iter()
                        .find(|r| r.outcome == Outcome::DeadLettered)
                        .map(|_| "dead-lettered".to_owned())
                }),
            }
        })
        .collect()
}

/// The `p`th percentile of `sorted` (nearest rank).
fn percentile(sorted: &[u64], p: usize) -> Option<u64> {
    let rank = (sorted.len() * p).div_ceil(100);
    sorted.get(rank.max(1) - 1).copied()
}

/// A list's filter: each field, when set, must match.
#[derive(Debug, Default)]
pub(super) struct Filter {
    /// The endpoint's name.
    pub(super) endpoint: Option<String>,
    /// The KFP run id.
    pub(super) run: Option<String>,
    /// Text the workflow's name contains.
    pub(super) workflow: Option<String>,
    /// The event's reason.
    pub(super) reason: Option<String>,
    /// `delivered`, `retrying`, `dead_lettered` or `dropped`.
    pub(super) outcome: Option<String>,
    /// At most this many.
    pub(super) limit: usize,
}

impl Filter {
    /// Reads a query string; unknown and empty keys are ignored, a bad limit is the default.
    pub(super) fn parse(query: &str) -> Self {
        let mut filter = Filter {
            limit: LIST_LIMIT,
            ..Filter::default()
        };
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let value = Some(value.trim().to_owned()).filter(|v| !v.is_empty());
            match key.as_ref() {
                "endpoint" => filter.endpoint = value,
                "run" => filter.run = value,
                "workflow" => filter.workflow = value,
                "reason" => filter.reason = value,
                "outcome" => filter.outcome = value,
                "limit" => {
                    filter.limit = value
                        .and_then(|v| v.parse().ok())
                        .filter(|n| *n > 0)
                        .unwrap_or(LIST_LIMIT);
                }
                _ => {}
            }
        }
        filter
    }

    /// Whether `record` passes.
    fn matches(&self, record: &Record) -> bool {
        let same =
            |wanted: &Option<String>, value: &str| wanted.as_deref().is_none_or(|w| w == value);
        same(&self.endpoint, &record.endpoint)
            && same(&self.run, run_key(record))
            && self
                .workflow
                .as_deref()
                .is_none_or(|w| record.workflow.contains(w))
            && same(&self.reason, &record.reason)
            && same(&self.outcome, outcome_name(record.outcome))
    }
}

/// A record's run: its KFP run id, else its workflow's name.
fn run_key(record: &Record) -> &str {
    record.run_id.as_deref().unwrap_or(&record.workflow)
}

/// How an outcome is written in JSON and queries.
fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Delivered => "delivered",
        Outcome::Retrying => "retrying",
        Outcome::DeadLettered => "dead_lettered",
        Outcome::Dropped => "dropped",
    }
}

/// One line of the Recent deliveries view.
#[derive(Debug, Serialize)]
pub(super) struct DeliveryLine<'a> {
    endpoint: &'a str,
    webhook_id: &'a str,
    time_ms: u64,
    run: &'a str,
    workflow: &'a str,
    task: Option<&'a str>,
    reason: &'a str,
    outcome: Outcome,
    attempts: usize,
    status: Option<u16>,
    millis: Option<u64>,
    note: Option<&'a str>,
}

/// The records `filter` passes, newest first (as `records` are), as list lines.
pub(super) fn deliveries<'a>(records: &'a [Record], filter: &Filter) -> Vec<DeliveryLine<'a>> {
    records
        .iter()
        .filter(|r| filter.matches(r))
        .take(filter.limit)
        .map(|r| DeliveryLine {
            endpoint: &r.endpoint,
            webhook_id: &r.webhook_id,
            time_ms: r.time_ms,
            run: run_key(r),
            workflow: &r.workflow,
            task: r.task.as_deref(),
            reason: &r.reason,
            outcome: r.outcome,
            attempts: r.attempts.len(),
            status: r.attempts.last().and_then(|a| a.status),
            millis: r.attempts.last().map(|a| a.millis),
            note: r.note.as_deref(),
        })
        .collect()
}

/// One run in the Runs view's list.
#[derive(Debug, Serialize)]
pub(super) struct RunLine<'a> {
    run: &'a str,
    workflow: &'a str,
    last_ms: u64,
    deliveries: usize,
}

/// The runs of `records`, most recently active first.
pub(super) fn runs(records: &[Record]) -> Vec<RunLine<'_>> {
    let mut lines: Vec<RunLine<'_>> = Vec::new();
    for record in records {
        match lines.iter_mut().find(|l| l.run == run_key(record)) {
            Some(line) => line.deliveries += 1,
            None => lines.push(RunLine {
                run: run_key(record),
                workflow: &record.workflow,
                last_ms: record.time_ms,
                deliveries: 1,
            }),
        }
    }
    lines
}

/// One transition of a run, with what became of it at each endpoint.
#[derive(Debug, Serialize)]
pub(super) struct Transition<'a> {
    webhook_id: &'a str,
    time_ms: u64,
    event_time: Option<&'a str>,
    reason: &'a str,
    task: Option<&'a str>,
    message: &'a str,
    endpoints: BTreeMap<&'a str, EndpointOutcome<'a>>,
}

/// What became of a transition at one endpoint.
#[derive(Debug, Serialize)]
pub(super) struct EndpointOutcome<'a> {
    outcome: Outcome,
    attempts: usize,
    note: Option<&'a str>,
}

/// A run's transitions, oldest first: by when they happened, then when they were sent.
pub(super) fn timeline<'a>(records: &'a [Record], run: &str) -> Vec<Transition<'a>> {
    let mut transitions: Vec<Transition<'a>> = Vec::new();
    for record in records.iter().rev().filter(|r| run_key(r) == run) {
        let time_ms = record.attempts.first().map_or(record.time_ms, |a| a.at_ms);
        let outcome = EndpointOutcome {
            outcome: record.outcome,
            attempts: record.attempts.len(),
            note: record.note.as_deref(),
        };
        match transitions
            .iter_mut()
            .find(|t| t.webhook_id == record.webhook_id)
        {
            Some(transition) => {
                transition.time_ms = transition.time_ms.min(time_ms);
                transition.endpoints.insert(&record.endpoint, outcome);
            }
            None => transitions.push(Transition {
                webhook_id: &record.webhook_id,
                time_ms,
                event_time: record.event_time.as_deref(),
                reason: &record.reason,
                task: record.task.as_deref(),
                message: &record.message,
                endpoints: BTreeMap::from([(record.endpoint.as_str(), outcome)]),
            }),
        }
    }
    transitions.sort_by(|a, b| (a.event_time, a.time_ms).cmp(&(b.event_time, b.time_ms)));
    transitions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_99th_percentile_is_a_nearest_rank() {
        assert_eq!(percentile(&[], 99), None);
        assert_eq!(percentile(&[7], 99), Some(7));
        let hundred: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&hundred, 99), Some(99));
        assert_eq!(percentile(&hundred[..10], 99), Some(10));
    }
}
