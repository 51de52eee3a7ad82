//! The `enrich` stage: joins each Event with its Workflow into a [`RouterEvent`].
//!
//! Workflows come from the source as items of the same stream (so a replay sees each Workflow
//! as it was when the Event happened) and are kept in a [`cache::WorkflowCache`]: no API call
//! per event. An Event whose Workflow is unknown (deleted, archived, not yet seen) is still
//! delivered, with what the Event itself says.

mod cache;
mod fallback;
mod node;
mod prune;
mod task;
mod transitions;

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::jiff::Timestamp;
use prometheus_client::metrics::counter::Counter;
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::model::event::{EventFacts, NodeFacts, RouterEvent, WorkflowFacts};
use crate::model::item::{Intake, SeenState, SourceItem, WorkflowLookup};
use crate::model::workflow::Workflow;
use crate::telemetry::Metrics;
use cache::{Cached, WorkflowCache};
use prune::Sightings;
use transitions::{Seen, Transition, Transitions};

/// Which paths report run transitions (`source.from`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Paths {
    /// Kubernetes Events only, as the workflow-controller recorded them.
    #[default]
    Events,
    /// Transitions derived from Workflow status only; Events are not read for delivery.
    Workflows,
    /// Both: each transition is delivered once, from whichever path reports it first, so what
    /// Events lose (rolled up, expired, rate-limited, disabled) still arrives.
    Both,
}

/// Joins Events with the Workflows seen so far, and derives transitions from their status.
#[derive(Debug)]
pub struct Enricher {
    workflows: WorkflowCache,
    paths: Paths,
    transitions: Transitions,
    since: Option<Timestamp>,
    metrics: Arc<Metrics>,
    fallback: Option<Arc<dyn WorkflowLookup>>,
    /// Uids of the workflows whose node status Argo offloaded to its database, seen with the
    /// status path on: their node transitions come from Events, whatever the paths.
    offloaded: HashSet<String>,
    /// When each workflow was last heard of, to forget those deleted unseen.
    sightings: Sightings,
    /// The cluster's name, given to every event.
    cluster: Option<String>,
    /// The transition counters by path, each looked up once: one is counted per event.
    counters: RefCell<Vec<(&'static str, Counter)>>,
}

impl Enricher {
    /// An enricher reporting transitions from `paths`.
    pub fn new(paths: Paths, metrics: Arc<Metrics>) -> Self {
        Self {
            workflows: WorkflowCache::default(),
            paths,
            transitions: Transitions::default(),
            since: None,
            metrics,
            fallback: None,
            offloaded: HashSet::new(),
            sightings: Sightings::default(),
            cluster: None,
            counters: RefCell::default(),
        }
    }

    /// Asks `fallback` for the Workflows the cache misses (see [`fallback`]).
    pub(crate) fn with_fallback(mut self, fallback: Arc<dyn WorkflowLookup>) -> Self {
        self.fallback = Some(fallback);
        self
    }

    /// Resumes from the last-seen states an earlier run stored (as [`Intake::seen`] gave
    /// them), by workflow uid. A state that cannot be read is started afresh.
    pub(crate) fn restore(mut self, stored: Vec<(String, Vec<u8>)>) -> Self {
        let mut seen = Vec::with_capacity(stored.len());
        for (uid, bytes) in stored {
            match serde_json::from_slice::<Seen>(&bytes) {
                Ok(state) => seen.push((uid, state)),
                Err(e) => {
                    tracing::warn!(%uid, "stored workflow state unreadable, starting it afresh: {e}")
                }
            }
        }
        self.transitions = Transitions::restore(seen);
        self
    }

    /// Names the cluster in every event.
    pub(crate) fn cluster(mut self, cluster: Option<String>) -> Self {
        self.cluster = cluster;
        self
    }

    /// Delivers only what happened after `since` for workflows seen for the first time.
    pub(crate) fn since(mut self, since: Option<Timestamp>) -> Self {
        self.since = since;
        self
    }

    /// Takes one source item; returns what to accept for it (an event, or state to store).
    pub fn apply(&mut self, item: SourceItem) -> Vec<Intake> {
        let mut intakes = self.take(item);
        if self.cluster.is_some() {
            for event in intakes.iter_mut().filter_map(|i| i.event.as_mut()) {
                event.cluster.clone_from(&self.cluster);
            }
        }
        intakes
    }

