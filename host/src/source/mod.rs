//! The `source` stage: where Events and Workflows come from.
//!
//! A source sends [`SourceItem`](crate::model::item::SourceItem)s, in the order things
//! happened, into a bounded channel read by the enrich stage. Each Event item may carry a
//! [`Checkpoint`](crate::model::item::Checkpoint): the outbox stores it in the same
//! transaction as the event, so a restarted source resumes after the last accepted event.
//!
//! - [`replay`]: a recorded JSON Lines file (`kubectl get -o json` objects or watch events).
//! - [`kubernetes`]: a cluster's Events and Workflows, watched through the API server.
//!
//! [`SourceSettings`] is the checked `[source]` section.

pub mod kubernetes;
mod occurrence;
pub(crate) mod replay;

use std::path::PathBuf;

/// Where events come from: the checked `[source]` section.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceSettings {
    /// Replay a recorded JSON Lines file.
    Replay {
        /// The recording.
        path: PathBuf,
        /// Events per second, or unlimited.
        rate: Option<f64>,
    },
    /// Watch a cluster.
    Kubernetes(kubernetes::KubernetesSettings),
}
