//! Assembles the stages into a running router: source -> enrich -> accept -> deliver.
//!
//! ```text
//! source ──items──▶ enrich ──events──▶ accept ──outbox (disk)──▶ deliver (a worker per endpoint)
//! ```
//! The channels are bounded, so a slow disk slows the source rather than filling memory; the
//! outbox is the only queue that grows, on disk, while an endpoint is down.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, SourceConfig};
use crate::deliver::{self, Deliverer};
use crate::enrich::{self, Enricher, Intake, Paths};
use crate::event::RouterEvent;
use crate::plugins::{PluginStage, Verdict};
use crate::server;
use crate::source::SourceItem;
use crate::source::kubernetes::{self, Session};
use crate::source::replay::Replay;
use crate::state::State;
use crate::state::outbox::{Accept, AcceptBatch, Outbox};
use crate::telemetry::Metrics;

/// Capacity of the channels between stages.
const CHANNEL: usize = 1024;

/// Folder of `state.dir` where compiled plugins are cached.
pub const PLUGIN_CACHE: &str = "plugin-cache";

/// How a run ended.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Events read from the source.
    pub events: u64,
    /// Deliveries given up during the run.
    pub dead_lettered: u64,
}

/// Runs the router with `config` until the source ends and everything is delivered (a
/// replay), or until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<RunSummary> {
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::new());
    let state = State::open(&config.state_dir)?;
    let outbox = state.outbox.clone();
    let config_updates = crate::config::watch::spawn(Arc::clone(&config), Arc::clone(&metrics))
        .context("cannot watch the config file")?;
    let plugin_cache = config.state_dir.join(PLUGIN_CACHE);
    let plugins = PluginStage::start(
        Arc::clone(&config),
        Some(config_updates.clone()),
        Arc::clone(&metrics),
        Some(plugin_cache),
    )
    .await
    .context("cannot start the plugins")?;
    let plugins = Arc::new(plugins);
    let health = server::Health::new(outbox.clone()).with_plugins(Arc::clone(&plugins));
    let (address, server) =
        server::start(config.listen, Arc::clone(&metrics), health.clone()).await?;
    tracing::info!(%address, "serving /metrics, /healthz and /readyz");

    // A kubernetes source stands by until this replica holds the lease: only the leader
    // watches and delivers.
    let mut kube = match &config.source {
        SourceConfig::Kubernetes(settings) => {
            match Session::start(settings, &outbox, &metrics, &health, &shutdown).await? {
                Some(session) => Some(session),
                None => return Ok(RunSummary::default()),
            }
        }
        SourceConfig::Replay { .. } => None,
    };
    let lost = kube
        .as_ref()
        .map_or_else(CancellationToken::new, Session::lost);

    let context = deliver::Context {
        outbox: outbox.clone(),
        dead_letters: state.dead_letters.clone(),
        metrics: Arc::clone(&metrics),
        plugins,
        http: deliver::http::HttpSender::default(),
    };
    let stop_delivery = CancellationToken::new();
    let deliverer =
        tokio::spawn(Deliverer::new(context).run(config_updates.clone(), stop_delivery.clone()));

    let (items, source_rx) = mpsc::channel(CHANNEL);
    let (intake, intake_rx) = mpsc::channel(CHANNEL);
    let mut source = start_source(
        &config.source,
        &outbox,
        items,
        kube.as_mut(),
        &config_updates,
    )?;
    let mut enricher = enricher(&config, &metrics, Some(&outbox))?;
    if let Some(fallback) = source.fallback.take() {
        enricher = enricher.with_fallback(fallback);
    }
    if let Some(session) = &kube {
        enricher = enricher.since(session.since());
    }
    let enrich = tokio::spawn(enrich::run(enricher, source_rx, intake));
    let accepted = source.accepted.take();
    let accept = tokio::spawn(accept(
        intake_rx,
        outbox.clone(),
        config_updates,
        Arc::clone(&metrics),
        accepted,
    ));
    health.set_ready(true);

    let mut summary = RunSummary::default();
    let finished = tokio::select! {
        ended = &mut source.task => Some(ended),
        () = shutdown.cancelled() => None,
        () = lost.cancelled() => None,
    };
    if finished.is_none() {
        tracing::info!("shutting down: finishing the events under way");
        source.abort.abort();
    }
    let _ = enrich.await;
    summary.events = accept.await.context("the accept stage failed")??;
    if let Some(ended) = finished {
        let events = ended.context("the source failed")??;
        tracing::info!(events, "source finished; delivering what is left");
        if let Some(key) = &source.checkpoint_key
            && wait_until_delivered(&outbox, &shutdown).await
        {
            outbox.clear_checkpoint(key).await?;
        }
    }
    health.set_ready(false);
    stop_delivery.cancel();
    let _ = deliverer.await;
    if let Some(session) = kube {
        session.finish().await;
    }
    server.abort();
    let _ = server.await;
    drop(state);
    outbox.close().await?;
    if lost.is_cancelled() {
        anyhow::bail!("lost the leader lease; stopping so that a restart rejoins as a standby");
    }
    summary.dead_lettered = metrics.dead_lettered_total();
    Ok(summary)
}

