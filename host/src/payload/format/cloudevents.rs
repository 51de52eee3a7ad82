//! CloudEvents 1.0 in structured mode: the envelope's `data` is the `extended` payload.

use serde::Serialize;

use super::extended::ExtendedPayload;
use crate::model::event::{NodeView, RouterEvent};

/// The media type of a structured-mode CloudEvent.
pub(super) const CONTENT_TYPE: &str = "application/cloudevents+json";

/// The envelope. `id` is the router event id, stable across retries, so `source` + `id`
/// identify an occurrence as the spec asks.
#[derive(Serialize)]
pub(super) struct CloudEvent<'a> {
    specversion: &'static str,
    id: &'a str,
    source: String,
    #[serde(rename = "type")]
    event_type: String,
    subject: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<&'a str>,
    datacontenttype: &'static str,
    /// Extension attribute: the cluster's name, when configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<&'a str>,
    data: ExtendedPayload<'a>,
}

impl<'a> CloudEvent<'a> {
    /// The envelope of `event`, its node named as `view` says.
    pub(super) fn new(event: &'a RouterEvent, view: NodeView) -> Self {
        let facts = &event.event;
        Self {
            specversion: "1.0",
            id: &event.id,
            source: format!(
                "/apis/argoproj.io/v1alpha1/namespaces/{}/workflows/{}",
                facts.namespace, facts.workflow_name
            ),
            event_type: event_type(&facts.reason),
            subject: match super::node_name(event, view) {
                "" => &facts.workflow_name,
                node => node,
            },
            time: facts.time.as_deref(),
            datacontenttype: "application/json",
            cluster: event.cluster.as_deref(),
            data: ExtendedPayload::new(event, view),
        }
    }
}

/// `WorkflowFailed` -> `org.kubeflow.pipelines.run.failed`,
/// `WorkflowNodeSucceeded` -> `org.kubeflow.pipelines.run.node.succeeded`; other reasons
/// -> `org.kubeflow.pipelines.event.<reason in lower case>`.
fn event_type(reason: &str) -> String {
    const PREFIX: &str = "org.kubeflow.pipelines";
    if let Some(phase) = reason
        .strip_prefix("WorkflowNode")
        .filter(|p| !p.is_empty())
    {
        format!("{PREFIX}.run.node.{}", phase.to_lowercase())
    } else if let Some(phase) = reason.strip_prefix("Workflow").filter(|p| !p.is_empty()) {
        format!("{PREFIX}.run.{}", phase.to_lowercase())
    } else {
        format!("{PREFIX}.event.{}", reason.to_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::event_type;

    #[test]
    fn reasons_map_to_dotted_types() {
        assert_eq!(
            event_type("WorkflowFailed"),
            "org.kubeflow.pipelines.run.failed"
        );
        assert_eq!(
            event_type("WorkflowTimedOut"),
            "org.kubeflow.pipelines.run.timedout"
        );
        assert_eq!(
            event_type("WorkflowNodeSucceeded"),
            "org.kubeflow.pipelines.run.node.succeeded"
        );
        assert_eq!(
            event_type("SomethingNew"),
            "org.kubeflow.pipelines.event.somethingnew"
        );
    }
}
