//! The kubernetes source's checkpoint: where each watch stands, kept locally and in the cluster.
//!
//! The value is [`Positions`], JSON under the key [`KEY`]. Locally it is stored in the outbox
//! with every batch of events it covers (so after a restart nothing accepted is read twice).
//! The pod's disk may be lost with it, so [`Mirror`] also writes it, at most every few
//! seconds, into a ConfigMap of the router's own namespace. What it writes there is the
//! *delivered* position: the last checkpoint all of whose events every endpoint has had, so a
//! new leader that resumes from it loses nothing even when the old leader's outbox is gone.
//! On start the newer of the two is taken, per watch. Only a `404` means the ConfigMap has no
//! checkpoint: other errors are retried ([`ReadRetry`]), and when they last the start fails
//! rather than take the downtime's Events for history.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::position::Position;
use crate::model::item::{Accepted, Checkpoint};
use crate::state::Outbox;

/// The checkpoint key, in the outbox and in the ConfigMap's `data`.
pub(crate) const KEY: &str = "kubernetes";

/// How many accepted checkpoints the mirror keeps while their events are being delivered;
/// beyond that it thins them out (it then reports a slightly older position, never a newer one).
const QUEUED: usize = 4096;

/// A ConfigMap error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CheckpointError {
    /// The API server refused or failed.
    #[error("checkpoint ConfigMap {name}: {source}")]
    Api {
        /// The ConfigMap's name.
        name: String,
        /// The API error.
        source: kube::Error,
    },
    /// One read took too long.
    #[error("checkpoint ConfigMap {name}: no answer within {after:.1?}")]
    Timeout {
        /// The ConfigMap's name.
        name: String,
        /// How long the read waited.
        after: Duration,
    },
    /// Every read at start failed: where to resume is unknown.
    #[error(
        "cannot read the checkpoint ConfigMap {name} ({attempts} attempts in {elapsed:.1?}); \
         not starting, since without it every Event since the checkpoint would be skipped \
         as history: {last}"
    )]
    Unreadable {
        /// The ConfigMap's name.
        name: String,
        /// How many reads were made.
        attempts: u32,
        /// How long they took in all.
        elapsed: Duration,
        /// The last read's error.
        last: Box<CheckpointError>,
    },
}

/// A checkpoint result.
pub(crate) type Result<T, E = CheckpointError> = std::result::Result<T, E>;

/// Where each watch stands, by scope: a namespace, or `*` for the cluster-wide watch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Positions {
    /// The position of each watch.
    pub(crate) positions: BTreeMap<String, Position>,
}

impl Positions {
    /// Reads a stored value; an unreadable one counts as none (with a warning).
    pub(crate) fn parse(value: &str, from: &str) -> Option<Self> {
        match serde_json::from_str(value) {
            Ok(positions) => Some(positions),
            Err(e) => {
                tracing::warn!("the checkpoint in {from} is unreadable, ignored: {e}");
                None
            }
        }
    }

    /// The checkpoint to store.
    pub(crate) fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            key: KEY.to_owned(),
            value: serde_json::to_string(self).expect("positions serialise"),
        }
    }

    /// Per scope, the later of the two.
    pub(crate) fn newest(self, other: Self) -> Self {
        let mut positions = self.positions;
        for (scope, theirs) in other.positions {
            let merged = match positions.remove(&scope) {
                Some(ours) => ours.max(theirs),
                None => theirs,
            };
            positions.insert(scope, merged);
        }
        Self { positions }
    }
}

/// How the read of the checkpoint ConfigMap at start is retried: exponential waits, all of it
/// bounded in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ReadRetry {
    /// The wait after the first failure, doubled after each further one.
    pub(crate) first_wait: Duration,
    /// The longest wait between two reads.
    pub(crate) max_wait: Duration,
    /// How long one read may take.
    pub(crate) per_read: Duration,
    /// How long the reads and waits may take in all.
    pub(crate) total: Duration,
}

