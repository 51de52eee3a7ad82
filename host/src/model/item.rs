//! What one stage hands the next: the source's items, and the enrich stage's intake.

use std::collections::HashSet;
use std::fmt;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Event;

use super::event::RouterEvent;
use super::workflow::Workflow;

/// Something a source saw, in the order things happened.
#[derive(Debug)]
pub enum SourceItem {
    /// A new occurrence of an Event: its first sighting, or a repeat (higher `count`).
    Event {
        /// The Event.
        event: Box<Event>,
        /// Where to resume after this event, once it is accepted.
        checkpoint: Option<Checkpoint>,
    },
    /// A Workflow was created or changed.
    WorkflowApplied(Box<Workflow>),
    /// A Workflow the source first saw after its first list: it began while the router
    /// watched, so all it shows is news, whatever its timestamps say (the controller's clock
    /// may lag the router's). Later changes of it are `WorkflowApplied`.
    WorkflowLive(Box<Workflow>),
    /// A Workflow was deleted.
    WorkflowDeleted(Box<Workflow>),
    /// A complete list of a scope's Workflows (the first one, or one after the watch had to
    /// start over): a Workflow of that scope known before and not listed was deleted unseen.
    WorkflowsListed {
        /// The namespace listed, or `None` for all of them.
        namespace: Option<String>,
        /// The uids of the Workflows listed.
        uids: HashSet<String>,
    },
    /// The source moved on without an event to carry its position (e.g. past the Events that
    /// existed at its first start): store this checkpoint as it is.
    Checkpoint(Checkpoint),
}

/// A source's resume position, stored with the events it covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Which position this is, e.g. `replay:/path/to/file`.
    pub key: String,
    /// The position itself, in the source's own terms.
    pub value: String,
}

/// What the enrich stage hands to the accept stage.
#[derive(Debug, Default)]
pub struct Intake {
    /// The event to deliver, if any.
    pub event: Option<RouterEvent>,
    /// Where the source resumes once this is accepted.
    pub checkpoint: Option<Checkpoint>,
    /// A workflow's last-seen state to store with it.
    pub seen: Option<SeenState>,
}

/// A workflow's last-seen state as the outbox stores it: its uid, and the state serialised by
/// the enrich stage (opaque to the others), or `None` to forget the workflow.
pub type SeenState = (String, Option<Vec<u8>>);

/// What the accept stage reports after each batch it stored: the source's position and the
/// last outbox sequence number it covers (the kubernetes source mirrors it once delivered).
#[derive(Clone, Debug)]
pub(crate) struct Accepted {
    /// The newest checkpoint of the batch.
    pub(crate) checkpoint: Checkpoint,
    /// Every event it covers has a sequence number up to this.
    pub(crate) last_seq: u64,
}

/// Finds a Workflow the enrich stage's cache does not have (yet): a source that can look
/// Workflows up (the kubernetes source: its reflector store, then a GET) lends one.
pub(crate) trait WorkflowLookup: Send + Sync + fmt::Debug {
    /// The Workflow `namespace/name` (whose uid is `uid`, when the Event names it), or `None`
    /// when it does not exist (deleted, archived) or cannot be read.
    fn find<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        uid: Option<&'a str>,
    ) -> BoxFuture<'a, Option<Workflow>>;
}
