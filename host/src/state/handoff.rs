//! Accepted deliveries handed to the endpoint workers in memory, as soon as they are durable.
//!
//! The outbox stays the record: what a worker holds in memory is also on disk, and a worker
//! that falls behind, starts, or misses a hand-off reads the outbox instead. The hand-off only
//! spares a worker that keeps up the cost of reading back (and decoding) every event it was
//! just given.
//!
//! Each [`Handoff`] covers one commit: every delivery of its endpoint with a sequence number in
//! `after + 1 ..= upto`. A worker whose cursor stands at `after` (or later) takes it whole and
//! moves its cursor to `upto`; one whose cursor stands before `after` missed one (its queue was
//! full) and reads the outbox from its cursor. The commit's [`Handoff`]s are sent before the
//! outbox's `accepted` watch moves to `upto`, so a worker woken by that watch that finds no
//! hand-off up to it knows it must read.
//!
//! With the shared PostgreSQL outbox a process hands over only what it accepted itself. Its
//! commits are serialised with every other process's (each locks the `meta` row before it
//! numbers events), so `after` is the number before the commit's first: whatever another
//! replica committed in between lies past the worker's cursor, and the worker reads it. A
//! worker with claims takes, of a hand-off, only the workflows of the buckets it holds.
//!
//! A worker takes a hand-off only when it has room for it: until then the hand-off waits in
//! its queue. Before each accept, [`Tails::room`] waits (a little) until some worker's queue
//! has room: a source faster than every endpoint is slowed to the pace of the fastest, rather
//! than filling the outbox with events that a worker would read back a moment later. An
//! endpoint that is down or slow does not hold up the others, which keep taking hand-offs;
//! and if every endpoint is down, the wait is bounded ([`PATIENCE`]), so the outbox still
//! takes what the source brings.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::outbox::PendingDelivery;
use crate::model::event::RouterEvent;

/// Hand-offs waiting for one worker at most, besides the one it holds back until it has room;
/// when full, the next are not sent and the worker reads them from the outbox. A commit holds
/// up to one accept batch (1024 events), so what waits in memory per endpoint stays at a few
/// thousand deliveries.
const QUEUE: usize = 1;

/// How long an accept waits at most for a worker to have room for its hand-off.
const PATIENCE: Duration = Duration::from_millis(100);

/// The deliveries of one endpoint in one commit.
#[derive(Debug)]
pub(crate) struct Handoff {
    /// The last sequence number committed before this commit.
    pub(crate) after: u64,
    /// The last sequence number of this commit.
    pub(crate) upto: u64,
    /// This endpoint's deliveries in `after + 1 ..= upto`, in order.
    pub(crate) deliveries: Vec<PendingDelivery>,
}

/// One committed event, for the hand-off: its sequence number, when it was accepted, the
/// event, its endpoints and its claim bucket (0 without claims).
pub(super) struct Committed {
    pub(super) seq: u64,
    pub(super) accepted_us: u64,
    pub(super) event: Arc<RouterEvent>,
    pub(super) endpoints: Vec<String>,
    pub(super) bucket: u32,
}

/// The workers listening for hand-offs, by endpoint; cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Tails {
    workers: Arc<Mutex<HashMap<String, mpsc::Sender<Handoff>>>>,
}

impl Tails {
    /// Starts handing `endpoint`'s deliveries to the returned receiver (replacing an earlier
    /// one of the same endpoint).
    pub(crate) fn subscribe(&self, endpoint: &str) -> mpsc::Receiver<Handoff> {
        let (sender, receiver) = mpsc::channel(QUEUE);
        self.lock().insert(endpoint.to_owned(), sender);
        receiver
    }

    /// Hands the deliveries of one commit (`after + 1 ..= upto`) to their workers; skips a
    /// worker whose queue is full, and forgets one that is gone.
    pub(super) fn publish(&self, after: u64, upto: u64, events: &[Committed]) {
        let mut workers = self.lock();
        workers.retain(|endpoint, sender| {
            if sender.is_closed() {
                return false;
            }
            let deliveries = events
                .iter()
                .filter(|c| c.endpoints.iter().any(|e| e == endpoint))
                .map(|c| PendingDelivery {
                    seq: c.seq,
                    attempts: 0,
                    first_attempt_ms: 0,
                    accepted_us: c.accepted_us,
                    bucket: c.bucket,
                    event: Arc::clone(&c.event),
                })
                .collect();
            let handoff = Handoff {
                after,
                upto,
                deliveries,
            };
            !matches!(
                sender.try_send(handoff),
                Err(mpsc::error::TrySendError::Closed(_))
            )
        });
    }

