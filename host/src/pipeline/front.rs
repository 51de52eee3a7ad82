//! The front half every command shares: a source, read by the enrich stage.
//!
//! `run`, `run --dry-run` and `plugin test` all start here; only what they do with the
//! enriched events differs.

use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinHandle};

use crate::enrich::{self, Enricher, Paths};
use crate::model::item::{Accepted, Intake, SourceItem, WorkflowLookup};
use crate::source::kubernetes::{self, Session};
use crate::source::replay::Replay;
use crate::state::Outbox;
use crate::telemetry::Metrics;

/// Capacity of the channels between stages.
pub(super) const CHANNEL: usize = 256;

/// A running source: its task (returning how many events it sent), a handle to stop it, the
/// checkpoint to clear once it finished and everything is delivered (a replay's), and what it
/// lends the other stages.
pub(super) struct Source {
    pub(super) task: JoinHandle<anyhow::Result<u64>>,
    pub(super) abort: AbortHandle,
    pub(super) checkpoint_key: Option<String>,
    lookup: Option<Arc<dyn WorkflowLookup>>,
    pub(super) accepted: Option<mpsc::Sender<Accepted>>,
}

impl Source {
    /// Replays `replay` into `items`, after the stored checkpoint `resume` (kept under
    /// `checkpoint_key`, when the run keeps one).
    pub(super) fn replay(
        replay: Replay,
        resume: Option<String>,
        checkpoint_key: Option<String>,
        items: mpsc::Sender<SourceItem>,
    ) -> Self {
        let task =
            tokio::spawn(async move { Ok(replay.run(resume.as_deref(), items).await?.events) });
        Self {
            abort: task.abort_handle(),
            task,
            checkpoint_key,
            lookup: None,
            accepted: None,
        }
    }

    /// Watches the cluster as the elected `session` says, from its checkpoint.
    pub(super) fn elected(
        session: &mut Session,
        outbox: &Outbox,
        items: mpsc::Sender<SourceItem>,
    ) -> Self {
        let (watching, accepted) = session.watch(outbox, items);
        let mut source = Self::watching(watching);
        source.accepted = accepted;
        source
    }

    /// Watches the cluster with no checkpoint and no lease: what is there now (per
    /// `source.history`), then what comes.
    pub(super) async fn unelected(
        settings: &kubernetes::KubernetesSettings,
        items: mpsc::Sender<SourceItem>,
    ) -> anyhow::Result<Self> {
        let connection = kubernetes::client::connect(None).await?;
        let source =
            kubernetes::KubernetesSource::new(&connection, settings, Arc::new(Metrics::new()));
        Ok(Self::watching(source.start(Default::default(), items)))
    }

    fn watching(watching: kubernetes::Watching) -> Self {
        let inner = watching.task;
        let abort = inner.abort_handle();
        let task = tokio::spawn(async move {
            inner.await.context("the kubernetes source stopped")??;
            Ok(0)
        });
        Self {
            task,
            abort,
            checkpoint_key: None,
            lookup: Some(watching.fetcher),
            accepted: None,
        }
    }

    /// Starts the enrich stage on what this source sends on `items`; returns its task and
    /// what it hands on.
    pub(super) fn enrich(
        &mut self,
        mut enricher: Enricher,
        items: mpsc::Receiver<SourceItem>,
    ) -> (JoinHandle<()>, mpsc::Receiver<Intake>) {
        if let Some(lookup) = self.lookup.take() {
            enricher = enricher.with_fallback(lookup);
        }
        let (intake, intake_rx) = mpsc::channel(CHANNEL);
        (
            tokio::spawn(enrich::run(enricher, items, intake)),
            intake_rx,
        )
    }
}

/// The enrich stage reporting transitions from `paths`, resuming from the workflow states in
/// `outbox` (when the run keeps state): what was delivered of each run, and its attempt.
pub(super) fn enricher(
    paths: Paths,
    cluster: Option<String>,
    metrics: &Arc<Metrics>,
    outbox: Option<&Outbox>,
) -> anyhow::Result<Enricher> {
    let enricher = Enricher::new(paths, Arc::clone(metrics)).cluster(cluster);
    Ok(match outbox {
        Some(outbox) => enricher.restore(outbox.workflows()?),
        None => enricher,
    })
}
