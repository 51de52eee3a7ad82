//! Endpoints that left the config keep their undelivered events for a grace period
//! (`state.removed_endpoint_grace`), so that a half-edited ConfigMap does not lose a backlog
//! for good: an endpoint that comes back by the same name within it resumes them, in order;
//! when it ends they are dropped, with a warning naming the endpoint and the count. When each
//! endpoint left is stored as an outbox checkpoint ([`key`]), so a restart keeps the clock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::model::clock::now_ms;
use crate::model::item::Checkpoint;
use crate::state::Outbox;
use crate::state::outbox::AcceptBatch;
use crate::telemetry::Metrics;

/// The outbox checkpoint holding when `endpoint` left the config, in Unix ms.
fn key(endpoint: &str) -> String {
    format!("removed-endpoint/{endpoint}")
}

/// The endpoints removed from the config whose deliveries are kept in the outbox.
pub(super) struct Removed {
    outbox: Outbox,
    metrics: Arc<Metrics>,
    /// When each left the config, in Unix ms.
    held: HashMap<String, u64>,
}

impl Removed {
    /// None held yet.
    pub(super) fn new(outbox: Outbox, metrics: Arc<Metrics>) -> Self {
        Self {
            outbox,
            metrics,
            held: HashMap::new(),
        }
    }

    /// When `endpoint` left the config, as stored (by this run or an earlier one).
    fn recorded(&self, endpoint: &str) -> Option<u64> {
        match self.outbox.checkpoint(&key(endpoint)) {
            Ok(value) => value?.parse().ok(),
            Err(e) => {
                tracing::error!(endpoint, "cannot read when the endpoint was removed: {e}");
                None
            }
        }
    }

    /// Keeps the `count` deliveries of `endpoint`, which is not configured: from when an
    /// earlier run saw it leave, else from now (stored, for the runs after). With no grace
    /// period at all, drops them at once.
    pub(super) async fn hold(&mut self, endpoint: &str, count: u64, grace: Duration) {
        let since = match self.recorded(endpoint) {
            Some(since) => since,
            None if grace.is_zero() => now_ms(),
            None => {
                let now = now_ms();
                let batch = AcceptBatch {
                    checkpoint: Some(Checkpoint {
                        key: key(endpoint),
                        value: now.to_string(),
                    }),
                    ..AcceptBatch::default()
                };
                if let Err(e) = self.outbox.accept(batch).await {
                    tracing::error!(
                        endpoint,
                        "cannot store when the endpoint was removed (a restart starts its grace period again): {e}"
                    );
                }
                now
            }
        };
        if expired(since, grace) {
            self.drop_backlog(endpoint, grace).await;
            return;
        }
        // Held even with nothing pending: what the accept stage still routed to it, just as
        // it left, is dropped with the rest when the grace period ends.
        self.held.insert(endpoint.to_owned(), since);
        if count == 0 {
            tracing::info!(endpoint, "endpoint removed; nothing undelivered for it");
            return;
        }
        self.metrics
            .removed_endpoint_backlog
            .get_or_create(&Metrics::endpoint(endpoint))
            .set(i64::try_from(count).unwrap_or(i64::MAX));
        let ends = since.saturating_add(millis(grace));
        let left = Duration::from_millis(ends.saturating_sub(now_ms()));
        tracing::warn!(
            endpoint,
            pending = count,
            "endpoint not configured; keeping its {count} undelivered events for {} more (state.removed_endpoint_grace), in case it comes back",
            humantime::format_duration(round_to_seconds(left))
        );
    }

    /// `endpoint` is configured (again): when it left within the grace period, forgets that it
    /// did, and its worker resumes its deliveries; when longer ago, drops them first. False
    /// when it dropped them.
    pub(super) async fn restore(&mut self, endpoint: &str, grace: Duration) -> bool {
        let Some(since) = self
            .held
            .remove(endpoint)
            .or_else(|| self.recorded(endpoint))
        else {
            return true;
        };
        if expired(since, grace) {
            self.drop_backlog(endpoint, grace).await;
            return false;
        }
        self.forget(endpoint).await;
        tracing::info!(
            endpoint,
            "endpoint configured again within its grace period; resuming its undelivered events"
        );
        true
    }

    /// How long until the first grace period ends; `None` when none is running.
    pub(super) fn next_expiry(&self, grace: Duration) -> Option<Duration> {
        let first = self.held.values().min()?;
        let ends = first.saturating_add(millis(grace));
        Some(Duration::from_millis(ends.saturating_sub(now_ms())))
    }

    /// Drops the deliveries of every endpoint whose grace period has ended.
    pub(super) async fn expire(&mut self, grace: Duration) {
        let ended: Vec<String> = self
            .held
            .iter()
            .filter(|(_, since)| expired(**since, grace))
            .map(|(name, _)| name.clone())
            .collect();
        for endpoint in ended {
            self.held.remove(&endpoint);
            self.drop_backlog(&endpoint, grace).await;
        }
    }

    /// Purges the deliveries of `endpoint`, whose grace period has ended, then forgets it.
    async fn drop_backlog(&mut self, endpoint: &str, grace: Duration) {
        match self.outbox.purge(endpoint).await {
            Ok(0) => tracing::debug!(endpoint, "grace period of a removed endpoint ended"),
            Ok(dropped) => tracing::warn!(
                endpoint,
                dropped,
                "endpoint removed and not back within {} (state.removed_endpoint_grace); {dropped} undelivered events for it dropped",
                humantime::format_duration(grace)
            ),
            Err(e) => {
                tracing::error!(
                    endpoint,
                    "endpoint removed; cannot drop its deliveries: {e}"
                );
                return;
            }
        }
        self.forget(endpoint).await;
    }

    /// Clears what is stored and shown of `endpoint`'s removal.
    async fn forget(&self, endpoint: &str) {
        self.metrics
            .removed_endpoint_backlog
            .remove(&Metrics::endpoint(endpoint));
        if let Err(e) = self.outbox.clear_checkpoint(&key(endpoint)).await {
            tracing::error!(endpoint, "cannot clear when the endpoint was removed: {e}");
        }
    }
}

/// Whether a grace period of `grace` from `since` (Unix ms) has ended.
fn expired(since: u64, grace: Duration) -> bool {
    now_ms() >= since.saturating_add(millis(grace))
}

/// `duration` in whole milliseconds, saturated.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// `duration` without its fraction of a second, for logs.
fn round_to_seconds(duration: Duration) -> Duration {
    Duration::from_secs(duration.as_secs())
}
