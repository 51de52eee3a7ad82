//! Generates recordings (JSON Lines of Workflows and Events) like `kubectl get -w -o json`
//! writes them, for tests that need more events than the quick start has.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Value, json};

/// The time stamped on generated objects.
pub const TIME: &str = "2026-11-20T09:14:06Z";

/// A generated Workflow: names and ids its objects and Events share.
#[derive(Clone, Debug)]
pub struct Wf {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub run_id: String,
}

impl Wf {
    /// A workflow in namespace `kubeflow`, with uid and KFP run id derived from `name`.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            uid: format!("uid-{name}"),
            run_id: format!("run-{name}"),
            namespace: "kubeflow".into(),
            name,
        }
    }

    /// The Workflow object, with the KFP run-id label and the given phase.
    pub fn object(&self, phase: Option<&str>) -> Value {
        let mut status = json!({});
        if let Some(phase) = phase {
            status = json!({ "phase": phase, "startedAt": TIME });
        }
        json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Workflow",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "uid": self.uid,
                "generateName": "generated-pipeline-",
                "labels": { "pipeline/runid": self.run_id },
                "annotations": { "pipelines.kubeflow.org/run_name": format!("run of {}", self.name) }
            },
            "spec": { "arguments": { "parameters": [ { "name": "p", "value": "1" } ] } },
            "status": status
        })
    }

    /// An Event the workflow-controller records about this Workflow (`involvedObject` is the
    /// Workflow, with its uid). `message: None` leaves the key out, as Argo does.
    pub fn event(&self, uid: &str, reason: &str, message: Option<&str>) -> Value {
        let warning = reason.contains("Failed") || reason.contains("Error");
        let mut event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "count": 1,
            "eventTime": null,
            "firstTimestamp": TIME,
            "lastTimestamp": TIME,
            "involvedObject": {
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "Workflow",
                "name": self.name,
                "namespace": self.namespace,
                "uid": self.uid
            },
            "metadata": {
                "name": format!("{}.{uid}", self.name),
                "namespace": self.namespace,
                "uid": uid,
                "creationTimestamp": TIME
            },
            "reason": reason,
            "reportingComponent": "workflow-controller",
            "reportingInstance": "",
            "source": { "component": "workflow-controller" },
            "type": if warning { "Warning" } else { "Normal" }
        });
        if let Some(message) = message {
            event["message"] = json!(message);
        }
        event
    }

    /// A node Event (`<Phase> node <workflow>.<node>`), with the node-name annotation.
    pub fn node_event(&self, uid: &str, phase: &str, node: &str) -> Value {
        let full = format!("{}.{node}", self.name);
        let mut event = self.event(
            uid,
            &format!("WorkflowNode{phase}"),
            Some(&format!("{phase} node {full}")),
        );
        event["metadata"]["annotations"] = json!({ "workflows.argoproj.io/node-name": full });
        event
    }
}

/// Lines of a recording, in order.
#[derive(Clone, Debug, Default)]
pub struct Recording {
    pub lines: Vec<Value>,
}

impl Recording {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a plain object line (`kubectl get -o json`).
    pub fn push(&mut self, object: Value) -> &mut Self {
        self.lines.push(object);
        self
    }

    /// Adds a watch event line (`{"type": "ADDED", "object": ...}`).
    pub fn watch(&mut self, kind: &str, object: Value) -> &mut Self {
        self.lines.push(json!({ "type": kind, "object": object }));
        self
    }

    /// Writes the recording as JSON Lines.
    pub fn write(&self, path: &Path) {
        let mut text = String::new();
        for line in &self.lines {
            text.push_str(&serde_json::to_string(line).unwrap());
            text.push('\n');
        }
        std::fs::write(path, text).expect("writing the recording");
    }
}

/// A generated recording and what a receiver should get from it.
#[derive(Clone, Debug)]
pub struct Generated {
    pub recording: Recording,
    pub workflows: Vec<Wf>,
    /// Per workflow name: its node names (`step-00000`, ...) in recording order.
    pub order: HashMap<String, Vec<String>>,
    /// Every Event uid, in recording order.
    pub event_uids: Vec<String>,
}

impl Generated {
    pub fn events(&self) -> usize {
        self.event_uids.len()
    }
}

/// `workflows` Workflows (`wf-000`, ...), each announced by its object, then
/// `per_workflow` `WorkflowNodeRunning` Events each, interleaved round-robin across workflows.
/// Node `j` of workflow `w` is `step-{j:05}`, Event uid `uid-wf-{w:03}-ev-{j:05}`.
pub fn interleaved(workflows: usize, per_workflow: usize) -> Generated {
    let wfs: Vec<Wf> = (0..workflows)
        .map(|w| Wf::new(format!("wf-{w:03}")))
        .collect();
    let mut recording = Recording::new();
    for wf in &wfs {
        recording.push(wf.object(Some("Running")));
    }
    let mut order: HashMap<String, Vec<String>> = HashMap::new();
    let mut event_uids = Vec::new();
    for j in 0..per_workflow {
        for wf in &wfs {
            let node = format!("step-{j:05}");
            let uid = format!("{}-ev-{j:05}", wf.uid);
            recording.watch("ADDED", wf.node_event(&uid, "Running", &node));
            order.entry(wf.name.clone()).or_default().push(node);
            event_uids.push(uid);
        }
    }
    Generated {
        recording,
        workflows: wfs,
        order,
        event_uids,
    }
}
