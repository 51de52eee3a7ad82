use std::borrow::Cow;

use crate::bindings::kfp::event_router::types::Event as HostEvent;
use crate::event::{is_warning, kebab};
use crate::{Event, Node, Outcome, PayloadFormat, Task};

/// The event a [`LazyPlugin`](crate::LazyPlugin) handles, whose facts are read
/// one at a time, when asked for.
///
/// In WebAssembly it is the host's handle and every method is a call into the
/// host that copies only the fact it returns; read a fact once and keep it if
/// you need it again. Elsewhere (unit tests) it borrows an [`Event`]:
/// `LazyEvent::from(&event)`. The methods mirror [`Event`]'s fields and
/// helpers: unknown optional facts are empty strings.
#[derive(Clone, Copy, Debug)]
pub struct LazyEvent<'a>(Source<'a>);

/// Where a [`LazyEvent`] reads its facts.
#[derive(Clone, Copy, Debug)]
enum Source<'a> {
    Owned(&'a Event),
    Host(&'a HostEvent),
}

impl<'a> From<&'a Event> for LazyEvent<'a> {
    fn from(event: &'a Event) -> Self {
        Self(Source::Owned(event))
    }
}

/// A text fact: borrowed from an [`Event`], or the host's string (empty when it
/// has none).
macro_rules! text {
    ($(#[$doc:meta] $name:ident;)*) => {$(
        #[$doc]
        pub fn $name(&self) -> Cow<'a, str> {
            match self.0 {
                Source::Owned(e) => Cow::Borrowed(&e.$name),
                Source::Host(h) => host_text(h.$name()),
            }
        }
    )*};
}

/// A fact of a `Copy` type.
macro_rules! value {
    ($(#[$doc:meta] $name:ident: $ty:ty;)*) => {$(
        #[$doc]
        pub fn $name(&self) -> $ty {
            match self.0 {
                Source::Owned(e) => e.$name,
                Source::Host(h) => h.$name(),
            }
        }
    )*};
}

/// A text fact read from the host; `None` is an empty string.
fn host_text(fact: impl Into<Option<String>>) -> Cow<'static, str> {
    Cow::Owned(fact.into().unwrap_or_default())
}

impl<'a> LazyEvent<'a> {
    /// The host's event.
    pub(crate) fn host(event: &'a HostEvent) -> Self {
        Self(Source::Host(event))
    }

    text! {
        /// Identity of this occurrence (see [`Event::id`]).
        id;
        /// Event reason, e.g. `WorkflowFailed`.
        reason;
        /// Kubernetes event type: `Normal` or `Warning`.
        event_type;
        /// Human-readable event message.
        message;
        /// Namespace of the workflow.
        namespace;
        /// The cluster the router watches; may be empty.
        cluster;
        /// The Kubernetes Event's uid.
        event_uid;
        /// When the event happened (RFC 3339); may be empty.
        event_time;
        /// Name of the Argo Workflow.
        workflow_name;
        /// Uid of the Argo Workflow; may be empty.
        workflow_uid;
        /// KFP run id; may be empty.
        run_id;
        /// KFP run display name; may be empty.
        run_name;
        /// KFP pipeline name; may be empty.
        pipeline_name;
        /// The KFP recurring run that started this run; may be empty.
        recurring_run_name;
        /// Workflow phase; may be empty.
        phase;
        /// When the workflow started (RFC 3339); may be empty.
        started_at;
        /// When the workflow finished (RFC 3339); may be empty.
        finished_at;
        /// The workflow's status message; may be empty.
        workflow_message;
        /// The step name as the payload names it; empty for workflow-level events.
        node_name;
        /// Name of the endpoint this payload is for.
        endpoint;
    }

    value! {
        /// How many times Kubernetes counted this Event.
        event_count: i32;
        /// True when the host derived the event from a workflow status change.
        synthesized: bool;
        /// Which run of the workflow this is: 1, then 2 after a retry, ...
        attempt: u32;
    }

    /// The payload format the endpoint is configured with.
    pub fn format(&self) -> PayloadFormat {
        match self.0 {
            Source::Owned(e) => e.format,
            Source::Host(h) => h.format().into(),
        }
    }