impl ReadRetry {
    /// At start: waits of 0.25, 0.5, 1, 2 and 4 s between reads, then of 8 s; 30 s at most.
    pub(crate) const START: Self = Self {
        first_wait: Duration::from_millis(250),
        max_wait: Duration::from_secs(8),
        per_read: Duration::from_secs(10),
        total: Duration::from_secs(30),
    };
}

/// The checkpoint ConfigMap.
pub(crate) struct ConfigMapStore {
    api: Api<ConfigMap>,
    name: String,
    current: Option<ConfigMap>,
}

impl ConfigMapStore {
    /// The ConfigMap `name` in `namespace`.
    pub(crate) fn new(client: kube::Client, namespace: &str, name: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            current: None,
        }
    }

    fn error(&self, source: kube::Error) -> CheckpointError {
        CheckpointError::Api {
            name: self.name.clone(),
            source,
        }
    }

    /// Reads the stored positions; `None` when there are none yet (the ConfigMap is not
    /// found, or holds no checkpoint). Other errors are retried as `retry` says; when the
    /// reads never succeed, [`CheckpointError::Unreadable`].
    pub(crate) async fn load(&mut self, retry: ReadRetry) -> Result<Option<Positions>> {
        let started = tokio::time::Instant::now();
        let deadline = started + retry.total;
        let mut wait = retry.first_wait;
        let mut attempts = 0;
        self.current = loop {
            attempts += 1;
            let per_read = retry
                .per_read
                .min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            let error = match tokio::time::timeout(per_read, self.api.get_opt(&self.name)).await {
                Ok(Ok(found)) => break found,
                Ok(Err(e)) => self.error(e),
                Err(_) => CheckpointError::Timeout {
                    name: self.name.clone(),
                    after: per_read,
                },
            };
            if tokio::time::Instant::now() + wait >= deadline {
                return Err(CheckpointError::Unreadable {
                    name: self.name.clone(),
                    attempts,
                    elapsed: started.elapsed(),
                    last: Box::new(error),
                });
            }
            tracing::warn!("{error}; reading it again in {wait:.2?}");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(retry.max_wait);
        };
        let value = self
            .current
            .as_ref()
            .and_then(|cm| cm.data.as_ref()?.get(KEY).cloned());
        Ok(value.and_then(|v| Positions::parse(&v, &format!("ConfigMap {}", self.name))))
    }

    /// Writes `value`: an update of the version last read or written (`resourceVersion`
    /// conflicts are retried once, after reading it again), or a create.
    pub(crate) async fn save(&mut self, value: &str) -> Result<()> {
        for attempt in 0..2 {
            let result = match self.current.clone() {
                Some(mut cm) => {
                    cm.data
                        .get_or_insert_default()
                        .insert(KEY.to_owned(), value.to_owned());
                    self.api
                        .replace(&self.name, &PostParams::default(), &cm)
                        .await
                }
                None => {
                    let cm = ConfigMap {
                        metadata: ObjectMeta {
                            name: Some(self.name.clone()),
                            labels: Some(BTreeMap::from([(
                                "app.kubernetes.io/name".to_owned(),
                                "kfp-event-router".to_owned(),
                            )])),
                            ..ObjectMeta::default()
                        },
                        data: Some(BTreeMap::from([(KEY.to_owned(), value.to_owned())])),
                        ..ConfigMap::default()
                    };
                    self.api.create(&PostParams::default(), &cm).await
                }
            };
            match result {
                Ok(cm) => {
                    self.current = Some(cm);
                    return Ok(());
                }
                Err(kube::Error::Api(status)) if status.code == 409 && attempt == 0 => {
                    self.current = self
                        .api
                        .get_opt(&self.name)
                        .await
                        .map_err(|e| self.error(e))?;
                }
                Err(e) => return Err(self.error(e)),
            }
        }
        unreachable!("the loop returns")
    }
}

