use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::LazyEvent;

/// A Kubernetes Event about a KFP run (an Argo Workflow), with every fact the
/// router knows about it (the facts of the `extended` payload format, whatever
/// format the endpoint uses).
///
/// Text facts documented as "may be empty" are empty strings when unknown.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Event {
    /// Identity of this occurrence, the same across retries and restarts (the
    /// `webhook-id` header is `msg_<id>`).
    pub id: String,
    /// Event reason, e.g. `WorkflowRunning`, `WorkflowSucceeded`,
    /// `WorkflowFailed`, `WorkflowNodeFailed`.
    pub reason: String,
    /// Kubernetes event type: `Normal` or `Warning`.
    pub event_type: String,
    /// Human-readable event message.
    pub message: String,
    /// Namespace of the workflow.
    pub namespace: String,
    /// The cluster the router watches (`[router] cluster`); may be empty.
    pub cluster: String,
    /// The Kubernetes Event's uid.
    pub event_uid: String,
    /// When the event happened (RFC 3339); may be empty.
    pub event_time: String,
    /// How many times Kubernetes counted this Event.
    pub event_count: i32,
    /// True when the host derived the event from a workflow status change
    /// instead of reading a Kubernetes Event.
    pub synthesized: bool,
    /// Which run of the workflow this is: 1, then 2 after a retry, ...
    pub attempt: u32,
    /// Name of the Argo Workflow.
    pub workflow_name: String,
    /// Uid of the Argo Workflow; may be empty.
    pub workflow_uid: String,
    /// KFP run id; may be empty.
    pub run_id: String,
    /// KFP run display name; may be empty.
    pub run_name: String,
    /// KFP pipeline name; may be empty.
    pub pipeline_name: String,
    /// The KFP recurring run that started this run; may be empty.
    pub recurring_run_name: String,
    /// Workflow phase (`Running`, `Succeeded`, `Failed`, `Error`, ...); may be empty.
    pub phase: String,
    /// When the workflow started (RFC 3339); may be empty.
    pub started_at: String,
    /// When the workflow finished (RFC 3339); may be empty.
    pub finished_at: String,
    /// The workflow's status message, e.g. why it failed; may be empty.
    pub workflow_message: String,
    /// The run's input parameters as (name, value) pairs, sorted by name.
    pub parameters: Vec<(String, String)>,
    /// Workflow labels as (key, value) pairs, sorted by key.
    pub labels: Vec<(String, String)>,
    /// The step name as the payload names it; empty for workflow-level events.
    pub node_name: String,
    /// Argo node type (`Pod`, `DAG`, ...) of [`Event::node`]; may be empty.
    pub node_type: String,
    /// The node the event is about; `None` for workflow-level events.
    pub node: Option<Node>,
    /// The KFP v2 task the event is about.
    pub task: Option<Task>,
    /// Name of the endpoint this payload is for.
    pub endpoint: String,
    /// The payload format that endpoint is configured with.
    pub format: PayloadFormat,
}

/// The workflow node (step) an event is about.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Node {
    /// Argo's node id.
    pub id: Option<String>,
    /// The step name: the last `.`-separated segment of `full_name`.
    pub name: String,
    /// The node's full name, e.g. `train-x7k2p.train`.
    pub full_name: String,
    /// The display name from the workflow status.
    pub display_name: Option<String>,
    /// Argo node type: `Pod`, `DAG`, `Steps`, `Retry`, ...
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

/// The KFP v2 task an event is about, as the pipeline names it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Task {
    /// The task's name in the pipeline, e.g. `train`.
    pub name: String,
    /// Its display name, when KFP recorded one.
    pub display_name: Option<String>,
    /// The `ParallelFor` iteration it ran in (0-based), when in a loop.
    pub iteration: Option<u32>,
    /// The loop and sub-DAG tasks it runs in, outermost first.
    pub dag_path: Vec<String>,
    /// True when KFP's cache served the task instead of running it.
    pub cached: bool,
    /// The Pod that ran the task's container, when it ran.
    pub pod_name: Option<String>,
    /// Why the task's container failed, when it did.
    pub message: Option<String>,
}

/// The payload format an endpoint is configured with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadFormat {
    /// The Go `kfp-event-handler`'s five keys.
    #[default]
    Kfp,
    /// The `kfp` keys plus every fact of the event.
    Extended,
    /// A CloudEvents 1.0 envelope around the `extended` payload.
    Cloudevents,
}

/// The broad outcome an event reports, derived from its reason, phase and type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The run or node succeeded.
    Succeeded,
    /// The run or node failed, errored or timed out.
    Failed,
    /// The run or node is pending or running.
    Running,
    /// Anything else.
    Other,
}

impl Event {
    /// The value of run parameter `name`, if present.
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of workflow label `key`, if present.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// True for Kubernetes events of type `Warning`.
    pub fn is_warning(&self) -> bool {
        is_warning(&self.event_type)
    }

    /// True for events about a single workflow node rather than the whole workflow.
    pub fn is_node_event(&self) -> bool {
        !self.node_name.is_empty()
    }

    /// The best name to show people: the run name, else the workflow name.
    pub fn display_name(&self) -> &str {
        if self.run_name.is_empty() {
            &self.workflow_name
        } else {
            &self.run_name
        }
    }

