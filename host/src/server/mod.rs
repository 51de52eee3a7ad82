//! The HTTP server for operators: `/metrics` (Prometheus text), `/healthz`, `/readyz`, and
//! with a token configured the [`admin`] API (`/admin/dead-letters`) and the [`console`]
//! (`/console`).
//!
//! It reads what the stages publish ([`Metrics`], [`Readiness`]) and the outbox's depth and
//! per-endpoint backlog; it imports no stage.

pub(crate) mod admin;
mod console;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::task::JoinHandle;

use crate::state::Outbox;
use crate::telemetry::Metrics;
use crate::telemetry::readiness::{Readiness, Role};

/// How often a scrape reads the per-endpoint backlog from the outbox at most: it reads every
/// pending row, so scrapes in between show the last reading.
const BACKLOG_EVERY: Duration = Duration::from_secs(5);

/// How long a scrape waits for that reading; a slow one is shown at the next scrape.
const BACKLOG_PATIENCE: Duration = Duration::from_secs(2);

#[derive(Clone)]
struct Served {
    metrics: Arc<Metrics>,
    readiness: Readiness,
    outbox: Outbox,
    backlog: Arc<Mutex<BacklogReading>>,
}

/// The last per-endpoint backlog reading: when, and which endpoints it showed.
#[derive(Default)]
struct BacklogReading {
    at: Option<Instant>,
    endpoints: HashSet<String>,
}

/// Binds `listen` and serves in the background; returns the bound address (useful with
/// port 0) and the server task.
pub(crate) async fn start(
    listen: SocketAddr,
    metrics: Arc<Metrics>,
    readiness: Readiness,
    outbox: Outbox,
    admin: Option<admin::Admin>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {listen}: {e}")))?;
    let address = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(Served {
            metrics,
            readiness,
            outbox,
            backlog: Arc::default(),
        })
        .merge(admin::routes(admin));
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("metrics server stopped: {e}");
        }
    });
    Ok((address, task))
}

async fn metrics_text(State(served): State<Served>) -> impl IntoResponse {
    served.metrics.outbox_depth.set(served.outbox.depth());
    read_backlog(&served).await;
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        served.metrics.render(),
    )
}

async fn readyz(State(served): State<Served>) -> impl IntoResponse {
    let ready = served.readiness.is_ready();
    let mut body = serde_json::json!({
        "ready": ready,
        "outbox_depth": served.outbox.depth(),
    });
    match served.readiness.role() {
        Some(Role::Standby) => body["role"] = "standby".into(),
        Some(Role::Leader) => body["role"] = "leader".into(),
        None => {}
    }
    for (key, report) in served.readiness.reports() {
        body[key] = report;
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body))
}

/// Sets the per-endpoint backlog gauges from the outbox, when the last reading is older than
/// [`BACKLOG_EVERY`]; an endpoint with nothing left reads 0.
async fn read_backlog(served: &Served) {
    let due = {
        let mut reading = served.backlog.lock().unwrap_or_else(|e| e.into_inner());
        let due = reading.at.is_none_or(|at| at.elapsed() >= BACKLOG_EVERY);
        if due {
            reading.at = Some(Instant::now());
        }
        due
    };
    if !due {
        return;
    }
    let outbox = served.outbox.clone();
    let read = tokio::task::spawn_blocking(move || crate::state::outbox::backlog(&outbox));
    let backlog = match tokio::time::timeout(BACKLOG_PATIENCE, read).await {
        Ok(Ok(Ok(backlog))) => backlog,
        Ok(Ok(Err(e))) => {
            tracing::warn!("cannot read the backlog per endpoint: {e}");
            return;
        }
        _ => return,
    };
    let now_ms = crate::model::clock::now_ms();
    let metrics = &served.metrics;
    let mut reading = served.backlog.lock().unwrap_or_else(|e| e.into_inner());
    for gone in reading
        .endpoints
        .iter()
        .filter(|e| !backlog.contains_key(*e))
    {
        metrics
            .outbox_pending
            .get_or_create(&Metrics::endpoint(gone))
            .set(0);
        metrics
            .outbox_oldest_pending_age
            .get_or_create(&Metrics::endpoint(gone))
            .set(0.0);
    }
    for (endpoint, b) in &backlog {
        let label = Metrics::endpoint(endpoint);
        metrics
            .outbox_pending
            .get_or_create(&label)
            .set(b.pending as i64);
        let age = b.oldest_ms.map_or(0, |ms| now_ms.saturating_sub(ms)) as f64 / 1000.0;
        metrics
            .outbox_oldest_pending_age
            .get_or_create(&label)
            .set(age);
    }
    reading.endpoints.extend(backlog.into_keys());
}