/// Reads where to resume: the newer, per watch, of the outbox's checkpoint and the
/// ConfigMap's (when one is configured). A ConfigMap that cannot be read, even after
/// `retry`, is an error: resuming without it could skip what happened since it was written.
pub(crate) async fn resume(
    outbox: &Outbox,
    store: Option<&mut ConfigMapStore>,
    retry: ReadRetry,
) -> anyhow::Result<Positions> {
    let local = outbox
        .checkpoint(KEY)?
        .and_then(|v| Positions::parse(&v, "the outbox"))
        .unwrap_or_default();
    let cluster = match store {
        Some(store) => store.load(retry).await?.unwrap_or_default(),
        None => Positions::default(),
    };
    Ok(local.newest(cluster))
}

/// Writes the delivered position into the ConfigMap, at most every `interval`.
pub(crate) struct Mirror {
    store: ConfigMapStore,
    outbox: Outbox,
    accepted: mpsc::Receiver<Accepted>,
    queue: VecDeque<Accepted>,
    written: Option<String>,
    interval: Duration,
}

impl Mirror {
    /// A mirror of what the accept stage reports on `accepted`, once `outbox` says every
    /// endpoint has had it.
    pub(crate) fn new(
        store: ConfigMapStore,
        outbox: Outbox,
        accepted: mpsc::Receiver<Accepted>,
        interval: Duration,
    ) -> Self {
        Self {
            store,
            outbox,
            accepted,
            queue: VecDeque::new(),
            written: None,
            interval,
        }
    }

