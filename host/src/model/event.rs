//! The router's event: one occurrence of a workflow-controller Event, joined with its Workflow.
//!
//! A [`RouterEvent`] is what the outbox stores and what every payload format renders from, so it
//! keeps plain, owned, serialisable facts rather than Kubernetes API types.

use std::collections::BTreeMap;

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
    /// The Workflow the event belongs to, when it was found.
    pub workflow: Option<WorkflowFacts>,
    /// True when the router derived this event itself rather than reading a Kubernetes Event.
    #[serde(default)]
    pub synthesized: bool,
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

impl RouterEvent {
    /// The KFP run id (label `pipeline/runid`), or empty when unknown.
    pub fn run_id(&self) -> &str {
        self.workflow
            .as_ref()
            .and_then(|w| w.labels.get(RUN_ID_LABEL))
            .map_or("", String::as_str)
    }

    /// The step name subscribers see: empty for workflow-level and root-node events.
    pub fn node_name(&self) -> &str {
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