    fn take(&mut self, item: SourceItem) -> Vec<Intake> {
        match item {
            SourceItem::WorkflowApplied(wf) => self.workflow_changed(*wf, self.since),
            SourceItem::WorkflowLive(wf) => self.workflow_changed(*wf, None),
            SourceItem::WorkflowDeleted(wf) => {
                self.workflows.delete(&wf);
                let Some(uid) = wf.metadata.uid else {
                    return Vec::new();
                };
                self.forget(&uid);
                vec![Intake {
                    seen: Some((uid, None)),
                    ..Intake::default()
                }]
            }
            SourceItem::WorkflowsListed { namespace, uids } => self.listed(namespace, &uids),
            SourceItem::Checkpoint(checkpoint) => vec![Intake {
                checkpoint: Some(checkpoint),
                ..Intake::default()
            }],
            SourceItem::Event { event, checkpoint } => {
                let enriched = self.enrich(*event);
                let (event, seen) = self.report(enriched);
                vec![Intake {
                    event,
                    checkpoint,
                    seen,
                }]
            }
        }
    }

    /// Forgets workflow `uid` (its Workflow aside).
    fn forget(&mut self, uid: &str) {
        self.offloaded.remove(uid);
        self.transitions.forget(uid);
        self.sightings.forget(uid);
    }

    /// Takes a complete list of `scope`'s Workflows: forgets those of that scope it lacks
    /// (deleted while nobody watched), and removes their stored states.
    fn listed(&mut self, scope: Option<String>, uids: &HashSet<String>) -> Vec<Intake> {
        let (cached, forgotten) = {
            let gone = self.sightings.listed(&scope);
            let unlisted = |uid: &str| !uids.contains(uid) && gone(uid);
            let cached = self
                .workflows
                .prune(scope.as_deref(), |c| unlisted(&c.facts.uid));
            (
                cached,
                self.transitions.known_in(scope.as_deref(), unlisted),
            )
        };
        if cached > 0 || !forgotten.is_empty() {
            tracing::info!(
                namespace = scope.as_deref().unwrap_or("*"),
                cached,
                states = forgotten.len(),
                "forgot workflows deleted while the watch was down"
            );
        }
        forgotten
            .into_iter()
            .map(|uid| {
                self.forget(&uid);
                Intake {
                    seen: Some((uid, None)),
                    ..Intake::default()
                }
            })
            .collect()
    }

    /// Caches a new Workflow version; with the status path on, derives its transitions. A
    /// retried run's new Running comes from here on every path: Argo records no Event for it.
    /// For a workflow seen for the first time, only what happened after `since` is news.
    fn workflow_changed(&mut self, workflow: Workflow, since: Option<Timestamp>) -> Vec<Intake> {
        let uid = workflow.metadata.uid.clone().unwrap_or_default();
        let namespace = workflow.metadata.namespace.clone().unwrap_or_default();
        let name = workflow.metadata.name.clone().unwrap_or_default();
        self.sightings.touch(&uid);
        self.transitions.place(&uid, &namespace);
        self.note_offloaded(&workflow, &uid);
        let derived = match self.paths {
            Paths::Events => {
                let phase = workflow.status.as_ref().and_then(|s| s.phase.as_deref());
                match self.transitions.follow_run(&uid, phase) {
                    (_, true) => vec![transitions::rerun(&workflow)],
                    (_, false) => Vec::new(),
                }
            }
            _ => self.transitions.observe(&workflow, since),
        };
        self.workflows.apply(workflow);
        let cached = self.workflows.get(&namespace, &name, Some(&uid));
        let attempt = self.transitions.attempt(&uid);
        let mut intakes = Vec::new();
        for t in derived {
            let Some(cached) = cached.as_ref() else {
                continue;
            };
            let event = synthesize(cached, t, attempt);
            if self.first_report(&uid, &event) {
                self.count("workflows");
                intakes.push(Intake {
                    event: Some(event),
                    ..Intake::default()
                });
            }
        }
        if let Some(state) = self.transitions.take_changed(&uid) {
            let seen = Some((uid, Some(serialise(&state))));
            match intakes.last_mut() {
                Some(last) => last.seen = seen,
                None => intakes.push(Intake {
                    seen,
                    ..Intake::default()
                }),
            }
        }
        intakes
    }

    /// Notes a workflow whose nodes Argo offloaded to its database (`offloadNodeStatusVersion`),
    /// which the status path cannot see: with that path on, its Events report its node
    /// transitions. Warned about and counted once per workflow.
    fn note_offloaded(&mut self, workflow: &Workflow, uid: &str) {
        let offloaded = workflow
            .status
            .as_ref()
            .is_some_and(|s| s.offload_node_status_version.is_some());
        if !offloaded || uid.is_empty() || self.paths == Paths::Events {
            return;
        }
        if self.offloaded.insert(uid.to_owned()) {
            let meta = &workflow.metadata;
            tracing::warn!(
                workflow = meta.name.as_deref().unwrap_or_default(),
                namespace = meta.namespace.as_deref().unwrap_or_default(),
                "node status offloaded to Argo's database, out of the router's sight: this \
                 workflow's node transitions are taken from its Events"
            );
            self.metrics.offloaded_workflows.inc();
        }
    }

