//! The admin API, under `/admin/`, for operators and, later, a web console: list, show and
//! redrive dead letters in the running router ([`api`] holds the JSON it speaks).
//!
//! - `GET /admin/dead-letters?endpoint=&reason=&since=&until=&error=&limit=&after=`: a page
//!   of summaries, oldest first, and `next` (the `after` of the next page) when there is more;
//! - `GET /admin/dead-letters/{id}`: one whole dead letter;
//! - `POST /admin/dead-letters/redrive` with `{"ids": [..]}`, a filter or `{"all": true}`:
//!   puts them back into this router's outbox, for the deliver stage to send at once; answers
//!   the counts.
//!
//! With them come the [console](super::console)'s page and JSON routes.
//!
//! Every route wants `Authorization: Bearer <server.admin_token>` (compared in constant time)
//! and answers 401 with `WWW-Authenticate: Bearer` otherwise. Without a token configured the
//! routes do not exist. Logs name counts and endpoints, never the token or a payload.

pub(crate) mod api;

use std::collections::BTreeSet;
use std::sync::Arc;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{SHA256, digest};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::sync::watch;

use self::api::{DEFAULT_LIMIT, ErrorBody, ListQuery, MAX_LIMIT, RedriveRequest};
use crate::model::secret::Secret;
use crate::state::{DeadLetters, History, Outbox};
use crate::telemetry::Metrics;
use crate::telemetry::readiness::Readiness;

/// What the admin API works on: the running router's own state.
pub(crate) struct Admin {
    /// The bearer token clients must send.
    pub(crate) token: Secret,
    /// The dead letters.
    pub(crate) dead_letters: DeadLetters,
    /// The live outbox redriven letters go back into.
    pub(crate) outbox: Outbox,
    /// The endpoints configured now (following reloads): only their letters are redriven.
    pub(crate) endpoints: watch::Receiver<Arc<BTreeSet<String>>>,
    /// Where redrives are counted; the console reads plugin calls here.
    pub(crate) metrics: Arc<Metrics>,
    /// The console's delivery history.
    pub(crate) history: History,
    /// What the stages report (the console shows the plugins').
    pub(crate) readiness: Readiness,
}

#[derive(Clone)]
struct Served {
    admin: Arc<Admin>,
}

/// The admin routes; none (so 404) when `admin` is `None`, which is logged once.
pub(crate) fn routes(admin: Option<Admin>) -> Router {
    let Some(admin) = admin else {
        tracing::info!("the admin API is off: set server.admin_token to turn it on");
        return Router::new();
    };
    let admin = Arc::new(admin);
    let served = Served {
        admin: Arc::clone(&admin),
    };
    Router::new()
        .route("/admin/dead-letters", get(list))
        .route("/admin/dead-letters/redrive", post(redrive))
        .route("/admin/dead-letters/{id}", get(show))
        .with_state(served.clone())
        .merge(super::console::data(Arc::clone(&admin)))
        .route_layer(middleware::from_fn_with_state(served, authorize))
        .merge(super::console::page(authorized, admin))
}

/// Whether `headers` carry the admin token.
fn authorized(headers: &HeaderMap, admin: &Admin) -> bool {
    bearer(headers).is_some_and(|token| same(token, admin.token.expose()))
}

/// Lets a request through only with the right bearer token.
async fn authorize(State(served): State<Served>, request: Request, next: Next) -> Response {
    match authorized(request.headers(), &served.admin) {
        true => next.run(request).await,
        false => (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                "Bearer realm=\"kfp-event-router\"",
            )],
            Json(ErrorBody {
                error: "missing or wrong bearer token".into(),
            }),
        )
            .into_response(),
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Whether `a` and `b` are equal, in a time that depends on neither: their SHA-256 digests
/// (of fixed length) are compared byte for byte without stopping early.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (digest(&SHA256, a.as_bytes()), digest(&SHA256, b.as_bytes()));
    verify_slices_are_equal(a.as_ref(), b.as_ref()).is_ok()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(ErrorBody {
            error: message.into(),
        }),
    )
        .into_response()
}

fn failed(what: &str, e: &std::io::Error) -> Response {
    tracing::error!("admin API: cannot {what} the dead letters: {e}");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("cannot {what} the dead letters: {e}"),
    )
}

async fn list(State(served): State<Served>, RawQuery(query): RawQuery) -> Response {
    let query = ListQuery::parse(query.as_deref().unwrap_or(""));
    let filter = match query.filter.filter() {
        Ok(filter) => filter,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let limit = match query.limit.as_deref().map(str::parse::<usize>) {
        None => DEFAULT_LIMIT,
        Some(Ok(limit)) if limit > 0 => limit.min(MAX_LIMIT),
        Some(_) => return error(StatusCode::BAD_REQUEST, "limit: a positive whole number"),
    };
    let page = served
        .admin
        .dead_letters
        .list(&filter, query.after.as_deref(), Some(limit))
        .await;
    match page {
        Ok(page) => Json(page).into_response(),
        Err(e) => failed("read", &e),
    }
}

async fn show(State(served): State<Served>, Path(id): Path<String>) -> Response {
    match served.admin.dead_letters.get(&id).await {
        Ok(Some(letter)) => Json(letter).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no dead letter {id}")),
        Err(e) => failed("read", &e),
    }
}

async fn redrive(
    State(served): State<Served>,
    body: Result<Json<RedriveRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let selection = match request.selection() {
        Ok(selection) => selection,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let admin = &served.admin;
    let endpoints = Arc::clone(&admin.endpoints.borrow());
    let done = admin
        .dead_letters
        .redrive(&admin.outbox, &selection, |e| endpoints.contains(e))
        .await;
    let report = match done {
        Ok(report) => report,
        Err(e) => return failed("redrive", &e),
    };
    for (endpoint, n) in &report.by_endpoint {
        admin
            .metrics
            .dead_letters_redriven
            .get_or_create(&Metrics::endpoint(endpoint))
            .inc_by(*n);
        tracing::info!(endpoint = %endpoint, redriven = n, "dead letters redriven into the outbox");
    }
    for refused in &report.refused {
        tracing::warn!(
            endpoint = %refused.endpoint,
            id = %refused.id,
            "dead letter not redriven: {}",
            refused.reason
        );
    }
    Json(report).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_equal_only_when_equal() {
        assert!(same("s3cret", "s3cret"));
        assert!(!same("s3cret", "s3creT"));
        assert!(!same("s3cret", "s3cret "));
        assert!(!same("", "s3cret"));
    }

    #[test]
    fn the_bearer_scheme_is_read_in_any_case() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "bearer abc".parse().unwrap());
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&headers), None);
    }
}
