//! The Workflows the enrich stage knows, fed by the source's Workflow items.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::task::{self, TaskMap};
use crate::model::event::WorkflowFacts;
use crate::model::workflow::Workflow;

/// How many deleted Workflows are kept for Events that arrive after the deletion.
const DELETED_KEPT: usize = 1024;

/// A Workflow with its facts computed once, when it changed.
#[derive(Debug)]
pub(crate) struct Cached {
    /// The object.
    pub(crate) workflow: Workflow,
    /// Its facts, shared by the events read while it is current.
    pub(crate) facts: Arc<WorkflowFacts>,
    /// Whether KFP 2.x compiled it.
    pub(crate) kfp_v2: bool,
    /// The KFP task of each node (KFP 2.x runs only).
    pub(crate) tasks: TaskMap,
}

impl Cached {
    /// Computes what every event of this Workflow version needs.
    fn new(workflow: Workflow) -> Self {
        let kfp_v2 = task::is_kfp_v2(&workflow);
        let mut facts = workflow.facts();
        if kfp_v2 {
            // The compiler's component blobs are not the user's parameters.
            facts.parameters = task::run_parameters(&workflow)
                .unwrap_or_default()
                .into_iter()
                .collect();
        }
        facts.cap();
        Self {
            tasks: TaskMap::of(&workflow),
            kfp_v2,
            workflow,
            facts: Arc::new(facts),
        }
    }
}

/// Workflows by namespace/name and by uid, plus the most recently deleted ones.
#[derive(Debug, Default)]
pub(crate) struct WorkflowCache {
    by_name: HashMap<(String, String), Arc<Cached>>,
    deleted: VecDeque<Arc<Cached>>,
}

impl WorkflowCache {
    /// Stores the latest version of a Workflow.
    pub(crate) fn apply(&mut self, workflow: Workflow) {
        let cached = Cached::new(workflow);
        let key = (cached.facts.namespace.clone(), cached.facts.name.clone());
        self.by_name.insert(key, Arc::new(cached));
    }

    /// Forgets a Workflow, keeping it a while for late Events.
    pub(crate) fn delete(&mut self, workflow: &Workflow) {
        let key = (
            workflow.metadata.namespace.clone().unwrap_or_default(),
            workflow.metadata.name.clone().unwrap_or_default(),
        );
        if let Some(cached) = self.by_name.remove(&key) {
            self.keep_deleted(cached);
        }
    }

    /// Forgets the Workflows of `scope` (a namespace, or `None` for all) for which `gone` holds,
    /// keeping them a while for late Events; returns how many.
    pub(crate) fn prune(&mut self, scope: Option<&str>, gone: impl Fn(&Cached) -> bool) -> usize {
        let keys: Vec<(String, String)> = self
            .by_name
            .iter()
            .filter(|((namespace, _), c)| scope.is_none_or(|s| s == namespace) && gone(c))
            .map(|(key, _)| key.clone())
            .collect();
        for key in &keys {
            let cached = self.by_name.remove(key).expect("listed above");
            self.keep_deleted(cached);
        }
        keys.len()
    }

    fn keep_deleted(&mut self, cached: Arc<Cached>) {
        if self.deleted.len() == DELETED_KEPT {
            self.deleted.pop_front();
        }
        self.deleted.push_back(cached);
    }

    /// The Workflow `namespace/name`; when `uid` is known it must match, so that a re-created
    /// Workflow of the same name is not mistaken for the old one.
    pub(crate) fn get(
        &self,
        namespace: &str,
        name: &str,
        uid: Option<&str>,
    ) -> Option<Arc<Cached>> {
        let matches = |c: &Arc<Cached>| {
            c.facts.namespace == namespace
                && c.facts.name == name
                && uid.is_none_or(|uid| c.facts.uid == uid)
        };
        self.by_name
            .get(&(namespace.to_owned(), name.to_owned()))
            .filter(|c| matches(c))
            .or_else(|| self.deleted.iter().rev().find(|c| matches(c)))
            .cloned()
    }
}
