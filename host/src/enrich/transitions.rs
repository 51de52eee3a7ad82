//! Run events derived from Workflow status, for when Kubernetes Events are lost.
//!
//! Events expire, get rolled up into `(combined from similar events)` without their node, can be
//! rate-limited or turned off; a Workflow's `status.phase` and `status.nodes[*].phase` are the
//! ground truth. [`Transitions::observe`] compares what was last seen of a workflow with its new
//! status and yields the events Argo's controller records for the change, with its reasons and
//! messages (`operator.go`: `markWorkflowPhase`, `recordNodePhaseChangeEvents`):
//!
//! - workflow phase -> `WorkflowRunning` ("Workflow Running"), `WorkflowSucceeded` ("Workflow
//!   completed"), `WorkflowFailed` (the status message), preceded by `WorkflowTimedOut`
//!   ("Workflow timed out") when the status says a deadline was exceeded;
//! - node phase -> `WorkflowNode<Phase>` ("<Phase> node <name>[: <message>]"); a node first seen
//!   completed, or going from Pending straight to completed, also gets its `Running` event first;
//!   a node first seen Pending, Skipped or Omitted gets none, as in Argo.
//!
//! Each (node, reason) is reported once, whichever path sees it first: [`Transitions::record`]
//! marks a transition a real Event reported, so the status path does not repeat it, and tells
//! whether that Event repeats one already delivered.

use std::collections::{BTreeMap, BTreeSet};

use foldhash::{HashMap, HashSet};

use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::model::workflow::{NodeStatus, Workflow, WorkflowStatus};

/// The reasons already delivered for a workflow, per node, and the phases last seen.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Seen {
    /// The workflow's phase when last seen.
    pub(crate) phase: Option<String>,
    /// Workflow-level reasons delivered.
    pub(crate) delivered: BTreeSet<String>,
    /// Per node (by full name, which Argo keeps unique in a workflow and which every Event
    /// carries, unlike the id): its phase when last seen and the reasons delivered for it.
    pub(crate) nodes: BTreeMap<String, SeenNode>,
    /// KFP task transitions delivered in this attempt, as `<task key> <reason>`: a task's
    /// nodes (a Retry node and its attempts, the executor Pod) report one transition once.
    #[serde(default)]
    pub(crate) tasks: BTreeSet<String>,
    /// The run's attempt: 1, then one more each time the run is retried.
    #[serde(default)]
    pub(crate) attempt: u32,
    /// The run's phase when last seen, whichever paths are on (for telling retries).
    #[serde(default)]
    pub(crate) run_phase: Option<String>,
    /// Whether no status of the workflow was compared yet (it is known from its Events, or
    /// its run phase, only): the `since` cutoff still applies to the first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) status_unseen: bool,
    /// The workflow's namespace, so that a list of that namespace's Workflows can tell it is
    /// gone (states stored by earlier versions have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) namespace: Option<String>,
}

/// What was seen of one node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SeenNode {
    /// Its phase when last seen.
    pub(crate) phase: String,
    /// Reasons delivered for it.
    pub(crate) delivered: BTreeSet<String>,
}

/// One derived event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Transition {
    /// The reason Argo would record, e.g. `WorkflowNodeSucceeded`.
    pub(crate) reason: String,
    /// The message Argo would record.
    pub(crate) message: String,
    /// `Normal` or `Warning`, as Argo chooses.
    pub(crate) severity: &'static str,
    /// The node id, for node events.
    pub(crate) node_id: Option<String>,
    /// When it happened, as far as the status tells.
    pub(crate) time: Option<String>,
}

/// The last-seen state of every workflow, keyed by uid (assigned by the API server, so the
/// maps hash with foldhash).
#[derive(Debug, Default)]
pub(crate) struct Transitions {
    seen: HashMap<String, Seen>,
    /// Workflows whose state changed since it was last taken to be stored.
    changed: HashSet<String>,
}