    /// Mirrors until `stop` is cancelled, then once more (call it after delivery stopped).
    pub(crate) async fn run(mut self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                received = self.accepted.recv() => match received {
                    Some(accepted) => self.push(accepted),
                    None => {
                        // The accept stage is done; nothing more will come but deliveries.
                        tokio::select! {
                            () = stop.cancelled() => break,
                            _ = tick.tick() => self.write().await,
                        }
                    }
                },
                _ = tick.tick() => self.write().await,
                () = stop.cancelled() => break,
            }
        }
        while let Ok(accepted) = self.accepted.try_recv() {
            self.push(accepted);
        }
        self.write().await;
    }

    fn push(&mut self, accepted: Accepted) {
        if self.queue.len() >= QUEUED {
            // Keep every other one: reporting a later checkpoint's position only once all of
            // its events are delivered is never wrong, only later.
            let mut i = 0;
            self.queue.retain(|_| {
                i += 1;
                i % 2 == 0
            });
        }
        self.queue.push_back(accepted);
    }

    /// The newest checkpoint whose events every endpoint has had.
    fn delivered(&mut self) -> Option<Checkpoint> {
        let lowest_pending = match self.outbox.oldest_pending() {
            Ok(lowest) => lowest,
            Err(e) => {
                tracing::warn!("cannot read the outbox: {e}");
                return None;
            }
        };
        let mut delivered = None;
        while self
            .queue
            .front()
            .is_some_and(|a| lowest_pending.is_none_or(|low| a.last_seq < low))
        {
            delivered = self.queue.pop_front();
        }
        delivered.map(|a| a.checkpoint)
    }

    async fn write(&mut self) {
        let Some(checkpoint) = self.delivered() else {
            return;
        };
        if self.written.as_deref() == Some(checkpoint.value.as_str()) {
            return;
        }
        match self.store.save(&checkpoint.value).await {
            Ok(()) => self.written = Some(checkpoint.value),
            Err(e) => {
                tracing::warn!("{e}; will try again");
                // Try again on the next tick.
                self.queue.push_front(Accepted {
                    checkpoint,
                    last_seq: 0,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::http::StatusCode;
    use axum::response::IntoResponse;

    use super::*;

    /// Quick retries, for tests.
    const QUICK: ReadRetry = ReadRetry {
        first_wait: Duration::from_millis(10),
        max_wait: Duration::from_millis(40),
        per_read: Duration::from_millis(200),
        total: Duration::from_millis(400),
    };

    /// A store of ConfigMap `state` on an API server that answers each request with the next
    /// of `answers` (the last one repeated; code 0: never); the answers left are returned too.
    async fn store_answering(
        answers: Vec<(u16, serde_json::Value)>,
    ) -> (ConfigMapStore, Arc<Mutex<Vec<(u16, serde_json::Value)>>>) {
        let answers = Arc::new(Mutex::new(answers));
        let left = Arc::clone(&answers);
        let app = axum::Router::new().fallback(move || {
            let answers = Arc::clone(&answers);
            async move {
                let (code, body) = {
                    let mut answers = answers.lock().unwrap();
                    match answers.len() {
                        1 => answers[0].clone(),
                        _ => answers.remove(0),
                    }
                };
                if code == 0 {
                    std::future::pending::<()>().await;
                }
                let mut response =
                    (StatusCode::from_u16(code).unwrap(), body.to_string()).into_response();
                response
                    .headers_mut()
                    .insert("content-type", "application/json".parse().unwrap());
                response
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let connection =
            super::super::client::connect_with(kube::Config::new(url.parse().unwrap()), None)
                .unwrap();
        (ConfigMapStore::new(connection.client, "ns", "state"), left)
    }

    fn status(code: u16) -> (u16, serde_json::Value) {
        let reason = match code {
            404 => "NotFound",
            503 => "ServiceUnavailable",
            _ => "InternalError",
        };
        let body = serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "failed", "reason": reason, "code": code
        });
        (code, body)
    }

    fn config_map(positions: &Positions) -> (u16, serde_json::Value) {
        let body = serde_json::json!({
            "kind": "ConfigMap", "apiVersion": "v1",
            "metadata": {"name": "state", "namespace": "ns", "resourceVersion": "7"},
            "data": {KEY: positions.checkpoint().value}
        });
        (200, body)
    }

    #[tokio::test]
    async fn failed_reads_are_retried_until_the_checkpoint_is_read() {
        let stored = Positions {
            positions: BTreeMap::from([("ns".into(), at("42"))]),
        };
        let (mut store, left) = store_answering(vec![
            status(500),
            status(503),
            status(500),
            config_map(&stored),
        ])
        .await;
        assert_eq!(store.load(QUICK).await.unwrap(), Some(stored));
        assert_eq!(left.lock().unwrap().len(), 1, "every answer was asked for");
    }

    #[tokio::test]
    async fn reads_that_keep_failing_are_an_error_not_a_first_start() {
        let (mut store, _) = store_answering(vec![status(500)]).await;
        let started = tokio::time::Instant::now();
        match store.load(QUICK).await {
            Err(CheckpointError::Unreadable { attempts, .. }) => {
                assert!(attempts >= 3, "{attempts} attempts");
            }
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() < QUICK.total + QUICK.per_read);
    }

    #[tokio::test]
    async fn a_read_without_an_answer_times_out_and_is_retried() {
        let stored = Positions {
            positions: BTreeMap::from([("ns".into(), at("42"))]),
        };
        let (mut store, _) =
            store_answering(vec![(0, serde_json::Value::Null), config_map(&stored)]).await;
        assert_eq!(store.load(QUICK).await.unwrap(), Some(stored));
    }

    #[tokio::test]
    async fn only_not_found_means_no_checkpoint() {
        let (mut store, left) = store_answering(vec![status(404), status(500)]).await;
        assert_eq!(store.load(QUICK).await.unwrap(), None);
        assert_eq!(left.lock().unwrap().len(), 1, "one read");
    }

    fn at(rv: &str) -> Position {
        Position {
            resource_version: rv.into(),
            ..Position::default()
        }
    }

    #[test]
    fn newest_takes_the_later_position_per_scope() {
        let local = Positions {
            positions: BTreeMap::from([("a".into(), at("10")), ("b".into(), at("30"))]),
        };
        let cluster = Positions {
            positions: BTreeMap::from([("a".into(), at("20")), ("c".into(), at("5"))]),
        };
        let merged = local.newest(cluster);
        let rv = |s: &str| merged.positions[s].resource_version.clone();
        assert_eq!(
            (rv("a"), rv("b"), rv("c")),
            ("20".into(), "30".into(), "5".into())
        );
    }

    #[test]
    fn the_value_round_trips() {
        let p = Positions {
            positions: BTreeMap::from([("*".into(), at("42"))]),
        };
        assert_eq!(Positions::parse(&p.checkpoint().value, "test"), Some(p));
    }
}