    /// Whether `event` is the first report of its transition: always, unless it is about a
    /// KFP task whose transition another of its nodes (or path) reported in this attempt.
    fn first_report(&mut self, uid: &str, event: &RouterEvent) -> bool {
        match &event.task {
            Some(task) if !uid.is_empty() => {
                let news = self
                    .transitions
                    .record_task(uid, &task.key(), &event.event.reason);
                if !news {
                    self.count("tasks-deduplicated");
                }
                news
            }
            _ => true,
        }
    }

    /// Decides whether a real Event is delivered, by the paths in use; returns it (or `None`
    /// for a duplicate) with the state to store. With both paths on, it gets the id the status
    /// path gives its transition: one id whichever path (or leader) reports it.
    fn report(&mut self, mut event: RouterEvent) -> (Option<RouterEvent>, Option<SeenState>) {
        let uid = event
            .workflow
            .as_ref()
            .map(|w| w.uid.clone())
            .or_else(|| event.event.workflow_uid.clone())
            .filter(|uid| !uid.is_empty());
        let Some(uid) = uid else {
            if self.paths == Paths::Workflows {
                return (None, None);
            }
            self.count("events");
            return (Some(event), None);
        };
        self.sightings.touch(&uid);
        let namespace = event.workflow.as_ref().map(|w| w.namespace.as_str());
        self.transitions
            .place(&uid, namespace.unwrap_or(&event.event.namespace));
        event.attempt = self.transitions.attempt(&uid);
        // An offloaded workflow's Events are read as with both paths on.
        let paths = match self.paths {
            Paths::Workflows if self.offloaded.contains(&uid) => Paths::Both,
            paths => paths,
        };
        if paths == Paths::Both
            && let Some(id) = transition_of(&uid, &event)
        {
            event.id = id;
        }
        let news = match paths {
            Paths::Events => true,
            Paths::Workflows => false,
            Paths::Both => {
                let node = event.node.as_ref().map(|n| n.full_name.as_str());
                let news = self.transitions.record(&uid, node, &event.event.reason);
                if !news {
                    self.count("both-deduplicated");
                }
                news
            }
        };
        let delivered = news && self.first_report(&uid, &event);
        if delivered {
            self.count("events");
        }
        let seen = self
            .transitions
            .take_changed(&uid)
            .map(|state| (uid, Some(serialise(&state))));
        (delivered.then_some(event), seen)
    }

    fn count(&self, path: &'static str) {
        let mut counters = self.counters.borrow_mut();
        if let Some((_, counter)) = counters.iter().find(|(p, _)| *p == path) {
            counter.inc();
            return;
        }
        let counter = self
            .metrics
            .transitions
            .get_or_create(&vec![("path", path)]);
        counter.inc();
        counters.push((path, counter.clone()));
    }

