//! What one write transaction runs: the queued writes as steps, each sent as one statement
//! (consecutive completions or attempts together, as arrays), and the statements themselves.
//! A step can be sent again after a failure: it owns its data.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio_postgres::{Client, Statement, Transaction};

use super::CHANNEL;
use super::claims::BUCKET_OF;
use super::column;
use super::dead_letters::RedriveLetter;
use super::writer::Letter;
use crate::model::clock::now_us;
use crate::model::event::RouterEvent;
use crate::state::handoff::Committed;
use crate::state::outbox::AcceptBatch;

/// One statement's worth of a transaction, ready to be sent (again, after a failure).
pub(super) enum Step {
    /// One accept.
    Accept(Accepted),
    /// Consecutive failed attempts: (endpoint, seq, attempts, first attempt ms).
    Attempted(Vec<(String, u64, u32, u64)>),
    /// Consecutive completions: (endpoint, seq).
    Complete(Vec<(String, u64)>),
    /// An endpoint whose deliveries are dropped.
    Purge(String),
    /// A source position to forget.
    ClearCheckpoint(String),
    /// A dead letter.
    DeadLetter(Letter),
    /// Dead letters to take out and accept again.
    Redrive(Redrive),
}

/// Dead letters to redrive, serialised: per letter its rows, and its event as an accept.
pub(super) struct Redrive {
    /// Each letter's rows in `dead_letters`.
    rows: Vec<Vec<i64>>,
    /// Each letter's event, for its endpoint alone.
    accepted: Accepted,
}

/// An [`AcceptBatch`], serialised: the events as parallel columns.
pub(super) struct Accepted {
    /// When it was accepted (Unix µs; stored in whole milliseconds).
    accepted_us: u64,
    /// Each event's ordering key.
    keys: Vec<String>,
    /// Each event, as its [column](super::column).
    events: Vec<Vec<u8>>,
    /// Each event, for the [hand-off](crate::state::handoff).
    kept: Vec<Arc<RouterEvent>>,
    /// Each event's endpoints.
    endpoints: Vec<Vec<String>>,
    /// Workflows whose state is stored...
    stored_uids: Vec<String>,
    /// ...and those states.
    stored_states: Vec<Vec<u8>>,
    /// Workflows whose state is removed.
    removed_uids: Vec<String>,
    /// The source position after the events: (key, value).
    checkpoint: Option<(String, String)>,
}

impl Accepted {
    /// No events yet, accepted now, with the source position after them.
    fn new(checkpoint: Option<(String, String)>) -> Self {
        Self {
            accepted_us: now_us(),
            keys: Vec::new(),
            events: Vec::new(),
            kept: Vec::new(),
            endpoints: Vec::new(),
            stored_uids: Vec::new(),
            stored_states: Vec::new(),
            removed_uids: Vec::new(),
            checkpoint,
        }
    }

    /// Adds `event`, for `endpoints`.
    fn push(&mut self, event: RouterEvent, endpoints: Vec<String>) {
        self.keys.push(event.ordering_key());
        self.events
            .push(column::write(self.accepted_us / 1000, &event));
        self.kept.push(Arc::new(event));
        self.endpoints.push(endpoints);
    }
}

/// What a committed transaction changed.
#[derive(Default)]
pub(super) struct Outcome {
    /// The highest sequence number given to an accepted event.
    pub(super) last_seq: Option<u64>,
    /// The lowest sequence number given to an accepted event.
    pub(super) first_seq: Option<u64>,
    /// The accepted events, for the [hand-off](crate::state::handoff).
    pub(super) committed: Vec<Committed>,
    /// How many pending deliveries were added (less those removed).
    pub(super) depth: i64,
    /// How many deliveries each purge removed, in order.
    pub(super) purged: Vec<u64>,
    /// Which letters each redrive took (those whose rows were still there), in order.
    pub(super) redriven: Vec<Vec<bool>>,
    /// The server process that sent this transaction's notification, when it sent one.
    pub(super) notifier: Option<i32>,
}

/// The statements, prepared on each new connection.
pub(super) struct Sql {
    /// Locks the `meta` row; answers the last transaction's token.
    pub(super) lock_meta: Statement,
    /// Stores this transaction's token.
    pub(super) set_token: Statement,
    next_seqs: Statement,
    insert_events: Statement,
    insert_pending: Statement,
    store_workflows: Statement,
    remove_workflows: Statement,
    set_checkpoint: Statement,
    clear_checkpoint: Statement,
    attempted: Statement,
    complete: Statement,
    purge: Statement,
    release: Statement,
    dead_letter: Statement,
    take_dead_letters: Statement,
    notify: Statement,
}

