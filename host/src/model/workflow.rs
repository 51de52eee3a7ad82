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

/// `spec`: the arguments and the templates' names and DAG tasks.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct WorkflowSpec {
    /// The workflow's input arguments.
    #[serde(default)]
    pub arguments: Arguments,
    /// The templates, by name only.
    #[serde(default)]
    pub templates: Vec<Template>,
}

/// One of `spec.templates`: its name and, for a DAG, its tasks' names and arguments.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Template {
    /// The template's name.
    #[serde(default)]
    pub name: String,
    /// The DAG it runs, for a DAG template.
    pub dag: Option<Dag>,
}

/// A template's `dag`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Dag {
    /// Its tasks.
    #[serde(default)]
    pub tasks: Vec<DagTask>,
}

/// One task of a DAG template: its name and arguments.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct DagTask {
    /// The task's name.
    #[serde(default)]
    pub name: String,
    /// The arguments it passes.
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

/// `status`. Nodes Argo compressed into `status.compressedNodes` are read into `nodes`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", from = "WireStatus")]
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
    /// Set when Argo offloaded the nodes to its database: `nodes` is then empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) offload_node_status_version: Option<String>,
}

/// `status` as Argo writes it, before its compressed nodes are decoded.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireStatus {
    /// See [`WorkflowStatus::phase`].
    phase: Option<String>,
    /// See [`WorkflowStatus::started_at`].
    started_at: Option<String>,
    /// See [`WorkflowStatus::finished_at`].
    finished_at: Option<String>,
    /// See [`WorkflowStatus::message`].
    message: Option<String>,
    /// See [`WorkflowStatus::nodes`].
    #[serde(default)]
    nodes: BTreeMap<String, NodeStatus>,
    /// The nodes as gzip, then base64, of their JSON, when the map was too big to store as is.
    compressed_nodes: Option<String>,
    /// See [`WorkflowStatus::offload_node_status_version`].
    offload_node_status_version: Option<String>,
}

impl From<WireStatus> for WorkflowStatus {
    fn from(wire: WireStatus) -> Self {
        let mut nodes = wire.nodes;
        if nodes.is_empty()
            && let Some(compressed) = wire.compressed_nodes.filter(|c| !c.is_empty())
        {
            match decompress_nodes(&compressed) {
                Ok(decoded) => nodes = decoded,
                // Never the value: it can hold any node's inputs and outputs.
                Err(e) => tracing::warn!(
                    bytes = compressed.len(),
                    "status.compressedNodes unreadable, the workflow's nodes are left out: {e}"
                ),
            }
        }
        Self {
            phase: wire.phase,
            started_at: wire.started_at,
            finished_at: wire.finished_at,
            message: wire.message,
            nodes,
            offload_node_status_version: wire.offload_node_status_version,
        }
    }
}

/// Decodes `status.compressedNodes` as Argo's `file.DecodeDecompressString` does: base64, then
/// gzip, then the JSON of the node map. The error names the step that failed, never the data.
fn decompress_nodes(compressed: &str) -> Result<BTreeMap<String, NodeStatus>, String> {
    use base64::Engine;
    let gzipped = base64::engine::general_purpose::STANDARD
        .decode(compressed.trim())
        .map_err(|_| "not base64".to_owned())?;
    let json = flate2::read::GzDecoder::new(gzipped.as_slice());
    serde_json::from_reader(std::io::BufReader::new(json)).map_err(|e| match e.classify() {
        serde_json::error::Category::Io => "not gzip".to_owned(),
        category => format!(
            "not a node map ({category:?} error at line {}, column {})",
            e.line(),
            e.column()
        ),
    })
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
    /// The node whose template started this one (its enclosing DAG), by id.
    #[serde(rename = "boundaryID")]
    pub boundary_id: Option<String>,
    /// The node's inputs (KFP drivers carry the task spec and the run's parameters here).
    pub inputs: Option<Inputs>,
}

/// A node's `inputs`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Inputs {
    /// Input parameters.
    #[serde(default)]
    pub parameters: Vec<Parameter>,
}

impl NodeStatus {
    /// The value of input parameter `name`, as text.
    pub fn input(&self, name: &str) -> Option<String> {
        let parameter = self
            .inputs
            .as_ref()?
            .parameters
            .iter()
            .find(|p| p.name == name)?;
        Some(scalar_text(parameter.value.as_ref()))
    }
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

    /// The last Workflow of the KFP 2.4 ParallelFor recording, as JSON.
    fn recorded_workflow() -> Value {
        let path = format!(
            "{}/../examples/recordings/kfp-2.4-parallelfor.jsonl",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(path).unwrap();
        text.lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .map(|line| line.get("object").cloned().unwrap_or(line))
            .rfind(|object| object["kind"] == "Workflow")
            .expect("a Workflow")
    }

    /// `nodes` as Argo's `file.CompressEncodeString` writes it: gzip, then base64, of the JSON.
    fn compress(nodes: &Value) -> String {
        use base64::Engine;
        use std::io::Write;
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gzip.write_all(nodes.to_string().as_bytes()).unwrap();
        base64::engine::general_purpose::STANDARD.encode(gzip.finish().unwrap())
    }

    #[test]
    fn compressed_nodes_read_as_the_plain_ones() {
        let plain = recorded_workflow();
        let nodes = plain["status"]["nodes"].clone();
        let mut packed = plain.clone();
        packed["status"]["compressedNodes"] = Value::String(compress(&nodes));
        packed["status"]["nodes"] = serde_json::json!({});
        let plain: Workflow = serde_json::from_value(plain).unwrap();
        let packed: Workflow = serde_json::from_value(packed).unwrap();
        let nodes_of = |wf: &Workflow| serde_json::to_value(&wf.status.as_ref().unwrap().nodes);
        assert_eq!(plain.status.as_ref().unwrap().nodes.len(), 32);
        assert_eq!(nodes_of(&packed).unwrap(), nodes_of(&plain).unwrap());
    }

    #[test]
    fn corrupt_compressed_nodes_leave_the_nodes_empty() {
        let not_gzip =
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b"{\"a\": 1}");
        let not_nodes = compress(&serde_json::json!(["a list"]));
        for bad in ["%%% not base64 %%%", not_gzip.as_str(), not_nodes.as_str()] {
            let mut wf = recorded_workflow();
            wf["status"]["compressedNodes"] = Value::String(bad.to_owned());
            wf["status"]["nodes"] = serde_json::json!({});
            let wf: Workflow = serde_json::from_value(wf).expect("still a Workflow");
            let status = wf.status.unwrap();
            assert!(status.nodes.is_empty(), "{bad}");
            assert_eq!(status.phase.as_deref(), Some("Failed"));
        }
    }

    #[test]
    fn offloaded_node_status_is_noted() {
        let wf: Workflow = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "wf-1"},
            "status": {"phase": "Running", "offloadNodeStatusVersion": "fnv:1234"}
        }))
        .unwrap();
        let status = wf.status.unwrap();
        assert_eq!(
            status.offload_node_status_version.as_deref(),
            Some("fnv:1234")
        );
        assert!(status.nodes.is_empty());
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
