//! What Argo's workflow-controller writes on the Kubernetes Events it records.
//!
//! Argo (v3.4+) annotates node Events with the node's full name, id, type and start time
//! (`workflow/controller/operator.go`, `recordNodePhaseChangeEvents`); Events it sends as Pod
//! Events (`nodeEvents.sendAsPod`) also name their Workflow. Aggregated Events
//! (`(combined from similar events): ...`) carry no annotations at all.

use k8s_openapi::api::core::v1::Event;

/// Argo's workflow-controller, as it names itself on the Events it records.
pub(crate) const WORKFLOW_CONTROLLER: &str = "workflow-controller";
/// Annotation with the node's full name.
pub(crate) const NODE_NAME: &str = "workflows.argoproj.io/node-name";
/// Annotation with the node id.
pub(crate) const NODE_ID: &str = "workflows.argoproj.io/node-id";
/// Annotation with the node type.
pub(crate) const NODE_TYPE: &str = "workflows.argoproj.io/node-type";
/// Annotation with the node's start time (Unix nanoseconds).
pub(crate) const NODE_START_TIME: &str = "workflows.argoproj.io/node-start-time";
/// Annotation naming the workflow, on node Events sent as Pod Events.
pub(crate) const WORKFLOW_NAME: &str = "workflows.argoproj.io/workflow-name";
/// Annotation with the workflow uid, on node Events sent as Pod Events.
pub(crate) const WORKFLOW_UID: &str = "workflows.argoproj.io/workflow-uid";
/// The prefix Kubernetes' event aggregator puts on rolled-up messages.
pub(crate) const COMBINED_PREFIX: &str = "(combined from similar events): ";

/// The non-empty value of annotation `key` on `event`.
pub(crate) fn annotation<'a>(event: &'a Event, key: &str) -> Option<&'a str> {
    event
        .metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// Whether an Event was recorded by Argo's workflow-controller about a workflow: the
/// Workflow itself, or (with `nodeEvents.sendAsPod`) one of its Pods.
pub(crate) fn is_workflow_event(event: &Event) -> bool {
    let component = event.source.as_ref().and_then(|s| s.component.as_deref());
    let reporter = event.reporting_component.as_deref();
    let from_controller =
        component == Some(WORKFLOW_CONTROLLER) || reporter == Some(WORKFLOW_CONTROLLER);
    let about_workflow = match event.involved_object.kind.as_deref() {
        Some("Workflow") => true,
        Some("Pod") => annotation(event, WORKFLOW_NAME).is_some(),
        _ => false,
    };
    from_controller && about_workflow
}

/// An Event's uid, or its namespace and name when a recording lacks the uid.
pub(crate) fn identity(event: &Event) -> String {
    match &event.metadata.uid {
        Some(uid) => uid.clone(),
        None => format!(
            "{}/{}",
            event.metadata.namespace.as_deref().unwrap_or_default(),
            event.metadata.name.as_deref().unwrap_or_default()
        ),
    }
}
