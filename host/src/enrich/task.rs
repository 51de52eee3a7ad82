//! Which KFP task each node of a KFP v2 run belongs to.
//!
//! KFP 2.x compiles every task into several Argo nodes (`backend/src/v2/compiler/argocompiler`):
//! a driver Pod, a DAG running `system-container-executor` and its `executor` Pod, plus
//! `root-driver`, `root`, and for a ParallelFor an iterator DAG, iteration drivers, a
//! TaskGroup, one DAG per iteration and an `iteration-item` DAG. Under KFP 2.17's default
//! controller config every node is also wrapped in a `Retry` node whose attempts are named
//! `<name>(0)`, `<name>(1)`... A subscriber wants the tasks, so [`TaskMap`] sorts each node
//! into the task it stands for, or plumbing. The rules, and the recordings they were checked
//! on, are in `examples/recordings/README.md`:
//!
//! - a container task is its `system-container-executor` node (the task's phase), and its
//!   `executor` Pod (which carries the failure message) belongs to it too;
//! - a ParallelFor task is its `…-iterator` DAG; a sub-DAG task is a DAG with a
//!   `system-dag-driver` sibling named `<task>-driver`;
//! - an attempt stands for its Retry node; everything else is plumbing;
//! - the iteration comes from the nearest `iteration-iterations(i:i)` on the boundary chain,
//!   the DAG path from the loop and sub-DAG tasks on it, the display name from the driver's
//!   `task` input (`taskInfo.name`), and a Skipped `executor` means the cache served the task.
//!
//! KFP v1 and plain Argo runs have no plumbing: their nodes are left as they are.

use std::collections::HashMap;

use serde_json::Value;

use crate::model::event::TaskFacts;
use crate::model::workflow::{NodeStatus, Workflow};

/// KFP's label holding the run id, on every Workflow it submits.
const RUN_ID_LABEL: &str = "pipeline/runid";
/// Templates of the KFP 2.x drivers.
const DRIVERS: [&str; 2] = ["system-container-driver", "system-dag-driver"];
/// The template suffix of a container task's node, and of its executor Pod.
const EXECUTOR_DAG: &str = "system-container-executor";
const EXECUTOR_POD: &str = "system-container-impl";

/// What a node of a KFP v2 run stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// A user's task (or part of one that reports its outcome).
    Task(TaskFacts),
    /// Compiler plumbing: no subscriber of tasks hears of it.
    Plumbing,
}

/// The role of every node of one Workflow version, by node id and by full name. Empty for
/// runs that are not KFP v2.
#[derive(Debug, Default)]
pub(crate) struct TaskMap {
    by_id: HashMap<String, Role>,
    id_by_name: HashMap<String, String>,
}

impl TaskMap {
    /// Sorts the nodes of `workflow`.
    pub(crate) fn of(workflow: &Workflow) -> Self {
        let Some(status) = workflow.status.as_ref().filter(|_| is_kfp_v2(workflow)) else {
            return Self::default();
        };
        let nodes = Nodes::new(
            workflow.metadata.name.as_deref().unwrap_or_default(),
            &status.nodes,
        );
        let by_id = status
            .nodes
            .iter()
            .map(|(id, node)| (id.clone(), nodes.role(node)))
            .collect();
        let id_by_name = status
            .nodes
            .iter()
            .map(|(id, node)| (node.name.clone(), id.clone()))
            .collect();
        Self { by_id, id_by_name }
    }

    /// The role of the node with id `id` or, without one, full name `name`; `None` when the
    /// run is not KFP v2 or the node is not (yet) in its status.
    pub(crate) fn role(&self, id: Option<&str>, name: &str) -> Option<&Role> {
        let id = match id {
            Some(id) => id,
            None => self.id_by_name.get(name)?,
        };
        self.by_id.get(id)
    }

