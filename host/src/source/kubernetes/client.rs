//! Connects to the API server, and counts every request the router makes.
//!
//! [`connect`] infers the client configuration as `kubectl` does: `KUBECONFIG` or
//! `~/.kube/config` when present, else the pod's ServiceAccount. [`CountRequestsLayer`] is a
//! tower layer on the client's service stack that counts each request by verb and resource in
//! `kfp_event_router_kube_requests_total`, so the cost of a source is visible, not guessed.
//! [`Connection::bounded`] makes a second client for calls that must end in time (the
//! Lease's): kube's defaults have no read timeout and retry `429`/`503`/`504` as long as the
//! server's `Retry-After` says.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Method, Request};
use kube::client::ClientBuilder;
use tower::{Layer, Service};

use crate::telemetry::Metrics;

/// Environment variable naming the router's own namespace (set from the Downward API).
pub(crate) const POD_NAMESPACE: &str = "POD_NAMESPACE";

/// Why no client could be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    /// Neither a kubeconfig nor an in-cluster ServiceAccount was found.
    #[error(
        "cannot find Kubernetes credentials: no usable kubeconfig (KUBECONFIG or ~/.kube/config) \
         and not running in a pod (no ServiceAccount token, KUBERNETES_SERVICE_HOST unset): {0}"
    )]
    Infer(#[source] kube::config::InferConfigError),
    /// The configuration was found but a client could not be built from it.
    #[error("cannot build a Kubernetes client: {0}")]
    Build(#[source] kube::Error),
}

/// A client and the namespace the router runs in.
#[derive(Clone)]
pub(crate) struct Connection {
    /// The client, counting its requests.
    pub(crate) client: kube::Client,
    /// The router's own namespace: `POD_NAMESPACE`, else the kubeconfig context's (or the
    /// ServiceAccount's) namespace.
    pub(crate) namespace: String,
    /// The configuration the client was made from.
    config: kube::Config,
    /// Where requests are counted.
    metrics: Option<Arc<Metrics>>,
}

impl Connection {
    /// Another client of the same server, for calls that must end in time: no built-in
    /// retries, and `timeout` to connect, to send a request and for each read of its answer.
    /// Callers still bound each call as a whole (a slow trickle of bytes passes a read
    /// timeout).
    pub(crate) fn bounded(&self, timeout: Duration) -> Result<kube::Client, ClientError> {
        let mut config = self.config.clone();
        config.default_retry = false;
        config.connect_timeout = Some(timeout);
        config.read_timeout = Some(timeout);
        config.write_timeout = Some(timeout);
        // The read timeout counts from each request, not from when a pooled connection idled.
        config.reset_reader_on_write = true;
        build(config, self.metrics.clone())
    }
}

/// Infers the client configuration and connects (lazily: no request is made yet).
pub(crate) async fn connect(metrics: Option<Arc<Metrics>>) -> Result<Connection, ClientError> {
    let config = kube::Config::infer().await.map_err(ClientError::Infer)?;
    connect_with(config, metrics)
}

/// Connects with an explicit configuration, e.g. `kube::Config::new(url)` in tests.
pub(crate) fn connect_with(
    config: kube::Config,
    metrics: Option<Arc<Metrics>>,
) -> Result<Connection, ClientError> {
    let client = build(config.clone(), metrics.clone())?;
    let namespace = std::env::var(POD_NAMESPACE)
        .ok()
        .filter(|ns| !ns.is_empty())
        .unwrap_or_else(|| config.default_namespace.clone());
    Ok(Connection {
        client,
        namespace,
        config,
        metrics,
    })
}

/// A client of `config`, counting its requests in `metrics`.
fn build(config: kube::Config, metrics: Option<Arc<Metrics>>) -> Result<kube::Client, ClientError> {
    Ok(ClientBuilder::try_from(config)
        .map_err(ClientError::Build)?
        .with_layer(&CountRequestsLayer { metrics })
        .build())
}

/// Counts requests by verb and resource; see [`classify`].
#[derive(Clone)]
pub(crate) struct CountRequestsLayer {
    metrics: Option<Arc<Metrics>>,
}

impl<S> Layer<S> for CountRequestsLayer {
    type Service = CountRequests<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CountRequests {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service [`CountRequestsLayer`] makes.
#[derive(Clone)]
pub(crate) struct CountRequests<S> {
    inner: S,
    metrics: Option<Arc<Metrics>>,
}

impl<S, B> Service<Request<B>> for CountRequests<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if let Some(metrics) = &self.metrics {
            let (verb, resource) = classify(
                request.method(),
                request.uri().path(),
                request.uri().query(),
            );
            metrics.kube.request(verb, &resource);
        }
        self.inner.call(request)
    }
}

/// The Kubernetes verb and resource of a request: `get`, `list`, `watch`, `create`, `update`,
/// `patch` or `delete`, and e.g. `events`, `workflows.argoproj.io`.
pub(crate) fn classify(method: &Method, path: &str, query: Option<&str>) -> (&'static str, String) {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    // /api/v1/... or /apis/<group>/<version>/...
    let (group, rest) = match segments.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => ("", &[][..]),
    };
    let rest = match rest {
        ["namespaces", _ns, rest @ ..] if !rest.is_empty() => rest,
        other => other,
    };
    let (resource, named) = match rest {
        [] => ("", false),
        [resource] => (*resource, false),
        [resource, ..] => (*resource, true),
    };
    let watch = query.is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    let verb = match *method {
        Method::GET if watch => "watch",
        Method::GET if named => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "other",
    };
    let resource = match group {
        "" => resource.to_owned(),
        group => format!("{resource}.{group}"),
    };
    (verb, resource)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_verbs_and_resources() {
        let c = |m: Method, p: &str, q: Option<&str>| {
            let (verb, resource) = classify(&m, p, q);
            format!("{verb} {resource}")
        };
        assert_eq!(
            c(
                Method::GET,
                "/api/v1/namespaces/kubeflow/events",
                Some("fieldSelector=x&limit=500")
            ),
            "list events"
        );
        assert_eq!(
            c(
                Method::GET,
                "/api/v1/events",
                Some("watch=true&resourceVersion=5")
            ),
            "watch events"
        );
        assert_eq!(
            c(
                Method::GET,
                "/apis/argoproj.io/v1alpha1/namespaces/kubeflow/workflows/wf-1",
                None
            ),
            "get workflows.argoproj.io"
        );
        assert_eq!(
            c(
                Method::PUT,
                "/apis/coordination.k8s.io/v1/namespaces/kubeflow/leases/kfp-event-router",
                None
            ),
            "update leases.coordination.k8s.io"
        );
        assert_eq!(
            c(Method::POST, "/api/v1/namespaces/kubeflow/configmaps", None),
            "create configmaps"
        );
    }
}
