//! Leader election on a `coordination.k8s.io/v1` Lease, so that `replicas: 2` is safe.
//!
//! The protocol is client-go's `leaderelection`, with the verbs the Role grants (`get`,
//! `create`, `update`; no `patch`): a candidate reads the Lease; when it is free, or its holder
//! has not renewed it for `leaseDurationSeconds` (measured on the candidate's own clock from
//! when it saw the last change, so clock skew between nodes does not matter), the candidate
//! writes itself in as `holderIdentity` with the `resourceVersion` it read: of two candidates,
//! only one write succeeds; the other gets `409 Conflict`. The leader renews `renewTime` every
//! third of the lease duration and steps down when it could not renew for two thirds of it,
//! before anyone else may take over. On shutdown it releases the Lease so a standby takes over
//! at once.
//!
//! Stepping down in time needs every call to end in time: the Lease calls go through a client
//! with no built-in retries (kube's would wait out any `Retry-After`) and with connect and read
//! timeouts ([`super::client::Connection::bounded`]), and each round of the protocol is given
//! up at the step-down deadline, two thirds of the lease after the start of the last round that
//! renewed it. A standby counts the whole lease from when it saw that renewal, which came after
//! the round started: the old leader has stopped a third of the lease before anyone takes over.
//!
//! Start at [`Elector::acquire`]; it returns a [`Leadership`] that renews in the background.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Leader election settings (`[source.leader_election]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderSettings {
    /// The Lease's name, in the router's own namespace.
    pub lease_name: String,
    /// How long a claim lasts without renewal.
    pub lease_duration: Duration,
    /// The prefix of this replica's name: `-` and `POD_NAME` (else 8 random hex digits) are
    /// always appended, as a config shared by the replicas would otherwise give them all one
    /// name, and two of them the Lease. `None`: `POD_NAME`, else the host name with a random
    /// suffix.
    pub identity: Option<String>,
}

impl Default for LeaderSettings {
    fn default() -> Self {
        Self {
            lease_name: "kfp-event-router".to_owned(),
            lease_duration: Duration::from_secs(15),
            identity: None,
        }
    }
}

/// The pod this process runs in: `POD_NAME`, when set.
fn pod_name() -> Option<String> {
    std::env::var("POD_NAME").ok().filter(|n| !n.is_empty())
}

/// This process's identity in the Lease, given the `configured` one and `pod_name`: the
/// configured one as a prefix, then `-` and the pod's name (when set, and not the prefix
/// itself) or else 8 random hex digits; unconfigured, the pod's name, else the host name and
/// 8 random hex digits. No two live replicas get the same one.
pub(crate) fn identity(configured: Option<&str>, pod_name: Option<&str>) -> String {
    let random = || format!("{:08x}", rand::random::<u32>());
    match (configured.filter(|c| !c.is_empty()), pod_name) {
        (Some(prefix), Some(pod)) if pod != prefix => format!("{prefix}-{pod}"),
        (Some(prefix), _) => format!("{prefix}-{}", random()),
        (None, Some(pod)) => pod.to_owned(),
        (None, None) => {
            let host = std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "kfp-event-router".to_owned());
            format!("{host}-{}", random())
        }
    }
}

/// Why one round of the protocol failed.
#[derive(Debug, thiserror::Error)]
enum RoundError {
    /// The API server refused or failed.
    #[error(transparent)]
    Api(#[from] kube::Error),
    /// No answer in the time left before the step-down deadline.
    #[error("no answer within {0:.1?}, the time left before the step-down deadline")]
    Timeout(Duration),
}

/// What a candidate saw of the Lease, to tell when its holder stopped renewing.
#[derive(Debug, PartialEq)]
struct Observed {
    holder: Option<String>,
    renew_time: Option<Timestamp>,
    resource_version: Option<String>,
}

/// A candidate for the Lease.
pub(crate) struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    observed: Option<(Observed, Instant)>,
    /// The Lease as last written by us, while we hold it.
    held: Option<Lease>,
}

impl Elector {
    /// A candidate for the Lease `settings.lease_name` in `namespace`, in this process's pod.
    /// `client` must bound its calls ([`super::client::Connection::bounded`]).
    pub(crate) fn new(client: kube::Client, namespace: &str, settings: &LeaderSettings) -> Self {
        Self::in_pod(client, namespace, settings, pod_name().as_deref())
    }