    /// Whether the run is a KFP v2 run whose nodes were sorted.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// The role of a node of a KFP v2 run that its Workflow's status does not show (yet), from
/// its full name alone: the plumbing's names are fixed by the compiler.
pub(crate) fn guess(workflow: &str, full_name: &str) -> Role {
    let short = full_name.rsplit('.').next().unwrap_or(full_name);
    let short = strip_attempt(short);
    let plumbing = strip_attempt(full_name) == workflow
        || matches!(short, "executor" | "root")
        || short.ends_with("-driver")
        || short.starts_with("iteration-")
        || short.contains("-iterations");
    match plumbing {
        true => Role::Plumbing,
        false => Role::Task(TaskFacts {
            name: short.to_owned(),
            ..TaskFacts::default()
        }),
    }
}

/// Whether `workflow` was compiled by KFP 2.x: a KFP run whose templates (or, when the spec
/// is not at hand, whose nodes) include a KFP driver. The v2 Pod label alone is not enough: a
/// run without drivers has no plumbing to hide.
pub(crate) fn is_kfp_v2(workflow: &Workflow) -> bool {
    let labels = workflow.metadata.labels.as_ref();
    if !labels.is_some_and(|l| l.contains_key(RUN_ID_LABEL)) {
        return false;
    }
    let is_driver = |name: &str| DRIVERS.contains(&name);
    workflow.spec.templates.iter().any(|t| is_driver(&t.name))
        || workflow.status.as_ref().is_some_and(|s| {
            s.nodes
                .values()
                .any(|n| n.template_name.as_deref().is_some_and(is_driver))
        })
}

/// The user's run parameters of a KFP v2 run: the `parameterValues` of the `runtime-config`
/// its root driver is given (`{"parameterValues": {"lr": 0.1}}`), as text. The compiler puts it
/// in the arguments of the `root-driver` task of the entrypoint; the driver node has it too.
pub(crate) fn run_parameters(workflow: &Workflow) -> Option<Vec<(String, String)>> {
    let from_spec = workflow
        .spec
        .templates
        .iter()
        .filter_map(|t| t.dag.as_ref())
        .flat_map(|dag| &dag.tasks)
        .filter(|task| task.name == "root-driver")
        .flat_map(|task| &task.arguments.parameters)
        .find(|p| p.name == "runtime-config")
        .and_then(|p| p.value.as_ref())
        .and_then(Value::as_str)
        .map(str::to_owned);
    let from_node = || {
        workflow.status.as_ref()?.nodes.values().find_map(|n| {
            let is_root_driver = n.template_name.as_deref() == Some("system-dag-driver")
                && n.display_name.as_deref().map(strip_attempt) == Some("root-driver");
            is_root_driver.then(|| n.input("runtime-config")).flatten()
        })
    };
    let text = from_spec.or_else(from_node)?;
    let config: Value = serde_json::from_str(&text).ok()?;
    let values = config.get("parameterValues")?.as_object()?;
    Some(
        values
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect(),
    )
}

/// The nodes of one status, indexed for the rules.
struct Nodes<'a> {
    workflow: &'a str,
    by_id: &'a std::collections::BTreeMap<String, NodeStatus>,
    by_name: HashMap<&'a str, &'a NodeStatus>,
    /// Each container task's executor Pod (the latest attempt's), by the task node's name.
    executors: HashMap<&'a str, &'a NodeStatus>,
}

impl<'a> Nodes<'a> {
    fn new(workflow: &'a str, by_id: &'a std::collections::BTreeMap<String, NodeStatus>) -> Self {
        let by_name = by_id.values().map(|n| (n.name.as_str(), n)).collect();
        let mut nodes = Self {
            workflow,
            by_id,
            by_name,
            executors: HashMap::new(),
        };
        // Once per Workflow version: a task's executor is found without a scan per task.
        let executors = by_id.values().filter(|n| {
            Self::template(n).ends_with(EXECUTOR_POD) && n.node_type.as_deref() != Some("Retry")
        });
        let mut by_task: HashMap<&'a str, &'a NodeStatus> = HashMap::new();
        for executor in executors {
            let Some(task) = nodes.boundary(executor).map(|b| nodes.canonical(b)) else {
                continue;
            };
            let latest = by_task.entry(task.name.as_str()).or_insert(executor);
            if executor.started_at > latest.started_at {
                *latest = executor;
            }
        }
        nodes.executors = by_task;
        nodes
    }

