//! Finds a Workflow the enrich cache misses: in the reflector's store, then with a GET.
//!
//! The Workflow watch usually brings a Workflow before its first Event; when an Event comes
//! first, [`WorkflowFetcher`] waits briefly for the reflector's [`Store`] to have it, then GETs
//! it (retrying transient errors). A Workflow that is gone (404) is remembered as gone, so its
//! later Events cost no request: they are delivered with what the Event itself says.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use kube::Api;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::model::item::WorkflowLookup;
use crate::model::workflow::Workflow;

/// How many gone Workflows are remembered.
const GONE_KEPT: usize = 4096;
/// Attempts of a GET that fails for another reason than 404.
const ATTEMPTS: u32 = 3;
/// How often the store is looked at while waiting.
const POLL: Duration = Duration::from_millis(20);

/// Looks Workflows up in the reflector stores, then in the API.
pub(crate) struct WorkflowFetcher {
    client: kube::Client,
    /// Stores by scope: `None` for the cluster-wide one, else a namespace.
    stores: Vec<(Option<String>, Store<Workflow>)>,
    wait: Duration,
    gone: Mutex<Gone>,
}

#[derive(Default)]
struct Gone {
    set: HashSet<(String, String, String)>,
    order: VecDeque<(String, String, String)>,
}

impl std::fmt::Debug for WorkflowFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkflowFetcher")
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl WorkflowFetcher {
    /// A fetcher over `stores` that waits up to `wait` for a store before a GET.
    pub(crate) fn new(
        client: kube::Client,
        stores: Vec<(Option<String>, Store<Workflow>)>,
        wait: Duration,
    ) -> Self {
        Self {
            client,
            stores,
            wait,
            gone: Mutex::default(),
        }
    }

    fn store(&self, namespace: &str) -> Option<&Store<Workflow>> {
        self.stores
            .iter()
            .find(|(scope, _)| scope.as_deref().is_none_or(|s| s == namespace))
            .map(|(_, store)| store)
    }

    fn cached(&self, namespace: &str, name: &str, uid: Option<&str>) -> Option<Workflow> {
        let found = self
            .store(namespace)?
            .get(&ObjectRef::new(name).within(namespace))?;
        matches(&found, uid).then(|| (*found).clone())
    }

    async fn lookup(&self, namespace: &str, name: &str, uid: Option<&str>) -> Option<Workflow> {
        let key = (
            namespace.to_owned(),
            name.to_owned(),
            uid.unwrap_or_default().to_owned(),
        );
        if self.gone.lock().expect("not poisoned").set.contains(&key) {
            return None;
        }
        let waited = tokio::time::Instant::now();
        loop {
            if let Some(found) = self.cached(namespace, name, uid) {
                return Some(found);
            }
            if waited.elapsed() >= self.wait {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        let api: Api<Workflow> = Api::namespaced(self.client.clone(), namespace);
        let mut delay = Duration::from_millis(100);
        for attempt in 1..=ATTEMPTS {
            match api.get_opt(name).await {
                Ok(Some(found)) if matches(&found, uid) => return Some(found),
                Ok(_) => {
                    tracing::debug!(
                        namespace,
                        name,
                        "the Workflow is gone; delivering its events without it"
                    );
                    self.remember_gone(key);
                    return None;
                }
                Err(e) if attempt < ATTEMPTS => {
                    tracing::debug!(namespace, name, "GET Workflow failed, retrying: {e}");
                    tokio::time::sleep(delay).await;
                    delay *= 3;
                }
                Err(e) => {
                    tracing::warn!(namespace, name, "cannot read the Workflow of an event: {e}")
                }
            }
        }
        None
    }

    fn remember_gone(&self, key: (String, String, String)) {
        let mut gone = self.gone.lock().expect("not poisoned");
        if gone.set.insert(key.clone()) {
            gone.order.push_back(key);
            if gone.order.len() > GONE_KEPT
                && let Some(oldest) = gone.order.pop_front()
            {
                gone.set.remove(&oldest);
            }
        }
    }
}

fn matches(workflow: &Workflow, uid: Option<&str>) -> bool {
    uid.is_none_or(|uid| workflow.metadata.uid.as_deref() == Some(uid))
}

impl WorkflowLookup for WorkflowFetcher {
    fn find<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        uid: Option<&'a str>,
    ) -> BoxFuture<'a, Option<Workflow>> {
        Box::pin(self.lookup(namespace, name, uid))
    }
}
