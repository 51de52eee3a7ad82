//! The assembler: wires the stages into a running router. Start reading here.
//!
//! ```text
//! model/  telemetry/  debounce     shared types, metrics and readiness, file watching
//!    ▲
//! state/                           the outbox and dead letters, on disk
//!    ▲
//! source/ ──items──▶ enrich/ ──intake──▶ accept/ ──outbox──▶ deliver/ ◀── payload/
//!                                                    (a worker per endpoint; payload/ renders
//!                                                     each request: format/, then plugins/)
//!    ▲
//! config/  server/                 the file, checked into each stage's settings; /metrics, /admin
//!    ▲
//! pipeline/  receive               this assembler; the stand-in endpoint
//!    ▲
//! cli/                             the command line (and the `plugin new` templates)
//! ```
//! Each layer imports only the layers below it, and no stage imports another stage: what
//! crosses between stages is a [`model`](crate::model) type, handed over here
//! (`host/tests/layering.rs` checks both). The channels are bounded, so a slow disk slows the
//! source rather than filling memory; the outbox is the only queue that grows, on disk, while
//! an endpoint is down.
//!
//! [`front`] is the half every command shares (source, enrich); [`run`] adds accept, payload
//! and deliver; [`dry_run`] prints what each endpoint would be sent; [`plugin_test`] runs one
//! plugin over a recording, [`plugin_diff`] two versions of one, [`plugin_check`] inspects one
//! (both load it through `plugin_load`).

mod dry_run;
mod front;
pub mod plugin_check;
pub mod plugin_diff;
mod plugin_load;
pub mod plugin_test;

use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::deliver::{self, Deliverer};
use crate::payload::PayloadStage;
use crate::server::admin::Admin;
use crate::source::SourceSettings;
use crate::source::kubernetes::Session;
use crate::source::replay::Replay;
use crate::state::{History, Outbox, State};
use crate::telemetry::Metrics;
use crate::telemetry::readiness::{Readiness, Report};
pub(crate) use dry_run::dry_run;
use front::{CHANNEL, Source};