impl Transitions {
    /// Starts from state persisted by an earlier run.
    pub(crate) fn restore(seen: impl IntoIterator<Item = (String, Seen)>) -> Self {
        Self {
            seen: seen.into_iter().collect(),
            changed: HashSet::default(),
        }
    }

    /// Follows the run phase of workflow `uid`: a run that goes from a completed phase back to
    /// Running was retried (KFP "Retry run", `argo retry`), and its transitions are news again.
    /// Returns the attempt, and whether this change started it.
    pub(crate) fn follow_run(&mut self, uid: &str, phase: Option<&str>) -> (u32, bool) {
        let seen = Self::entry(&mut self.seen, uid);
        let completed = |p: Option<&str>| matches!(p, Some("Succeeded" | "Failed" | "Error"));
        let retried = completed(seen.run_phase.as_deref()) && phase == Some("Running");
        if retried {
            seen.attempt = seen.attempt.max(1) + 1;
            seen.delivered.clear();
            seen.tasks.clear();
            for node in seen.nodes.values_mut() {
                node.delivered.clear();
            }
        }
        if seen.run_phase.as_deref() != phase {
            seen.run_phase = phase.map(str::to_owned);
            self.changed.insert(uid.to_owned());
        }
        (seen.attempt.max(1), retried)
    }

