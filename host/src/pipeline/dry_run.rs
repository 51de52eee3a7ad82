//! `run --dry-run`: reads the source and prints what each endpoint would be sent; sends and
//! stores nothing.

use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::mpsc;

use super::RunSummary;
use super::front::{self, CHANNEL, Source};
use crate::config::Config;
use crate::model::request::Verdict;
use crate::payload::PayloadStage;
use crate::source::SourceSettings;
use crate::source::replay::Replay;
use crate::telemetry::Metrics;

/// Reads the source of `config` and writes to `out` what each endpoint would be sent.
pub(crate) async fn dry_run(
    config: Config,
    out: &mut (impl std::io::Write + Send),
) -> anyhow::Result<RunSummary> {
    let metrics = Arc::new(Metrics::new());
    let payload = PayloadStage::start(Arc::new(config.payload()), None, Arc::clone(&metrics), None)
        .await
        .context("cannot start the plugins")?;
    let (items, source_rx) = mpsc::channel(CHANNEL);
    let mut source = match &config.source {
        SourceSettings::Replay { path, rate } => {
            Source::replay(Replay::new(path, *rate), None, None, items)
        }
        SourceSettings::Kubernetes(settings) => Source::unelected(settings, items).await?,
    };
    let enricher = front::enricher(config.paths, config.cluster.clone(), &metrics, None)?;
    let (_enrich, mut intake) = source.enrich(enricher, source_rx);
    let routes = config.routes();
    let mut summary = RunSummary::default();
    while let Some(intake) = intake.recv().await {
        let Some(event) = intake.event else {
            continue;
        };
        summary.events += 1;
        let event = std::sync::Arc::new(event);
        for name in crate::accept::route(&routes, &event) {
            match payload.process(name, &event).await {
                Verdict::Deliver(request) => {
                    let body = String::from_utf8_lossy(&request.payload.body);
                    writeln!(out, "==> {name} ({})", request.payload.content_type)?;
                    writeln!(out, "{body}")?;
                }
                Verdict::Drop { by } => writeln!(out, "==> {name} dropped by {by}")?,
                Verdict::DeadLetter { plugin, error, .. } => writeln!(
                    out,
                    "==> {name} dead-lettered: plugin {plugin} failed: {error}"
                )?,
                Verdict::Wait { reason } => writeln!(out, "==> {name} would wait: {reason}")?,
            }
        }
    }
    source.task.await??;
    Ok(summary)
}