    /// As [`Elector::new`], in the pod named `pod_name` (`None`: not in a pod, or unknown).
    fn in_pod(
        client: kube::Client,
        namespace: &str,
        settings: &LeaderSettings,
        pod_name: Option<&str>,
    ) -> Self {
        let identity = identity(settings.identity.as_deref(), pod_name);
        if let Some(prefix) = &settings.identity {
            tracing::info!(lease = %settings.lease_name, %identity, "leader election identity: the configured {prefix:?} with a suffix of this process");
        }
        Self {
            api: Api::namespaced(client, namespace),
            name: settings.lease_name.clone(),
            identity,
            duration: settings.lease_duration,
            observed: None,
            held: None,
        }
    }

    /// This candidate's `holderIdentity`.
    pub(crate) fn identity(&self) -> &str {
        &self.identity
    }

    /// How long after the start of the last round that renewed the Lease the leader steps
    /// down: two thirds of the lease.
    fn step_down_after(&self) -> Duration {
        self.duration * 2 / 3
    }

    /// Waits until this candidate holds the Lease, then keeps renewing it in the background.
    /// `None` when `stop` was cancelled first.
    pub(crate) async fn acquire(mut self, stop: &CancellationToken) -> Option<Leadership> {
        let retry = self.duration / 5;
        let renewed = loop {
            let started = Instant::now();
            match self.round(started + self.step_down_after()).await {
                Ok(true) => break started,
                Ok(false) => {}
                Err(e) => tracing::warn!(lease = %self.name, "leader election: {e}"),
            }
            tokio::select! {
                () = tokio::time::sleep(retry) => {}
                () = stop.cancelled() => return None,
            }
        };
        tracing::info!(lease = %self.name, identity = %self.identity, "became the leader");
        let lost = CancellationToken::new();
        let release = CancellationToken::new();
        let task = tokio::spawn(self.renew(renewed, lost.clone(), release.clone()));
        Some(Leadership {
            lost,
            release,
            task,
        })
    }

    /// Renews every third of the lease until it is lost, then cancels `lost`; or until
    /// `release` is cancelled, then gives the Lease up. `renewed` is when the round that last
    /// renewed it started. No round outlasts the step-down deadline: one that cannot finish by
    /// then counts as failed, and the leader steps down at the deadline.
    async fn renew(
        mut self,
        mut renewed: Instant,
        lost: CancellationToken,
        release: CancellationToken,
    ) {
        let every = self.duration / 3;
        let retry = self.duration / 10;
        let mut next = renewed + every;
        loop {
            let deadline = renewed + self.step_down_after();
            tokio::select! {
                () = tokio::time::sleep_until(next.min(deadline)) => {}
                () = release.cancelled() => {
                    self.release().await;
                    return;
                }
            }
            if Instant::now() >= deadline {
                tracing::error!(lease = %self.name, "could not renew the lease in time; stepping down");
                break;
            }
            let started = Instant::now();
            match self.round(deadline).await {
                Ok(true) => {
                    renewed = started;
                    next = started + every;
                }
                Ok(false) => {
                    tracing::error!(lease = %self.name, "another replica holds the lease now; stepping down");
                    break;
                }
                Err(e) => {
                    tracing::warn!(lease = %self.name, "cannot renew the lease: {e}");
                    next = Instant::now() + retry;
                }
            }
        }
        lost.cancel();
    }

