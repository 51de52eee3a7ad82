//! What the enrich stage does when an Event's Workflow is not in its cache (yet).
//!
//! A source that can look Workflows up (the kubernetes source: its reflector store, then a GET)
//! gives the [`Enricher`] a [`WorkflowFallback`]; before an Event is enriched, a cache miss
//! asks it once. A replay has none: what the recording holds is all there is.

use std::fmt;

use futures::future::BoxFuture;

use super::Enricher;
use super::workflow::Workflow;
use crate::source::SourceItem;

/// Finds a Workflow the enrich cache does not have.
pub trait WorkflowFallback: Send + Sync + fmt::Debug {
    /// The Workflow `namespace/name` (whose uid is `uid`, when the Event names it), or `None`
    /// when it does not exist (deleted, archived) or cannot be read.
    fn find<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        uid: Option<&'a str>,
    ) -> BoxFuture<'a, Option<Workflow>>;
}

impl Enricher {
    /// Before `item` is applied: when it is an Event whose Workflow the cache lacks, asks the
    /// fallback (if any) and caches what it finds.
    pub async fn prefetch(&mut self, item: &SourceItem) {
        let (Some(fallback), SourceItem::Event { event, .. }) = (&self.fallback, item) else {
            return;
        };
        let facts = super::event_facts(event);
        if facts.workflow_name.is_empty()
            || self
                .workflows
                .get(
                    &facts.namespace,
                    &facts.workflow_name,
                    facts.workflow_uid.as_deref(),
                )
                .is_some()
        {
            return;
        }
        let fallback = std::sync::Arc::clone(fallback);
        if let Some(workflow) = fallback
            .find(
                &facts.namespace,
                &facts.workflow_name,
                facts.workflow_uid.as_deref(),
            )
            .await
        {
            self.workflows.apply(workflow);
        }
    }
}