/// Folder of `state.dir` where compiled plugins are cached.
pub(crate) const PLUGIN_CACHE: &str = "plugin-cache";

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
    let state = State::open(&config.state)?;
    let outbox = state.outbox.clone();
    outbox.time_commits(metrics.outbox_commit_seconds.clone());
    let config_updates = crate::config::watch::spawn(Arc::clone(&config), Arc::clone(&metrics))
        .context("cannot watch the config file")?;
    let payload = PayloadStage::start(
        Arc::new(config.payload()),
        Some(follow(&config_updates, Config::payload)),
        Arc::clone(&metrics),
        Some(config.state.dir.join(PLUGIN_CACHE)),
    )
    .await
    .context("cannot start the plugins")?;
    let payload = Arc::new(payload);
    let readiness = Readiness::default();
    readiness.publish("plugins", Arc::clone(&payload) as _);
    let history = open_history(&config, &outbox, &metrics);
    let admin = config.admin_token.clone().map(|token| Admin {
        token,
        dead_letters: state.dead_letters.clone(),
        outbox: outbox.clone(),
        endpoints: follow(&config_updates, Config::endpoint_names),
        metrics: Arc::clone(&metrics),
        history: history.clone(),
        readiness: readiness.clone(),
    });
    let (address, server) = crate::server::start(
        config.listen,
        Arc::clone(&metrics),
        readiness.clone(),
        outbox.clone(),
        admin,
    )
    .await?;
    tracing::info!(%address, "serving /metrics, /healthz and /readyz");

    // With an outbox the replicas share, every replica delivers, each the workflows it has
    // claimed, from the start (a standby too); otherwise only the leader delivers.
    let shared_delivery =
        matches!(config.source, SourceSettings::Kubernetes(_)) && outbox.is_shared();
    let claims = if shared_delivery {
        outbox.claims(claim_owner(), config.state.claim_ttl)
    } else {
        None
    };
    if let Some(claims) = &claims {
        readiness.publish(
            "claims",
            Arc::new(ClaimsReport {
                owner: claims.owner().to_owned(),
                owned: claims.owned(),
            }),
        );
        tokio::spawn(count_claims(claims.owned(), Arc::clone(&metrics)));
    }
    let stop_delivery = CancellationToken::new();
    let deliveries = follow(&config_updates, deliver_settings);
    let context = deliver::Context {
        outbox: outbox.clone(),
        dead_letters: state.dead_letters.clone(),
        metrics: Arc::clone(&metrics),
        render: payload,
        http: deliver::HttpSender::default(),
        history: history.clone(),
        abort: CancellationToken::new(),
        claims: claims.as_ref().map(|c| c.owned()),
    };
    let start_delivery = |context: deliver::Context| {
        tokio::spawn(Deliverer::new(context).run(deliveries.clone(), stop_delivery.clone()))
    };
    let mut deliverer = claims.is_some().then(|| start_delivery(context.clone()));

    // A kubernetes source stands by until this replica holds the lease: only the leader
    // watches (and, without claims, delivers).
    let mut kube = match &config.source {
        SourceSettings::Kubernetes(settings) => {
            match Session::start(settings, &outbox, &metrics, &readiness, &shutdown).await? {
                Some(session) => Some(session),
                None => {
                    if let Some(deliverer) = deliverer {
                        stop_delivery.cancel();
                        let _ = deliverer.await;
                    }
                    if let Some(claims) = claims {
                        outbox.release(claims).await;
                    }
                    history.flush().await;
                    return Ok(RunSummary::default());
                }
            }
        }
        SourceSettings::Replay { .. } => None,
    };
    let lost = kube
        .as_ref()
        .map_or_else(CancellationToken::new, Session::lost);
    let deliverer = deliverer.take().unwrap_or_else(|| {
        start_delivery(deliver::Context {
            // Losing the lease stops delivery at once, before the other stages drain. (With
            // claims, they alone say who delivers what: losing the lease changes nothing.)
            abort: lost.clone(),
            ..context
        })
    });

    // A new term first delivers what an earlier one left in this replica's own outbox, so that
    // it does not interleave with new events; the watch resumes from the checkpoint
    // afterwards, so waiting loses nothing. A shared outbox needs no wait: the last leader's
    // deliveries simply continue, in order, ahead of the new events of their workflows.
    if kube.is_some() && !outbox.is_shared() {
        tokio::select! {
            () = deliver::deliver_leftovers(&outbox, &deliveries, &readiness) => {}
            () = shutdown.cancelled() => {}
            () = lost.cancelled() => {}
        }
    }

    let (items, source_rx) = mpsc::channel(CHANNEL);
    let mut source = match (&config.source, kube.as_mut()) {
        (SourceSettings::Kubernetes(_), Some(session)) => Source::elected(session, &outbox, items),
        (SourceSettings::Kubernetes(_), None) => unreachable!("a kubernetes source has a session"),
        (SourceSettings::Replay { path, rate }, _) => {
            let replay = Replay::new(path, *rate);
            let key = replay.checkpoint_key();
            let resume = outbox.checkpoint(&key)?;
            if let Some(position) = &resume {
                tracing::info!(path = %path.display(), %position, "resuming the replay after the last accepted event");
            }
            Source::replay(replay, resume, Some(key), items)
        }
    };
    let mut enricher = front::enricher(
        config.paths,
        config.cluster.clone(),
        &metrics,
        Some(&outbox),
    )?;
    if let Some(session) = &kube {
        enricher = enricher.since(session.since());
    }
    let (enrich, intake) = source.enrich(enricher, source_rx);
    let accept = tokio::spawn(crate::accept::run(
        intake,
        outbox.clone(),
        follow(&config_updates, Config::routes),
        Arc::clone(&metrics),
        source.accepted.take(),
    ));
    readiness.set_ready(true);

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
        if let Some(key) = &source.checkpoint_key {
            let delivered = tokio::select! {
                () = outbox.drained() => true,
                () = shutdown.cancelled() => false,
            };
            if delivered {
                outbox.clear_checkpoint(key).await?;
            }
        }
    }
    readiness.set_ready(false);
    stop_delivery.cancel();
    let _ = deliverer.await;
    if let Some(claims) = claims {
        outbox.release(claims).await;
    }
    if let Some(session) = kube {
        session.finish().await;
    }
    server.abort();
    let _ = server.await;
    history.flush().await;
    drop(state);
    outbox.close().await?;
    if lost.is_cancelled() {
        anyhow::bail!("lost the leader lease; stopping so that a restart rejoins as a standby");
    }
    summary.dead_lettered = metrics.dead_lettered_total();
    Ok(summary)
}

