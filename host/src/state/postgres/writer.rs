//! The writer: one task, one connection, every write. It commits whatever has queued up in
//! one transaction (group commit); consecutive writes of a kind become one statement. Once an
//! accept is committed, its deliveries go to the endpoints' workers in memory
//! ([`handoff`](crate::state::handoff)), each with its claim bucket.
//!
//! A transaction that fails for a reason that passes (the connection is gone, a lock wait was
//! cut short, the server is read-only for now: [`is_transient`]) is tried again, with backoff,
//! on a new connection where the old one cannot do it, for as long as it takes: callers of
//! `accept` wait, nothing is lost. Each transaction first locks the `meta` row and stores a
//! random token in it, so that when a commit's reply is lost, the next try sees whether it went
//! through, and does not store the same events twice.

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use super::dead_letters::RedriveLetter;
use super::link::{Backoff, Link, describe, is_transient, needs_new_session};
use super::steps::{Outcome, Sql, Step, execute, redrive, serialise};
use super::{DEPTH_REFRESH, raise};
use crate::state::handoff::Tails;
use crate::state::outbox::{AcceptBatch, CommitTimes, GROUP_COMMIT, LAZY_WINDOW};

/// A queued write.
pub(super) enum Write {
    /// Events to store; answered once committed.
    Accept(AcceptBatch, oneshot::Sender<()>),
    /// A failed attempt (lazy).
    Attempted {
        endpoint: String,
        seq: u64,
        attempts: u32,
        first_ms: u64,
    },
    /// A delivery done (lazy).
    Complete { endpoint: String, seq: u64 },
    /// A source position to forget.
    ClearCheckpoint(String, oneshot::Sender<()>),
    /// Every delivery of an endpoint to drop; answered with how many.
    Purge(String, oneshot::Sender<u64>),
    /// A dead letter to insert.
    DeadLetter(Letter, oneshot::Sender<()>),
    /// Dead letters to take out of `dead_letters` and accept again; answered with which were
    /// still there.
    Redrive(Vec<RedriveLetter>, oneshot::Sender<Vec<bool>>),
    /// Count the pending rows again: another process changed them.
    RefreshDepth,
    /// Commit; with `close`, then stop.
    Flush {
        done: oneshot::Sender<()>,
        close: bool,
    },
}

impl Write {
    /// Whether nobody waits for this write: it may be committed a little later, and without
    /// waiting for the server's disk.
    fn is_lazy(&self) -> bool {
        matches!(self, Write::Complete { .. } | Write::Attempted { .. })
    }
}

/// A dead letter, as a row of `dead_letters`.
pub(super) struct Letter {
    /// When it was given up (RFC 3339).
    pub(super) at: String,
    /// The endpoint's name.
    pub(super) endpoint: String,
    /// The `webhook-id` it was sent with.
    pub(super) webhook_id: String,
    /// The whole letter, as JSON.
    pub(super) json: String,
}

/// Callers to answer once the transaction has committed.
#[derive(Default)]
struct Replies {
    done: Vec<oneshot::Sender<()>>,
    purged: Vec<oneshot::Sender<u64>>,
    redriven: Vec<oneshot::Sender<Vec<bool>>>,
}

/// Owns every write transaction.
pub(super) struct Writer {
    link: Link,
    connection: Option<(Client, Sql)>,
    last_seq: std::sync::Arc<watch::Sender<u64>>,
    depth: std::sync::Arc<watch::Sender<i64>>,
    /// The server process of the session that sent the last notification, for the listener
    /// to tell this process's own notifications apart.
    notifier: std::sync::Arc<std::sync::atomic::AtomicI32>,
    /// The workers to hand this process's accepted deliveries to.
    tails: Tails,
    /// Set by `close`: stop trying once a try fails.
    closing: CancellationToken,
    /// What the transaction whose commit was sent but not answered changed.
    unconfirmed: Option<Outcome>,
    commit_times: CommitTimes,
}

impl Writer {
    /// A writer connecting through `link` (on its first write).
    pub(super) fn new(
        link: Link,
        last_seq: std::sync::Arc<watch::Sender<u64>>,
        depth: std::sync::Arc<watch::Sender<i64>>,
        notifier: std::sync::Arc<std::sync::atomic::AtomicI32>,
        tails: Tails,
        closing: CancellationToken,
        commit_times: CommitTimes,
    ) -> Self {
        Self {
            link,
            connection: None,
            last_seq,
            depth,
            notifier,
            tails,
            closing,
            unconfirmed: None,
            commit_times,
        }
    }

