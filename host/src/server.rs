//! The HTTP server for operators: `/metrics` (Prometheus text), `/healthz`, `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::task::JoinHandle;

use crate::state::Outbox;
use crate::telemetry::Metrics;

/// What `/readyz` reports.
#[derive(Clone)]
pub struct Health {
    ready: Arc<AtomicBool>,
    outbox: Outbox,
}

impl Health {
    /// Not ready until [`Health::set_ready`].
    pub fn new(outbox: Outbox) -> Self {
        Self {
            ready: Arc::default(),
            outbox,
        }
    }

    /// Marks the router ready (its stages are running) or not (starting, stopping).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }
}

#[derive(Clone)]
struct Served {
    metrics: Arc<Metrics>,
    health: Health,
}

/// Binds `listen` and serves in the background; returns the bound address (useful with
/// port 0) and the server task.
pub async fn start(
    listen: SocketAddr,
    metrics: Arc<Metrics>,
    health: Health,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {listen}: {e}")))?;
    let address = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(Served { metrics, health });
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("metrics server stopped: {e}");
        }
    });
    Ok((address, task))
}

async fn metrics_text(State(served): State<Served>) -> impl IntoResponse {
    served.metrics.outbox_depth.set(served.health.outbox.depth());
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        served.metrics.render(),
    )
}

async fn readyz(State(served): State<Served>) -> impl IntoResponse {
    let ready = served.health.ready.load(Ordering::Relaxed);
    let body = serde_json::json!({
        "ready": ready,
        "outbox_depth": served.health.outbox.depth(),
    });
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(body))
}