    /// The state of workflow `uid` in `seen`; one seen for the first time has had no status
    /// compared.
    fn entry<'a>(seen: &'a mut HashMap<String, Seen>, uid: &str) -> &'a mut Seen {
        seen.entry(uid.to_owned()).or_insert_with(|| Seen {
            status_unseen: true,
            ..Seen::default()
        })
    }

    /// The attempt of workflow `uid`'s run.
    pub(crate) fn attempt(&self, uid: &str) -> u32 {
        self.seen.get(uid).map_or(1, |s| s.attempt.max(1))
    }

    /// Records that task `key` reported `reason` in the current attempt of workflow `uid`;
    /// false when it already had.
    pub(crate) fn record_task(&mut self, uid: &str, key: &str, reason: &str) -> bool {
        let seen = Self::entry(&mut self.seen, uid);
        let news = seen.tasks.insert(format!("{key} {reason}"));
        if news {
            self.changed.insert(uid.to_owned());
        }
        news
    }

    /// The state of `uid` to store, when it changed since it was last taken.
    pub(crate) fn take_changed(&mut self, uid: &str) -> Option<Seen> {
        match self.changed.remove(uid) {
            true => self.seen.get(uid).cloned(),
            false => None,
        }
    }

    /// Notes that workflow `uid` lives in `namespace`, once.
    pub(crate) fn place(&mut self, uid: &str, namespace: &str) {
        let seen = Self::entry(&mut self.seen, uid);
        if seen.namespace.is_none() && !namespace.is_empty() {
            seen.namespace = Some(namespace.to_owned());
            self.changed.insert(uid.to_owned());
        }
    }

    /// The workflows known in `scope` (a namespace, or `None` for all) for which `gone` holds.
    pub(crate) fn known_in(&self, scope: Option<&str>, gone: impl Fn(&str) -> bool) -> Vec<String> {
        self.seen
            .iter()
            .filter(|(_, s)| scope.is_none() || s.namespace.as_deref() == scope)
            .map(|(uid, _)| uid)
            .filter(|uid| gone(uid))
            .cloned()
            .collect()
    }

    /// Forgets a deleted workflow.
    pub(crate) fn forget(&mut self, uid: &str) {
        self.seen.remove(uid);
        self.changed.remove(uid);
    }

    /// Takes in a new version of `workflow`; returns the transitions to deliver, in order.
    ///
    /// For a workflow whose status was seen before, every change is reported. For one never
    /// seen, or seen only through its Events, only what happened after `since` is (all of it
    /// when `since` is `None`): what happened before the router watched is history, not news;
    /// the rest is recorded as known.
    pub(crate) fn observe(
        &mut self,
        workflow: &Workflow,
        since: Option<Timestamp>,
    ) -> Vec<Transition> {
        let uid = workflow.metadata.uid.clone().unwrap_or_default();
        let cutoff = match self.seen.get(&uid) {
            Some(seen) if !seen.status_unseen => None,
            _ => since,
        };
        let empty = WorkflowStatus::default();
        let status = workflow.status.as_ref().unwrap_or(&empty);
        let phase = status.phase.clone();
        let (_, retried) = self.follow_run(&uid, phase.as_deref());
        let seen = Self::entry(&mut self.seen, &uid);
        let first_status = std::mem::take(&mut seen.status_unseen);
        let mut out = Emitter::new(cutoff);
        if matches!(
            phase.as_deref(),
            Some("Running" | "Succeeded" | "Failed" | "Error")
        ) {
            let running = workflow_transition(
                "WorkflowRunning",
                "Workflow Running",
                "Normal",
                status.started_at.clone(),
            );
            out.offer(&mut seen.delivered, running);
        }
        // Nodes in the order things happened; each node's Running comes before its outcome.
        let mut nodes = Emitter::new(cutoff);
        let nodes_changed = node_transitions(seen, &status.nodes, retried, &mut nodes);
        nodes.out.sort_by(|a, b| a.time.cmp(&b.time));
        out.out.extend(nodes.out);
        let time = status
            .finished_at
            .clone()
            .or_else(|| status.started_at.clone());
        match phase.as_deref() {
            Some("Succeeded") => {
                let t =
                    workflow_transition("WorkflowSucceeded", "Workflow completed", "Normal", time);
                out.offer(&mut seen.delivered, t);
            }
            Some("Failed" | "Error") => {
                if timed_out(&status.message, &status.nodes) {
                    let t = workflow_transition(
                        "WorkflowTimedOut",
                        "Workflow timed out",
                        "Warning",
                        time.clone(),
                    );
                    out.offer(&mut seen.delivered, t);
                }
                let message = status.message.clone().unwrap_or_default();
                out.offer(
                    &mut seen.delivered,
                    workflow_transition("WorkflowFailed", &message, "Warning", time),
                );
            }
            _ => {}
        }
        if first_status || nodes_changed || out.recorded || seen.phase != phase {
            self.changed.insert(uid);
        }
        seen.phase = phase;
        out.out
    }

    /// Records that a real Event reported `reason` for the node `node` (its full name) or the
    /// workflow `uid`; returns false when that transition was already delivered (the Event is
    /// a duplicate).
    pub(crate) fn record(&mut self, uid: &str, node: Option<&str>, reason: &str) -> bool {
        let seen = Self::entry(&mut self.seen, uid);
        let news = match node.filter(|name| !name.is_empty()) {
            Some(name) => seen
                .nodes
                .entry(name.to_owned())
                .or_default()
                .delivered
                .insert(reason.to_owned()),
            // A node event whose node is unknown cannot be matched: deliver it.
            None if reason.starts_with("WorkflowNode") => return true,
            None => seen.delivered.insert(reason.to_owned()),
        };
        if news {
            self.changed.insert(uid.to_owned());
        }
        news
    }
}

/// Collects the transitions not delivered before; those before the cutoff are only recorded.
struct Emitter {
    cutoff: Option<Timestamp>,
    out: Vec<Transition>,
    /// Whether a reason was marked delivered.
    recorded: bool,
}

impl Emitter {
    fn new(cutoff: Option<Timestamp>) -> Self {
        Self {
            cutoff,
            out: Vec::new(),
            recorded: false,
        }
    }

    /// Marks `t` delivered in `delivered`; keeps it when it is news.
    fn offer(&mut self, delivered: &mut BTreeSet<String>, t: Transition) {
        let news = self.cutoff.is_none_or(|cutoff| happened_after(&t, cutoff));
        if delivered.insert(t.reason.clone()) {
            self.recorded = true;
            if news {
                self.out.push(t);
            }
        }
    }
}

/// The `WorkflowRunning` of a retried run, which Argo records no Event for.
pub(crate) fn rerun(workflow: &Workflow) -> Transition {
    let started = workflow.status.as_ref().and_then(|s| s.started_at.clone());
    workflow_transition("WorkflowRunning", "Workflow Running", "Normal", started)
}

