//! `kfp-event-router receive`: a webhook receiver that prints what it gets.
//!
//! For trying the router out and for debugging endpoints: it answers 200 to every POST, prints
//! the headers that matter and the body (pretty JSON when it is JSON), and checks the Standard
//! Webhooks signature when given the secret (`whsec_`) or the ed25519 public key (`whpk_`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use tokio_util::sync::CancellationToken;

use crate::deliver::signing::Verifier;

struct Receiver {
    key: Option<Verifier>,
    received: AtomicU64,
    exit_after: Option<u64>,
    done: CancellationToken,
}

/// Serves on `listen` until `shutdown`, or until `exit_after` requests have been received.
pub(crate) async fn serve(
    listen: SocketAddr,
    key: Option<Verifier>,
    exit_after: Option<u64>,
    shutdown: CancellationToken,
) -> std::io::Result<u64> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!("receiving webhooks on http://{}", listener.local_addr()?);
    let state = Arc::new(Receiver {
        key,
        received: AtomicU64::new(0),
        exit_after,
        done: shutdown.clone(),
    });
    let app = Router::new()
        .fallback(handle)
        .with_state(Arc::clone(&state));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(state.received.load(Ordering::Relaxed))
}

async fn handle(
    State(state): State<Arc<Receiver>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let (id, timestamp, signature) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let verdict = match (&state.key, signature) {
        (None, _) => "not checked",
        (Some(_), "") => "MISSING",
        (Some(key), signature) => match timestamp.parse() {
            Ok(t) if key.verify(id, t, &body, signature) => "valid",
            _ => "INVALID",
        },
    };
    let text = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    println!(
        "POST {uri}  content-type: {}  webhook-id: {id}  signature: {verdict}\n{text}\n",
        header("content-type")
    );
    let n = state.received.fetch_add(1, Ordering::Relaxed) + 1;
    if state.exit_after.is_some_and(|limit| n >= limit) {
        state.done.cancel();
    }
    StatusCode::OK
}
