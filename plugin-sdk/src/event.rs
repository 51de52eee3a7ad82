use serde::{Deserialize, Serialize};

/// A Kubernetes Event about a KFP run (an Argo Workflow), as enriched by the host.
///
/// Fields documented as "may be empty" are empty strings when unknown.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Event {
    /// Event reason, e.g. `WorkflowRunning`, `WorkflowSucceeded`,
    /// `WorkflowFailed`, `WorkflowNodeFailed`.
    pub reason: String,
    /// Kubernetes event type: `Normal` or `Warning`.
    pub event_type: String,
    /// Human-readable event message.
    pub message: String,
    /// Namespace of the workflow.
    pub namespace: String,
    /// Name of the Argo Workflow.
    pub workflow_name: String,
    /// KFP run id; may be empty.
    pub run_id: String,
    /// KFP run display name; may be empty.
    pub run_name: String,
    /// Name of the node the event is about; empty for workflow-level events.
    pub node_name: String,
    /// Argo node type (`Pod`, `DAG`, ...); may be empty.
    pub node_type: String,
    /// Workflow phase (`Running`, `Succeeded`, `Failed`, `Error`, ...); may be empty.
    pub phase: String,
    /// When the event happened (RFC 3339); may be empty.
    pub event_time: String,
    /// Workflow labels as (key, value) pairs.
    pub labels: Vec<(String, String)>,
    /// Name of the endpoint this payload is for.
    pub endpoint: String,
    /// True when the host synthesized the event instead of reading a Kubernetes Event.
    pub synthesized: bool,
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
    /// The value of workflow label `key`, if present.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// True for Kubernetes events of type `Warning`.
    pub fn is_warning(&self) -> bool {
        self.event_type.eq_ignore_ascii_case("warning")
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

    /// The outcome this event reports.
    ///
    /// The reason decides first (`...Failed`, `...Error`, `...TimedOut` →
    /// [`Outcome::Failed`]; `...Succeeded` → [`Outcome::Succeeded`];
    /// `...Running`, `...Pending` → [`Outcome::Running`]), then the workflow
    /// phase, then a `Warning` type counts as failed.
    pub fn outcome(&self) -> Outcome {
        let from_word = |s: &str| {
            if ["Failed", "Error", "TimedOut", "Failure"]
                .iter()
                .any(|w| s.ends_with(w))
            {
                Some(Outcome::Failed)
            } else if s.ends_with("Succeeded") {
                Some(Outcome::Succeeded)
            } else if s.ends_with("Running") || s.ends_with("Pending") {
                Some(Outcome::Running)
            } else {
                None
            }
        };
        from_word(&self.reason)
            .or_else(|| from_word(&self.phase))
            .unwrap_or(if self.is_warning() {
                Outcome::Failed
            } else {
                Outcome::Other
            })
    }

    /// The value of a named field, as used by [`Template`](crate::Template)
    /// placeholders: the string fields by their Rust name (`reason`, `run_id`,
    /// ...), plus `reason_kebab` (`WorkflowFailed` → `workflow-failed`) and
    /// `display_name`. `None` for unknown names.
    pub fn field(&self, name: &str) -> Option<std::borrow::Cow<'_, str>> {
        let s = match name {
            "reason" => &self.reason,
            "event_type" => &self.event_type,
            "message" => &self.message,
            "namespace" => &self.namespace,
            "workflow_name" => &self.workflow_name,
            "run_id" => &self.run_id,
            "run_name" => &self.run_name,
            "node_name" => &self.node_name,
            "node_type" => &self.node_type,
            "phase" => &self.phase,
            "event_time" => &self.event_time,
            "endpoint" => &self.endpoint,
            "display_name" => self.display_name(),
            "reason_kebab" => return Some(kebab(&self.reason).into()),
            _ => return None,
        };
        Some(s.into())
    }

    /// Names accepted by [`Event::field`].
    pub const FIELD_NAMES: &'static [&'static str] = &[
        "reason",
        "reason_kebab",
        "event_type",
        "message",
        "namespace",
        "workflow_name",
        "run_id",
        "run_name",
        "display_name",
        "node_name",
        "node_type",
        "phase",
        "event_time",
        "endpoint",
    ];
}

/// `WorkflowNodeFailed` → `workflow-node-failed`.
fn kebab(s: &str) -> String {
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
