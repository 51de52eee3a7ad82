//! Hears of events accepted by any process: `LISTEN` on a connection of its own, and a poll
//! every [`POLL`] in case a notification is missed. After each (re)connection it wakes the
//! delivery workers, since it cannot know what it missed meanwhile, and counts the
//! reconnection: a database that went down may have lost the last lazy commits (completions
//! are committed without waiting for the disk), so the workers read their endpoints' pending
//! rows again from the start. When another process
//! accepted events (a router, or `dead-letters redrive`), it has the writer count the pending
//! rows again, so that this process's depth (and a replay's wait for it to drain) includes
//! them. The notifications of this process's own writer, which often arrive before the writer
//! has seen its commit answered, are told apart by their sender and ignored: counting the
//! pending rows reads them all, so doing it at every commit would make each commit's cost
//! grow with the backlog.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use super::link::{Backoff, Link, Note, describe};
use super::writer::Write;
use super::{CHANNEL, raise};

/// How often the last sequence number is read, besides notifications.
const POLL: Duration = Duration::from_secs(5);

/// Keeps `last_seq` current until `stop` is cancelled. `own_writer` holds the server process
/// of this process's writer session (0 before its first notification).
pub(super) async fn run(
    link: Link,
    last_seq: Arc<watch::Sender<u64>>,
    reconnects: watch::Sender<u64>,
    writes: mpsc::UnboundedSender<Write>,
    own_writer: Arc<AtomicI32>,
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
                    Some(note) => {
                        if let Some(seq) = from_elsewhere(&note, &own_writer) {
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

/// A connection listening on [`CHANNEL`], with its notifications.
async fn listen(
    link: &Link,
) -> Result<(Client, tokio::sync::mpsc::UnboundedReceiver<Note>), tokio_postgres::Error> {
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

/// The sequence number `note` announces, unless this process's own writer sent it (or it is
/// not one).
fn from_elsewhere(note: &Note, own_writer: &AtomicI32) -> Option<u64> {
    if note.sender == own_writer.load(Ordering::Acquire) {
        return None;
    }
    note.payload.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(sender: i32, payload: &str) -> Note {
        Note {
            sender,
            payload: payload.to_owned(),
        }
    }

    #[test]
    fn only_other_sessions_notifications_raise_the_last_seq() {
        let own_writer = AtomicI32::new(4242);
        assert_eq!(from_elsewhere(&note(4242, "17"), &own_writer), None);
        assert_eq!(from_elsewhere(&note(5151, "17"), &own_writer), Some(17));
        assert_eq!(from_elsewhere(&note(5151, "garbage"), &own_writer), None);
        // Before the writer's first notification, every notification is another's.
        assert_eq!(
            from_elsewhere(&note(4242, "3"), &AtomicI32::new(0)),
            Some(3)
        );
    }
}
