//! Conversions between the SDK's types and the WIT types of `kfp:event-router/types`.

use crate::bindings::kfp::event_router::types as wit;
use crate::{Action, Event, Node, PayloadFormat, Task};

impl From<wit::EventFacts> for Event {
    fn from(e: wit::EventFacts) -> Self {
        let text = Option::unwrap_or_default;
        Event {
            id: e.id,
            reason: e.reason,
            event_type: e.event_type,
            message: e.message,
            namespace: e.namespace,
            cluster: text(e.cluster),
            event_uid: e.event_uid,
            event_time: text(e.event_time),
            event_count: e.event_count,
            synthesized: e.synthesized,
            attempt: e.attempt,
            workflow_name: e.workflow_name,
            workflow_uid: text(e.workflow_uid),
            run_id: text(e.run_id),
            run_name: text(e.run_name),
            pipeline_name: text(e.pipeline_name),
            recurring_run_name: text(e.recurring_run_name),
            phase: text(e.phase),
            started_at: text(e.started_at),
            finished_at: text(e.finished_at),
            workflow_message: text(e.workflow_message),
            parameters: e.parameters,
            labels: e.labels,
            node_name: e.node_name,
            node_type: e
                .node
                .as_ref()
                .and_then(|n| n.node_type.clone())
                .unwrap_or_default(),
            node: e.node.map(Node::from),
            task: e.task.map(Task::from),
            endpoint: e.endpoint,
            format: e.format.into(),
        }
    }
}

impl From<wit::Node> for Node {
    fn from(n: wit::Node) -> Self {
        Node {
            id: n.id,
            name: n.name,
            full_name: n.full_name,
            display_name: n.display_name,
            node_type: n.node_type,
            phase: n.phase,
            message: n.message,
            template_name: n.template_name,
            started_at: n.started_at,
            finished_at: n.finished_at,
        }
    }
}

impl From<wit::Task> for Task {
    fn from(t: wit::Task) -> Self {
        Task {
            name: t.name,
            display_name: t.display_name,
            iteration: t.iteration,
            dag_path: t.dag_path,
            cached: t.cached,
            pod_name: t.pod_name,
            message: t.message,
        }
    }
}

impl From<wit::PayloadFormat> for PayloadFormat {
    fn from(f: wit::PayloadFormat) -> Self {
        match f {
            wit::PayloadFormat::Kfp => PayloadFormat::Kfp,
            wit::PayloadFormat::Extended => PayloadFormat::Extended,
            wit::PayloadFormat::Cloudevents => PayloadFormat::Cloudevents,
        }
    }
}

impl From<Action> for wit::Action {
    fn from(action: Action) -> Self {
        match action {
            Action::Pass => wit::Action::Pass,
            Action::Drop => wit::Action::Drop,
            Action::Replace {
                body,
                content_type,
                headers,
            } => wit::Action::Replace(wit::Replacement {
                body,
                content_type,
                headers,
            }),
        }
    }
}
