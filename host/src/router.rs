//! Assembles the stages into a running router: source -> enrich -> accept -> deliver.
//!
//! ```text
//! source ──items──▶ enrich ──events──▶ accept ──outbox (disk)──▶ deliver (a worker per endpoint)
//! ```
//! The channels are bounded, so a slow disk slows the source rather than filling memory; the
//! outbox is the only queue that grows, on disk, while an endpoint is down.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, SourceConfig};
use crate::deliver::{self, Deliverer};
use crate::enrich::{self, Intake};
use crate::event::RouterEvent;
use crate::plugins::{PluginStage, Verdict};
use crate::server;
use crate::source::SourceItem;
use crate::source::replay::Replay;
use crate::state::State;
use crate::state::outbox::{Accept, Outbox};
use crate::telemetry::Metrics;

/// Capacity of the channels between stages.
const CHANNEL: usize = 1024;

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
    let health = server::Health::new(outbox.clone());
    let (address, _server) = server::start(config.listen, Arc::clone(&metrics), health.clone()).await?;
    tracing::info!(%address, "serving /metrics, /healthz and /readyz");

    let plugins = Arc::new(PluginStage::default());
    let context = deliver::Context {
        outbox: outbox.clone(),
        dead_letters: state.dead_letters.clone(),
        metrics: Arc::clone(&metrics),
        plugins,
        http: deliver::http::HttpSender::default(),
    };
    let stop_delivery = CancellationToken::new();
    let deliverer = tokio::spawn(Deliverer::new(context).run(config_updates.clone(), stop_delivery.clone()));

    let (items, source_rx) = mpsc::channel(CHANNEL);
    let (intake, intake_rx) = mpsc::channel(CHANNEL);
    let source = start_source(&config.source, &outbox, items)?;
    let enrich = tokio::spawn(enrich::run(source_rx, intake));
    let accept = tokio::spawn(accept(intake_rx, outbox.clone(), config_updates, Arc::clone(&metrics)));
    health.set_ready(true);

    let mut summary = RunSummary::default();
    let finished = tokio::select! {
        ended = source.task => Some(ended),
        () = shutdown.cancelled() => None,
    };
    if finished.is_none() {
        tracing::info!("shutting down: finishing the events under way");
        source.abort.abort();
    }
    let _ = enrich.await;
    summary.events = accept.await.context("the accept stage failed")??;
    if let Some(ended) = finished {
        let replayed = ended.context("the source failed")??;
        tracing::info!(events = replayed.events, "source finished; delivering what is left");
        if wait_until_delivered(&outbox, &shutdown).await {
            outbox.clear_checkpoint(&source.checkpoint_key).await?;
        }
    }
    health.set_ready(false);
    stop_delivery.cancel();
    let _ = deliverer.await;
    outbox.flush().await?;
    summary.dead_lettered = metrics.dead_lettered_total();
    Ok(summary)
}

/// A running source: its task, a handle to stop it, and its checkpoint key.
struct StartedSource {
    task: JoinHandle<std::io::Result<crate::source::replay::ReplaySummary>>,
    abort: tokio::task::AbortHandle,
    checkpoint_key: String,
}

fn start_source(
    config: &SourceConfig,
    outbox: &Outbox,
    items: mpsc::Sender<SourceItem>,
) -> anyhow::Result<StartedSource> {
    match config {
        SourceConfig::Replay { path, rate } => {
            let replay = Replay::new(path, *rate);
            let checkpoint_key = replay.checkpoint_key();
            let resume = outbox
                .checkpoint(&checkpoint_key)?
                .and_then(|line| line.parse::<u64>().ok());
            if let Some(line) = resume {
                tracing::info!(path = %path.display(), line, "resuming the replay after the last accepted event");
            }
            let task = tokio::spawn(replay.run(resume, items));
            Ok(StartedSource {
                abort: task.abort_handle(),
                task,
                checkpoint_key,
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
) -> anyhow::Result<u64> {
    let mut batch = Vec::with_capacity(CHANNEL);
    let mut total = 0u64;
    while input.recv_many(&mut batch, CHANNEL).await > 0 {
        let current = config.borrow().clone();
        let checkpoint = batch.iter().rev().find_map(|i: &Intake| i.checkpoint.clone());
        let accepts: Vec<Accept> = batch
            .drain(..)
            .map(|intake| Accept {
                endpoints: route(&current, &intake.event),
                event: intake.event,
            })
            .collect();
        let count = accepts.len() as u64;
        outbox.accept(accepts, checkpoint).await.context("cannot store events in the outbox")?;
        metrics.events_received.inc_by(count);
        total += count;
    }
    Ok(total)
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
pub async fn dry_run(config: Config, out: &mut (impl std::io::Write + Send)) -> anyhow::Result<RunSummary> {
    let plugins = PluginStage::default();
    let (items, source_rx) = mpsc::channel(CHANNEL);
    let (intake, mut intake_rx) = mpsc::channel(CHANNEL);
    let source = match &config.source {
        SourceConfig::Replay { path, rate } => tokio::spawn(Replay::new(path, *rate).run(None, items)),
    };
    tokio::spawn(enrich::run(source_rx, intake));
    let mut summary = RunSummary::default();
    while let Some(Intake { event, .. }) = intake_rx.recv().await {
        summary.events += 1;
        for endpoint in config.endpoints.iter().filter(|e| e.accepts(&event.event.reason, &event.event.namespace)) {
            match plugins.process(endpoint, &event).await {
                Verdict::Deliver(request) => {
                    let body = String::from_utf8_lossy(&request.payload.body);
                    writeln!(out, "==> {} ({})", endpoint.name, request.payload.content_type)?;
                    writeln!(out, "{body}")?;
                }
                Verdict::Drop { by } => writeln!(out, "==> {} dropped by {by}", endpoint.name)?,
            }
        }
    }
    source.await??;
    Ok(summary)
}