    /// Builds the router event for `event` from it and its cached Workflow.
    pub(crate) fn enrich(&self, event: Event) -> RouterEvent {
        let id = occurrence_id(&event);
        let node_ref = node::node_ref(&event);
        let facts = event_facts(event);
        let event_reason = facts.reason.as_str();
        let cached = self.workflows.get(
            &facts.namespace,
            &facts.workflow_name,
            facts.workflow_uid.as_deref(),
        );
        let node = node_ref.map(|r| {
            let status = cached.as_ref().and_then(|c| {
                let nodes = &c.workflow.status.as_ref()?.nodes;
                match &r.id {
                    Some(id) => nodes.get(id),
                    None => nodes.values().find(|n| n.name == r.full_name),
                }
            });
            NodeFacts {
                id: r.id.or_else(|| status.map(|s| s.id.clone())),
                name: node::short_name(&r.full_name, &facts.workflow_name).to_owned(),
                display_name: status.and_then(|s| s.display_name.clone()),
                node_type: r
                    .node_type
                    .or_else(|| status.and_then(|s| s.node_type.clone())),
                phase: status
                    .and_then(|s| s.phase.clone())
                    .or_else(|| facts.reason.strip_prefix("WorkflowNode").map(str::to_owned)),
                message: status.and_then(|s| s.message.clone()).or(r.message),
                template_name: status.and_then(|s| s.template_name.clone()),
                started_at: r
                    .start_time
                    .or_else(|| status.and_then(|s| s.started_at.clone())),
                finished_at: status.and_then(|s| s.finished_at.clone()),
                full_name: r.full_name,
            }
        });
        let role = match (&node, &cached) {
            (Some(node), Some(cached)) if cached.kfp_v2 => Some(
                cached
                    .tasks
                    .role(node.id.as_deref(), &node.full_name)
                    .cloned()
                    .unwrap_or_else(|| task::guess(&facts.workflow_name, &node.full_name)),
            ),
            _ => None,
        };
        let workflow = cached.map(|c| at_phase(&c.facts, event_reason));
        let mut event = RouterEvent {
            id,
            node,
            workflow,
            event: facts,
            synthesized: false,
            task: None,
            plumbing: false,
            attempt: 1,
            cluster: None,
        };
        set_role(&mut event, role);
        event
    }
}

/// Runs the stage: reads `input` until it closes, writes what to accept to `output`, in the
/// order of the items. The Workflows of items read ahead are looked up meanwhile.
pub(crate) async fn run(
    mut enricher: Enricher,
    mut input: mpsc::Receiver<SourceItem>,
    output: mpsc::Sender<Intake>,
) {
    let mut ahead = fallback::ReadAhead::default();
    while let Some(item) = ahead.next(&mut enricher, &mut input).await {
        for intake in enricher.apply(item) {
            if output.send(intake).await.is_err() {
                return;
            }
        }
    }
}

/// Marks `event` with what its node stands for in a KFP v2 run. A task's failure reported by
/// its DAG node, which has no message, names why the container failed, as Argo's own Pod
/// events do: `Failed node <name>: Error (exit code 1)`.
fn set_role(event: &mut RouterEvent, role: Option<task::Role>) {
    match role {
        Some(task::Role::Task(task)) => {
            let failed = matches!(
                event.event.reason.as_str(),
                "WorkflowNodeFailed" | "WorkflowNodeError"
            );
            let bare = node::parse_message(&event.event.message).is_some_and(|(_, m)| m.is_none());
            if let (true, true, Some(why)) = (failed, bare, &task.message) {
                event.event.message = format!("{}: {why}", event.event.message);
            }
            event.task = Some(task);
        }
        Some(task::Role::Plumbing) => event.plumbing = true,
        None => {}
    }
}

/// A workflow's seen-state as the outbox stores it.
fn serialise(seen: &Seen) -> Vec<u8> {
    serde_json::to_vec(seen).expect("workflow states serialise")
}

/// Builds the router event for a transition derived from `cached`'s status, in run `attempt`.
fn synthesize(cached: &Cached, t: Transition, attempt: u32) -> RouterEvent {
    let wf = &cached.facts;
    let status_node = t
        .node_id
        .as_ref()
        .and_then(|id| cached.workflow.status.as_ref()?.nodes.get(id));
    let node = status_node.map(|n| NodeFacts {
        id: Some(n.id.clone()),
        full_name: n.name.clone(),
        name: node::short_name(&n.name, &wf.name).to_owned(),
        display_name: n.display_name.clone(),
        node_type: n.node_type.clone(),
        phase: t.reason.strip_prefix("WorkflowNode").map(str::to_owned),
        message: n.message.clone(),
        template_name: n.template_name.clone(),
        started_at: n.started_at.clone(),
        finished_at: n.finished_at.clone(),
    });
    let id = transition_id(
        &wf.uid,
        t.node_id.as_deref().unwrap_or_default(),
        &t.reason,
        attempt,
    );
    let role = match (&t.node_id, cached.kfp_v2) {
        (Some(id), true) => cached.tasks.role(Some(id), "").cloned(),
        _ => None,
    };
    let workflow = at_phase(wf, &t.reason);
    let mut event = RouterEvent {
        id,
        event: EventFacts {
            uid: String::new(),
            namespace: wf.namespace.clone(),
            reason: t.reason,
            message: t.message,
            severity: t.severity.to_owned(),
            count: 1,
            time: t.time,
            workflow_name: wf.name.clone(),
            workflow_uid: Some(wf.uid.clone()),
        },
        node,
        workflow: Some(workflow),
        synthesized: true,
        task: None,
        plumbing: false,
        attempt,
        cluster: None,
    };
    set_role(&mut event, role);
    event
}

/// Where `event`'s Workflow is: its namespace, name and uid. An Event about the Workflow names
/// it as its object; one about a Pod of it carries the controller's annotations.
fn workflow_of(event: &Event) -> (&str, &str, Option<&str>) {
    let involved = &event.involved_object;
    let namespace = event
        .metadata
        .namespace
        .as_ref()
        .or(involved.namespace.as_ref());
    let (name, uid) = match involved.kind.as_deref() == Some("Workflow") {
        true => (involved.name.as_deref(), involved.uid.as_deref()),
        false => {
            let annotation = |key| {
                let annotations = event.metadata.annotations.as_ref();
                annotations.and_then(|a| a.get(key)).map(String::as_str)
            };
            (
                annotation(crate::model::argo::WORKFLOW_NAME),
                annotation(crate::model::argo::WORKFLOW_UID),
            )
        }
    };
    (
        namespace.map_or("", String::as_str),
        name.unwrap_or_default(),
        uid,
    )
}

/// The facts of `event`, taken from it rather than copied.
fn event_facts(event: Event) -> EventFacts {
    let (namespace, workflow_name, workflow_uid) = workflow_of(&event);
    let (namespace, workflow_name) = (namespace.to_owned(), workflow_name.to_owned());
    let workflow_uid = workflow_uid.map(str::to_owned);
    let Event {
        metadata,
        reason,
        message,
        type_,
        count,
        last_timestamp,
        event_time,
        first_timestamp,
        ..
    } = event;
    let time = last_timestamp
        .map(|t| t.0.to_string())
        .or_else(|| event_time.map(|t| t.0.to_string()))
        .or_else(|| first_timestamp.map(|t| t.0.to_string()))
        .or_else(|| metadata.creation_timestamp.map(|t| t.0.to_string()));
    EventFacts {
        uid: metadata.uid.unwrap_or_default(),
        namespace,
        reason: reason.unwrap_or_default(),
        message: message.unwrap_or_default(),
        severity: type_.unwrap_or_else(|| "Normal".into()),
        count: count.unwrap_or(1),
        time,
        workflow_name,
        workflow_uid,
    }
}

/// The workflow phase when an event of `reason` happened, when it is not the `cached` one. The
/// controller records a workflow's last Event before it writes the final status back, so a
/// cached phase can lag behind the reason.
fn phase_at(reason: &str, cached: Option<&str>) -> Option<&'static str> {
    let terminal = |p: &str| matches!(p, "Succeeded" | "Failed" | "Error");
    let implied = match reason {
        "WorkflowSucceeded" => "Succeeded",
        "WorkflowFailed" | "WorkflowTimedOut" => "Failed",
        _ => return None,
    };
    (!cached.is_some_and(terminal)).then_some(implied)
}