/// A running source: its task (returning how many events it sent), a handle to stop it, the
/// checkpoint to clear once it finished and everything is delivered (a replay's), and what it
/// lends the other stages.
struct StartedSource {
    task: JoinHandle<anyhow::Result<u64>>,
    abort: tokio::task::AbortHandle,
    checkpoint_key: Option<String>,
    fallback: Option<Arc<dyn enrich::fallback::WorkflowFallback>>,
    accepted: Option<mpsc::Sender<kubernetes::checkpoint::Accepted>>,
}

fn start_source(
    config: &SourceConfig,
    outbox: &Outbox,
    items: mpsc::Sender<SourceItem>,
    kube: Option<&mut Session>,
    config_updates: &watch::Receiver<Arc<Config>>,
) -> anyhow::Result<StartedSource> {
    match config {
        SourceConfig::Kubernetes(_) => {
            let session = kube.context("a kubernetes source needs its session")?;
            let (watching, accepted) = session.watch(outbox, config_updates.clone(), items);
            let inner = watching.task;
            let abort = inner.abort_handle();
            let task = tokio::spawn(async move {
                inner.await.context("the kubernetes source stopped")??;
                Ok(0)
            });
            Ok(StartedSource {
                abort,
                task,
                checkpoint_key: None,
                fallback: Some(watching.fetcher),
                accepted,
            })
        }
        SourceConfig::Replay { path, rate } => {
            let replay = Replay::new(path, *rate);
            let checkpoint_key = replay.checkpoint_key();
            let resume = outbox
                .checkpoint(&checkpoint_key)?
                .and_then(|line| line.parse::<u64>().ok());
            if let Some(line) = resume {
                tracing::info!(path = %path.display(), line, "resuming the replay after the last accepted event");
            }
            let task = tokio::spawn(async move { Ok(replay.run(resume, items).await?.events) });
            Ok(StartedSource {
                abort: task.abort_handle(),
                task,
                checkpoint_key: Some(checkpoint_key),
                fallback: None,
                accepted: None,
            })
        }
    }
}

/// The accept stage: routes each event to its endpoints and stores it in the outbox, in
/// batches, with the source position. Returns how many events it accepted.
async fn accept(
    mut input: mpsc::Receiver<Intake>,
    outbox: Outbox,
    config: watch::Receiver<Arc<Config>>,
    metrics: Arc<Metrics>,
    accepted: Option<mpsc::Sender<kubernetes::checkpoint::Accepted>>,
) -> anyhow::Result<u64> {
    let mut batch = Vec::with_capacity(CHANNEL);
    let mut total = 0u64;
    while input.recv_many(&mut batch, CHANNEL).await > 0 {
        let current = config.borrow().clone();
        let mut stored = AcceptBatch::default();
        for intake in batch.drain(..) {
            stored.checkpoint = intake.checkpoint.or(stored.checkpoint);
            if let Some((uid, seen)) = intake.seen {
                let bytes =
                    seen.map(|s| serde_json::to_vec(&s).expect("workflow states serialise"));
                stored.workflows.push((uid, bytes));
            }
            if let Some(event) = intake.event {
                stored.events.push(Accept {
                    endpoints: route(&current, &event),
                    event,
                });
            }
        }
        let count = stored.events.len() as u64;
        let checkpoint = accepted.as_ref().and(stored.checkpoint.clone());
        outbox
            .accept(stored)
            .await
            .context("cannot store events in the outbox")?;
        // Tell the checkpoint mirror; when it lags behind, it reports a later position later.
        if let (Some(accepted), Some(checkpoint)) = (&accepted, checkpoint) {
            let last_seq = *outbox.accepted().borrow();
            let _ = accepted.try_send(kubernetes::checkpoint::Accepted {
                checkpoint,
                last_seq,
            });
        }
        metrics.events_received.inc_by(count);
        total += count;
    }
    Ok(total)
}

