//! Hears of events accepted by any process: `LISTEN` on a connection of its own, and a poll
//! every [`POLL`] in case a notification is missed. After each (re)connection it wakes the
//! delivery workers, since it cannot know what it missed meanwhile, and counts the
//! reconnection: a database that went down may have lost the last lazy commits (completions
//! are committed without waiting for the disk), so the workers read their endpoints' pending
//! rows again from the start. When another process
//! accepted events (a router, or `dead-letters redrive`), it has the writer count the pending
//! rows again, so that this process's depth (and a replay's wait for it to drain) includes
//! them.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use super::link::{Backoff, Link, describe};
use super::writer::Write;
use super::{CHANNEL, raise};

/// How often the last sequence number is read, besides notifications.
const POLL: Duration = Duration::from_secs(5);

/// Keeps `last_seq` current until `stop` is cancelled.
pub(super) async fn run(
    link: Link,
    last_seq: Arc<watch::Sender<u64>>,
    reconnects: watch::Sender<u64>,
    writes: mpsc::UnboundedSender<Write>,
    stop: CancellationToken,
) {
    // A higher sequence number than this process knows was accepted elsewhere.
    let raise = |seq| {
        if raise(&last_seq, seq) {
            let _ = writes.send(Write::RefreshDepth);
        }
    };
    let mut backoff = Backoff::default();
    let mut first = true;
    loop {
        let connected = tokio::select! {
            connected = listen(&link) => connected,
            () = stop.cancelled() => return,
        };
        let (client, mut notes) = match connected {
            Ok(listening) => listening,
            Err(e) => {
                tracing::debug!("cannot listen for accepted events: {}", describe(&e));
                tokio::select! {
                    () = tokio::time::sleep(backoff.next()) => continue,
                    () = stop.cancelled() => return,
                }
            }
        };
        backoff = Backoff::default();
        if !std::mem::take(&mut first) {
            reconnects.send_modify(|n| *n += 1);
        }
        if let Ok(seq) = last(&client).await {
            raise(seq);
        }
        last_seq.send_modify(|_| {});
        let mut poll = tokio::time::interval(POLL);
        loop {
            tokio::select! {
                note = notes.recv() => match note {
                    Some(payload) => {
                        if let Ok(seq) = payload.parse() {
                            raise(seq);
                        }
                    }
                    None => break,
                },
                _ = poll.tick() => match last(&client).await {
                    Ok(seq) => raise(seq),
                    Err(_) => break,
                },
                () = stop.cancelled() => return,
            }
        }
    }
}

/// A connection listening on [`CHANNEL`], with its notifications' payloads.
async fn listen(
    link: &Link,
) -> Result<(Client, tokio::sync::mpsc::UnboundedReceiver<String>), tokio_postgres::Error> {
    let (client, notes) = link.connect_listening().await?;
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    Ok((client, notes))
}

/// The highest sequence number stored.
async fn last(client: &Client) -> Result<u64, tokio_postgres::Error> {
    let row = client
        .query_one("SELECT coalesce(max(seq), 0) FROM events", &[])
        .await?;
    Ok(row.get::<_, i64>(0) as u64)
}
