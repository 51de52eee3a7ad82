//! Decides which Events of one watch are new, so that each occurrence is sent on once.
//!
//! A [`Gate`] sits behind one `watcher` of Events and remembers a [`Position`]: the
//! `resourceVersion` of the last Event version it handled. Kubernetes gives every change a new,
//! higher `resourceVersion` (an etcd revision), and a watch delivers changes in that order, so
//! "after the position" is "not handled yet", across relists, `410 Gone`, dropped connections
//! and restarts (the position is in the checkpoint). On top of that, [`Occurrences`] (uid and
//! `count`) tells a repeat of an Event (a count bump, a new occurrence) from an update that adds
//! nothing.
//!
//! The first list of a watch is the baseline: with a position to resume from, the listed Events
//! after it are sent (they happened while the router was down), in `resourceVersion` order;
//! without one (the very first start), only those within the `history` window are. Only that
//! first list is held to a time: with numeric `resourceVersion`s, an Event the watch (or a later
//! relist) brings is news whatever its timestamps say (the controller's clock may lag the
//! router's). A first start that lists no Event at all takes `resourceVersion` 0 as its position: every
//! Event there is came after it. Should a server hand out `resourceVersion`s that are not
//! numbers, Event times stand in, and that position's time is its start (less a minute of clock
//! skew: no Event existed before it, so none can be taken for an old one).

use std::cmp::Ordering;
use std::time::Duration;

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::watcher;
use serde::{Deserialize, Serialize};

use crate::model::argo::identity;
use crate::model::argo::is_workflow_event;
use crate::source::occurrence::{Occurrences, REMEMBERED};

/// Clock skew allowed between the router and the controller, for the baseline of a first
/// start that listed no Event, where `resourceVersion`s are not numbers (see [`Gate`]).
const SKEW: Duration = Duration::from_secs(60);

/// Where one watch stands: the last Event version it handled.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Position {
    /// That Event version's `metadata.resourceVersion`.
    pub(crate) resource_version: String,
    /// When that occurrence happened (RFC 3339), when the Event says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) time: Option<String>,
    /// The Event's uid (or namespace/name).
    #[serde(default)]
    pub(crate) uid: String,
    /// The Event's `count`.
    #[serde(default)]
    pub(crate) count: i32,
}

impl Position {
    /// The position right after `event`.
    pub(crate) fn of(event: &Event) -> Self {
        Self {
            resource_version: event.metadata.resource_version.clone().unwrap_or_default(),
            time: event_time(event).map(|t| t.to_string()),
            uid: identity(event),
            count: event.count.unwrap_or(1),
        }
    }

    /// Whether `event` (this version of it) comes after this position.
    pub(crate) fn precedes(&self, event: &Event) -> bool {
        self.cmp_to(&Self::of(event)) == Ordering::Less
    }

    /// Orders two positions: by `resourceVersion` when both are numbers, else by time.
    pub(crate) fn cmp_to(&self, other: &Self) -> Ordering {
        match (
            number(&self.resource_version),
            number(&other.resource_version),
        ) {
            (Some(a), Some(b)) => a.cmp(&b),
            _ => {
                let time = |p: &Self| p.time.as_deref().and_then(|t| t.parse::<Timestamp>().ok());
                match time(self).cmp(&time(other)) {
                    Ordering::Equal if (&self.uid, self.count) != (&other.uid, other.count) => {
                        Ordering::Less
                    }
                    order => order,
                }
            }
        }
    }

    /// The later of two positions.
    pub(crate) fn max(self, other: Self) -> Self {
        match self.cmp_to(&other) {
            Ordering::Less => other,
            _ => self,
        }
    }
}

fn number(resource_version: &str) -> Option<u64> {
    resource_version.parse().ok()
}

