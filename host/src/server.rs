//! The HTTP server for operators: `/metrics` (Prometheus text), `/healthz`, `/readyz`.
//!
//! It reads what the stages publish ([`Metrics`], [`Readiness`]) and the outbox's depth; it
//! imports no stage.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::task::JoinHandle;

use crate::state::Outbox;
use crate::telemetry::Metrics;
use crate::telemetry::readiness::{Readiness, Role};

#[derive(Clone)]
struct Served {
    metrics: Arc<Metrics>,
    readiness: Readiness,
    outbox: Outbox,
}

/// Binds `listen` and serves in the background; returns the bound address (useful with
/// port 0) and the server task.
pub(crate) async fn start(
    listen: SocketAddr,
    metrics: Arc<Metrics>,
    readiness: Readiness,
    outbox: Outbox,
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
        });
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("metrics server stopped: {e}");
        }
    });
    Ok((address, task))
}

async fn metrics_text(State(served): State<Served>) -> impl IntoResponse {
    served.metrics.outbox_depth.set(served.outbox.depth());
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