    /// The Retry node an attempt belongs to, or the node itself.
    fn canonical(&self, node: &'a NodeStatus) -> &'a NodeStatus {
        let base = strip_attempt(&node.name);
        if base.len() == node.name.len() {
            return node;
        }
        match self.by_name.get(base) {
            Some(parent) if parent.node_type.as_deref() == Some("Retry") => parent,
            _ => node,
        }
    }

    fn template(node: &NodeStatus) -> &str {
        node.template_name.as_deref().unwrap_or_default()
    }

    /// The node's display name without an attempt suffix.
    fn display(node: &NodeStatus) -> &str {
        strip_attempt(node.display_name.as_deref().unwrap_or(&node.name))
    }

    fn role(&self, node: &'a NodeStatus) -> Role {
        let node = self.canonical(node);
        let template = Self::template(node);
        if template.ends_with(EXECUTOR_POD) {
            // The executor Pod reports for its task: the boundary is the task's (attempt) node.
            return match self.boundary(node) {
                Some(task) if Self::template(task).ends_with(EXECUTOR_DAG) => self.role(task),
                _ => Role::Plumbing,
            };
        }
        match self.task_name(node) {
            Some(name) => Role::Task(self.facts(node, name)),
            None => Role::Plumbing,
        }
    }

    /// The task a (canonical) node is, by the rules; `None` for plumbing.
    fn task_name(&self, node: &NodeStatus) -> Option<String> {
        let template = Self::template(node);
        let display = Self::display(node);
        if template.ends_with(EXECUTOR_DAG) {
            return Some(display.to_owned());
        }
        if template.ends_with("-iterator") {
            return Some(display.trim_end_matches("-loop").to_owned());
        }
        if DRIVERS.contains(&template) || display == "root" || node.name == self.workflow {
            return None;
        }
        if display.starts_with("iteration-") || display.contains("-iterations(") {
            return None;
        }
        // KFP 2.0-2.3: a ParallelFor task is a TaskGroup `<task>-iterations`.
        if node.node_type.as_deref() == Some("TaskGroup") {
            return display.strip_suffix("-iterations").map(str::to_owned);
        }
        let is_dag = matches!(node.node_type.as_deref(), Some("DAG" | "Retry"));
        let driver = format!("{}-driver", node.name);
        let has_driver = self
            .by_name
            .get(driver.as_str())
            .is_some_and(|d| Self::template(d) == "system-dag-driver");
        (is_dag && has_driver).then(|| display.to_owned())
    }

    /// The facts of task `name`, whose node is `node`.
    fn facts(&self, node: &NodeStatus, name: String) -> TaskFacts {
        let mut iteration = None;
        let mut dag_path = Vec::new();
        let mut boundary = self.boundary(node);
        while let Some(outer) = boundary {
            let outer = self.canonical(outer);
            let display = Self::display(outer);
            if iteration.is_none() {
                iteration = iteration_index(display);
            }
            if display == "root" {
                dag_path.push("root".to_owned());
            } else if let Some(task) = self.task_name(outer) {
                dag_path.push(task);
            }
            boundary = self.boundary(outer);
        }
        dag_path.reverse();
        let executor = self.executor(node);
        TaskFacts {
            display_name: self.display_name(node),
            iteration,
            dag_path,
            cached: executor.is_some_and(|e| e.node_type.as_deref() == Some("Skipped")),
            pod_name: executor
                .filter(|e| e.node_type.as_deref() == Some("Pod"))
                .and_then(|e| pod_name(self.workflow, e)),
            message: executor
                .filter(|e| matches!(e.phase.as_deref(), Some("Failed" | "Error")))
                .and_then(|e| e.message.clone()),
            name,
        }
    }

    /// The node a node's template was started by.
    fn boundary(&self, node: &NodeStatus) -> Option<&'a NodeStatus> {
        self.by_id.get(node.boundary_id.as_deref()?)
    }

    /// `taskInfo.name` of the task's driver (`<node>-driver`; for a loop, its
    /// `iteration-driver`), when it differs from nothing at all.
    fn display_name(&self, node: &NodeStatus) -> Option<String> {
        let candidates = [
            format!("{}-driver", node.name),
            format!("{}.iteration-driver", node.name),
            format!("{}(0).iteration-driver", node.name),
        ];
        candidates.iter().find_map(|name| {
            let driver = self.by_name.get(name.as_str())?;
            let task: Value = serde_json::from_str(&driver.input("task")?).ok()?;
            Some(task.get("taskInfo")?.get("name")?.as_str()?.to_owned())
        })
    }

    /// The executor Pod of a container task (the latest attempt's, under a Retry node): it
    /// is Skipped when KFP's cache served the task, and it holds why the task failed.
    fn executor(&self, node: &NodeStatus) -> Option<&'a NodeStatus> {
        self.executors.get(node.name.as_str()).copied()
    }
}

/// The name of a Pod node's Pod, as Argo names Pods (`POD_NAMES=v2`, the default since Argo
/// 3.2; `workflow/util/pod_name.go`): `<workflow>-<template>-<hash of the node name>`, where
/// the hash is the one in the node id `<workflow>-<hash>`, and the prefix is cut to leave
/// room for it within Kubernetes' 253 characters.
fn pod_name(workflow: &str, node: &NodeStatus) -> Option<String> {
    const MAX: usize = 253;
    let hash = node.id.strip_prefix(workflow)?.strip_prefix('-')?;
    let mut prefix = format!("{workflow}-{}", node.template_name.as_deref()?);
    let room = MAX.saturating_sub(hash.len() + 1);
    if prefix.len() > room {
        let cut = (0..=room)
            .rev()
            .find(|&i| prefix.is_char_boundary(i))
            .unwrap_or(0);
        prefix.truncate(cut);
    }
    Some(format!("{prefix}-{hash}"))
}

/// `name` without an attempt suffix `(n)`: `train(0)` -> `train`; `x(0:0)` stays.
fn strip_attempt(name: &str) -> &str {
    match name.strip_suffix(')').and_then(|n| n.rsplit_once('(')) {
        Some((base, digits))
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) =>
        {
            base
        }
        _ => name,
    }
}

/// The iteration of an iteration DAG's display name, `iteration-iterations(2:2)` -> 2.
fn iteration_index(display: &str) -> Option<u32> {
    let (head, rest) = display.split_once("-iterations(")?;
    if head.is_empty() {
        return None;
    }
    rest.split(':').next()?.parse().ok()
}

#[cfg(test)]
mod tests;