    /// Waits until some worker's queue has room for a hand-off, or no worker listens, or
    /// [`PATIENCE`] has passed.
    pub(crate) async fn room(&self) {
        let workers: Vec<mpsc::Sender<Handoff>> = self.lock().values().cloned().collect();
        // A closed queue "has room": its worker is gone, and waiting for it would be pointless.
        let free = |worker: &mpsc::Sender<Handoff>| worker.is_closed() || worker.capacity() > 0;
        if workers.is_empty() || workers.iter().any(free) {
            return;
        }
        let any = futures::future::select_all(workers.iter().map(|w| Box::pin(w.reserve())));
        let _ = tokio::time::timeout(PATIENCE, any).await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::Sender<Handoff>>> {
        self.workers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed(seq: u64, endpoints: &[&str]) -> Committed {
        Committed {
            seq,
            accepted_us: 7,
            event: Arc::new(RouterEvent::bare(
                format!("e{seq}"),
                crate::model::event::EventFacts::default(),
            )),
            endpoints: endpoints.iter().map(|e| (*e).to_owned()).collect(),
            bucket: 0,
        }
    }

    #[test]
    fn each_worker_gets_its_own_deliveries_of_a_commit_with_the_range_it_covers() {
        let tails = Tails::default();
        let mut a = tails.subscribe("a");
        let mut b = tails.subscribe("b");
        let commit = [
            committed(4, &["a"]),
            committed(5, &["a", "b"]),
            committed(6, &["b"]),
        ];
        tails.publish(3, 6, &commit);
        let a = a.try_recv().unwrap();
        let b = b.try_recv().unwrap();
        assert_eq!((a.after, a.upto), (3, 6));
        let seqs = |h: &Handoff| h.deliveries.iter().map(|d| d.seq).collect::<Vec<_>>();
        assert_eq!(seqs(&a), [4, 5]);
        assert_eq!(seqs(&b), [5, 6]);
        assert_eq!(a.deliveries[0].accepted_us, 7);
        // One event, shared by the endpoints that want it.
        assert!(Arc::ptr_eq(&a.deliveries[1].event, &b.deliveries[0].event));
    }

    #[test]
    fn a_full_queue_skips_hand_offs_that_the_worker_then_sees_it_missed() {
        let tails = Tails::default();
        let mut worker = tails.subscribe("a");
        for seq in 1..=(QUEUE as u64 + 2) {
            tails.publish(seq - 1, seq, &[committed(seq, &["a"])]);
        }
        let received: Vec<Handoff> = std::iter::from_fn(|| worker.try_recv().ok()).collect();
        assert_eq!(received.len(), QUEUE);
        assert_eq!(received.last().unwrap().upto, QUEUE as u64);
        // The next one it gets starts after a sequence number it never saw: it reads the
        // outbox for the ones between.
        tails.publish(9, 10, &[committed(10, &["a"])]);
        assert_eq!(worker.try_recv().unwrap().after, 9);
    }

    #[tokio::test(start_paused = true)]
    async fn an_accept_waits_for_the_first_worker_with_room_or_its_patience() {
        let tails = Tails::default();
        tails.room().await;
        let mut fast = tails.subscribe("fast");
        let _slow = tails.subscribe("slow");
        let started = tokio::time::Instant::now();
        tails.room().await;
        assert_eq!(started.elapsed(), Duration::ZERO, "both have room");

        // Both full: the wait ends when the first worker takes its hand-off.
        tails.publish(0, 1, &[committed(1, &["fast", "slow"])]);
        let taker = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            fast.recv().await.unwrap();
            fast
        });
        tails.room().await;
        assert_eq!(started.elapsed(), Duration::from_millis(30));
        let fast = taker.await.unwrap();

        // Neither takes anything: the wait ends at its patience.
        tails.publish(1, 2, &[committed(2, &["fast", "slow"])]);
        let started = tokio::time::Instant::now();
        tails.room().await;
        assert_eq!(started.elapsed(), PATIENCE);
        // A worker that is gone does not hold an accept up.
        drop(fast);
        let started = tokio::time::Instant::now();
        tails.room().await;
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[test]
    fn a_worker_that_is_gone_is_forgotten() {
        let tails = Tails::default();
        drop(tails.subscribe("a"));
        tails.publish(0, 1, &[committed(1, &["a"])]);
        assert!(tails.lock().is_empty());
    }
}
