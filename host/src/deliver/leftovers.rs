//! What an earlier term left: deliveries accepted before this replica became the leader and
//! not delivered yet (by this replica before it lost the lease or stopped, or with a shared
//! outbox, by the leader before it). A new term delivers them before its source accepts
//! anything new, so that they come before the new events rather than among them; the watch
//! then resumes from the checkpoint, so the wait loses nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::{Settings, count_pending};
use crate::state::Outbox;
use crate::telemetry::readiness::{Readiness, Report};

/// How often the wait counts what is left.
const LOOK_EVERY: Duration = Duration::from_millis(200);

/// How long a term waits for its leftovers at most. The Events since the checkpoint must
/// still be in the cluster when the watch resumes (the API server keeps them an hour by
/// default), so an endpoint that stays down must not hold the watch back for long. After the
/// wait, leftovers are delivered along with new events, still ahead of their own workflow's.
pub(crate) const LEFTOVERS_WAIT: Duration = Duration::from_secs(300);

/// The leftovers still to deliver, shown in `/readyz` as `leftovers` (0 once the wait ended).
#[derive(Default)]
struct Left(AtomicU64);

impl Report for Left {
    fn report(&self) -> serde_json::Value {
        self.0.load(Ordering::Relaxed).into()
    }
}

/// Waits until no endpoint of `settings` has a delivery left in `outbox`, or
/// [`LEFTOVERS_WAIT`] passed. Call it before the source starts: nothing new is accepted
/// meanwhile, so what is pending is what earlier terms left. Deliveries kept for removed
/// endpoints do not count: no worker sends them.
pub(crate) async fn deliver_leftovers(
    outbox: &Outbox,
    settings: &watch::Receiver<Arc<Settings>>,
    readiness: &Readiness,
) {
    let Some(first) = left(outbox, settings).await else {
        return;
    };
    if first == 0 {
        return;
    }
    tracing::info!(
        leftovers = first,
        "delivering {first} leftovers of an earlier term before watching"
    );
    let report = Arc::new(Left(AtomicU64::new(first)));
    readiness.publish("leftovers", Arc::clone(&report) as _);
    let started = Instant::now();
    let mut remaining = first;
    while remaining > 0 {
        if started.elapsed() >= LEFTOVERS_WAIT {
            tracing::warn!(
                leftovers = remaining,
                "{remaining} leftovers of an earlier term still undelivered after {LEFTOVERS_WAIT:?} (is an endpoint down?); watching anyway, each stays ahead of its workflow's new events"
            );
            break;
        }
        tokio::time::sleep(LOOK_EVERY).await;
        let Some(now) = left(outbox, settings).await else {
            break;
        };
        remaining = now;
        report.0.store(remaining, Ordering::Relaxed);
    }
    if remaining == 0 {
        tracing::info!("delivered the leftovers of an earlier term; watching");
    }
    report.0.store(0, Ordering::Relaxed);
}

/// Deliveries pending in `outbox` for the endpoints of `settings`; `None` when the outbox
/// cannot be read (logged: the wait is then skipped).
async fn left(outbox: &Outbox, settings: &watch::Receiver<Arc<Settings>>) -> Option<u64> {
    let counts = count_pending(outbox).await?;
    let settings = settings.borrow().clone();
    Some(
        settings
            .endpoints
            .iter()
            .filter_map(|e| counts.get(&e.name))
            .sum(),
    )
}