/// The console's delivery history, beside `outbox`: kept with the console on (an admin token)
/// and `server.console_history` above 0; off, logged, when its file cannot be opened.
fn open_history(config: &Config, outbox: &Outbox, metrics: &Arc<Metrics>) -> History {
    if config.admin_token.is_none() || config.console_history == 0 {
        return History::default();
    }
    match History::open(
        &config.state.dir,
        outbox,
        config.console_history,
        Arc::clone(metrics),
    ) {
        Ok(history) => history,
        Err(e) => {
            tracing::warn!("the console keeps no delivery history: cannot open it: {e}");
            History::default()
        }
    }
}

/// This replica's name in the delivery claims: `POD_NAME` (else `HOSTNAME`, else `router`)
/// and a random suffix, new on each start, so that a restarted pod never mistakes the claims
/// of its earlier life (which it no longer delivers) for its own.
fn claim_owner() -> String {
    let name = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "router".into());
    format!("{name}-{:08x}", rand::random::<u32>())
}

/// Keeps the `delivery_claims` gauge at the number of buckets held.
async fn count_claims(mut owned: watch::Receiver<u64>, metrics: Arc<Metrics>) {
    loop {
        let held = owned.borrow_and_update().count_ones();
        metrics.delivery_claims.set(i64::from(held));
        if owned.changed().await.is_err() {
            metrics.delivery_claims.set(0);
            return;
        }
    }
}

/// What `/readyz` shows of the delivery claims: this replica's name, and how many buckets of
/// workflows it delivers.
struct ClaimsReport {
    owner: String,
    owned: watch::Receiver<u64>,
}

impl Report for ClaimsReport {
    fn report(&self) -> serde_json::Value {
        serde_json::json!({
            "owner": self.owner,
            "buckets": self.owned.borrow().count_ones(),
            "of": 64,
        })
    }
}

/// The deliver stage's part of `config`.
fn deliver_settings(config: &Config) -> deliver::Settings {
    deliver::Settings {
        endpoints: config.deliveries(),
        removed_grace: config.removed_endpoint_grace,
    }
}

/// One stage's part of the config, kept current as the config file changes: `part` of each
/// new config, published only when it differs from the last.
fn follow<T>(
    config: &watch::Receiver<Arc<Config>>,
    part: fn(&Config) -> T,
) -> watch::Receiver<Arc<T>>
where
    T: PartialEq + Send + Sync + 'static,
{
    let mut config = config.clone();
    let (sender, receiver) = watch::channel(Arc::new(part(&config.borrow_and_update())));
    tokio::spawn(async move {
        while config.changed().await.is_ok() {
            let new = part(&config.borrow_and_update());
            sender.send_if_modified(|current| {
                let changed = **current != new;
                if changed {
                    *current = Arc::new(new);
                }
                changed
            });
            if sender.is_closed() {
                break;
            }
        }
    });
    receiver
}
