//! What the enrich stage does when an Event's Workflow is not in its cache (yet).
//!
//! A source that can look Workflows up (the kubernetes source: its reflector store, then a GET)
//! lends the [`Enricher`] a [`WorkflowLookup`](crate::model::item::WorkflowLookup); before an
//! Event is enriched, a cache miss asks it once. A replay has none: what the recording holds is all there is.
//!
//! A lookup can take a while (the fetcher waits for the watch to bring the Workflow before it
//! GETs it), so [`ReadAhead`] reads items ahead of the one it applies and starts their lookups
//! at once: the lookups of several workflows overlap, while items are still applied in order.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc;

use super::Enricher;
use crate::model::item::SourceItem;
use crate::model::workflow::Workflow;

/// How many items are read ahead of the one being applied.
const READ_AHEAD: usize = 64;

/// The Workflow an Event names: its namespace, name and uid (when the Event has it).
type Key = (String, String, Option<String>);

/// Items read ahead of the one to apply, with the Workflow lookups they started.
#[derive(Default)]
pub(super) struct ReadAhead {
    /// Items in input order, each with the Workflow it waits for (if any).
    pending: VecDeque<(SourceItem, Option<Key>)>,
    /// Lookups under way.
    lookups: FuturesUnordered<BoxFuture<'static, (Key, Option<Workflow>)>>,
    /// The Workflows of the lookups under way.
    in_flight: HashSet<Key>,
    /// What finished lookups found, until the item that waits for it is applied.
    found: HashMap<Key, Option<Workflow>>,
    /// Whether the input closed.
    closed: bool,
}

impl ReadAhead {
    /// The next item of `input` to apply, in order, once its Workflow (when the cache lacked
    /// it) was looked up and cached; `None` once `input` closed and every item was handed on.
    pub(super) async fn next(
        &mut self,
        enricher: &mut Enricher,
        input: &mut mpsc::Receiver<SourceItem>,
    ) -> Option<SourceItem> {
        loop {
            let ready = self
                .pending
                .front()
                .is_some_and(|(_, key)| key.as_ref().is_none_or(|k| !self.in_flight.contains(k)));
            if ready {
                let (item, key) = self.pending.pop_front()?;
                if let Some(key) = key
                    && let Some(Some(workflow)) = self.found.remove(&key)
                    && !enricher.caches(&key)
                {
                    enricher.workflows.apply(workflow);
                }
                return Some(item);
            }
            if self.closed && self.pending.is_empty() {
                return None;
            }
            // The front item waits for a lookup (or there is none): read on meanwhile.
            let reading = !self.closed && self.pending.len() < READ_AHEAD;
            tokio::select! {
                item = input.recv(), if reading => match item {
                    Some(item) => self.push(enricher, item),
                    None => self.closed = true,
                },
                Some((key, workflow)) = self.lookups.next(), if !self.lookups.is_empty() => {
                    self.in_flight.remove(&key);
                    self.found.insert(key, workflow);
                }
            }
        }
    }

    /// Queues `item`; when it is an Event whose Workflow the cache lacks, starts looking that
    /// Workflow up (unless a lookup of it is under way or done).
    fn push(&mut self, enricher: &Enricher, item: SourceItem) {
        let key = enricher.missing(&item);
        if let (Some(key), Some(fallback)) = (&key, &enricher.fallback)
            && !self.in_flight.contains(key)
            && !self.found.contains_key(key)
        {
            let fallback = Arc::clone(fallback);
            let key = key.clone();
            self.in_flight.insert(key.clone());
            self.lookups.push(Box::pin(async move {
                let found = fallback.find(&key.0, &key.1, key.2.as_deref()).await;
                (key, found)
            }));
        }
        self.pending.push_back((item, key));
    }
}

impl Enricher {
    /// The Workflow `item` names when it is an Event whose Workflow the cache lacks and there
    /// is a fallback to ask.
    fn missing(&self, item: &SourceItem) -> Option<Key> {
        let (Some(_), SourceItem::Event { event, .. }) = (&self.fallback, item) else {
            return None;
        };
        let (namespace, name, uid) = super::workflow_of(event);
        let key = (
            namespace.to_owned(),
            name.to_owned(),
            uid.map(str::to_owned),
        );
        (!key.1.is_empty() && !self.caches(&key)).then_some(key)
    }

    /// Whether the cache has the Workflow `key`.
    fn caches(&self, key: &Key) -> bool {
        self.workflows
            .get(&key.0, &key.1, key.2.as_deref())
            .is_some()
    }
}
