//! Delivery claims: which replica delivers which workflows when several share the outbox.
//!
//! Workflows are hashed into [`BUCKETS`] buckets (`hashtext(ordering_key) & 63`, computed by
//! the server, so every replica agrees). A replica delivers the pending rows of the buckets it
//! holds in `delivery_claims`, and only those: a workflow's deliveries to an endpoint are made
//! by one replica at a time, in sequence order, as within one process. Each round (every third
//! of the claims' life) a replica renews its heartbeat in `delivery_replicas` and its claims,
//! counts the live replicas, keeps its fair share and takes expired or free buckets up to it.
//! Buckets beyond its share are not renewed, and stop being delivered at once: another takes
//! them once they expire.
//!
//! A replica that cannot renew in time stops delivering every bucket at two thirds of the
//! claims' life, counted from when it sent the last renewal that succeeded, well before
//! another may take them (they expire a whole life after the server received that renewal).
//! On shutdown, once its completions are committed, it deletes its claims and notifies the
//! others on [`RELEASED`], so that they take them at once rather than at their next round.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use super::link::{Link, Note, describe};

/// How many buckets the workflows are hashed into; a claim mask has one bit per bucket.
pub(crate) const BUCKETS: u32 = 64;

/// The SQL expression of a row's bucket, over `events e`.
pub(super) const BUCKET_OF: &str = "(hashtext(e.ordering_key) & 63)";

/// The channel a replica that released its claims notifies: the others run a round at once.
const RELEASED: &str = "kfp_event_router_claims_released";

/// How long a release on shutdown may take.
const RELEASE_PATIENCE: Duration = Duration::from_secs(2);

/// This replica's claims, kept current by a task of their own; [`Claims::release`] ends it.
pub(crate) struct Claims {
    owner: String,
    owned: watch::Receiver<u64>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Claims {
    /// Starts claiming, as `owner`, with claims that last `ttl`.
    pub(super) fn start(link: Link, owner: String, ttl: Duration) -> Self {
        let (sender, owned) = watch::channel(0);
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(link, owner.clone(), ttl, sender, stop.clone()));
        Self {
            owner,
            owned,
            stop,
            task,
        }
    }

    /// The buckets this replica may deliver now (bit `b` set: bucket `b`), changing as it
    /// takes, gives up or loses claims.
    pub(crate) fn owned(&self) -> watch::Receiver<u64> {
        self.owned.clone()
    }

    /// This replica's name in the claims.
    pub(crate) fn owner(&self) -> &str {
        &self.owner
    }

    /// Stops claiming and deletes this replica's claims (once its completions are committed:
    /// call it after delivery has stopped), so that the others take them at once.
    pub(super) async fn release(self, link: &Link) {
        self.stop.cancel();
        let _ = self.task.await;
        let owner = self.owner;
        let released = tokio::time::timeout(RELEASE_PATIENCE, async {
            let client = link.connect().await?;
            client
                .execute("DELETE FROM delivery_claims WHERE owner = $1", &[&owner])
                .await?;
            client
                .execute("DELETE FROM delivery_replicas WHERE owner = $1", &[&owner])
                .await?;
            client.batch_execute(&format!("NOTIFY {RELEASED}")).await
        })
        .await;
        match released {
            Ok(Ok(_)) => tracing::info!(owner, "released the delivery claims"),
            Ok(Err(e)) => tracing::warn!(
                "cannot release the delivery claims, others take them when they expire: {}",
                describe(&e)
            ),
            Err(_) => tracing::warn!(
                "cannot release the delivery claims in time, others take them when they expire"
            ),
        }
    }
}

