//! The router's event: one occurrence of a workflow-controller Event, joined with its Workflow.
//!
//! A [`RouterEvent`] is what the outbox stores and what every payload format renders from, so it
//! keeps plain, owned, serialisable facts rather than Kubernetes API types.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// One event occurrence, as accepted by the router.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouterEvent {
    /// Stable identity of this occurrence: the same across retries, restarts and replicas.
    /// Used as the Standard Webhooks `webhook-id` and the CloudEvents `id`.
    pub id: String,
    /// Facts taken from the Kubernetes Event itself.
    pub event: EventFacts,
    /// The node the event is about, when it is a node event.
    pub node: Option<NodeFacts>,
    /// The Workflow the event belongs to, when it was found: shared with the other events of
    /// the same Workflow version.
    pub workflow: Option<Arc<WorkflowFacts>>,
    /// True when the router derived this event itself rather than reading a Kubernetes Event.
    #[serde(default)]
    pub synthesized: bool,
    /// The KFP task the event is about, when its run is a KFP v2 run and its node is one of the
    /// user's tasks (or that task's executor Pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskFacts>,
    /// True when the event is about a node of a KFP v2 run that is none of the user's tasks:
    /// a driver, the root DAG, an iteration or executor wrapper. Endpoints that see tasks (the
    /// default) are not sent it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub plumbing: bool,
    /// Which run of the workflow this is: 1, then 2 after the run is retried (the same
    /// Workflow going from a completed phase back to Running), and so on.
    #[serde(default = "first_attempt")]
    pub attempt: u32,
    /// The name of the cluster the router runs in (`router.cluster`), when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
}

fn first_attempt() -> u32 {
    1
}

/// Which nodes of a KFP v2 run an endpoint hears of (`nodes` in its config).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeView {
    /// The user's tasks, named as the pipeline names them; the compiler's plumbing (drivers,
    /// executor wrappers, iteration DAGs) is not sent.
    #[default]
    Tasks,
    /// Every node, named as Argo names it.
    All,
}

/// A KFP task, as the pipeline names it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFacts {
    /// The task's name in the pipeline, e.g. `train`.
    pub name: String,
    /// Its display name (`set_display_name`), when KFP recorded one.
    pub display_name: Option<String>,
    /// The ParallelFor iteration it ran in (0-based), when it ran in a loop.
    pub iteration: Option<u32>,
    /// The loop and sub-DAG tasks it runs in, outermost first (`["root", "for-loop-2"]`).
    pub dag_path: Vec<String>,
    /// True when KFP's cache served the task instead of running it.
    pub cached: bool,
    /// The Pod that ran the task's container, when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// Why the task's container failed, e.g. `Error (exit code 1)`, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl TaskFacts {
    /// A key naming this task execution uniquely within a run: path, name and iteration.
    pub fn key(&self) -> String {
        let iteration = self.iteration.map(|i| format!("[{i}]")).unwrap_or_default();
        format!("{}/{}{iteration}", self.dag_path.join("/"), self.name)
    }
}

/// Facts taken from a Kubernetes Event.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EventFacts {
    /// The Event's `metadata.uid`.
    pub uid: String,
    /// The Event's namespace.
    pub namespace: String,
    /// Why it happened, e.g. `WorkflowNodeSucceeded`. Passed through unchanged.
    pub reason: String,
    /// The human-readable message, e.g. `Succeeded node tacos-vs-burritos-vw8g9.dataprocessing`.
    pub message: String,
    /// `Normal` or `Warning`.
    pub severity: String,
    /// How many times this Event has occurred (Kubernetes bumps it for repeats).
    pub count: i32,
    /// When this occurrence happened (RFC 3339), when known.
    pub time: Option<String>,
    /// Name of the Workflow the event belongs to.
    pub workflow_name: String,
    /// Uid of the Workflow the event belongs to, when the Event names it.
    pub workflow_uid: Option<String>,
}