    /// One round of the protocol, given up at `deadline`: true when this candidate holds the
    /// Lease afterwards. A round given up leaves nothing held: the next one reads the Lease.
    async fn round(&mut self, deadline: Instant) -> Result<bool, RoundError> {
        let allowed = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout_at(deadline, self.try_acquire_or_renew()).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(RoundError::Timeout(allowed)),
        }
    }

    /// One round of the protocol: true when this candidate holds the Lease afterwards.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        // While we hold it, renew the version we wrote: one request, no read.
        if let Some(mut lease) = self.held.take() {
            let spec = lease.spec.get_or_insert_default();
            spec.renew_time = Some(MicroTime(now));
            match self.write(&lease).await {
                Ok(written) => {
                    self.held = Some(written);
                    return Ok(true);
                }
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
        let Some(lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.claim(None, false, now)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.held = Some(created);
                    Ok(true)
                }
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let observed = Observed {
            holder: holder.clone(),
            renew_time: spec.renew_time.as_ref().map(|t| t.0),
            resource_version: lease.metadata.resource_version.clone(),
        };
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|(seen, _)| *seen != observed);
        if changed {
            self.observed = Some((observed, Instant::now()));
        }
        let ours = holder.as_deref() == Some(self.identity.as_str());
        if let Some(holder) = &holder
            && !ours
        {
            let duration = spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(self.duration, Duration::from_secs);
            let since = self
                .observed
                .as_ref()
                .map_or_else(Instant::now, |(_, at)| *at);
            if since.elapsed() < duration {
                tracing::debug!(lease = %self.name, %holder, "the lease is held; standing by");
                return Ok(false);
            }
            tracing::info!(lease = %self.name, %holder, "the leader stopped renewing; taking over");
        }
        let mut claimed = lease;
        claimed.spec = Some(self.claim(Some(&spec), ours, now));
        match self.write(&claimed).await {
            Ok(written) => {
                self.held = Some(written);
                Ok(true)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The spec that makes us the holder of a Lease that had `read` (`ours`: we held it).
    fn claim(&self, read: Option<&LeaseSpec>, ours: bool, now: Timestamp) -> LeaseSpec {
        let duration = i32::try_from(self.duration.as_secs().max(1)).unwrap_or(i32::MAX);
        match read {
            Some(spec) if ours => LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(duration),
                renew_time: Some(MicroTime(now)),
                ..spec.clone()
            },
            _ => LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(duration),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(read.map_or(0, |s| s.lease_transitions.unwrap_or(0) + 1)),
                ..LeaseSpec::default()
            },
        }
    }

    /// Replaces the Lease with `lease`: `409 Conflict` when it changed since `lease` was read.
    async fn write(&self, lease: &Lease) -> Result<Lease, kube::Error> {
        self.api
            .replace(&self.name, &PostParams::default(), lease)
            .await
    }

    /// Gives the Lease up, so that a standby takes over without waiting for it to expire.
    async fn release(&mut self) {
        let Some(mut lease) = self.held.take() else {
            return;
        };
        let spec = lease.spec.get_or_insert_default();
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        let allowed = self.duration / 3;
        match tokio::time::timeout(allowed, self.write(&lease)).await {
            Ok(Ok(_)) => tracing::info!(lease = %self.name, "released the lease"),
            Ok(Err(e)) => {
                tracing::warn!(lease = %self.name, "cannot release the lease (it expires by itself): {e}")
            }
            Err(_) => tracing::warn!(
                lease = %self.name,
                "cannot release the lease (it expires by itself): no answer within {allowed:.1?}"
            ),
        }
    }
}

/// The Lease, held; renewed in the background until released or lost.
pub(crate) struct Leadership {
    lost: CancellationToken,
    release: CancellationToken,
    task: JoinHandle<()>,
}

impl Leadership {
    /// Cancelled when the Lease is lost: the leader must stop watching and delivering.
    pub(crate) fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    /// Stops renewing and gives the Lease up.
    pub(crate) async fn release(self) {
        self.release.cancel();
        let _ = self.task.await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::body::{Body, Bytes};
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};

    use super::*;

    /// A lease short enough for a test, long enough for a loaded machine to answer a local
    /// server in time.
    const LEASE: Duration = Duration::from_millis(1500);

