//! The HTTP server for operators: `/metrics` (Prometheus text), `/healthz`, `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::task::JoinHandle;

use crate::plugins::PluginStage;
use crate::state::Outbox;
use crate::telemetry::Metrics;

/// What `/readyz` reports.
#[derive(Clone)]
pub struct Health {
    ready: Arc<AtomicBool>,
    role: Arc<AtomicU8>,
    outbox: Outbox,
    plugins: Option<Arc<PluginStage>>,
}

impl Health {
    /// Not ready until [`Health::set_ready`].
    pub fn new(outbox: Outbox) -> Self {
        Self {
            ready: Arc::default(),
            role: Arc::default(),
            outbox,
            plugins: None,
        }
    }

    /// Also reports the plugins: loaded, failing repeatedly, and missing.
    pub fn with_plugins(mut self, plugins: Arc<PluginStage>) -> Self {
        self.plugins = Some(plugins);
        self
    }

    /// Sets the leader-election role `/readyz` reports (`None`: not elected).
    pub fn set_role(&self, role: Option<Role>) {
        let value = match role {
            None => 0,
            Some(Role::Standby) => 1,
            Some(Role::Leader) => 2,
        };
        self.role.store(value, Ordering::Relaxed);
    }

    /// Marks the router ready (its stages are running) or not (starting, stopping).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }
}

/// A replica's part in leader election. A standby is ready (it serves probes and takes over
/// when the leader goes), so rolling updates of a two-replica Deployment go through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Holds the lease: watches and delivers.
    Leader,
    /// Waits to take over.
    Standby,
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
    served
        .metrics
        .outbox_depth
        .set(served.health.outbox.depth());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        served.metrics.render(),
    )
}

async fn readyz(State(served): State<Served>) -> impl IntoResponse {
    let ready = served.health.ready.load(Ordering::Relaxed);
    let mut body = serde_json::json!({
        "ready": ready,
        "outbox_depth": served.health.outbox.depth(),
    });
    match served.health.role.load(Ordering::Relaxed) {
        1 => body["role"] = "standby".into(),
        2 => body["role"] = "leader".into(),
        _ => {}
    }
    if let Some(plugins) = &served.health.plugins {
        body["plugins"] = plugins.status();
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body))
}
