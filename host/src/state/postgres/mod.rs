//! The PostgreSQL backend: the outbox and the dead letters as tables of one database
//! (`schema.sql`, created on open), so that any process reaching it continues where the last
//! one stopped: the same sequence numbers, pending deliveries, checkpoints and workflow states.
//!
//! A thread of its own runs three connections: the [`writer`] (every write, group committed),
//! the [`reader`] (the outbox's reads, which block their caller) and [`listen`] (events other
//! processes accept). Each reconnects with backoff when its connection is lost: writes wait
//! and are tried again, so `accept` returns only once committed and nothing is lost; reads
//! wait up to a patience that suits their caller. The URL, which may hold a password, is never
//! logged: errors say what failed, never where.
//!
//! The console's delivery history, when it is on, is the `delivery_history` table, written by a
//! thread and connection of its own ([`history`]).

pub(crate) mod claims;
mod column;
mod dead_letters;
mod history;
mod link;
mod listen;
mod reader;
mod steps;
pub(crate) mod tls;
mod writer;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::SyncSender;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

pub(crate) use self::claims::Claims;
pub(crate) use self::dead_letters::RedriveLetter;
use self::link::{Backoff, Link, describe, is_tls_refusal, is_transient, parse_url};
use self::reader::{Job, Reader};
use self::tls::DatabaseTls;
use self::writer::{Letter, Write, Writer};
use super::dead_letter::DeadLetter;
use super::handoff::Tails;
use super::outbox::{Backlog, CommitTimes, OutboxError, PendingDelivery, Result};
use crate::model::secret::Secret;

/// The tables, created on open.
const SCHEMA: &str = include_str!("schema.sql");

/// The schema version this build writes; a database with a newer one is refused.
/// 2: `delivery_claims` and `delivery_replicas`, so that every replica delivers.
/// 3: `delivery_history`, so that every replica's console shows every replica's deliveries.
/// 4: events stored as binary records instead of JSON (`events.event`, see [`column`]).
const SCHEMA_VERSION: i32 = 4;

/// Key of the advisory lock that serialises schema creation between processes.
const SCHEMA_LOCK: i64 = 0x6b66_7072_6f75_7465;

/// The channel on which each accept notifies its last sequence number.
const CHANNEL: &str = "kfp_event_router_accepted";

/// How often the writer, when idle, counts the pending rows again (another process may have
/// changed them).
const DEPTH_REFRESH: Duration = Duration::from_secs(5);

/// How long opening, and the reads made while starting, wait for the server.
const STARTUP_PATIENCE: Duration = Duration::from_secs(30);

/// How long a delivery worker's read waits for the server (on a blocking thread).
const READ_PATIENCE: Duration = Duration::from_secs(30);

/// How long a read made from async code waits: it holds a runtime thread meanwhile.
const QUICK_PATIENCE: Duration = Duration::from_secs(2);

/// Checks a `state.url` for the config: it parses, and asks for nothing unsupported.
pub(crate) fn check_url(url: &Secret) -> Result<(), String> {
    parse_url(url).map(drop)
}

impl From<tokio_postgres::Error> for OutboxError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Postgres(describe(&e))
    }
}

/// A handle to the PostgreSQL outbox; cheap to clone.
#[derive(Clone)]
pub(crate) struct Postgres {
    writes: mpsc::UnboundedSender<Write>,
    jobs: mpsc::UnboundedSender<Job>,
    last_seq: watch::Receiver<u64>,
    reconnects: watch::Receiver<u64>,
    depth: Arc<watch::Sender<i64>>,
    closing: CancellationToken,
    /// For the claims' connections (boxed: a connection config is large).
    link: Arc<Link>,
    tails: Tails,
    commit_times: CommitTimes,
}

/// Where an opened database stands.
struct Start {
    last_seq: u64,
    depth: i64,
}

impl Postgres {
    /// Connects to the database at `url` (waiting up to [`STARTUP_PATIENCE`] for it), over
    /// `tls` as the URL's `sslmode` says, creates the tables when needed and starts the
    /// connections' thread.
    pub(crate) fn open(url: &Secret, tls: &DatabaseTls) -> Result<Self> {
        let config = parse_url(url).map_err(OutboxError::Unusable)?;
        let tls = tls.clone();
        let (ready, opened) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("outbox-postgres".into())
            .spawn(move || serve(Link::new(config, tls), ready))
            .expect("spawning a thread");
        opened.recv().map_err(|_| OutboxError::Stopped)?
    }