/// The enrich stage for `config`, resuming from the workflow states in `outbox`.
fn enricher(
    config: &Config,
    metrics: &Arc<Metrics>,
    outbox: Option<&Outbox>,
) -> anyhow::Result<Enricher> {
    let mut seen = HashMap::new();
    if let Some(outbox) = outbox.filter(|_| config.paths != Paths::Events) {
        for (uid, bytes) in outbox.workflows()? {
            match serde_json::from_slice(&bytes) {
                Ok(state) => {
                    seen.insert(uid, state);
                }
                Err(e) => {
                    tracing::warn!(%uid, "stored workflow state unreadable, starting it afresh: {e}")
                }
            }
        }
    }
    Ok(Enricher::new(config.paths, Arc::clone(metrics)).restore(seen))
}

/// The names of the endpoints that want `event`.
pub fn route(config: &Config, event: &RouterEvent) -> Vec<String> {
    config
        .endpoints
        .iter()
        .filter(|e| e.accepts(&event.event.reason, &event.event.namespace))
        .map(|e| e.name.clone())
        .collect()
}

/// Waits until the outbox is empty; false when `shutdown` came first.
async fn wait_until_delivered(outbox: &Outbox, shutdown: &CancellationToken) -> bool {
    loop {
        if outbox.depth() == 0 {
            return true;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
            () = shutdown.cancelled() => return false,
        }
    }
}

/// Reads the source and prints what each endpoint would be sent; sends and stores nothing.
pub async fn dry_run(
    config: Config,
    out: &mut (impl std::io::Write + Send),
) -> anyhow::Result<RunSummary> {
    let config = Arc::new(config);
    let plugins = PluginStage::start(Arc::clone(&config), None, Arc::new(Metrics::new()), None)
        .await
        .context("cannot start the plugins")?;
    let (items, source_rx) = mpsc::channel(CHANNEL);
    let (intake, mut intake_rx) = mpsc::channel(CHANNEL);
    let mut fallback = None;
    let source: JoinHandle<anyhow::Result<()>> = match &config.source {
        SourceConfig::Replay { path, rate } => {
            let replay = Replay::new(path, *rate);
            tokio::spawn(async move { Ok(replay.run(None, items).await.map(drop)?) })
        }
        // No checkpoint and no lease: what is there now (per `source.history`), then what comes.
        SourceConfig::Kubernetes(settings) => {
            let connection = kubernetes::client::connect(None).await?;
            let source =
                kubernetes::KubernetesSource::new(&connection, settings, Arc::new(Metrics::new()));
            let watching = source.start(Default::default(), items);
            fallback = Some(watching.fetcher);
            let task = watching.task;
            tokio::spawn(async move { Ok(task.await??) })
        }
    };
    let mut enricher = enricher(&config, &Arc::new(Metrics::new()), None)?;
    if let Some(fallback) = fallback {
        enricher = enricher.with_fallback(fallback);
    }
    tokio::spawn(enrich::run(enricher, source_rx, intake));
    let mut summary = RunSummary::default();
    while let Some(intake) = intake_rx.recv().await {
        let Some(event) = intake.event else {
            continue;
        };
        summary.events += 1;
        for endpoint in config
            .endpoints
            .iter()
            .filter(|e| e.accepts(&event.event.reason, &event.event.namespace))
        {
            match plugins.process(endpoint, &event).await {
                Verdict::Deliver(request) => {
                    let body = String::from_utf8_lossy(&request.payload.body);
                    writeln!(
                        out,
                        "==> {} ({})",
                        endpoint.name, request.payload.content_type
                    )?;
                    writeln!(out, "{body}")?;
                }
                Verdict::Drop { by } => writeln!(out, "==> {} dropped by {by}", endpoint.name)?,
                Verdict::DeadLetter { plugin, error, .. } => writeln!(
                    out,
                    "==> {} dead-lettered: plugin {plugin} failed: {error}",
                    endpoint.name
                )?,
                Verdict::Wait { reason } => {
                    writeln!(out, "==> {} would wait: {reason}", endpoint.name)?
                }
            }
        }
    }
    source.await??;
    Ok(summary)
}