    /// The outcome this event reports (see [`Outcome::of`]).
    pub fn outcome(&self) -> Outcome {
        Outcome::of(&self.reason, || &self.phase, || &self.event_type)
    }

    /// The value of a named field, as used by [`Template`](crate::Template)
    /// placeholders: the text fields by their Rust name (`reason`, `run_id`,
    /// `pipeline_name`, ...), `attempt`, plus `reason_kebab` (`WorkflowFailed` → `workflow-failed`) and
    /// `display_name`. `None` for unknown names.
    pub fn field(&self, name: &str) -> Option<Cow<'_, str>> {
        LazyEvent::from(self).field(name)
    }

    /// Names accepted by [`Event::field`].
    pub const FIELD_NAMES: &'static [&'static str] = &[
        "reason",
        "reason_kebab",
        "event_type",
        "message",
        "namespace",
        "cluster",
        "workflow_name",
        "run_id",
        "run_name",
        "display_name",
        "node_name",
        "node_type",
        "phase",
        "event_time",
        "endpoint",
        "id",
        "pipeline_name",
        "started_at",
        "finished_at",
        "workflow_message",
        "attempt",
    ];
}

impl Outcome {
    /// The outcome an event reports. The reason decides first (`...Failed`,
    /// `...Error`, `...TimedOut` → [`Outcome::Failed`]; `...Succeeded` →
    /// [`Outcome::Succeeded`]; `...Running`, `...Pending` → [`Outcome::Running`]),
    /// then the workflow phase, then a `Warning` event type counts as failed.
    ///
    /// `phase` and `event_type` are called only when what comes before does not
    /// decide, so a [`LazyEvent`] is asked only for the facts that do.
    pub fn of<P, T>(reason: &str, phase: impl FnOnce() -> P, event_type: impl FnOnce() -> T) -> Self
    where
        P: AsRef<str>,
        T: AsRef<str>,
    {
        Self::of_word(reason)
            .or_else(|| Self::of_word(phase().as_ref()))
            .unwrap_or_else(|| {
                if is_warning(event_type().as_ref()) {
                    Self::Failed
                } else {
                    Self::Other
                }
            })
    }

    /// The outcome a reason or phase names, if it names one.
    fn of_word(s: &str) -> Option<Self> {
        if ["Failed", "Error", "TimedOut", "Failure"]
            .iter()
            .any(|w| s.ends_with(w))
        {
            Some(Self::Failed)
        } else if s.ends_with("Succeeded") {
            Some(Self::Succeeded)
        } else if s.ends_with("Running") || s.ends_with("Pending") {
            Some(Self::Running)
        } else {
            None
        }
    }
}

/// True for the Kubernetes event type `Warning`, in any case.
pub(crate) fn is_warning(event_type: &str) -> bool {
    event_type.eq_ignore_ascii_case("warning")
}

/// `WorkflowNodeFailed` → `workflow-node-failed`.
pub(crate) fn kebab(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    let mut prev_lower = false;
    for c in s.chars() {
        if c.is_ascii_uppercase() {
            if prev_lower {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
            prev_lower = false;
        } else if c == '_' || c == ' ' {
            out.push('-');
            prev_lower = false;
        } else {
            out.push(c);
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(reason: &str, phase: &str, ty: &str) -> Event {
        Event {
            reason: reason.into(),
            phase: phase.into(),
            event_type: ty.into(),
            ..Event::default()
        }
    }

    #[test]
    fn outcome_prefers_reason_then_phase_then_type() {
        assert_eq!(
            ev("WorkflowFailed", "Running", "Warning").outcome(),
            Outcome::Failed
        );
        assert_eq!(ev("WorkflowNodeError", "", "").outcome(), Outcome::Failed);
        assert_eq!(ev("WorkflowTimedOut", "", "").outcome(), Outcome::Failed);
        assert_eq!(
            ev("WorkflowSucceeded", "", "Normal").outcome(),
            Outcome::Succeeded
        );
        assert_eq!(
            ev("WorkflowRunning", "", "Normal").outcome(),
            Outcome::Running
        );
        assert_eq!(
            ev("Something", "Succeeded", "Normal").outcome(),
            Outcome::Succeeded
        );
        assert_eq!(ev("Something", "", "Warning").outcome(), Outcome::Failed);
        assert_eq!(ev("Something", "", "Normal").outcome(), Outcome::Other);
    }

    #[test]
    fn kebab_case_reason() {
        assert_eq!(kebab("WorkflowNodeFailed"), "workflow-node-failed");
        assert_eq!(kebab("WorkflowTimedOut"), "workflow-timed-out");
        assert_eq!(kebab("already-kebab"), "already-kebab");
    }

    #[test]
    fn labels_and_names() {
        let e = Event {
            workflow_name: "wf-1".into(),
            labels: vec![("pipeline/runid".into(), "abc".into())],
            ..Event::default()
        };
        assert_eq!(e.label("pipeline/runid"), Some("abc"));
        assert_eq!(e.label("nope"), None);
        assert_eq!(e.display_name(), "wf-1");
        assert_eq!(e.field("reason_kebab").as_deref(), Some(""));
        assert!(e.field("bogus").is_none());
        for name in Event::FIELD_NAMES {
            assert!(e.field(name).is_some(), "{name}");
        }
    }
}
