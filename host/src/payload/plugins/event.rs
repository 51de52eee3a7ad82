//! The event as a plugin sees it: every fact the router knows, the same facts as the
//! `extended` payload format, whatever format the endpoint renders.
//!
//! [`WitEvent`] is a [`RouterEvent`] prepared for one endpoint. Components built for 0.1 and
//! 0.2 are given its whole [`WitEvent::record`], which borrows the event's strings rather
//! than copying them (wasmtime copies each string into each instance anyway). Components
//! built for 0.3 are given a handle ([`EventHandle`]) and ask for the facts they use, one at
//! a time, each read from the same record.

use std::sync::{Arc, OnceLock};

use super::bindings::{Event, Node, PayloadFormat, Task};
use super::current::Rendering;
use crate::model::event::{NodeFacts, NodeView, RouterEvent, TaskFacts, WorkflowFacts};
use crate::model::request::Payload;
use crate::payload::format::{self, Format};

/// A [`RouterEvent`] as prepared for one endpoint's plugins.
#[derive(Debug)]
pub struct WitEvent<'a> {
    event: &'a Arc<RouterEvent>,
    endpoint: &'a str,
    format: Format,
    view: NodeView,
    /// The record's lists, built when a component first needs the whole record.
    lists: OnceLock<Lists<'a>>,
    /// The endpoint's name as 0.3 handles hold it, made on the first handle.
    shared_endpoint: OnceLock<Arc<str>>,
}

/// The lists of pairs and the task's path, which the record holds as slices.
#[derive(Debug, Default)]
pub(crate) struct Lists<'a> {
    parameters: Vec<(&'a str, &'a str)>,
    labels: Vec<(&'a str, &'a str)>,
    dag_path: Vec<&'a str>,
}

impl<'a> Lists<'a> {
    /// No pairs, and `dag_path` as the task's path.
    pub(crate) fn with_dag_path(dag_path: Vec<&'a str>) -> Self {
        Self {
            dag_path,
            ..Self::default()
        }
    }

    fn of(event: &'a RouterEvent) -> Self {
        let pairs = |get: fn(&WorkflowFacts) -> &std::collections::BTreeMap<String, String>| {
            event.workflow.as_deref().map_or_else(Vec::new, |w| {
                get(w)
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect()
            })
        };
        Self {
            parameters: pairs(|w| &w.parameters),
            labels: pairs(|w| &w.labels),
            dag_path: event.task.as_ref().map_or_else(Vec::new, |t| {
                t.dag_path.iter().map(String::as_str).collect()
            }),
        }
    }
}

impl<'a> WitEvent<'a> {
    /// `event` as prepared for `endpoint`, which renders `format` and names nodes as `view`
    /// says.
    pub fn new(
        event: &'a Arc<RouterEvent>,
        endpoint: &'a str,
        format: Format,
        view: NodeView,
    ) -> Self {
        Self {
            event,
            endpoint,
            format,
            view,
            lists: OnceLock::new(),
            shared_endpoint: OnceLock::new(),
        }
    }

