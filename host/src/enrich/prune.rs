//! Forgetting workflows whose deletion the router missed.
//!
//! A Workflow deleted while the watch was down (or while the router was not running) never
//! reaches the enrich stage as a deletion; its cached object and its stored state would stay
//! forever. Each complete list of a scope's Workflows says which ones still exist: what the
//! stage knows of that scope and the list lacks is gone. A workflow the stage heard of since the
//! scope's previous list is kept even if this list lacks it (it may have been created after the
//! list was taken, its Event overtaking it); the next list decides.

use std::collections::HashMap;

/// When each workflow was last heard of, in listings: enough to tell a gone workflow from one
/// the latest list may merely predate.
#[derive(Debug)]
pub(crate) struct Sightings {
    /// Counts listings; a touch records the count at the time.
    clock: u64,
    /// Per workflow uid, the clock when last heard of (absent: not since the router started).
    /// Touched on every event, and keyed by what the API server assigns: hashed with foldhash.
    touched: foldhash::HashMap<String, u64>,
    /// Per scope (a namespace, or `None` for all), the clock of its last listing.
    listed_at: HashMap<Option<String>, u64>,
}

impl Default for Sightings {
    fn default() -> Self {
        Self {
            clock: 1,
            touched: foldhash::HashMap::default(),
            listed_at: HashMap::new(),
        }
    }
}

impl Sightings {
    /// Notes that workflow `uid` was heard of (an Event, a Workflow version).
    pub(crate) fn touch(&mut self, uid: &str) {
        if let Some(at) = self.touched.get_mut(uid) {
            *at = self.clock;
        } else {
            self.touched.insert(uid.to_owned(), self.clock);
        }
    }

    /// Records a listing of `scope`; returns which workflows may be forgotten if it lacks them:
    /// those not heard of since the scope's previous listing.
    pub(crate) fn listed(&mut self, scope: &Option<String>) -> impl Fn(&str) -> bool + '_ {
        let previous = self
            .listed_at
            .insert(scope.clone(), self.clock)
            .unwrap_or(0);
        self.clock += 1;
        move |uid| self.touched.get(uid).copied().unwrap_or(0) <= previous
    }

    /// Forgets a workflow.
    pub(crate) fn forget(&mut self, uid: &str) {
        self.touched.remove(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workflow_heard_of_since_the_previous_listing_is_kept_until_the_next() {
        let mut sightings = Sightings::default();
        let scope = Some("kubeflow".to_owned());
        // Restored from the outbox, never heard of in this run.
        assert!(sightings.listed(&scope)("restored"));
        sightings.touch("new");
        assert!(
            !sightings.listed(&scope)("new"),
            "heard of since the last list"
        );
        assert!(sightings.listed(&scope)("new"), "not heard of since");
    }

    #[test]
    fn scopes_are_listed_apart() {
        let mut sightings = Sightings::default();
        let a = Some("a".to_owned());
        let b = Some("b".to_owned());
        let _ = sightings.listed(&a);
        sightings.touch("w");
        let _ = sightings.listed(&a);
        assert!(
            !sightings.listed(&b)("w"),
            "b's first listing: w was heard of"
        );
    }
}