    /// Commits what `queue` brings until a close (returns the replies to send once the
    /// connections are closed) or until every sender is gone.
    pub(super) async fn run(
        mut self,
        mut queue: mpsc::UnboundedReceiver<Write>,
    ) -> Vec<oneshot::Sender<()>> {
        loop {
            let first = match tokio::time::timeout(DEPTH_REFRESH, queue.recv()).await {
                Ok(Some(write)) => write,
                Ok(None) => return Vec::new(),
                Err(_) => {
                    self.refresh_depth().await;
                    continue;
                }
            };
            let mut batch = gather(&mut queue, first).await;
            let refresh = batch.iter().any(|w| matches!(w, Write::RefreshDepth));
            batch.retain(|w| !matches!(w, Write::RefreshDepth));
            if refresh {
                self.refresh_depth().await;
            }
            if batch.is_empty() {
                continue;
            }
            let close = batch
                .iter()
                .any(|w| matches!(w, Write::Flush { close: true, .. }));
            let lazy = batch.iter().all(Write::is_lazy);
            let (steps, replies) = plan(batch);
            match self.commit(&steps, lazy).await {
                Ok(outcome) => {
                    if let (Some(first), Some(last)) = (outcome.first_seq, outcome.last_seq) {
                        // Hand-offs first: a worker woken by the watch finds them queued.
                        self.tails.publish(first - 1, last, &outcome.committed);
                        raise(&self.last_seq, last);
                    }
                    if outcome.depth != 0 {
                        self.depth.send_modify(|d| *d += outcome.depth);
                    }
                    for (done, n) in replies.purged.into_iter().zip(outcome.purged) {
                        let _ = done.send(n);
                    }
                    for (done, taken) in replies.redriven.into_iter().zip(outcome.redriven) {
                        let _ = done.send(taken);
                    }
                    if close {
                        return replies.done;
                    }
                    for done in replies.done {
                        let _ = done.send(());
                    }
                }
                // Callers waiting on this batch see `Stopped`.
                Err(e) => {
                    tracing::error!("outbox write failed: {}", describe(&e));
                    if close {
                        return Vec::new();
                    }
                }
            }
        }
    }

    /// Commits `steps` in one transaction, trying again on a new connection while the failure
    /// is one that passes, until it commits or the outbox is closing.
    async fn commit(
        &mut self,
        steps: &[Step],
        lazy: bool,
    ) -> Result<Outcome, tokio_postgres::Error> {
        let token = rand::random::<i64>();
        self.unconfirmed = None;
        let mut backoff = Backoff::default();
        let mut failures = 0u32;
        loop {
            let error = match self.connected().await {
                Ok(()) => match self.timed_commit(steps, lazy, token).await {
                    Ok(outcome) => {
                        if failures > 0 {
                            tracing::info!(failures, "writing to PostgreSQL again");
                        }
                        return Ok(outcome);
                    }
                    Err(e) => e,
                },
                Err(e) => e,
            };
            let transient = match &self.connection {
                Some((client, _)) => is_transient(&error, client),
                None => true,
            };
            if !transient || self.closing.is_cancelled() {
                return Err(error);
            }
            if needs_new_session(&error) {
                self.connection = None;
            }
            failures += 1;
            let wait = backoff.next();
            tracing::warn!(
                retry_in = ?wait,
                "cannot write to PostgreSQL, trying again: {}",
                describe(&error)
            );
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.closing.cancelled() => return Err(error),
            }
        }
    }

    /// Makes sure there is a live connection with its statements prepared.
    async fn connected(&mut self) -> Result<(), tokio_postgres::Error> {
        if let Some((client, _)) = &self.connection
            && !client.is_closed()
        {
            return Ok(());
        }
        self.connection = None;
        let client = self.link.connect().await?;
        let sql = Sql::prepare(&client).await?;
        self.connection = Some((client, sql));
        Ok(())
    }

    /// [`Writer::try_commit`], reporting how long it took when it committed.
    async fn timed_commit(
        &mut self,
        steps: &[Step],
        lazy: bool,
        token: i64,
    ) -> Result<Outcome, tokio_postgres::Error> {
        let started = Instant::now();
        let outcome = self.try_commit(steps, lazy, token).await?;
        self.commit_times.observe(started.elapsed());
        Ok(outcome)
    }

    async fn try_commit(
        &mut self,
        steps: &[Step],
        lazy: bool,
        token: i64,
    ) -> Result<Outcome, tokio_postgres::Error> {
        let (client, sql) = self.connection.as_mut().expect("connected");
        let txn = client.transaction().await?;
        if lazy {
            txn.batch_execute("SET LOCAL synchronous_commit = off")
                .await?;
        }
        let last: i64 = txn.query_one(&sql.lock_meta, &[]).await?.get(0);
        if last == token
            && let Some(outcome) = self.unconfirmed.take()
        {
            // The last try committed; only its reply was lost.
            return Ok(outcome);
        }
        txn.execute(&sql.set_token, &[&token]).await?;
        let outcome = execute(&txn, sql, steps).await?;
        if let Some(sender) = outcome.notifier {
            // Before the commit, which delivers the notification to the listener.
            self.notifier
                .store(sender, std::sync::atomic::Ordering::Release);
        }
        self.unconfirmed = Some(outcome);
        txn.commit().await?;
        Ok(self.unconfirmed.take().expect("kept until committed"))
    }

    /// Sets the depth to the count of pending rows, which other processes may have changed.
    async fn refresh_depth(&mut self) {
        if self.connected().await.is_err() {
            return;
        }
        let (client, _) = self.connection.as_ref().expect("connected");
        if let Ok(row) = client.query_one("SELECT count(*) FROM pending", &[]).await {
            self.depth.send_if_modified(|d| {
                let count: i64 = row.get(0);
                std::mem::replace(d, count) != count
            });
        }
    }
}