    /// The whole WIT record.
    pub fn record(&self) -> Event<'_> {
        self.record_with(self.lists.get_or_init(|| Lists::of(self.event)))
    }

    /// The WIT record with `lists` as its lists of pairs and task path: empty ones when the
    /// caller reads none of those. Always inlined, so that a caller reading one field (a 0.3
    /// handle's method) computes only that one: built whole, it was a tenth of what the bundled
    /// chain's host calls cost.
    #[inline(always)]
    pub(crate) fn record_with<'s>(&'s self, lists: &'s Lists<'a>) -> Event<'s> {
        let event: &'s RouterEvent = self.event;
        let workflow = event.workflow.as_deref();
        let fact =
            |get: fn(&WorkflowFacts) -> &Option<String>| workflow.and_then(|w| get(w).as_deref());
        Event {
            id: &event.id,
            reason: &event.event.reason,
            event_type: &event.event.severity,
            message: &event.event.message,
            namespace: &event.event.namespace,
            cluster: event.cluster.as_deref(),
            event_uid: &event.event.uid,
            event_time: event.event.time.as_deref(),
            event_count: event.event.count,
            synthesized: event.synthesized,
            attempt: event.attempt,
            workflow_name: &event.event.workflow_name,
            workflow_uid: workflow
                .map(|w| w.uid.as_str())
                .filter(|uid| !uid.is_empty())
                .or(event.event.workflow_uid.as_deref()),
            run_id: Some(event.run_id()).filter(|id| !id.is_empty()),
            run_name: fact(|w| &w.run_name),
            pipeline_name: fact(|w| &w.pipeline_name),
            recurring_run_name: fact(|w| &w.recurring_run_name),
            phase: fact(|w| &w.phase),
            started_at: fact(|w| &w.started_at),
            finished_at: fact(|w| &w.finished_at),
            workflow_message: fact(|w| &w.message),
            parameters: &lists.parameters,
            labels: &lists.labels,
            node_name: format::node_name(event, self.view),
            node: event.node.as_ref().map(node),
            task: event.task.as_ref().map(|t| task(t, &lists.dag_path)),
            endpoint: self.endpoint,
            format: match self.format {
                Format::Kfp => PayloadFormat::Kfp,
                Format::Extended => PayloadFormat::Extended,
                Format::Cloudevents => PayloadFormat::Cloudevents,
            },
        }
    }

    /// The name of the endpoint the event is prepared for.
    pub(crate) fn endpoint(&self) -> &str {
        self.endpoint
    }

    /// The router's rendering of the event for the endpoint, held in `payload` once made.
    pub(crate) fn rendering(&self, payload: OnceLock<Payload>) -> Rendering {
        Rendering::new(Arc::clone(self.event), self.format, self.view, payload)
    }

    /// A handle on the same facts, for a 0.3 component's call.
    pub(crate) fn handle(&self) -> EventHandle {
        EventHandle {
            event: Arc::clone(self.event),
            endpoint: Arc::clone(self.shared_endpoint.get_or_init(|| self.endpoint.into())),
            format: self.format,
            view: self.view,
        }
    }
}

/// What a 0.3 component's `event` handle stands for, in the store's resource table for the
/// length of one call.
#[derive(Debug)]
pub struct EventHandle {
    event: Arc<RouterEvent>,
    endpoint: Arc<str>,
    format: Format,
    view: NodeView,
}

impl EventHandle {
    /// The event as prepared for the endpoint, to read facts from.
    pub(crate) fn wit(&self) -> WitEvent<'_> {
        WitEvent::new(&self.event, &self.endpoint, self.format, self.view)
    }

    /// The workflow's facts, when the workflow was found.
    pub(crate) fn workflow(&self) -> Option<&WorkflowFacts> {
        self.event.workflow.as_deref()
    }

    /// The task's path of loops and sub-DAGs, outermost first.
    pub(crate) fn dag_path(&self) -> &[String] {
        self.event.task.as_ref().map_or(&[], |t| &t.dag_path)
    }
}

/// The WIT record of a node.
fn node(n: &NodeFacts) -> Node<'_> {
    Node {
        id: n.id.as_deref(),
        name: &n.name,
        full_name: &n.full_name,
        display_name: n.display_name.as_deref(),
        node_type: n.node_type.as_deref(),
        phase: n.phase.as_deref(),
        message: n.message.as_deref(),
        template_name: n.template_name.as_deref(),
        started_at: n.started_at.as_deref(),
        finished_at: n.finished_at.as_deref(),
    }
}

/// The WIT record of a KFP task, whose path `dag_path` is.
fn task<'a>(t: &'a TaskFacts, dag_path: &'a [&'a str]) -> Task<'a> {
    Task {
        name: &t.name,
        display_name: t.display_name.as_deref(),
        iteration: t.iteration,
        dag_path,
        cached: t.cached,
        pod_name: t.pod_name.as_deref(),
        message: t.message.as_deref(),
    }
}