    /// The run's input parameters as (name, value) pairs, sorted by name.
    pub fn parameters(&self) -> Cow<'a, [(String, String)]> {
        match self.0 {
            Source::Owned(e) => Cow::Borrowed(&e.parameters),
            Source::Host(h) => Cow::Owned(h.parameters()),
        }
    }

    /// The value of run parameter `name`, if present.
    pub fn parameter(&self, name: &str) -> Option<Cow<'a, str>> {
        match self.0 {
            Source::Owned(e) => e.parameter(name).map(Cow::Borrowed),
            Source::Host(h) => h.parameter(name).map(Cow::Owned),
        }
    }

    /// The names of the run's input parameters, sorted (without their values).
    pub fn parameter_names(&self) -> Vec<Cow<'a, str>> {
        match self.0 {
            Source::Owned(e) => e.parameters.iter().map(|(k, _)| k.into()).collect(),
            Source::Host(h) => h.parameter_names().into_iter().map(Cow::Owned).collect(),
        }
    }

    /// Workflow labels as (key, value) pairs, sorted by key.
    pub fn labels(&self) -> Cow<'a, [(String, String)]> {
        match self.0 {
            Source::Owned(e) => Cow::Borrowed(&e.labels),
            Source::Host(h) => Cow::Owned(h.labels()),
        }
    }

    /// The value of workflow label `key`, if present.
    pub fn label(&self, key: &str) -> Option<Cow<'a, str>> {
        match self.0 {
            Source::Owned(e) => e.label(key).map(Cow::Borrowed),
            Source::Host(h) => h.label(key).map(Cow::Owned),
        }
    }

    /// Argo node type (`Pod`, `DAG`, ...) of the node; may be empty. From the
    /// host this reads the whole [`LazyEvent::node`].
    pub fn node_type(&self) -> Cow<'a, str> {
        match self.0 {
            Source::Owned(e) => Cow::Borrowed(&e.node_type),
            Source::Host(h) => host_text(h.node().and_then(|n| n.node_type)),
        }
    }

    /// The node the event is about; `None` for workflow-level events.
    pub fn node(&self) -> Option<Cow<'a, Node>> {
        match self.0 {
            Source::Owned(e) => e.node.as_ref().map(Cow::Borrowed),
            Source::Host(h) => h.node().map(|n| Cow::Owned(n.into())),
        }
    }

    /// The KFP v2 task the event is about.
    pub fn task(&self) -> Option<Cow<'a, Task>> {
        match self.0 {
            Source::Owned(e) => e.task.as_ref().map(Cow::Borrowed),
            Source::Host(h) => h.task().map(|t| Cow::Owned(t.into())),
        }
    }

    /// True for Kubernetes events of type `Warning`.
    pub fn is_warning(&self) -> bool {
        is_warning(&self.event_type())
    }

    /// True for events about a single workflow node rather than the whole workflow.
    pub fn is_node_event(&self) -> bool {
        !self.node_name().is_empty()
    }

    /// The best name to show people: the run name, else the workflow name
    /// (read only when there is no run name).
    pub fn display_name(&self) -> Cow<'a, str> {
        Some(self.run_name())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| self.workflow_name())
    }

    /// The outcome this event reports (see [`Outcome::of`]): reads the reason,
    /// and the phase and event type only when the reason does not decide.
    pub fn outcome(&self) -> Outcome {
        Outcome::of(&self.reason(), || self.phase(), || self.event_type())
    }

    /// The value of a named field, as [`Event::field`] gives it: reads only the
    /// facts that field is made of.
    pub fn field(&self, name: &str) -> Option<Cow<'a, str>> {
        Some(match name {
            "reason" => self.reason(),
            "event_type" => self.event_type(),
            "message" => self.message(),
            "namespace" => self.namespace(),
            "cluster" => self.cluster(),
            "workflow_name" => self.workflow_name(),
            "run_id" => self.run_id(),
            "run_name" => self.run_name(),
            "node_name" => self.node_name(),
            "node_type" => self.node_type(),
            "phase" => self.phase(),
            "event_time" => self.event_time(),
            "endpoint" => self.endpoint(),
            "id" => self.id(),
            "pipeline_name" => self.pipeline_name(),
            "started_at" => self.started_at(),
            "finished_at" => self.finished_at(),
            "workflow_message" => self.workflow_message(),
            "attempt" => self.attempt().to_string().into(),
            "display_name" => self.display_name(),
            "reason_kebab" => kebab(&self.reason()).into(),
            _ => return None,
        })
    }

    /// Every fact at once, as an owned [`Event`] (from the host, in one call).
    pub fn to_event(&self) -> Event {
        match self.0 {
            Source::Owned(e) => e.clone(),
            Source::Host(h) => h.facts().into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event {
            reason: "WorkflowNodeFailed".into(),
            event_type: "Warning".into(),
            workflow_name: "wf-1".into(),
            node_name: "train".into(),
            attempt: 2,
            parameters: vec![("lr".into(), "0.1".into()), ("seed".into(), "7".into())],
            labels: vec![("env".into(), "prod".into())],
            format: PayloadFormat::Extended,
            ..Event::default()
        }
    }

    #[test]
    fn reads_the_facts_of_an_event() {
        let owned = event();
        let e = LazyEvent::from(&owned);
        assert_eq!(e.reason(), "WorkflowNodeFailed");
        assert_eq!(e.run_id(), "");
        assert_eq!(e.attempt(), 2);
        assert_eq!(e.format(), PayloadFormat::Extended);
        assert_eq!(e.parameter("seed").as_deref(), Some("7"));
        assert_eq!(e.parameter("nope"), None);
        assert_eq!(e.parameter_names(), ["lr", "seed"]);
        assert_eq!(e.label("env").as_deref(), Some("prod"));
        assert_eq!(e.parameters(), owned.parameters);
        assert_eq!(e.labels(), owned.labels);
        assert!(e.node().is_none() && e.task().is_none());
        assert!(e.is_warning() && e.is_node_event());
        assert_eq!(e.display_name(), "wf-1");
        assert_eq!(e.outcome(), owned.outcome());
        assert_eq!(e.to_event(), owned);
        assert!(matches!(e.reason(), Cow::Borrowed(_)));
    }

    #[test]
    fn fields_are_those_of_the_event() {
        let owned = Event {
            run_name: "nightly".into(),
            ..event()
        };
        let e = LazyEvent::from(&owned);
        for name in Event::FIELD_NAMES {
            assert!(e.field(name).is_some(), "{name}");
        }
        assert_eq!(e.field("attempt").as_deref(), Some("2"));
        assert_eq!(
            e.field("reason_kebab").as_deref(),
            Some("workflow-node-failed")
        );
        assert_eq!(e.field("display_name").as_deref(), Some("nightly"));
        assert_eq!(e.field("bogus"), None);
    }
}
