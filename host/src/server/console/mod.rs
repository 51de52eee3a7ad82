//! The delivery console: a page at `/console` and the JSON it reads under `/admin/console/`,
//! on with the admin API (`server.admin_token`), behind the same bearer token.
//!
//! - `GET /console`: the page (HTML, with `app.js` and `app.css` beside it, all built in). It
//!   holds no data, so it is served to anyone, with 401 unless the request carries the token:
//!   the page asks for the token, keeps it in the tab's `sessionStorage`, and sends it with
//!   every JSON request;
//! - `GET /admin/console/endpoints`: each endpoint's state, backlog, success rate and p99
//!   latency over the last hour, last error class;
//! - `GET /admin/console/deliveries?endpoint=&run=&workflow=&reason=&outcome=&limit=`: recent
//!   deliveries, newest first; `GET /admin/console/deliveries/{endpoint}/{webhook_id}`: one,
//!   with the request sent, the answer, and every attempt;
//! - `GET /admin/console/runs`, `GET /admin/console/runs/{run}`: runs, and one's timeline;
//! - `GET /admin/console/plugins`: loaded plugins, their calls, drops, errors and p99 call
//!   time, each one's last load.
//!
//! Dead letters are listed and redriven through the admin API's own routes. Pages and JSON
//! carry endpoint names, never URLs; what the history keeps is redacted when it is written.

mod plugins;
mod views;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::admin::Admin;
use crate::model::clock::now_ms;

/// The page.
const INDEX: &str = include_str!("assets/index.html");

/// Its script.
const SCRIPT: &str = include_str!("assets/app.js");

/// Its style sheet.
const STYLE: &str = include_str!("assets/app.css");

/// What the page may load: its own files, and JSON from its own origin.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                      img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
                      frame-ancestors 'none'";

/// The console's JSON routes, for the admin API to put behind its token check.
pub(crate) fn data(admin: Arc<Admin>) -> Router {
    Router::new()
        .route("/admin/console/endpoints", get(endpoints))
        .route("/admin/console/deliveries", get(deliveries))
        .route("/admin/console/deliveries/{endpoint}/{id}", get(delivery))
        .route("/admin/console/runs", get(runs))
        .route("/admin/console/runs/{run}", get(run))
        .route("/admin/console/plugins", get(plugin_view))
        .with_state(admin)
}

/// The page and its files; `authorized` says whether a request carries the token.
pub(crate) fn page(
    authorized: fn(&axum::http::HeaderMap, &Admin) -> bool,
    admin: Arc<Admin>,
) -> Router {
    let index = move |headers: axum::http::HeaderMap| {
        let status = match authorized(&headers, &admin) {
            true => StatusCode::OK,
            false => StatusCode::UNAUTHORIZED,
        };
        async move { asset(status, "text/html; charset=utf-8", INDEX) }
    };
    Router::new()
        .route("/console", get(index))
        .route(
            "/console/app.js",
            get(|| async { asset(StatusCode::OK, "text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/console/app.css",
            get(|| async { asset(StatusCode::OK, "text/css; charset=utf-8", STYLE) }),
        )
}

/// A built-in file, with the page's security headers.
fn asset(status: StatusCode, kind: &'static str, body: &'static str) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"kfp-event-router\""),
        );
    }
    response
}

/// A 500 naming what could not be read (the error is logged).
fn failed(what: &str, e: &std::io::Error) -> Response {
    tracing::error!("console: cannot read the {what}: {e}");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(json!({ "error": format!("cannot read the {what}") })),
    )
        .into_response()
}

async fn endpoints(State(admin): State<Arc<Admin>>) -> Response {
    let records = match admin.history.all().await {
        Ok(records) => records,
        Err(e) => return failed("delivery history", &e),
    };
    let outbox = admin.outbox.clone();
    let backlog = tokio::task::spawn_blocking(move || crate::state::outbox::backlog(&outbox))
        .await
        .map_err(std::io::Error::other)
        .and_then(|read| read.map_err(std::io::Error::other));
    let backlog = match backlog {
        Ok(backlog) => backlog,
        Err(e) => return failed("backlog", &e),
    };
    let configured = Arc::clone(&admin.endpoints.borrow());
    let view = views::endpoints(&configured, &records, &backlog, now_ms());
    axum::Json(json!({ "history": admin.history.is_on(), "endpoints": view })).into_response()
}

async fn deliveries(State(admin): State<Arc<Admin>>, RawQuery(query): RawQuery) -> Response {
    let filter = views::Filter::parse(query.as_deref().unwrap_or(""));
    match admin.history.all().await {
        Ok(records) => axum::Json(json!({ "deliveries": views::deliveries(&records, &filter) }))
            .into_response(),
        Err(e) => failed("delivery history", &e),
    }
}

async fn delivery(
    State(admin): State<Arc<Admin>>,
    Path((endpoint, id)): Path<(String, String)>,
) -> Response {
    let records = match admin.history.all().await {
        Ok(records) => records,
        Err(e) => return failed("delivery history", &e),
    };
    match records
        .into_iter()
        .find(|r| r.endpoint == endpoint && r.webhook_id == id)
    {
        Some(record) => axum::Json(record).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({ "error": "no such delivery in the history" })),
        )
            .into_response(),
    }
}

async fn runs(State(admin): State<Arc<Admin>>) -> Response {
    match admin.history.all().await {
        Ok(records) => axum::Json(json!({ "runs": views::runs(&records) })).into_response(),
        Err(e) => failed("delivery history", &e),
    }
}

async fn run(State(admin): State<Arc<Admin>>, Path(run): Path<String>) -> Response {
    match admin.history.all().await {
        Ok(records) => {
            let transitions = views::timeline(&records, &run);
            axum::Json(json!({ "run": run, "transitions": transitions })).into_response()
        }
        Err(e) => failed("delivery history", &e),
    }
}

async fn plugin_view(State(admin): State<Arc<Admin>>) -> Response {
    let report = admin
        .readiness
        .reports()
        .into_iter()
        .find_map(|(key, report)| (key == "plugins").then_some(report));
    axum::Json(plugins::view(report, &admin.metrics.render())).into_response()
}
