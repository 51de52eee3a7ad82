//! Which plugins keep failing: consecutive failed calls per plugin, for `/readyz` and the
//! `plugin_failing` metric. A plugin is failing after [`FAILING_AFTER`] failed calls in a row,
//! and recovers with its next successful call.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

/// Failed calls in a row after which a plugin is reported as failing.
pub(crate) const FAILING_AFTER: u32 = 3;

/// A plugin that is failing, as `/readyz` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Failing {
    /// The plugin's name.
    pub(crate) plugin: String,
    /// Failed calls in a row.
    pub(crate) consecutive_failures: u32,
    /// The last error.
    pub(crate) last_error: String,
    /// When the last failure happened (RFC 3339).
    pub(crate) last_failure: String,
}

#[derive(Debug, Default)]
struct Record {
    consecutive: u32,
    last_error: String,
    last_failure: String,
}

/// Failure records of every plugin.
#[derive(Debug, Default)]
pub struct PluginHealth {
    records: Mutex<BTreeMap<String, Record>>,
}

impl PluginHealth {
    /// Notes a successful call; true when `plugin` was failing until now.
    pub(crate) fn succeeded(&self, plugin: &str) -> bool {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        match records.get_mut(plugin) {
            Some(record) if record.consecutive > 0 => {
                let was_failing = record.consecutive >= FAILING_AFTER;
                record.consecutive = 0;
                was_failing
            }
            _ => false,
        }
    }

    /// Notes a failed call; true when `plugin` has just become failing.
    pub(crate) fn failed(&self, plugin: &str, error: &str) -> bool {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        let record = records.entry(plugin.to_owned()).or_default();
        record.consecutive = record.consecutive.saturating_add(1);
        record.last_error = error.to_owned();
        record.last_failure = k8s_openapi::jiff::Timestamp::now().to_string();
        record.consecutive == FAILING_AFTER
    }

    /// Forgets `plugin`'s failures: it was replaced or removed.
    pub(crate) fn forget(&self, plugin: &str) {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(plugin);
    }

    /// The plugins failing now.
    pub(crate) fn failing(&self) -> Vec<Failing> {
        let records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        records
            .iter()
            .filter(|(_, r)| r.consecutive >= FAILING_AFTER)
            .map(|(name, r)| Failing {
                plugin: name.clone(),
                consecutive_failures: r.consecutive,
                last_error: r.last_error.clone(),
                last_failure: r.last_failure.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_after_repeated_failures_until_a_success() {
        let health = PluginHealth::default();
        assert!(!health.failed("p", "boom"));
        assert!(!health.failed("p", "boom"));
        assert!(health.failed("p", "bang"));
        assert!(!health.failed("p", "bang"));
        let failing = health.failing();
        assert_eq!(failing.len(), 1);
        assert_eq!(failing[0].consecutive_failures, 4);
        assert_eq!(failing[0].last_error, "bang");
        assert!(health.succeeded("p"));
        assert!(health.failing().is_empty());
        assert!(!health.succeeded("p"));
    }
}
