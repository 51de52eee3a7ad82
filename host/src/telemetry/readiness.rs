//! What `/readyz` reports: whether the router's stages run, its leader-election role, and the
//! reports stages publish (the payload stage's plugins). The server reads it; the stages write
//! it; neither knows the other.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

/// A replica's part in leader election. A standby is ready (it serves probes and takes over
/// when the leader goes), so rolling updates of a two-replica Deployment go through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Holds the lease: watches and delivers.
    Leader,
    /// Waits to take over.
    Standby,
}

/// Something a stage shows under its own key in `/readyz`.
pub(crate) trait Report: Send + Sync {
    /// The current state, as JSON.
    fn report(&self) -> serde_json::Value;
}

/// The readiness report; cheap to clone, shared by the stages and the server.
#[derive(Clone, Default)]
pub(crate) struct Readiness {
    ready: Arc<AtomicBool>,
    role: Arc<AtomicU8>,
    reports: Arc<Mutex<Published>>,
}

/// The published reports, by key.
type Published = Vec<(&'static str, Arc<dyn Report>)>;

impl Readiness {
    /// Marks the router ready (its stages are running) or not (starting, stopping).
    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether the router is ready.
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Sets the leader-election role reported (`None`: not elected).
    pub(crate) fn set_role(&self, role: Option<Role>) {
        let value = match role {
            None => 0,
            Some(Role::Standby) => 1,
            Some(Role::Leader) => 2,
        };
        self.role.store(value, Ordering::Relaxed);
    }

    /// The leader-election role, when elected.
    pub(crate) fn role(&self) -> Option<Role> {
        match self.role.load(Ordering::Relaxed) {
            1 => Some(Role::Standby),
            2 => Some(Role::Leader),
            _ => None,
        }
    }

    /// Shows `report` under `key` from now on.
    pub(crate) fn publish(&self, key: &'static str, report: Arc<dyn Report>) {
        self.lock().push((key, report));
    }

    /// Every published report, by key.
    pub(crate) fn reports(&self) -> Vec<(&'static str, serde_json::Value)> {
        self.lock()
            .iter()
            .map(|(key, report)| (*key, report.report()))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Published> {
        self.reports.lock().unwrap_or_else(|e| e.into_inner())
    }
}