/// The workflow's facts `facts` as of an event of `reason`: shared, unless the phase differs.
fn at_phase(facts: &Arc<WorkflowFacts>, reason: &str) -> Arc<WorkflowFacts> {
    let mut facts = Arc::clone(facts);
    if let Some(phase) = phase_at(reason, facts.phase.as_deref()) {
        Arc::make_mut(&mut facts).phase = Some(phase.to_owned());
    }
    facts
}

/// The id of the transition `reason` of node `node_id` (empty for the workflow itself) in run
/// `attempt` of workflow `uid`: the same whichever path reports it. The first attempt keeps the
/// identity earlier versions gave it.
fn transition_id(uid: &str, node_id: &str, reason: &str, attempt: u32) -> String {
    let mut identity = [uid, "/", node_id, "/", reason].concat();
    if attempt > 1 {
        identity.push_str(&format!("/attempt-{attempt}"));
    }
    uuid_of(&identity)
}

/// The transition id of a real Event of workflow `uid` (see [`transition_id`]), or `None` when
/// its node is not known by id (the Event keeps its occurrence id).
fn transition_of(uid: &str, event: &RouterEvent) -> Option<String> {
    let reason = &event.event.reason;
    let node_id = match &event.node {
        Some(node) => node.id.as_deref()?,
        None if reason.starts_with("WorkflowNode") => return None,
        None => "",
    };
    Some(transition_id(uid, node_id, reason, event.attempt))
}

/// A stable id for one occurrence: the same Event uid and count always give the same id.
pub(crate) fn occurrence_id(event: &Event) -> String {
    let mut name = crate::model::argo::identity(event);
    let _ = write!(name, "/{}", event.count.unwrap_or(1));
    uuid_of(&name)
}

/// The version-5 UUID of `name` in the OID namespace, as lowercase hyphenated text.
fn uuid_of(name: &str) -> String {
    let uuid = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes());
    uuid.hyphenated()
        .encode_lower(&mut uuid::Uuid::encode_buffer())
        .to_owned()
}

#[cfg(test)]
mod tests;