    /// See [`Outbox::accept`](crate::state::Outbox::accept). Waits first, briefly, for a
    /// worker with room for the hand-off (see [`Tails::room`]).
    pub(super) async fn accept(&self, batch: super::outbox::AcceptBatch) -> Result<()> {
        self.tails.room().await;
        let (done, wait) = oneshot::channel();
        self.send(Write::Accept(batch, done))?;
        wait.await.map_err(|_| OutboxError::Stopped)
    }

    /// See [`Outbox::attempted`](crate::state::Outbox::attempted).
    pub(super) fn attempted(&self, endpoint: &str, seq: u64, attempts: u32, first_ms: u64) {
        let _ = self.send(Write::Attempted {
            endpoint: endpoint.to_owned(),
            seq,
            attempts,
            first_ms,
        });
    }

    /// See [`Outbox::complete`](crate::state::Outbox::complete).
    pub(super) fn complete(&self, endpoint: &str, seq: u64) {
        let _ = self.send(Write::Complete {
            endpoint: endpoint.to_owned(),
            seq,
        });
    }

    /// See [`Outbox::purge`](crate::state::Outbox::purge).
    pub(super) async fn purge(&self, endpoint: &str) -> Result<u64> {
        let (done, wait) = oneshot::channel();
        self.send(Write::Purge(endpoint.to_owned(), done))?;
        wait.await.map_err(|_| OutboxError::Stopped)
    }

