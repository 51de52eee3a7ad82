//! Tells a new Event occurrence from an update that adds nothing.
//!
//! Kubernetes reports a repeated Event by bumping `count` on the existing object, which a watch
//! delivers as a modification; Argo's aggregating recorder does the same with its
//! `(combined from similar events)` Events. So an Event is a new occurrence when its uid has not
//! been seen, or when its count is higher than the last one seen.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Event;

/// How many Event uids a source remembers the count of: far more than a cluster's Events live
/// at once (they expire after an hour), and a bound on memory however long the stream.
pub(crate) const REMEMBERED: usize = 65_536;

/// Remembers the last count of recently seen Events, up to a fixed number of uids.
#[derive(Debug)]
pub(crate) struct Occurrences {
    counts: HashMap<Arc<str>, i32>,
    order: VecDeque<Arc<str>>,
    capacity: usize,
}

impl Occurrences {
    /// Remembers at most `capacity` Events; the oldest are forgotten first.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            counts: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Records `event` and says whether it is a new occurrence.
    pub(crate) fn is_new(&mut self, event: &Event) -> bool {
        let count = event.count.unwrap_or(1);
        let key = crate::model::argo::identity(event);
        match self.counts.get_mut(key.as_str()) {
            Some(seen) if count <= *seen => false,
            Some(seen) => {
                *seen = count;
                true
            }
            None => {
                if self.order.len() == self.capacity
                    && let Some(oldest) = self.order.pop_front()
                {
                    self.counts.remove(&oldest);
                }
                let key: Arc<str> = key.into();
                self.order.push_back(Arc::clone(&key));
                self.counts.insert(key, count);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(uid: &str, count: i32) -> Event {
        let mut e = Event::default();
        e.metadata.uid = Some(uid.into());
        e.count = Some(count);
        e
    }

    #[test]
    fn a_count_bump_is_a_new_occurrence_and_a_replay_is_not() {
        let mut seen = Occurrences::new(10);
        assert!(seen.is_new(&event("a", 1)));
        assert!(!seen.is_new(&event("a", 1)));
        assert!(seen.is_new(&event("a", 2)));
        assert!(!seen.is_new(&event("a", 2)));
        assert!(seen.is_new(&event("b", 5)));
    }

    #[test]
    fn forgets_the_oldest_beyond_capacity() {
        let mut seen = Occurrences::new(2);
        assert!(seen.is_new(&event("a", 1)));
        assert!(seen.is_new(&event("b", 1)));
        assert!(seen.is_new(&event("c", 1)));
        assert!(seen.is_new(&event("a", 1)), "a was forgotten");
        assert!(!seen.is_new(&event("c", 1)));
    }
}
