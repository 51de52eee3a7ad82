//! The `kubernetes` source: Argo's workflow-controller Events, watched in a cluster.
//!
//! ```text
//! Workflows ─ watcher ─▶ reflector ─┬─▶ Store ◀── fetch (an Event came before its Workflow)
//!                                   └─▶ SourceItem::WorkflowApplied / WorkflowDeleted ──┐
//! Events ──── watcher ─▶ Gate (new occurrences only, position) ─▶ SourceItem::Event ────┴─▶ enrich
//! ```
//!
//! - One `watcher` of core/v1 Events per namespace (or one cluster-wide), with the field
//!   selector [`EVENT_SELECTOR`] (`source=workflow-controller`): not `involvedObject.kind`,
//!   because with `nodeEvents.sendAsPod` node Events are about Pods.
//!   [`crate::model::argo::is_workflow_event`] checks the rest in code. Retry is
//!   `default_backoff()`, applied here at assembly as in kube-runtime's examples.
//! - [`position::Gate`] passes each Event occurrence on once, across relists, `410 Gone`,
//!   bookmarks, dropped connections and restarts; its [`position::Position`]s make the
//!   [`checkpoint`], stored with the events and mirrored into a ConfigMap.
//! - A reflector of Argo Workflows per namespace feeds the enrich cache through the same
//!   channel (so enrich sees a Workflow before the Events after it) and keeps a `Store` that
//!   [`fetch`] reads on a cache miss, before it GETs: no API call per event.
//! - [`leader`] elects one replica to watch and deliver; [`client`] counts every request.
//!
//! Start at [`Session::start`]; [`record`] writes a namespace's live objects as a recording.

pub(crate) mod checkpoint;
pub(crate) mod client;
pub(crate) mod fetch;
pub mod leader;
pub(crate) mod position;
pub(crate) mod record;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::model::item::{Accepted, SourceItem};
use crate::model::workflow::Workflow;
use crate::state::Outbox;
use crate::telemetry::Metrics;
use crate::telemetry::readiness::{Readiness, Role};
use checkpoint::{ConfigMapStore, Mirror, Positions, ReadRetry};
use client::Connection;
use fetch::WorkflowFetcher;
use leader::{Elector, LeaderSettings, Leadership};
use position::Gate;

/// Every Kubernetes API request the router makes, as `(resource, verbs)`: what its RBAC must
/// grant, no more. `deploy/`'s Roles grant exactly this (a test renders them and compares),
/// and the integration tests check every request against it.
pub const API_USAGE: &[(&str, &[&str])] = &[
    // The Event watch: list, then watch; never one Event by name.
    ("events", &["list", "watch"]),
    // The Workflow reflector (list, watch) and the GET on a cache miss.
    ("workflows.argoproj.io", &["get", "list", "watch"]),
    // Leader election: read, create once, renew and release by update.
    ("leases.coordination.k8s.io", &["create", "get", "update"]),
    // The checkpoint mirror: read at start, create once, then update.
    ("configmaps", &["create", "get", "update"]),
];

/// The field selector of the Event watch: what the workflow-controller recorded.
pub(crate) const EVENT_SELECTOR: &str = "source=workflow-controller";
/// The scope name of the cluster-wide watch, in the checkpoint.
pub(crate) const ALL_NAMESPACES: &str = "*";
/// How long events wait for the Workflow watch's first list at start.
const WORKFLOWS_READY: Duration = Duration::from_secs(10);

/// Which namespaces to watch (`source.namespaces`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Namespaces {
    /// The router's own namespace: `POD_NAMESPACE`, else the kubeconfig's.
    #[default]
    Own,
    /// These namespaces, with one watch each.
    Listed(Vec<String>),
    /// Every namespace, with one cluster-wide watch.
    All,
}

/// The checked `[source]` settings of kind `kubernetes`.
#[derive(Clone, Debug, PartialEq)]
pub struct KubernetesSettings {
    /// The namespaces to watch.
    pub namespaces: Namespaces,
    /// On the very first start, deliver the Events of this window before it; none when `None`.
    pub history: Option<Duration>,
    /// The ConfigMap mirroring the checkpoint, or `None` to keep it local only.
    pub checkpoint_configmap: Option<String>,
    /// At most how often the ConfigMap is written.
    pub checkpoint_interval: Duration,
    /// How long an Event waits for its Workflow to reach the cache before a GET.
    pub workflow_wait: Duration,
    /// Leader election, or `None` when a single replica runs.
    pub leader_election: Option<LeaderSettings>,
}