/// Takes what has queued up after `first`, up to [`GROUP_COMMIT`] writes. While they are all
/// lazy, waits up to [`LAZY_WINDOW`] (from `first`) for more; a write someone waits for ends
/// the wait.
async fn gather(queue: &mut mpsc::UnboundedReceiver<Write>, first: Write) -> Vec<Write> {
    let deadline = Instant::now() + LAZY_WINDOW;
    let mut lazy = first.is_lazy();
    let mut batch = vec![first];
    while batch.len() < GROUP_COMMIT {
        let next = match queue.try_recv() {
            Ok(write) => write,
            Err(_) if lazy => match tokio::time::timeout_at(deadline, queue.recv()).await {
                Ok(Some(write)) => write,
                _ => break,
            },
            Err(_) => break,
        };
        lazy &= next.is_lazy();
        batch.push(next);
    }
    batch
}

/// Turns writes into steps (runs of completions or attempts become one step each) and the
/// replies to send once they are committed.
fn plan(batch: Vec<Write>) -> (Vec<Step>, Replies) {
    let mut steps = Vec::new();
    let mut replies = Replies::default();
    for write in batch {
        match write {
            Write::Accept(accepted, done) => {
                steps.push(Step::Accept(serialise(accepted)));
                replies.done.push(done);
            }
            Write::Attempted {
                endpoint,
                seq,
                attempts,
                first_ms,
            } => match steps.last_mut() {
                Some(Step::Attempted(run)) => run.push((endpoint, seq, attempts, first_ms)),
                _ => steps.push(Step::Attempted(vec![(endpoint, seq, attempts, first_ms)])),
            },
            Write::Complete { endpoint, seq } => match steps.last_mut() {
                Some(Step::Complete(run)) => run.push((endpoint, seq)),
                _ => steps.push(Step::Complete(vec![(endpoint, seq)])),
            },
            Write::Purge(endpoint, done) => {
                steps.push(Step::Purge(endpoint));
                replies.purged.push(done);
            }
            Write::ClearCheckpoint(key, done) => {
                steps.push(Step::ClearCheckpoint(key));
                replies.done.push(done);
            }
            Write::DeadLetter(letter, done) => {
                steps.push(Step::DeadLetter(letter));
                replies.done.push(done);
            }
            Write::Redrive(letters, done) => {
                steps.push(Step::Redrive(redrive(letters)));
                replies.redriven.push(done);
            }
            Write::Flush { done, .. } => replies.done.push(done),
            Write::RefreshDepth => {}
        }
    }
    (steps, replies)
}
