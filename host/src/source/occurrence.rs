//! Tells a new Event occurrence from an update that adds nothing.
//!
//! Kubernetes reports a repeated Event by bumping `count` on the existing object, which a watch
//! delivers as a modification; Argo's aggregating recorder does the same with its
//! `(combined from similar events)` Events. So an Event is a new occurrence when its uid has not
//! been seen, or when its count is higher than the last one seen.

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;
use k8s_openapi::api::core::v1::Event;

/// How many Event uids a source remembers the count of: far more than a cluster's Events live
/// at once (they expire after an hour), and a bound on memory however long the stream.
pub(crate) const REMEMBERED: usize = 65_536;

/// Remembers the last count of recently seen Events, up to a fixed number of uids, in about
/// 24 bytes each: 1.5 MiB at [`REMEMBERED`].
#[derive(Debug)]
pub(crate) struct Occurrences {
    /// The Events seen, in the order first seen; once full, the oldest slot is reused.
    ring: Vec<Seen>,
    /// The slot the next new Event takes.
    next: usize,
    /// The slots of `ring`, found by their key's hash.
    index: HashTable<u32>,
    /// Hashes keys for `index`. A key is 128 bits the API server chose (a uid) or a keyed
    /// hash, which nobody outside can steer, so the fast hasher serves.
    index_hasher: foldhash::fast::RandomState,
    /// Hash identities that are not UUIDs into keys.
    hashers: [RandomState; 2],
    capacity: usize,
}

/// One Event remembered: its key and the last count seen.
#[derive(Debug)]
struct Seen {
    key: Key,
    count: i32,
}

/// An Event's identity in 128 bits: its uid when a UUID, as Kubernetes sets it (exact); else
/// (a recording without uids, or with others) a keyed hash of its [identity], which two
/// different identities share with a chance of 2^-128.
///
/// [identity]: crate::model::argo::identity
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key([u64; 2]);

impl Occurrences {
    /// Remembers at most `capacity` Events; the oldest are forgotten first.
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, u32::MAX as usize);
        Self {
            ring: Vec::new(),
            next: 0,
            index: HashTable::new(),
            index_hasher: foldhash::fast::RandomState::default(),
            hashers: [RandomState::new(), RandomState::new()],
            capacity,
        }
    }

    /// Records `event` and says whether it is a new occurrence.
    pub(crate) fn is_new(&mut self, event: &Event) -> bool {
        let count = event.count.unwrap_or(1);
        let key = self.key(event);
        let Self {
            ring,
            next,
            index,
            index_hasher: hasher,
            capacity,
            ..
        } = self;
        let hash = hasher.hash_one(key);
        if let Some(&slot) = index.find(hash, |&slot| ring[slot as usize].key == key) {
            let seen = &mut ring[slot as usize];
            if count <= seen.count {
                return false;
            }
            seen.count = count;
            return true;
        }
        let slot = *next;
        if slot < ring.len() {
            // Full: forget the oldest, whose slot this is.
            let oldest = hasher.hash_one(ring[slot].key);
            if let Ok(entry) = index.find_entry(oldest, |&s| s as usize == slot) {
                entry.remove();
            }
            ring[slot] = Seen { key, count };
        } else {
            ring.push(Seen { key, count });
        }
        *next = (slot + 1) % *capacity;
        index.insert_unique(hash, slot as u32, |&s| {
            hasher.hash_one(ring[s as usize].key)
        });
        true
    }

    fn key(&self, event: &Event) -> Key {
        if let Some(uid) = &event.metadata.uid
            && let Ok(uuid) = uuid::Uuid::try_parse(uid)
        {
            let (high, low) = uuid.as_u64_pair();
            return Key([high, low]);
        }
        let identity = crate::model::argo::identity(event);
        let [first, second] = &self.hashers;
        Key([
            first.hash_one(identity.as_str()),
            second.hash_one(identity.as_str()),
        ])
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
    fn kubernetes_uids_and_other_identities_are_told_apart() {
        let mut seen = Occurrences::new(10);
        let uid = "7c1d5f52-55a8-4bd4-9d3c-2f0e8b6f4a10";
        assert!(seen.is_new(&event(uid, 1)));
        assert!(!seen.is_new(&event(uid, 1)));
        assert!(seen.is_new(&event(uid, 2)), "a count bump");
        assert!(seen.is_new(&event("7c1d5f52-55a8-4bd4-9d3c-2f0e8b6f4a11", 1)));
        let mut unnamed = Event::default();
        unnamed.metadata.namespace = Some("kubeflow".into());
        unnamed.metadata.name = Some("run-1.17f".into());
        assert!(seen.is_new(&unnamed));
        assert!(!seen.is_new(&unnamed));
        assert!(
            !seen.is_new(&event("kubeflow/run-1.17f", 1)),
            "uid or namespace/name"
        );
    }

    #[test]
    fn forgets_the_oldest_beyond_capacity() {
        let mut seen = Occurrences::new(2);
        assert!(seen.is_new(&event("a", 1)));
        assert!(seen.is_new(&event("b", 1)));
        assert!(seen.is_new(&event("c", 1)));
        assert!(seen.is_new(&event("a", 1)), "a was forgotten");
        assert!(!seen.is_new(&event("c", 1)));
        // Round the ring many times: memory stays at capacity, the newest stay remembered.
        for i in 0..1000 {
            assert!(seen.is_new(&event(&format!("e{i}"), 1)));
            assert!(!seen.is_new(&event(&format!("e{i}"), 1)));
        }
        assert_eq!((seen.ring.len(), seen.index.len()), (2, 2));
        assert!(!seen.is_new(&event("e998", 1)));
        assert!(seen.is_new(&event("e997", 1)), "e997 was forgotten");
    }
}