    /// See [`Outbox::clear_checkpoint`](crate::state::Outbox::clear_checkpoint).
    pub(super) async fn clear_checkpoint(&self, key: &str) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.send(Write::ClearCheckpoint(key.to_owned(), done))?;
        wait.await.map_err(|_| OutboxError::Stopped)
    }

    /// Inserts a dead letter (`json` is the whole of it) into `dead_letters`, durably.
    pub(super) async fn dead_letter(&self, letter: &DeadLetter<'_>, json: String) -> Result<()> {
        let (done, wait) = oneshot::channel();
        let row = Letter {
            at: letter.time.clone(),
            endpoint: letter.endpoint.to_owned(),
            webhook_id: letter.webhook_id.to_owned(),
            json,
        };
        self.send(Write::DeadLetter(row, done))?;
        wait.await.map_err(|_| OutboxError::Stopped)
    }

    /// Starts claiming workflows to deliver, as `owner`, with claims that last `ttl` (see
    /// [`claims`]).
    pub(super) fn claims(&self, owner: String, ttl: Duration) -> Claims {
        Claims::start(Link::clone(&self.link), owner, ttl)
    }

    /// Where the writer reports its commits' times.
    pub(super) fn commit_times(&self) -> &CommitTimes {
        &self.commit_times
    }

    /// Where the writer hands each endpoint's deliveries that this process accepted, once
    /// committed.
    pub(super) fn tails(&self) -> &Tails {
        &self.tails
    }

    /// Commits what is queued (completions included), then deletes this replica's claims.
    pub(super) async fn release(&self, claims: Claims) {
        let _ = self.flush().await;
        claims.release(&self.link).await;
    }

    /// Waits until every write queued so far is committed.
    pub(super) async fn flush(&self) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.send(Write::Flush { done, close: false })?;
        wait.await.map_err(|_| OutboxError::Stopped)
    }

    /// Commits what is queued, then closes the connections (a try that fails meanwhile is not
    /// made again).
    pub(super) async fn close(self) -> Result<()> {
        self.closing.cancel();
        let (done, wait) = oneshot::channel();
        self.send(Write::Flush { done, close: true })?;
        wait.await.map_err(|_| OutboxError::Stopped)
    }

    /// See [`Outbox::checkpoint`](crate::state::Outbox::checkpoint).
    pub(super) fn checkpoint(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_owned();
        self.read(STARTUP_PATIENCE, move |client| {
            let key = key.clone();
            async move {
                let row = client
                    .query_opt("SELECT value FROM checkpoints WHERE key = $1", &[&key])
                    .await?;
                Ok(row.map(|row| row.get(0)))
            }
        })
    }

    /// See [`Outbox::workflows`](crate::state::Outbox::workflows).
    pub(super) fn workflows(&self) -> Result<Vec<(String, Vec<u8>)>> {
        self.read(STARTUP_PATIENCE, |client| async move {
            let rows = client
                .query("SELECT uid, state FROM workflows", &[])
                .await?;
            Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
        })
    }

    /// See [`Outbox::pending`](crate::state::Outbox::pending): with `buckets`, only the
    /// deliveries of workflows in those buckets (see [`claims`]).
    pub(super) fn pending(
        &self,
        endpoint: &str,
        after: u64,
        limit: usize,
        buckets: Option<u64>,
    ) -> Result<Vec<PendingDelivery>> {
        let endpoint = endpoint.to_owned();
        let rows = self.read(READ_PATIENCE, move |client| {
            let endpoint = endpoint.clone();
            async move {
                let after = after.min(i64::MAX as u64) as i64;
                let limit = limit as i64;
                let bucket = claims::BUCKET_OF;
                // `e.seq > $2` says again what the join implies, so that the planner starts
                // its scan of `events` at `$2`: without it a merge join walks every older
                // index entry, dead ones included, and each batch costs O(outbox).
                match buckets {
                    None => {
                        client
                            .query(
                                &format!(
                                    "SELECT p.seq, p.attempts, p.first_attempt_ms, e.accepted_ms, \
                                     e.event, {bucket} FROM pending p JOIN events e ON e.seq = p.seq \
                                     WHERE p.endpoint = $1 AND p.seq > $2 AND e.seq > $2 \
                                     ORDER BY p.seq LIMIT $3"
                                ),
                                &[&endpoint, &after, &limit],
                            )
                            .await
                    }
                    Some(mask) => {
                        client
                            .query(
                                &format!(
                                    "SELECT p.seq, p.attempts, p.first_attempt_ms, e.accepted_ms, \
                                     e.event, {bucket} FROM pending p JOIN events e ON e.seq = p.seq \
                                     WHERE p.endpoint = $1 AND p.seq > $2 AND e.seq > $2 AND {bucket} = ANY($4) \
                                     ORDER BY p.seq LIMIT $3"
                                ),
                                &[&endpoint, &after, &limit, &claims::buckets(mask)],
                            )
                            .await
                    }
                }
            }
        })?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let seq = row.get::<_, i64>(0) as u64;
            let event = match column::read(row.get(4)) {
                Ok(event) => event,
                Err(e) => {
                    tracing::error!(seq, "outbox entry unreadable, skipped: {e}");
                    continue;
                }
            };
            out.push(PendingDelivery {
                seq,
                attempts: row.get::<_, i32>(1) as u32,
                first_attempt_ms: row.get::<_, i64>(2) as u64,
                accepted_us: row.get::<_, i64>(3) as u64 * 1000,
                bucket: row.get::<_, i32>(5) as u32,
                event: Arc::new(event),
            });
        }
        Ok(out)
    }

    /// See [`Outbox::oldest_pending`](crate::state::Outbox::oldest_pending).
    pub(super) fn oldest_pending(&self) -> Result<Option<u64>> {
        self.read(QUICK_PATIENCE, |client| async move {
            let row = client
                .query_one("SELECT min(seq) FROM pending", &[])
                .await?;
            Ok(row.get::<_, Option<i64>>(0).map(|seq| seq as u64))
        })
    }

    /// See [`Outbox::accepted`](crate::state::Outbox::accepted).
    pub(super) fn accepted(&self) -> watch::Receiver<u64> {
        self.last_seq.clone()
    }

    /// Changes each time the connection to the database is made again after it was lost.
    pub(super) fn reconnects(&self) -> watch::Receiver<u64> {
        self.reconnects.clone()
    }

    /// Deliveries waiting, kept current by the writer.
    pub(super) fn depth_watch(&self) -> &watch::Sender<i64> {
        &self.depth
    }

    /// See [`backlog`](crate::state::outbox::backlog).
    pub(super) fn backlog(&self) -> Result<HashMap<String, Backlog>> {
        self.read(READ_PATIENCE, |client| async move {
            let rows = client
                .query(
                    "SELECT p.endpoint, count(*), min(e.accepted_ms) \
                     FROM pending p JOIN events e ON e.seq = p.seq GROUP BY p.endpoint",
                    &[],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|row| {
                    let backlog = Backlog {
                        pending: row.get::<_, i64>(1) as u64,
                        oldest_ms: row.get::<_, Option<i64>>(2).map(|ms| ms as u64),
                    };
                    (row.get(0), backlog)
                })
                .collect())
        })
    }

    /// Runs `query` on the reader's connection and blocks until it answers (see
    /// [`Reader::retrying`]).
    fn read<T, F, Fut>(&self, patience: Duration, query: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(Arc<Client>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, tokio_postgres::Error>> + Send + 'static,
    {
        let (answer, answered) = std::sync::mpsc::sync_channel(1);
        let job: Job = Box::new(move |reader| {
            Box::pin(async move {
                let _ = answer.send(reader.retrying(patience, query).await);
            })
        });
        self.jobs.send(job).map_err(|_| OutboxError::Stopped)?;
        answered.recv().map_err(|_| OutboxError::Stopped)?
    }

    fn send(&self, write: Write) -> Result<()> {
        self.writes.send(write).map_err(|_| OutboxError::Stopped)
    }
}

/// Raises `last_seq` to `seq`, waking its receivers, unless it is already there; returns
/// whether it rose.
fn raise(last_seq: &watch::Sender<u64>, seq: u64) -> bool {
    last_seq.send_if_modified(|last| {
        let higher = seq > *last;
        if higher {
            *last = seq;
        }
        higher
    })
}

/// The connections' thread: opens the database, answers `ready`, then runs the writer,
/// reader and listener until the outbox is closed or dropped.
fn serve(link: Link, ready: SyncSender<Result<Postgres>>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building the PostgreSQL runtime");
    let closing = runtime.block_on(async move {
        let start = match setup(&link).await {
            Ok(start) => start,
            Err(e) => {
                let _ = ready.send(Err(e));
                return Vec::new();
            }
        };
        let (writes, queue) = mpsc::unbounded_channel();
        let (jobs, job_queue) = mpsc::unbounded_channel();
        let last_seq = Arc::new(watch::Sender::new(start.last_seq));
        let depth = Arc::new(watch::Sender::new(start.depth));
        let reconnects = watch::Sender::new(0);
        let closing = CancellationToken::new();
        let stop = CancellationToken::new();
        let handle = Postgres {
            writes: writes.clone(),
            jobs,
            last_seq: last_seq.subscribe(),
            reconnects: reconnects.subscribe(),
            depth: Arc::clone(&depth),
            closing: closing.clone(),
            link: Arc::new(link.clone()),
            tails: Tails::default(),
            commit_times: CommitTimes::default(),
        };
        let notifier = Arc::default();
        tokio::spawn(listen::run(
            link.clone(),
            Arc::clone(&last_seq),
            reconnects,
            writes,
            Arc::clone(&notifier),
            stop.clone(),
        ));
        let reader = Arc::new(Reader::new(link.clone(), closing.clone()));
        tokio::spawn(reader.run(job_queue));
        let tails = handle.tails.clone();
        let commit_times = handle.commit_times.clone();
        if ready.send(Ok(handle)).is_err() {
            return Vec::new();
        }
        let replies = Writer::new(
            link,
            last_seq,
            depth,
            notifier,
            tails,
            closing,
            commit_times,
        )
        .run(queue)
        .await;
        stop.cancel();
        replies
    });
    // Closes the connections before telling `close` it is done.
    drop(runtime);
    for done in closing {
        let _ = done.send(());
    }
}

/// Connects (waiting up to [`STARTUP_PATIENCE`]), creates the schema when needed, checks its
/// version, and reads where the outbox stands.
async fn setup(link: &Link) -> Result<Start> {
    let deadline = tokio::time::Instant::now() + STARTUP_PATIENCE;
    let mut backoff = Backoff::default();
    loop {
        let mut client = None;
        let tried = async {
            let c = client.insert(link.connect().await?);
            create_schema(c).await
        }
        .await;
        let error = match tried {
            Ok(Ok(start)) => return Ok(start),
            Ok(Err(unusable)) => return Err(unusable),
            Err(e) => e,
        };
        if is_tls_refusal(&error) {
            return Err(OutboxError::Postgres(format!(
                "{}: a private CA goes in [state.tls] ca",
                describe(&error)
            )));
        }
        let transient = client.as_ref().is_none_or(|c| is_transient(&error, c));
        let wait = backoff.next();
        if !transient || tokio::time::Instant::now() + wait > deadline {
            return Err(error.into());
        }
        tracing::warn!(
            retry_in = ?wait,
            "cannot open the PostgreSQL state, trying again: {}",
            describe(&error)
        );
        tokio::time::sleep(wait).await;
    }
}

/// Creates the tables (once, whichever process comes first) and reads where the outbox
/// stands; `Ok(Err(..))` when the schema is newer than this build.
async fn create_schema(client: &mut Client) -> Result<Result<Start>, tokio_postgres::Error> {
    let txn = client.transaction().await?;
    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await?;
    txn.batch_execute(SCHEMA).await?;
    let version: i32 = txn
        .query_one("SELECT schema_version FROM meta WHERE id = 1", &[])
        .await?
        .get(0);
    txn.commit().await?;
    if version > SCHEMA_VERSION {
        return Ok(Err(OutboxError::Unusable(format!(
            "the database holds schema version {version}, newer than this router's \
             {SCHEMA_VERSION}: run a newer kfp-event-router"
        ))));
    }
    let row = client
        .query_one(
            "SELECT (SELECT coalesce(max(seq), 0) FROM events), (SELECT count(*) FROM pending)",
            &[],
        )
        .await?;
    Ok(Ok(Start {
        last_seq: row.get::<_, i64>(0) as u64,
        depth: row.get(1),
    }))
}
