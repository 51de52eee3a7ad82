//! The `accept` stage: routes each event to the endpoints that want it and stores it in the
//! outbox, in batches, with the source's position.
//!
//! Once an event is accepted it is on disk: the source may move on, and a crash cannot lose
//! it. The outbox then holds one delivery per endpoint that wants it.

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};

use crate::model::event::{NodeView, RouterEvent};
use crate::model::item::{Accepted, Intake};
use crate::state::outbox::{Accept, AcceptBatch, Outbox};
use crate::telemetry::Metrics;

/// Events taken from the enrich stage per outbox transaction at most.
const BATCH: usize = 1024;

/// Which events one endpoint wants: the reasons and namespaces of its config.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Route {
    /// Reasons to deliver, or all.
    pub reasons: Option<HashSet<String>>,
    /// Namespaces to deliver from, or all.
    pub namespaces: Option<HashSet<String>>,
    /// Which nodes of KFP v2 runs to deliver.
    pub nodes: NodeView,
}

impl Route {
    /// Whether this endpoint wants events of this reason from this namespace.
    pub fn accepts(&self, reason: &str, namespace: &str) -> bool {
        self.reasons.as_ref().is_none_or(|t| t.contains(reason))
            && self
                .namespaces
                .as_ref()
                .is_none_or(|n| n.contains(namespace))
    }
}

/// Every endpoint's route, by endpoint name, in config order.
pub(crate) type Routes = Vec<(String, Route)>;

/// The names of the endpoints that want `event`.
pub(crate) fn route<'a>(
    routes: &'a Routes,
    event: &'a RouterEvent,
) -> impl Iterator<Item = &'a str> + 'a {
    let facts = &event.event;
    routes
        .iter()
        .filter(move |(_, route)| {
            route.accepts(&facts.reason, &facts.namespace)
                && (route.nodes == NodeView::All || !event.plumbing)
        })
        .map(|(name, _)| name.as_str())
}

/// Runs the stage: stores what `input` brings, routed per `routes`, until `input` closes.
/// Returns how many events it accepted.
pub(crate) async fn run(
    mut input: mpsc::Receiver<Intake>,
    outbox: Outbox,
    routes: watch::Receiver<Arc<Routes>>,
    metrics: Arc<Metrics>,
    accepted: Option<mpsc::Sender<Accepted>>,
) -> anyhow::Result<u64> {
    let mut batch = Vec::with_capacity(BATCH);
    let mut total = 0u64;
    while input.recv_many(&mut batch, BATCH).await > 0 {
        let current = routes.borrow().clone();
        let mut stored = AcceptBatch::default();
        for intake in batch.drain(..) {
            stored.checkpoint = intake.checkpoint.or(stored.checkpoint);
            if let Some(seen) = intake.seen {
                stored.workflows.push(seen);
            }
            if let Some(event) = intake.event {
                stored.events.push(Accept {
                    endpoints: route(&current, &event).map(str::to_owned).collect(),
                    event,
                });
            }
        }
        let count = stored.events.len() as u64;
        let checkpoint = accepted.as_ref().and(stored.checkpoint.clone());
        outbox
            .accept(stored)
            .await
            .context("cannot store events in the outbox")?;
        // Tell the checkpoint mirror; when it lags behind, it reports a later position later.
        if let (Some(accepted), Some(checkpoint)) = (&accepted, checkpoint) {
            let last_seq = *outbox.accepted().borrow();
            let _ = accepted.try_send(Accepted {
                checkpoint,
                last_seq,
            });
        }
        metrics.events_received.inc_by(count);
        total += count;
    }
    Ok(total)
}