/// When an Event's latest occurrence happened: `lastTimestamp`, else `eventTime`, else
/// `firstTimestamp`, else its creation.
pub(crate) fn event_time(event: &Event) -> Option<Timestamp> {
    event
        .last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| event.event_time.as_ref().map(|t| t.0))
        .or_else(|| event.first_timestamp.as_ref().map(|t| t.0))
        .or_else(|| event.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// What a gate made of one watcher event.
#[derive(Debug, Default)]
pub(crate) struct Step {
    /// New occurrences to send on, in order.
    pub(crate) events: Vec<Event>,
    /// Events passed over because they were handled already (or, on a first start, are older
    /// than the history window).
    pub(crate) skipped: u64,
    /// True when the position moved without an event to carry it (a baseline or a relist), so
    /// the caller should store it on its own.
    pub(crate) moved: bool,
    /// True when this step completed a (re)list.
    pub(crate) listed: bool,
}

/// Filters one watch's events down to the occurrences not handled yet.
#[derive(Debug)]
pub(crate) struct Gate {
    position: Option<Position>,
    seen: Occurrences,
    listing: Option<Vec<Event>>,
    first_start: Option<Timestamp>,
    started: Timestamp,
}

impl Gate {
    /// A gate resuming after `resume`; without one (the very first start), Events listed at
    /// start are sent only when they happened within `history` before `now`.
    pub(crate) fn new(resume: Option<Position>, history: Option<Duration>, now: Timestamp) -> Self {
        let first_start = match (&resume, history) {
            (Some(_), _) => None,
            (None, None) => Some(Timestamp::MAX),
            (None, Some(window)) => Some(now.checked_sub(window).unwrap_or(Timestamp::MIN)),
        };
        Self {
            position: resume,
            seen: Occurrences::new(REMEMBERED),
            listing: None,
            first_start,
            started: now,
        }
    }

    /// The last Event version handled.
    pub(crate) fn position(&self) -> Option<&Position> {
        self.position.as_ref()
    }

    /// Takes one watcher event.
    pub(crate) fn step(&mut self, event: watcher::Event<Event>) -> Step {
        match event {
            watcher::Event::Init => {
                self.listing = Some(Vec::new());
                Step::default()
            }
            watcher::Event::InitApply(event) => {
                match &mut self.listing {
                    Some(listing) => listing.push(event),
                    None => return self.applied(event),
                }
                Step::default()
            }
            watcher::Event::InitDone => self.listed(),
            watcher::Event::Apply(event) => self.applied(event),
            watcher::Event::Delete(_) => Step::default(),
        }
    }

    /// One change seen while watching.
    fn applied(&mut self, event: Event) -> Step {
        let mut step = Step::default();
        if !is_workflow_event(&event) {
            return step;
        }
        let after = self.position.as_ref().is_none_or(|p| p.precedes(&event));
        let new = after && self.seen.is_new(&event);
        self.advance(&event);
        match new {
            true => step.events.push(event),
            false => step.skipped += 1,
        }
        step
    }

    /// A (re)list is complete: sends what it holds after the position, oldest first.
    fn listed(&mut self) -> Step {
        let mut listing = self.listing.take().unwrap_or_default();
        listing.retain(is_workflow_event);
        listing.sort_by(|a, b| Position::of(a).cmp_to(&Position::of(b)));
        let first_start = self.first_start.take();
        let before = self.position.clone();
        let mut step = Step::default();
        for event in listing {
            let wanted = match first_start {
                Some(since) => event_time(&event).is_some_and(|t| t >= since),
                None => before.as_ref().is_none_or(|p| p.precedes(&event)),
            };
            let new = self.seen.is_new(&event) && wanted;
            self.advance(&event);
            match new {
                true => step.events.push(event),
                false => step.skipped += 1,
            }
        }
        if self.position.is_none() {
            self.position = Some(Position {
                resource_version: "0".to_owned(),
                time: Some((self.started.checked_sub(SKEW).unwrap_or(self.started)).to_string()),
                ..Position::default()
            });
        }
        step.moved = self.position != before;
        step.listed = true;
        step
    }

    fn advance(&mut self, event: &Event) {
        let next = Position::of(event);
        self.position = Some(match self.position.take() {
            Some(current) => current.max(next),
            None => next,
        });
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{EventSource, ObjectReference};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn event(uid: &str, rv: u64, count: i32, at: &str) -> Event {
        let mut e = Event::default();
        e.metadata.uid = Some(uid.into());
        e.metadata.resource_version = Some(rv.to_string());
        e.count = Some(count);
        e.last_timestamp = Some(Time(at.parse().unwrap()));
        e.source = Some(EventSource {
            component: Some("workflow-controller".into()),
            ..EventSource::default()
        });
        e.involved_object = ObjectReference {
            kind: Some("Workflow".into()),
            name: Some("wf".into()),
            ..ObjectReference::default()
        };
        e
    }

    fn uids(step: &Step) -> Vec<String> {
        step.events
            .iter()
            .map(|e| {
                format!(
                    "{}#{}",
                    e.metadata.uid.as_deref().unwrap(),
                    e.count.unwrap()
                )
            })
            .collect()
    }

    fn list(gate: &mut Gate, events: Vec<Event>) -> Step {
        gate.step(watcher::Event::Init);
        for e in events {
            gate.step(watcher::Event::InitApply(e));
        }
        gate.step(watcher::Event::InitDone)
    }

    const NOW: &str = "2026-11-20T12:00:00Z";

    #[test]
    fn first_start_sends_nothing_that_exists_then_everything_new() {
        let mut gate = Gate::new(None, None, NOW.parse().unwrap());
        let step = list(
            &mut gate,
            vec![event("a", 10, 1, NOW), event("b", 11, 1, NOW)],
        );
        assert!(step.events.is_empty());
        assert!(step.moved, "the baseline must be stored");
        assert_eq!(gate.position().unwrap().resource_version, "11");
        let step = gate.step(watcher::Event::Apply(event("c", 12, 1, NOW)));
        assert_eq!(uids(&step), ["c#1"]);
    }

    #[test]
    fn a_first_start_with_no_event_still_stores_where_it_began() {
        let mut gate = Gate::new(None, None, NOW.parse().unwrap());
        let step = list(&mut gate, vec![]);
        assert!(step.moved && step.listed);
        let baseline = gate.position().cloned().unwrap();
        assert_eq!(baseline.resource_version, "0");
        // After a restart from it, an Event created while down is new.
        let mut gate = Gate::new(
            Some(baseline),
            None,
            "2026-11-20T13:00:00Z".parse().unwrap(),
        );
        let step = list(
            &mut gate,
            vec![event("while-down", 7, 1, "2026-11-20T12:30:00Z")],
        );
        assert_eq!(uids(&step), ["while-down#1"]);
        assert_eq!(
            gate.position().unwrap().resource_version,
            "7",
            "numbers again from then on"
        );
        assert!(
            gate.step(watcher::Event::Apply(event("while-down", 7, 1, NOW)))
                .events
                .is_empty()
        );
    }

    #[test]
    fn after_an_empty_first_list_events_are_news_whatever_their_time() {
        let mut gate = Gate::new(None, None, NOW.parse().unwrap());
        list(&mut gate, vec![]);
        // The controller's clock is a day behind the router's.
        let behind = "2026-11-19T12:00:00Z";
        assert_eq!(
            uids(&gate.step(watcher::Event::Apply(event("a", 5, 1, behind)))),
            ["a#1"]
        );
        // The watch broke and the router lists again: what came meanwhile is news too.
        let step = list(
            &mut gate,
            vec![event("a", 5, 1, behind), event("b", 6, 1, behind)],
        );
        assert_eq!(uids(&step), ["b#1"]);
        assert_eq!(gate.position().unwrap().resource_version, "6");
    }

    #[test]
    fn history_window_sends_recent_events_in_resource_version_order() {
        let mut gate = Gate::new(None, Some(Duration::from_secs(3600)), NOW.parse().unwrap());
        let step = list(
            &mut gate,
            vec![
                event("new2", 30, 1, "2026-11-20T11:50:00Z"),
                event("old", 5, 1, "2026-11-20T10:00:00Z"),
                event("new1", 20, 1, "2026-11-20T11:30:00Z"),
            ],
        );
        assert_eq!(uids(&step), ["new1#1", "new2#1"]);
        assert_eq!(step.skipped, 1);
    }

    #[test]
    fn resume_sends_exactly_what_came_after_the_checkpoint() {
        let resume = Position::of(&event("b", 11, 1, NOW));
        let mut gate = Gate::new(Some(resume), None, NOW.parse().unwrap());
        let step = list(
            &mut gate,
            vec![
                event("c", 13, 1, NOW),
                event("a", 10, 1, NOW),
                event("b", 11, 1, NOW),
            ],
        );
        assert_eq!(uids(&step), ["c#1"]);
    }

    #[test]
    fn relist_after_gone_doubles_nothing_and_loses_nothing() {
        let mut gate = Gate::new(None, None, NOW.parse().unwrap());
        list(&mut gate, vec![event("a", 10, 1, NOW)]);
        assert_eq!(
            uids(&gate.step(watcher::Event::Apply(event("b", 11, 1, NOW)))),
            ["b#1"]
        );
        // The watch broke; c happened meanwhile; a relist shows a, b and c.
        let step = list(
            &mut gate,
            vec![
                event("a", 10, 1, NOW),
                event("b", 11, 1, NOW),
                event("c", 12, 1, NOW),
            ],
        );
        assert_eq!(uids(&step), ["c#1"]);
        assert!(step.moved);
    }

    #[test]
    fn a_count_bump_is_a_new_occurrence_an_idle_update_is_not() {
        let mut gate = Gate::new(None, None, NOW.parse().unwrap());
        list(&mut gate, vec![]);
        assert_eq!(
            uids(&gate.step(watcher::Event::Apply(event("a", 10, 1, NOW)))),
            ["a#1"]
        );
        assert_eq!(
            uids(&gate.step(watcher::Event::Apply(event("a", 11, 2, NOW)))),
            ["a#2"]
        );
        assert!(
            gate.step(watcher::Event::Apply(event("a", 12, 2, NOW)))
                .events
                .is_empty()
        );
        assert!(
            gate.step(watcher::Event::Apply(event("a", 11, 2, NOW)))
                .events
                .is_empty(),
            "a replayed version"
        );
    }

    #[test]
    fn positions_order_by_number_not_text() {
        let a = Position {
            resource_version: "9".into(),
            ..Position::default()
        };
        let b = Position {
            resource_version: "10".into(),
            ..Position::default()
        };
        assert_eq!(a.cmp_to(&b), Ordering::Less);
        assert_eq!(a.max(b).resource_version, "10");
    }

    #[test]
    fn opaque_resource_versions_fall_back_to_time() {
        let mut older = event("a", 0, 1, "2026-11-20T11:00:00Z");
        older.metadata.resource_version = Some("x1".into());
        let mut newer = event("b", 0, 1, "2026-11-20T11:00:01Z");
        newer.metadata.resource_version = Some("x0".into());
        assert!(Position::of(&older).precedes(&newer));
        assert!(!Position::of(&newer).precedes(&older));
    }
}
