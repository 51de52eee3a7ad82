//! The console's delivery history as the `delivery_history` table, so that every replica
//! sharing the database shows every replica's deliveries, and a restart keeps them.
//!
//! A writer thread with a connection of its own takes the records queued by
//! [`History::append`](crate::state::History::append) in batches. Each batch is one
//! transaction: it merges the records into the rows already there ([`Record::merge`], as with
//! redb), upserts them, and trims each endpoint it touched to `keep` rows, the most recent by
//! `time_ms`. A batch that fails because the database is out of reach is tried again with
//! backoff for up to [`PATIENCE`], then dropped and counted (`console_history_dropped_total`):
//! delivery never waits for the history, and meanwhile the bounded queue drops what overflows.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use tokio_postgres::Client;

use super::link::{Backoff, Link, describe, is_transient, needs_new_session};
use super::{Postgres, QUICK_PATIENCE};
use crate::state::history::{Record, Write, take_batch};
use crate::state::outbox::Result;
use crate::telemetry::Metrics;

/// How long a batch is tried again while the database is out of reach before it is dropped.
const PATIENCE: Duration = Duration::from_secs(10);

/// Key of the advisory lock each batch takes, so that two replicas never merge into the same
/// row at once.
const HISTORY_LOCK: i64 = 0x6b66_7072_6869_7374;

/// A (endpoint, webhook-id) key.
type Key = (String, String);

impl Postgres {
    /// Starts the history's writer thread, keeping `keep` rows per endpoint; it stops once
    /// every sender is gone.
    pub(crate) fn spawn_history_writer(
        &self,
        queue: Receiver<Write>,
        keep: usize,
        metrics: Arc<Metrics>,
    ) {
        let link = Link::clone(&self.link);
        std::thread::Builder::new()
            .name("history-postgres".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("building the history's runtime");
                let mut client = None;
                while let Ok(first) = queue.recv() {
                    let (records, flushed) = take_batch(first, &queue);
                    let tried =
                        runtime.block_on(write_retrying(&link, &mut client, &records, keep));
                    if let Err(e) = tried {
                        metrics.console_history_dropped.inc_by(records.len() as u64);
                        tracing::warn!("cannot write the console's delivery history: {e}");
                    }
                    for done in flushed {
                        let _ = done.send(());
                    }
                }
            })
            .expect("spawning a thread");
    }

    /// Every record of the history, most recent first.
    pub(crate) fn history(&self) -> Result<Vec<Record>> {
        let rows = self.read(QUICK_PATIENCE, |client| async move {
            client
                .query(
                    "SELECT record FROM delivery_history \
                     ORDER BY time_ms DESC, endpoint, webhook_id DESC",
                    &[],
                )
                .await
        })?;
        Ok(rows
            .iter()
            .filter_map(|row| serde_json::from_str(row.get(0)).ok())
            .collect())
    }
}

/// Writes `records` on `client` (connected again when lost), trying again while the failure
/// may clear, for up to [`PATIENCE`].
async fn write_retrying(
    link: &Link,
    client: &mut Option<Client>,
    records: &[Record],
    keep: usize,
) -> Result<(), String> {
    if records.is_empty() {
        return Ok(());
    }
    let mut last_error = String::new();
    let tries = async {
        let mut backoff = Backoff::default();
        loop {
            if client.as_ref().is_none_or(Client::is_closed) {
                match link.connect().await {
                    Ok(connected) => *client = Some(connected),
                    Err(e) => {
                        last_error = describe(&e);
                        tokio::time::sleep(backoff.next()).await;
                        continue;
                    }
                }
            }
            let connected = client.as_mut().expect("connected");
            match write(connected, records, keep).await {
                Ok(()) => return Ok(()),
                Err(e) if is_transient(&e, connected) => {
                    if needs_new_session(&e) {
                        *client = None;
                    }
                    last_error = describe(&e);
                }
                Err(e) => return Err(describe(&e)),
            }
            tokio::time::sleep(backoff.next()).await;
        }
    };
    let tried = tokio::time::timeout(PATIENCE, tries).await;
    tried.unwrap_or_else(|_| {
        // Whatever the connection was doing is abandoned with it.
        *client = None;
        Err(format!("no answer within {PATIENCE:?}: {last_error}"))
    })
}

/// One batch, in one transaction: merges, upserts, and trims the endpoints it touched.
async fn write(
    client: &mut Client,
    records: &[Record],
    keep: usize,
) -> Result<(), tokio_postgres::Error> {
    let mut merged = merge(records);
    let (endpoints, ids): (Vec<&str>, Vec<&str>) = merged
        .keys()
        .map(|(endpoint, id)| (endpoint.as_str(), id.as_str()))
        .unzip();
    let txn = client.transaction().await?;
    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&HISTORY_LOCK])
        .await?;
    let stored = txn
        .query(
            "SELECT h.record FROM delivery_history h \
             JOIN unnest($1::text[], $2::text[]) AS u(e, w) \
             ON h.endpoint = u.e AND h.webhook_id = u.w",
            &[&endpoints, &ids],
        )
        .await?;
    let mut rows: Vec<Record> = Vec::with_capacity(merged.len());
    for row in &stored {
        let Ok(earlier) = serde_json::from_str::<Record>(row.get(0)) else {
            continue;
        };
        let key = (earlier.endpoint.clone(), earlier.webhook_id.clone());
        if let Some(newer) = merged.remove(&key) {
            rows.push(earlier.merge(newer));
        }
    }
    rows.extend(merged.into_values());
    let endpoints: Vec<&str> = rows.iter().map(|r| r.endpoint.as_str()).collect();
    let ids: Vec<&str> = rows.iter().map(|r| r.webhook_id.as_str()).collect();
    let times: Vec<i64> = rows
        .iter()
        .map(|r| r.time_ms.min(i64::MAX as u64) as i64)
        .collect();
    let json: Vec<String> = rows
        .iter()
        .map(|r| serde_json::to_string(r).expect("records serialise"))
        .collect();
    txn.execute(
        "INSERT INTO delivery_history (endpoint, webhook_id, time_ms, record) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[]) \
         AS u(e, w, t, r) \
         ON CONFLICT (endpoint, webhook_id) \
         DO UPDATE SET time_ms = excluded.time_ms, record = excluded.record",
        &[&endpoints, &ids, &times, &json],
    )
    .await?;
    let touched: Vec<&str> = endpoints
        .iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    txn.execute(
        "DELETE FROM delivery_history h USING ( \
             SELECT endpoint, webhook_id, row_number() OVER ( \
                 PARTITION BY endpoint ORDER BY time_ms DESC, webhook_id DESC) AS n \
             FROM delivery_history WHERE endpoint = ANY($1)) old \
         WHERE h.endpoint = old.endpoint AND h.webhook_id = old.webhook_id AND old.n > $2",
        &[&touched, &(keep.min(i64::MAX as usize) as i64)],
    )
    .await?;
    txn.commit().await
}

/// `records` with those of the same endpoint and webhook-id merged, in order.
fn merge(records: &[Record]) -> HashMap<Key, Record> {
    let mut merged: HashMap<Key, Record> = HashMap::new();
    for record in records {
        let key = (record.endpoint.clone(), record.webhook_id.clone());
        let next = match merged.remove(&key) {
            Some(earlier) => earlier.merge(record.clone()),
            None => record.clone(),
        };
        merged.insert(key, next);
    }
    merged
}
