//! What the enrich stage does when an Event's Workflow is not in its cache (yet).
//!
//! A source that can look Workflows up (the kubernetes source: its reflector store, then a GET)
//! lends the [`Enricher`] a [`WorkflowLookup`](crate::model::item::WorkflowLookup); before an Event is enriched, a cache miss
//! asks it once. A replay has none: what the recording holds is all there is.

use super::Enricher;
use crate::model::item::SourceItem;

impl Enricher {
    /// Before `item` is applied: when it is an Event whose Workflow the cache lacks, asks the
    /// fallback (if any) and caches what it finds.
    pub(crate) async fn prefetch(&mut self, item: &SourceItem) {
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