impl Default for KubernetesSettings {
    fn default() -> Self {
        Self {
            namespaces: Namespaces::Own,
            history: None,
            checkpoint_configmap: Some("kfp-event-router-state".to_owned()),
            checkpoint_interval: Duration::from_secs(5),
            workflow_wait: Duration::from_millis(500),
            leader_election: Some(LeaderSettings::default()),
        }
    }
}

/// Why the source stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SourceError {
    /// No client could be made.
    #[error(transparent)]
    Client(#[from] client::ClientError),
    /// The checkpoint could not be read, locally or from its ConfigMap.
    #[error("cannot read the checkpoint: {0}")]
    Checkpoint(#[source] anyhow::Error),
}

/// A source result.
pub(crate) type Result<T, E = SourceError> = std::result::Result<T, E>;

/// One watch's scope: a namespace, or `None` for all of them.
type Scope = Option<String>;

fn scope_key(scope: &Scope) -> &str {
    scope.as_deref().unwrap_or(ALL_NAMESPACES)
}

fn api<K>(client: &kube::Client, scope: &Scope) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match scope {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// The watches of the Events and Workflows of some namespaces.
pub(crate) struct KubernetesSource {
    client: kube::Client,
    scopes: Vec<Scope>,
    history: Option<Duration>,
    workflow_wait: Duration,
    metrics: Arc<Metrics>,
}

/// A started [`KubernetesSource`].
pub(crate) struct Watching {
    /// Runs until the channel closes; owns the Workflow reflectors.
    pub(crate) task: JoinHandle<Result<()>>,
    /// Finds what the enrich cache misses; the assembler lends it to the enrich stage.
    pub(crate) fetcher: Arc<WorkflowFetcher>,
}

impl KubernetesSource {
    /// The watches `settings` ask for, through `connection`.
    pub(crate) fn new(
        connection: &Connection,
        settings: &KubernetesSettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        let scopes = match &settings.namespaces {
            Namespaces::Own => vec![Some(connection.namespace.clone())],
            Namespaces::Listed(names) => names.iter().cloned().map(Some).collect(),
            Namespaces::All => vec![None],
        };
        Self {
            client: connection.client.clone(),
            scopes,
            history: settings.history,
            workflow_wait: settings.workflow_wait,
            metrics,
        }
    }

    /// The scope names, as the checkpoint keys them.
    pub(crate) fn scopes(&self) -> Vec<String> {
        self.scopes
            .iter()
            .map(|s| scope_key(s).to_owned())
            .collect()
    }

    /// Starts the watches, resuming after `resume`; items go to `out` in order.
    pub(crate) fn start(self, resume: Positions, out: mpsc::Sender<SourceItem>) -> Watching {
        let mut stores = Vec::new();
        let mut reflectors = Vec::new();
        for scope in &self.scopes {
            let (reader, writer) = reflector::store::<Workflow>();
            let workflows = watcher(
                api::<Workflow>(&self.client, scope),
                watcher::Config::default(),
            )
            .modify(|wf| wf.managed_fields_mut().clear());
            let stream = reflector::reflector(writer, workflows).default_backoff();
            reflectors.push(forward_workflows(
                scope.clone(),
                stream,
                out.clone(),
                Arc::clone(&self.metrics),
            ));
            stores.push((scope.clone(), reader));
        }
        let fetcher = Arc::new(WorkflowFetcher::new(
            self.client.clone(),
            stores.clone(),
            self.workflow_wait,
        ));
        let task = tokio::spawn(async move {
            // The reflectors stop with this task (the set aborts them when dropped).
            let mut running = JoinSet::new();
            for forward in reflectors {
                running.spawn(forward);
            }
            wait_for_workflows(&stores).await;
            self.watch_events(resume, out).await;
            running.shutdown().await;
            Ok(())
        });
        Watching { task, fetcher }
    }

    /// Watches Events until `out` closes.
    async fn watch_events(self, resume: Positions, out: mpsc::Sender<SourceItem>) {
        let now = Timestamp::now();
        let mut positions = resume;
        let mut gates: Vec<Gate> = self
            .scopes
            .iter()
            .map(|scope| {
                Gate::new(
                    positions.positions.get(scope_key(scope)).cloned(),
                    self.history,
                    now,
                )
            })
            .collect();
        let config = watcher::Config::default().fields(EVENT_SELECTOR);
        let streams = self.scopes.iter().enumerate().map(|(i, scope)| {
            watcher(api::<Event>(&self.client, scope), config.clone())
                .default_backoff()
                .map(move |result| (i, result))
                .boxed()
        });
        let mut merged = futures::stream::select_all(streams);
        while let Some((i, result)) = merged.next().await {
            let key = scope_key(&self.scopes[i]).to_owned();
            let event = match result {
                Ok(event) => event,
                Err(e) => {
                    self.metrics.kube.watch_error("events");
                    tracing::warn!(scope = %key, "watching Events: {e}; retrying");
                    continue;
                }
            };
            let step = gates[i].step(event);
            if step.skipped > 0 {
                self.metrics.kube.skipped.inc_by(step.skipped);
            }
            let sent = step.events.len();
            for event in step.events {
                positions
                    .positions
                    .insert(key.clone(), position::Position::of(&event));
                let item = SourceItem::Event {
                    event: Box::new(event),
                    checkpoint: Some(positions.checkpoint()),
                };
                if out.send(item).await.is_err() {
                    return;
                }
            }
            let position = gates[i].position().cloned();
            if step.moved
                && position.is_some()
                && positions.positions.get(&key) != position.as_ref()
            {
                positions
                    .positions
                    .insert(key.clone(), position.unwrap_or_default());
                if out
                    .send(SourceItem::Checkpoint(positions.checkpoint()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            if step.listed {
                tracing::info!(scope = %key, sent, skipped = step.skipped, "listed Events");
            }
        }
    }
}

/// Passes a reflector's Workflows on as source items, until `out` closes.
///
/// Only the Workflows of the first list existed before the router watched, so only what their
/// status shows may be history to the enrich stage (`source.history`). A Workflow that shows up
/// later (live, or first in a relist) began while the router watched: it is passed on as
/// [`SourceItem::WorkflowLive`], all of it news. Each complete list ends with
/// [`SourceItem::WorkflowsListed`], so that Workflows deleted unseen are forgotten.
async fn forward_workflows(
    scope: Scope,
    stream: impl Stream<Item = watcher::Result<watcher::Event<Workflow>>>,
    out: mpsc::Sender<SourceItem>,
    metrics: Arc<Metrics>,
) {
    let mut stream = std::pin::pin!(stream);
    let mut known = HashSet::new();
    // The uids of the list under way, between `Init` and `InitDone`.
    let mut listing: Option<HashSet<String>> = None;
    let mut listed = false;
    while let Some(result) = stream.next().await {
        let item = match result {
            Ok(watcher::Event::Apply(wf) | watcher::Event::InitApply(wf)) => {
                let uid = wf.metadata.uid.as_ref();
                if let (Some(listing), Some(uid)) = (listing.as_mut(), uid) {
                    listing.insert(uid.clone());
                }
                let first = uid.is_some_and(|uid| known.insert(uid.clone()));
                match first && listed {
                    true => SourceItem::WorkflowLive(Box::new(wf)),
                    false => SourceItem::WorkflowApplied(Box::new(wf)),
                }
            }
            Ok(watcher::Event::Delete(wf)) => {
                if let Some(uid) = &wf.metadata.uid {
                    known.remove(uid);
                }
                SourceItem::WorkflowDeleted(Box::new(wf))
            }
            // A complete list: what it lacks was deleted while nobody watched.
            Ok(watcher::Event::InitDone) => {
                listed = true;
                let uids = listing.take().unwrap_or_default();
                known.retain(|uid| uids.contains(uid));
                SourceItem::WorkflowsListed {
                    namespace: scope.clone(),
                    uids,
                }
            }
            Ok(watcher::Event::Init) => {
                listing = Some(HashSet::new());
                continue;
            }
            Err(e) => {
                metrics.kube.watch_error("workflows");
                tracing::warn!("watching Workflows: {e}; retrying");
                continue;
            }
        };
        if out.send(item).await.is_err() {
            return;
        }
    }
}

/// Waits (a while at most) for every Workflow store's first list, so that the first Events
/// find their Workflows in the cache.
async fn wait_for_workflows(stores: &[(Scope, Store<Workflow>)]) {
    let ready = futures::future::join_all(stores.iter().map(|(_, store)| store.wait_until_ready()));
    if tokio::time::timeout(WORKFLOWS_READY, ready).await.is_err() {
        tracing::warn!(
            "the Workflows are not listed yet (is Argo's Workflow CRD installed, may the router list it?); watching Events anyway"
        );
    }
}

/// One run of the kubernetes source as the router's leader: its connection, its lease and
/// where it resumes.
pub(crate) struct Session {
    connection: Connection,
    settings: KubernetesSettings,
    metrics: Arc<Metrics>,
    leadership: Option<Leadership>,
    resume: Positions,
    store: Option<ConfigMapStore>,
    mirror: Option<(JoinHandle<()>, CancellationToken)>,
}

impl Session {
    /// Connects, waits on standby until this replica leads (when elected), and reads where
    /// to resume. `None` when `stop` came first.
    pub(crate) async fn start(
        settings: &KubernetesSettings,
        outbox: &Outbox,
        metrics: &Arc<Metrics>,
        readiness: &Readiness,
        stop: &CancellationToken,
    ) -> anyhow::Result<Option<Self>> {
        let connection = client::connect(Some(Arc::clone(metrics))).await?;
        let leadership = match &settings.leader_election {
            Some(election) => {
                let client = connection.bounded(election.lease_duration / 3)?;
                let elector = Elector::new(client, &connection.namespace, election);
                tracing::info!(
                    lease = %election.lease_name,
                    namespace = %connection.namespace,
                    identity = %elector.identity(),
                    "standing by until this replica holds the lease"
                );
                readiness.set_role(Some(Role::Standby));
                readiness.set_ready(true);
                metrics.kube.leader.set(0);
                match elector.acquire(stop).await {
                    Some(leadership) => Some(leadership),
                    None => return Ok(None),
                }
            }
            None => None,
        };
        if leadership.is_some() {
            readiness.set_role(Some(Role::Leader));
            metrics.kube.leader.set(1);
        }
        let mut store = settings.checkpoint_configmap.as_ref().map(|name| {
            ConfigMapStore::new(connection.client.clone(), &connection.namespace, name)
        });
        let resume = checkpoint::resume(outbox, store.as_mut(), ReadRetry::START)
            .await
            .map_err(SourceError::Checkpoint)?;
        if resume.positions.is_empty() {
            tracing::info!(
                "no checkpoint: first start, existing Events are not delivered (see source.history)"
            );
        } else {
            tracing::info!(checkpoint = %resume.checkpoint().value, "resuming after the checkpoint");
        }
        Ok(Some(Self {
            connection,
            settings: settings.clone(),
            metrics: Arc::clone(metrics),
            leadership,
            resume,
            store,
            mirror: None,
        }))
    }

    /// Cancelled when this replica loses the lease (never, without leader election).
    pub(crate) fn lost(&self) -> CancellationToken {
        self.leadership
            .as_ref()
            .map_or_else(CancellationToken::new, Leadership::lost)
    }

    /// For the status path of enrich, about the Workflows of the first list (the others are news
    /// from their start, see [`forward_workflows`]): on a first start, only what happens from
    /// now (or from the history window) on; on a resume, from the oldest checkpoint time on.
    pub(crate) fn since(&self) -> Option<Timestamp> {
        let times = self
            .resume
            .positions
            .values()
            .filter_map(|p| p.time.as_deref()?.parse::<Timestamp>().ok());
        match (times.min(), self.resume.positions.is_empty()) {
            (Some(oldest), _) => Some(oldest),
            (None, true) => {
                let now = Timestamp::now();
                Some(
                    self.settings
                        .history
                        .and_then(|h| now.checked_sub(h).ok())
                        .unwrap_or(now),
                )
            }
            (None, false) => None,
        }
    }

    /// Starts watching into `out`. The accept stage reports what it stored on the returned
    /// sender, which the ConfigMap mirror follows (none when there is no ConfigMap).
    pub(crate) fn watch(
        &mut self,
        outbox: &Outbox,
        out: mpsc::Sender<SourceItem>,
    ) -> (Watching, Option<mpsc::Sender<Accepted>>) {
        let source =
            KubernetesSource::new(&self.connection, &self.settings, Arc::clone(&self.metrics));
        tracing::info!(scopes = ?source.scopes(), selector = EVENT_SELECTOR, "watching Events and Workflows");
        let watching = source.start(std::mem::take(&mut self.resume), out);
        let accepted = self.store.take().map(|store| {
            let (accepted, receiver) = mpsc::channel(4096);
            let stop = CancellationToken::new();
            let mirror = Mirror::new(
                store,
                outbox.clone(),
                receiver,
                self.settings.checkpoint_interval,
            );
            self.mirror = Some((tokio::spawn(mirror.run(stop.clone())), stop));
            accepted
        });
        (watching, accepted)
    }

    /// Once delivery has stopped: writes the last delivered position and gives the lease up.
    /// A replica that lost the lease writes nothing more: the checkpoint is the new leader's.
    pub(crate) async fn finish(self) {
        let lost = self
            .leadership
            .as_ref()
            .is_some_and(|l| l.lost().is_cancelled());
        if let Some((task, stop)) = self.mirror {
            if lost {
                task.abort();
            }
            stop.cancel();
            let _ = task.await;
        }
        if let Some(leadership) = self.leadership {
            leadership.release().await;
            self.metrics.kube.leader.set(0);
        }
    }
}