fn workflow_transition(
    reason: &str,
    message: &str,
    severity: &'static str,
    time: Option<String>,
) -> Transition {
    Transition {
        reason: reason.to_owned(),
        message: message.to_owned(),
        severity,
        node_id: None,
        time,
    }
}

/// Node events for every node whose phase changed.
/// Returns whether any node's phase changed.
/// The transitions of `nodes` since `seen`. When the run was `reset` (retried) in this change,
/// nodes the retry set back to Pending are not reported: the retry, not the controller, did it.
fn node_transitions(
    seen: &mut Seen,
    nodes: &BTreeMap<String, NodeStatus>,
    reset: bool,
    out: &mut Emitter,
) -> bool {
    let mut changed = false;
    for (id, node) in nodes {
        let Some(phase) = node.phase.as_deref() else {
            continue;
        };
        let key = if node.name.is_empty() { id } else { &node.name };
        // Most nodes did not change: look them up without allocating.
        let is_new = !seen.nodes.contains_key(key);
        if is_new {
            seen.nodes.insert(key.clone(), SeenNode::default());
        }
        let known = seen.nodes.get_mut(key).expect("inserted above");
        if !is_new && known.phase == phase {
            continue;
        }
        changed = true;
        let before = std::mem::replace(&mut known.phase, phase.to_owned());
        let completed = matches!(phase, "Succeeded" | "Failed" | "Error");
        if completed && (is_new || before == "Pending" || before == "Running") {
            out.offer(&mut known.delivered, node_transition(node, id, "Running"));
        }
        let reported = match phase {
            "Running" => true,
            _ if completed => true,
            // Argo reports other phases only as a change of a node it already had.
            _ => !is_new && !reset,
        };
        if reported {
            out.offer(&mut known.delivered, node_transition(node, id, phase));
        }
    }
    // A retry deletes the nodes it runs again; when the controller makes them anew they are
    // new nodes, as Argo sees them. (Only then: otherwise a node known from its Event may
    // simply not be in this status yet.)
    if reset && !nodes.is_empty() {
        let present: std::collections::HashSet<&str> = nodes
            .iter()
            .map(|(id, n)| if n.name.is_empty() { id } else { &n.name })
            .map(String::as_str)
            .collect();
        seen.nodes.retain(|name, _| present.contains(name.as_str()));
        changed = true;
    }
    changed
}

fn node_transition(node: &NodeStatus, id: &str, phase: &str) -> Transition {
    let mut message = format!("{phase} node {}", node.name);
    // The node message belongs to its final phase, not to the Running reported before it.
    if let Some(text) = node
        .message
        .as_deref()
        .filter(|m| !m.is_empty() && node.phase.as_deref() == Some(phase))
    {
        message.push_str(": ");
        message.push_str(text);
    }
    let time = match phase {
        "Running" | "Pending" => node.started_at.clone(),
        _ => node.finished_at.clone().or_else(|| node.started_at.clone()),
    };
    Transition {
        reason: format!("WorkflowNode{phase}"),
        message,
        severity: if matches!(phase, "Succeeded" | "Running") {
            "Normal"
        } else {
            "Warning"
        },
        node_id: Some(id.to_owned()),
        time,
    }
}

/// Whether `transition` happened after `cutoff`; one with no time is taken as news.
fn happened_after(transition: &Transition, cutoff: Timestamp) -> bool {
    transition
        .time
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok())
        .is_none_or(|time| time > cutoff)
}

/// Whether a failed workflow failed on a deadline (`activeDeadlineSeconds`).
fn timed_out(message: &Option<String>, nodes: &BTreeMap<String, NodeStatus>) -> bool {
    let deadline = |m: &str| m.contains("exceeded its deadline") || m.contains("deadline exceeded");
    message.as_deref().is_some_and(deadline)
        || nodes
            .values()
            .any(|n| n.message.as_deref().is_some_and(deadline))
}

#[cfg(test)]
mod tests;
