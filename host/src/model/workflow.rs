//! The parts of an Argo `Workflow` the router reads, and the facts it takes from them.
//!
//! Only the fields used are declared; everything else in the object is ignored, so new Argo
//! versions keep parsing.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::event::WorkflowFacts;

/// An `argoproj.io/v1alpha1` Workflow, as much of it as the router reads.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Workflow {
    /// Name, namespace, uid, labels, annotations.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The submitted spec.
    #[serde(default)]
    pub spec: WorkflowSpec,
    /// The controller's view of the run.
    #[serde(default)]
    pub status: Option<WorkflowStatus>,
}

/// `spec`: only the arguments.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct WorkflowSpec {
    /// The workflow's input arguments.
    #[serde(default)]
    pub arguments: Arguments,
}

/// `spec.arguments`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Arguments {
    /// Input parameters.
    #[serde(default)]
    pub parameters: Vec<Parameter>,
}

/// One input parameter. Argo allows any JSON scalar as a value.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Parameter {
    /// Its name.
    pub name: String,
    /// Its value, when set.
    #[serde(default)]
    pub value: Option<Value>,
}

/// `status`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowStatus {
    /// `Pending`, `Running`, `Succeeded`, `Failed` or `Error`.
    pub phase: Option<String>,
    /// When the run started.
    pub started_at: Option<String>,
    /// When the run finished.
    pub finished_at: Option<String>,
    /// Why the run ended as it did.
    pub message: Option<String>,
    /// Every node (step, DAG, retry...) by node id.
    #[serde(default)]
    pub nodes: BTreeMap<String, NodeStatus>,
}

/// One entry of `status.nodes`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// Node id.
    #[serde(default)]
    pub id: String,
    /// Full name, e.g. `tacos-vs-burritos-vw8g9.dataprocessing`.
    #[serde(default)]
    pub name: String,
    /// Display name.
    pub display_name: Option<String>,
    /// `Pod`, `DAG`, `Steps`, `Retry`, `Skipped`...
    #[serde(rename = "type")]
    pub node_type: Option<String>,
    /// The node's phase.
    pub phase: Option<String>,
    /// The node's message, e.g. `Error (exit code 1)`.
    pub message: Option<String>,
    /// The template it ran.
    pub template_name: Option<String>,
    /// When it started.
    pub started_at: Option<String>,
    /// When it finished.
    pub finished_at: Option<String>,
}

impl kube::Resource for Workflow {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "Workflow".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "argoproj.io".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1alpha1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "workflows".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// KFP's annotation holding the run's display name.
pub const RUN_NAME_ANNOTATION: &str = "pipelines.kubeflow.org/run_name";
/// KFP v1's annotation holding the compiled pipeline spec (with its name).
pub const PIPELINE_SPEC_ANNOTATION: &str = "pipelines.kubeflow.org/pipeline_spec";
/// KFP's label naming the recurring run that started a run.
pub const RECURRING_RUN_LABEL: &str = "scheduledworkflows.kubeflow.org/scheduledWorkflowName";
/// Argo's label mirroring the workflow phase.
pub const PHASE_LABEL: &str = "workflows.argoproj.io/phase";

impl Workflow {
    /// The facts an event carries about this workflow.
    pub fn facts(&self) -> WorkflowFacts {
        let meta = &self.metadata;
        let labels: BTreeMap<String, String> = meta.labels.clone().unwrap_or_default();
        let annotations: BTreeMap<String, String> = meta.annotations.clone().unwrap_or_default();
        let status = self.status.as_ref();
        let parameters = self
            .spec
            .arguments
            .parameters
            .iter()
            .map(|p| (p.name.clone(), scalar_text(p.value.as_ref())))
            .collect();
        WorkflowFacts {
            name: meta.name.clone().unwrap_or_default(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            phase: status
                .and_then(|s| s.phase.clone())
                .or_else(|| labels.get(PHASE_LABEL).cloned()),
            started_at: status.and_then(|s| s.started_at.clone()),
            finished_at: status.and_then(|s| s.finished_at.clone()),
            message: status.and_then(|s| s.message.clone()),
            parameters,
            run_name: annotations.get(RUN_NAME_ANNOTATION).cloned(),
            pipeline_name: pipeline_name(&annotations, meta.generate_name.as_deref()),
            recurring_run_name: labels.get(RECURRING_RUN_LABEL).cloned(),
            labels,
            annotations,
        }
    }
}

/// KFP v1 records the pipeline spec (with its name) in an annotation; KFP v2 names the
/// workflow after the pipeline (`generateName: <pipeline>-`).
fn pipeline_name(
    annotations: &BTreeMap<String, String>,
    generate_name: Option<&str>,
) -> Option<String> {
    annotations
        .get(PIPELINE_SPEC_ANNOTATION)
        .and_then(|spec| serde_json::from_str::<Value>(spec).ok())
        .and_then(|spec| spec.get("name")?.as_str().map(str::to_owned))
        .or_else(|| {
            generate_name
                .map(|g| g.trim_end_matches('-'))
                .filter(|g| !g.is_empty())
                .map(str::to_owned)
        })
}

/// A parameter value as text: strings as they are, other scalars as JSON.
fn scalar_text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_take_kfp_labels_annotations_and_parameters() {
        let wf: Workflow = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "wf-1", "namespace": "kubeflow", "uid": "u1", "generateName": "my-pipeline-",
                "labels": {"pipeline/runid": "r1", "workflows.argoproj.io/phase": "Running",
                           "scheduledworkflows.kubeflow.org/scheduledWorkflowName": "nightly"},
                "annotations": {"pipelines.kubeflow.org/run_name": "Run of my pipeline"}
            },
            "spec": {"arguments": {"parameters": [
                {"name": "lr", "value": "0.1"}, {"name": "epochs", "value": 3}, {"name": "empty"}
            ]}},
            "status": {"startedAt": "2026-11-20T10:00:00Z"}
        }))
        .unwrap();
        let facts = wf.facts();
        assert_eq!(
            facts.phase.as_deref(),
            Some("Running"),
            "falls back to the label"
        );
        assert_eq!(facts.run_name.as_deref(), Some("Run of my pipeline"));
        assert_eq!(facts.pipeline_name.as_deref(), Some("my-pipeline"));
        assert_eq!(facts.recurring_run_name.as_deref(), Some("nightly"));
        assert_eq!(facts.parameters["lr"], "0.1");
        assert_eq!(facts.parameters["epochs"], "3");
        assert_eq!(facts.parameters["empty"], "");
        assert_eq!(facts.labels["pipeline/runid"], "r1");
    }

    #[test]
    fn kfp_v1_pipeline_spec_names_the_pipeline() {
        let annotations = BTreeMap::from([(
            PIPELINE_SPEC_ANNOTATION.into(),
            r#"{"name": "v1 pipe"}"#.into(),
        )]);
        assert_eq!(
            pipeline_name(&annotations, Some("x-")).as_deref(),
            Some("v1 pipe")
        );
    }
}