    /// Serves every request with `answer` on a free port; returns the URL and how many
    /// requests came.
    async fn serve(answer: fn() -> Response) -> (String, Arc<AtomicUsize>) {
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&requests);
        let app = axum::Router::new().fallback(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async move { answer() }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, requests)
    }

    /// An answer whose body never ends: a space every 50 ms, which no read timeout catches.
    fn trickle() -> Response {
        let spaces = futures::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Some((Ok::<_, std::io::Error>(Bytes::from_static(b" ")), ()))
        });
        let mut response = Response::new(Body::from_stream(spaces));
        response
            .headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        response
    }

    /// `429 Too Many Requests`, come back in an hour.
    fn too_many_requests() -> Response {
        let status = serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "slow down", "reason": "TooManyRequests", "code": 429
        });
        let mut response = (StatusCode::TOO_MANY_REQUESTS, status.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert("content-type", "application/json".parse().unwrap());
        headers.insert("retry-after", "3600".parse().unwrap());
        response
    }

    /// An elector of the server at `url` that holds the Lease, as far as it knows.
    fn holding(url: &str) -> Elector {
        let config = kube::Config::new(url.parse().unwrap());
        let connection = super::super::client::connect_with(config, None).unwrap();
        let settings = LeaderSettings {
            lease_duration: LEASE,
            ..LeaderSettings::default()
        };
        let client = connection.bounded(LEASE / 3).unwrap();
        let mut elector = Elector::in_pod(client, "ns", &settings, Some("router-0"));
        elector.held = Some(Lease {
            metadata: ObjectMeta {
                name: Some(settings.lease_name.clone()),
                resource_version: Some("1".to_owned()),
                ..ObjectMeta::default()
            },
            spec: Some(elector.claim(None, false, Timestamp::now())),
        });
        elector
    }

    /// Renews, as just renewed, against `url`; returns once the leader stepped down (panics
    /// when it does not within a generous wait), with how long after the renewal it did.
    async fn step_down_against(url: &str) -> Duration {
        let elector = holding(url);
        let (lost, release) = (CancellationToken::new(), CancellationToken::new());
        let renewed = Instant::now();
        let task = tokio::spawn(elector.renew(renewed, lost.clone(), release));
        tokio::time::timeout(Duration::from_secs(30), lost.cancelled())
            .await
            .expect("the leader stepped down although its renewals never succeeded");
        let after = renewed.elapsed();
        task.await.unwrap();
        after
    }

    #[tokio::test]
    async fn a_renewal_that_never_ends_is_given_up_and_the_leader_steps_down() {
        let (url, requests) = serve(trickle).await;
        let after = step_down_against(&url).await;
        assert!(requests.load(Ordering::SeqCst) >= 1, "a renewal was tried");
        assert!(after >= LEASE * 2 / 3, "not before the deadline: {after:?}");
    }

    #[tokio::test]
    async fn a_429_with_a_long_retry_after_fails_the_renewal_at_once_and_it_is_tried_again() {
        let (url, requests) = serve(too_many_requests).await;
        let after = step_down_against(&url).await;
        // kube's built-in retries would have waited out the hour after the first answer.
        assert!(
            requests.load(Ordering::SeqCst) >= 2,
            "{} requests",
            requests.load(Ordering::SeqCst)
        );
        assert!(after >= LEASE * 2 / 3, "not before the deadline: {after:?}");
    }

    /// A client of an API server that is never asked anything.
    fn client() -> kube::Client {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        super::super::client::connect_with(config, None)
            .unwrap()
            .client
    }

    #[tokio::test]
    async fn a_configured_identity_shared_by_replicas_gives_each_its_own() {
        let settings = LeaderSettings {
            identity: Some("shared".to_owned()),
            ..LeaderSettings::default()
        };
        // Outside a pod: random suffixes.
        let a = Elector::in_pod(client(), "ns", &settings, None);
        let b = Elector::in_pod(client(), "ns", &settings, None);
        assert_ne!(a.identity(), b.identity());
        for elector in [&a, &b] {
            assert!(
                elector.identity().starts_with("shared-"),
                "{}",
                elector.identity()
            );
        }
        // In pods: their names.
        let a = Elector::in_pod(client(), "ns", &settings, Some("router-0"));
        let b = Elector::in_pod(client(), "ns", &settings, Some("router-1"));
        assert_eq!(
            (a.identity(), b.identity()),
            ("shared-router-0", "shared-router-1")
        );
    }

    #[test]
    fn identities() {
        assert_eq!(identity(None, Some("router-0")), "router-0");
        let random = identity(Some("router-0"), Some("router-0"));
        let suffix = random.strip_prefix("router-0-").expect("the prefix");
        assert!(
            suffix.len() == 8 && suffix.chars().all(|c| c.is_ascii_hexdigit()),
            "{random}"
        );
        assert_ne!(identity(None, None), identity(None, None));
    }
}