/// Facts about the Workflow of an event.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkflowFacts {
    /// The Workflow's name.
    pub name: String,
    /// The Workflow's namespace.
    pub namespace: String,
    /// The Workflow's uid.
    pub uid: String,
    /// Labels (KFP's `pipeline/runid` among them).
    pub labels: BTreeMap<String, String>,
    /// Annotations (KFP's `pipelines.kubeflow.org/run_name` among them).
    pub annotations: BTreeMap<String, String>,
    /// Phase at the time of the event, e.g. `Running`, `Failed`.
    pub phase: Option<String>,
    /// When the workflow started (RFC 3339).
    pub started_at: Option<String>,
    /// When the workflow finished (RFC 3339).
    pub finished_at: Option<String>,
    /// The workflow's status message, e.g. why it failed.
    pub message: Option<String>,
    /// Input parameters from `spec.arguments.parameters`, by name.
    pub parameters: BTreeMap<String, String>,
    /// The KFP run's display name (annotation `pipelines.kubeflow.org/run_name`).
    pub run_name: Option<String>,
    /// The KFP pipeline's name, when KFP recorded it.
    pub pipeline_name: Option<String>,
    /// The KFP recurring run that started this run, when one did.
    pub recurring_run_name: Option<String>,
}

/// The most characters of one label, annotation or parameter value an event stores.
pub const MAX_VALUE_CHARS: usize = 1024;
/// The most characters of labels, annotations and parameters together an event stores.
pub const MAX_FACTS_CHARS: usize = 16 * 1024;

impl WorkflowFacts {
    /// Bounds what an event stores of its Workflow, so that a large Workflow (a v1 pipeline
    /// spec in an annotation, a long parameter) cannot grow an outbox row without bound:
    /// each value is cut at [`MAX_VALUE_CHARS`] and, past [`MAX_FACTS_CHARS`] in all, values
    /// are emptied; a cut value ends with `…(truncated)`.
    pub fn cap(&mut self) {
        let mut budget = MAX_FACTS_CHARS;
        for map in [
            &mut self.parameters,
            &mut self.labels,
            &mut self.annotations,
        ] {
            for value in map.values_mut() {
                let limit = MAX_VALUE_CHARS.min(budget);
                if let Some((cut, _)) = value.char_indices().nth(limit) {
                    value.truncate(cut);
                    value.push_str("…(truncated)");
                }
                budget = budget.saturating_sub(value.chars().count());
            }
        }
    }
}

/// Facts about the node (step) an event is about.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeFacts {
    /// The node id, e.g. `tacos-vs-burritos-vw8g9-1612823416`.
    pub id: Option<String>,
    /// The node's full name, e.g. `tacos-vs-burritos-vw8g9.dataprocessing`.
    pub full_name: String,
    /// The step name as KFP subscribers know it: the last segment of the full name.
    pub name: String,
    /// The display name from the Workflow status.
    pub display_name: Option<String>,
    /// The node type, e.g. `Pod`, `DAG`, `Retry`.
    pub node_type: Option<String>,
    /// The node's phase, e.g. `Succeeded`.
    pub phase: Option<String>,
    /// The node's message, e.g. `Error (exit code 1)`.
    pub message: Option<String>,
    /// The template the node ran.
    pub template_name: Option<String>,
    /// When the node started (RFC 3339).
    pub started_at: Option<String>,
    /// When the node finished (RFC 3339).
    pub finished_at: Option<String>,
}

/// KFP's label holding the run id.
pub const RUN_ID_LABEL: &str = "pipeline/runid";

#[cfg(test)]
impl RouterEvent {
    /// An event with `id` and `facts` and nothing else known, for tests.
    pub(crate) fn bare(id: impl Into<String>, facts: EventFacts) -> Self {
        Self {
            id: id.into(),
            event: facts,
            node: None,
            workflow: None,
            synthesized: false,
            task: None,
            plumbing: false,
            attempt: 1,
            cluster: None,
        }
    }
}

impl RouterEvent {
    /// The KFP run id (label `pipeline/runid`), or empty when unknown.
    pub fn run_id(&self) -> &str {
        self.workflow
            .as_ref()
            .and_then(|w| w.labels.get(RUN_ID_LABEL))
            .map_or("", String::as_str)
    }

    /// The step name subscribers see: the KFP task's name, else the node's short name; empty
    /// for workflow-level and root-node events.
    pub fn node_name(&self) -> &str {
        match &self.task {
            Some(task) => &task.name,
            None => self.raw_node_name(),
        }
    }

    /// The node's short name as Argo writes it, whatever task it belongs to.
    pub fn raw_node_name(&self) -> &str {
        self.node.as_ref().map_or("", |n| n.name.as_str())
    }

    /// The key that orders deliveries: events of one workflow are sent in order.
    pub fn ordering_key(&self) -> String {
        match (&self.workflow, &self.event.workflow_uid) {
            (Some(w), _) if !w.uid.is_empty() => w.uid.clone(),
            (_, Some(uid)) => uid.clone(),
            _ => format!("{}/{}", self.event.namespace, self.event.workflow_name),
        }
    }
}