/// Claims rounds until `stop`; publishes what this replica may deliver on `owned`.
async fn run(
    link: Link,
    owner: String,
    ttl: Duration,
    owned: watch::Sender<u64>,
    stop: CancellationToken,
) {
    let period = ttl / 3;
    // The connection the rounds run on, and the releases it hears of.
    let mut client: Option<(Client, mpsc::UnboundedReceiver<Note>)> = None;
    // Until when the buckets published may be delivered: two thirds of a claim's life after
    // the start of the last round that renewed them.
    let mut deadline: Option<Instant> = None;
    let mut failing = false;
    loop {
        let started = Instant::now();
        let limit = deadline.map_or(period, |d| d.saturating_duration_since(started));
        let held = *owned.borrow();
        let round = async {
            if client.as_ref().is_none_or(|(c, _)| c.is_closed()) {
                let (c, releases) = link.connect_listening().await?;
                c.batch_execute(&format!("LISTEN {RELEASED}")).await?;
                client = Some((c, releases));
            }
            let (c, _) = client.as_ref().expect("connected");
            round(c, &owner, ttl, held).await
        };
        let outcome = tokio::select! {
            outcome = tokio::time::timeout(limit, round) => outcome,
            () = stop.cancelled() => return,
        };
        match outcome {
            Ok(Ok(now_held)) => {
                if failing {
                    tracing::info!("renewing the delivery claims again");
                    failing = false;
                }
                deadline = (now_held != 0).then(|| started + ttl * 2 / 3);
                if now_held != held {
                    tracing::info!(
                        owner,
                        buckets = now_held.count_ones(),
                        "delivering the workflows of {} of {BUCKETS} buckets",
                        now_held.count_ones()
                    );
                }
                owned.send_if_modified(|o| std::mem::replace(o, now_held) != now_held);
            }
            Ok(Err(e)) => {
                client = None;
                if !failing {
                    tracing::warn!("cannot renew the delivery claims: {}", describe(&e));
                    failing = true;
                }
            }
            Err(_) => {
                client = None;
                if !failing {
                    tracing::warn!("cannot renew the delivery claims: no answer in time");
                    failing = true;
                }
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            tracing::warn!(
                owner,
                "stopping delivery: the delivery claims could not be renewed in time, \
                 others take them when they expire"
            );
            deadline = None;
            owned.send_if_modified(|o| std::mem::replace(o, 0) != 0);
        }
        let next = if failing {
            Instant::now() + Duration::from_millis(250).min(period)
        } else {
            started + period
        };
        let next = deadline.map_or(next, |d| next.min(d));
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            // Another replica released its claims (or the connection ended): a round now.
            _ = released(&mut client) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// The next release another replica announces, or the end of the connection; never without
/// one.
async fn released(client: &mut Option<(Client, mpsc::UnboundedReceiver<Note>)>) {
    match client {
        Some((_, releases)) => {
            if releases.recv().await.is_none() {
                *client = None;
            }
        }
        None => std::future::pending().await,
    }
}

/// One round: heartbeat, count the replicas, renew the share of `held` to keep, take free
/// buckets up to the share. Returns the buckets held now.
async fn round(
    client: &Client,
    owner: &str,
    ttl: Duration,
    held: u64,
) -> Result<u64, tokio_postgres::Error> {
    let seconds = ttl.as_secs_f64();
    client
        .execute(
            "INSERT INTO delivery_replicas (owner, expires_at) \
             VALUES ($1, now() + make_interval(secs => $2)) \
             ON CONFLICT (owner) DO UPDATE SET expires_at = excluded.expires_at",
            &[&owner, &seconds],
        )
        .await?;
    client
        .execute(
            "DELETE FROM delivery_replicas WHERE expires_at < now() - interval '1 hour'",
            &[],
        )
        .await?;
    let live: i64 = client
        .query_one(
            "SELECT count(*) FROM delivery_replicas WHERE expires_at > now()",
            &[],
        )
        .await?
        .get(0);
    let share = BUCKETS.div_ceil(live.clamp(1, i64::from(BUCKETS)) as u32);
    let keep = keep_share(held, share);
    let renewed = client
        .query(
            "UPDATE delivery_claims SET expires_at = now() + make_interval(secs => $3) \
             WHERE owner = $1 AND bucket = ANY($2) RETURNING bucket",
            &[&owner, &buckets(keep), &seconds],
        )
        .await?;
    let mut now_held = mask(renewed.iter().map(|row| row.get::<_, i32>(0)));
    let want = share.saturating_sub(now_held.count_ones());
    if want > 0 {
        let taken = client
            .query(
                "WITH free AS ( \
                   SELECT b FROM generate_series(0, $4 - 1) b \
                   WHERE NOT EXISTS ( \
                     SELECT 1 FROM delivery_claims c WHERE c.bucket = b AND c.expires_at > now()) \
                   ORDER BY random() LIMIT $2) \
                 INSERT INTO delivery_claims (bucket, owner, expires_at) \
                 SELECT b, $1, now() + make_interval(secs => $3) FROM free \
                 ON CONFLICT (bucket) DO UPDATE \
                   SET owner = excluded.owner, expires_at = excluded.expires_at \
                   WHERE delivery_claims.expires_at <= now() \
                 RETURNING bucket",
                &[&owner, &i64::from(want), &seconds, &(BUCKETS as i32)],
            )
            .await?;
        now_held |= mask(taken.iter().map(|row| row.get::<_, i32>(0)));
    }
    Ok(now_held)
}

/// The lowest `share` buckets of `held`.
fn keep_share(held: u64, share: u32) -> u64 {
    let mut keep = 0u64;
    let mut rest = held;
    while rest != 0 && keep.count_ones() < share {
        let lowest = rest & rest.wrapping_neg();
        keep |= lowest;
        rest &= !lowest;
    }
    keep
}

/// The buckets of a mask, as SQL wants them.
pub(super) fn buckets(mask: u64) -> Vec<i32> {
    (0..BUCKETS as i32)
        .filter(|b| mask & (1 << b) != 0)
        .collect()
}

/// The mask of some buckets.
fn mask(buckets: impl Iterator<Item = i32>) -> u64 {
    buckets
        .filter(|b| (0..BUCKETS as i32).contains(b))
        .fold(0, |m, b| m | (1 << b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_keeps_its_lowest_buckets_up_to_its_share() {
        assert_eq!(keep_share(0b1011_0110, 2), 0b0000_0110);
        assert_eq!(keep_share(0b1011_0110, 64), 0b1011_0110);
        assert_eq!(keep_share(u64::MAX, 32), u64::from(u32::MAX));
        assert_eq!(keep_share(0, 3), 0);
    }

    #[test]
    fn masks_and_bucket_lists_agree() {
        let held = 0b1000_0000_0000_0101u64 | (1 << 63);
        assert_eq!(buckets(held), vec![0, 2, 15, 63]);
        assert_eq!(mask(buckets(held).into_iter()), held);
    }
}