impl Sql {
    pub(super) async fn prepare(client: &Client) -> Result<Self, tokio_postgres::Error> {
        let p = |sql| client.prepare(sql);
        Ok(Self {
            lock_meta: p("SELECT last_commit FROM meta WHERE id = 1 FOR UPDATE").await?,
            set_token: p("UPDATE meta SET last_commit = $1 WHERE id = 1").await?,
            next_seqs: p("SELECT nextval('event_seq') FROM generate_series(1, $1::bigint)").await?,
            insert_events: p(&format!(
                "INSERT INTO events AS e (seq, accepted_ms, ordering_key, event) \
                 SELECT s, $2, k, v FROM unnest($1::bigint[], $3::text[], $4::bytea[]) AS u(s, k, v) \
                 RETURNING e.seq, {BUCKET_OF}"
            ))
            .await?,
            insert_pending: p("INSERT INTO pending (endpoint, seq) \
                 SELECT * FROM unnest($1::text[], $2::bigint[])")
            .await?,
            store_workflows: p("INSERT INTO workflows (uid, state) \
                 SELECT * FROM unnest($1::text[], $2::bytea[]) \
                 ON CONFLICT (uid) DO UPDATE SET state = excluded.state")
            .await?,
            remove_workflows: p("DELETE FROM workflows WHERE uid = ANY($1::text[])").await?,
            set_checkpoint: p("INSERT INTO checkpoints (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .await?,
            clear_checkpoint: p("DELETE FROM checkpoints WHERE key = $1").await?,
            attempted: p("UPDATE pending p SET attempts = u.a, first_attempt_ms = u.f \
                 FROM unnest($1::text[], $2::bigint[], $3::int[], $4::bigint[]) AS u(e, s, a, f) \
                 WHERE p.endpoint = u.e AND p.seq = u.s")
            .await?,
            complete: p("DELETE FROM pending p USING unnest($1::text[], $2::bigint[]) AS u(e, s) \
                 WHERE p.endpoint = u.e AND p.seq = u.s RETURNING p.seq")
            .await?,
            purge: p("DELETE FROM pending WHERE endpoint = $1 RETURNING seq").await?,
            release: p("DELETE FROM events e WHERE e.seq = ANY($1::bigint[]) \
                 AND NOT EXISTS (SELECT 1 FROM pending p WHERE p.seq = e.seq)")
            .await?,
            dead_letter: p("INSERT INTO dead_letters (at, endpoint, webhook_id, letter) \
                 VALUES ($1::text::timestamptz, $2, $3, $4)")
            .await?,
            take_dead_letters: p("DELETE FROM dead_letters WHERE id = ANY($1::bigint[]) RETURNING id")
                .await?,
            notify: p("SELECT pg_backend_pid() FROM pg_notify($1, $2)").await?,
        })
    }
}

/// Serialises an accept: events routed nowhere are left out, and of several states of one
/// workflow the last counts.
pub(super) fn serialise(batch: AcceptBatch) -> Accepted {
    let mut accepted = Accepted::new(batch.checkpoint.map(|c| (c.key, c.value)));
    for accept in batch.events.into_iter().filter(|a| !a.endpoints.is_empty()) {
        accepted.push(accept.event, accept.endpoints);
    }
    let latest: HashMap<String, Option<Vec<u8>>> = batch.workflows.into_iter().collect();
    for (uid, state) in latest {
        match state {
            Some(state) => {
                accepted.stored_uids.push(uid);
                accepted.stored_states.push(state);
            }
            None => accepted.removed_uids.push(uid),
        }
    }
    accepted
}

/// Serialises a redrive: each letter's event becomes an accept for its endpoint alone.
pub(super) fn redrive(letters: Vec<RedriveLetter>) -> Redrive {
    let mut accepted = Accepted::new(None);
    let mut rows = Vec::with_capacity(letters.len());
    for letter in letters {
        accepted.push(letter.event, vec![letter.endpoint]);
        rows.push(letter.rows);
    }
    Redrive { rows, accepted }
}

/// Deletes a redrive's rows and accepts the events of the letters whose rows were still
/// there.
async fn take_and_accept(
    txn: &Transaction<'_>,
    sql: &Sql,
    r: &Redrive,
    outcome: &mut Outcome,
) -> Result<(), tokio_postgres::Error> {
    let all: Vec<i64> = r.rows.iter().flatten().copied().collect();
    let deleted: HashSet<i64> = txn
        .query(&sql.take_dead_letters, &[&all])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let taken: Vec<bool> = r
        .rows
        .iter()
        .map(|rows| rows.iter().any(|row| deleted.contains(row)))
        .collect();
    let a = &r.accepted;
    let pick = |i: usize| taken[i];
    let accepted = Accepted {
        accepted_us: a.accepted_us,
        keys: keep(&a.keys, pick),
        events: keep(&a.events, pick),
        kept: keep(&a.kept, pick),
        endpoints: keep(&a.endpoints, pick),
        stored_uids: Vec::new(),
        stored_states: Vec::new(),
        removed_uids: Vec::new(),
        checkpoint: None,
    };
    accept(txn, sql, &accepted, outcome).await?;
    outcome.redriven.push(taken);
    Ok(())
}

/// The items of `all` whose index `pick` takes.
fn keep<T: Clone>(all: &[T], pick: impl Fn(usize) -> bool) -> Vec<T> {
    all.iter()
        .enumerate()
        .filter(|(i, _)| pick(*i))
        .map(|(_, item)| item.clone())
        .collect()
}

/// Runs the steps in `txn`, in order.
pub(super) async fn execute(
    txn: &Transaction<'_>,
    sql: &Sql,
    steps: &[Step],
) -> Result<Outcome, tokio_postgres::Error> {
    let mut outcome = Outcome::default();
    for step in steps {
        match step {
            Step::Accept(a) => accept(txn, sql, a, &mut outcome).await?,
            Step::Attempted(run) => {
                let latest: HashMap<(&str, u64), (u32, u64)> = run
                    .iter()
                    .map(|(e, s, a, f)| ((e.as_str(), *s), (*a, *f)))
                    .collect();
                let (mut endpoints, mut seqs, mut attempts, mut firsts) =
                    (Vec::new(), Vec::new(), Vec::new(), Vec::new());
                for ((endpoint, seq), (a, f)) in latest {
                    endpoints.push(endpoint);
                    seqs.push(seq as i64);
                    attempts.push(a as i32);
                    firsts.push(f as i64);
                }
                txn.execute(&sql.attempted, &[&endpoints, &seqs, &attempts, &firsts])
                    .await?;
            }
            Step::Complete(run) => {
                let endpoints: Vec<&str> = run.iter().map(|(e, _)| e.as_str()).collect();
                let seqs: Vec<i64> = run.iter().map(|(_, s)| *s as i64).collect();
                let done = txn.query(&sql.complete, &[&endpoints, &seqs]).await?;
                let done: Vec<i64> = done.iter().map(|row| row.get(0)).collect();
                txn.execute(&sql.release, &[&done]).await?;
                outcome.depth -= done.len() as i64;
            }
            Step::Purge(endpoint) => {
                let done = txn.query(&sql.purge, &[endpoint]).await?;
                let done: Vec<i64> = done.iter().map(|row| row.get(0)).collect();
                txn.execute(&sql.release, &[&done]).await?;
                outcome.depth -= done.len() as i64;
                outcome.purged.push(done.len() as u64);
            }
            Step::ClearCheckpoint(key) => {
                txn.execute(&sql.clear_checkpoint, &[key]).await?;
            }
            Step::DeadLetter(l) => {
                txn.execute(
                    &sql.dead_letter,
                    &[&l.at, &l.endpoint, &l.webhook_id, &l.json],
                )
                .await?;
            }
            Step::Redrive(r) => take_and_accept(txn, sql, r, &mut outcome).await?,
        }
    }
    if let Some(seq) = outcome.last_seq {
        let row = txn
            .query_one(&sql.notify, &[&CHANNEL, &seq.to_string()])
            .await?;
        outcome.notifier = Some(row.get(0));
    }
    Ok(outcome)
}

/// Stores one accept: workflow states, events with fresh sequence numbers, their pending rows
/// and the checkpoint.
async fn accept(
    txn: &Transaction<'_>,
    sql: &Sql,
    a: &Accepted,
    outcome: &mut Outcome,
) -> Result<(), tokio_postgres::Error> {
    if !a.stored_uids.is_empty() {
        txn.execute(&sql.store_workflows, &[&a.stored_uids, &a.stored_states])
            .await?;
    }
    if !a.removed_uids.is_empty() {
        txn.execute(&sql.remove_workflows, &[&a.removed_uids])
            .await?;
    }
    if !a.events.is_empty() {
        let rows = txn
            .query(&sql.next_seqs, &[&(a.events.len() as i64)])
            .await?;
        let mut seqs: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
        seqs.sort_unstable();
        let inserted = txn
            .query(
                &sql.insert_events,
                &[&seqs, &((a.accepted_us / 1000) as i64), &a.keys, &a.events],
            )
            .await?;
        // Each event's claim bucket, in the order of `seqs` (and so of the events).
        let mut buckets: Vec<(i64, i32)> = inserted
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        buckets.sort_unstable();
        let mut endpoints = Vec::new();
        let mut pending = Vec::new();
        for (seq, names) in seqs.iter().zip(&a.endpoints) {
            for name in names {
                endpoints.push(name.as_str());
                pending.push(*seq);
            }
        }
        txn.execute(&sql.insert_pending, &[&endpoints, &pending])
            .await?;
        outcome.depth += pending.len() as i64;
        for (((seq, bucket), event), endpoints) in buckets.iter().zip(&a.kept).zip(&a.endpoints) {
            outcome.committed.push(Committed {
                seq: *seq as u64,
                accepted_us: a.accepted_us,
                event: Arc::clone(event),
                endpoints: endpoints.clone(),
                bucket: *bucket as u32,
            });
        }
        let (first, last) = (
            seqs[0] as u64,
            *seqs.last().expect("events were numbered") as u64,
        );
        outcome.first_seq = Some(outcome.first_seq.map_or(first, |f| f.min(first)));
        outcome.last_seq = Some(outcome.last_seq.map_or(last, |l| l.max(last)));
    }
    if let Some((key, value)) = &a.checkpoint {
        txn.execute(&sql.set_checkpoint, &[key, value]).await?;
    }
    Ok(())
}
