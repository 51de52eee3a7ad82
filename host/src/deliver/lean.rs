//! The lean client: HTTP/1.1 over plain TCP, straight through hyper's pooled client, for the
//! endpoints that need nothing more: plain `http://`, with no proxy setting covering them, such
//! as a receiver in the cluster behind a Service.
//!
//! Every other endpoint goes through reqwest. Its layers (the URL parsed again for the redirect
//! policy, its request and response wrappers, the proxy matcher, on every request) buy nothing
//! here, since redirects are not followed and an endpoint a proxy setting covers keeps reqwest,
//! which honours it; in the bench's replay they cost 64 of the router's 153 allocations per
//! event, and about a sixth of its CPU.

use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, USER_AGENT};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::{Instant, timeout_at};
use url::Url;

/// The `user-agent` of every request the router sends.
pub(super) const AGENT: &str = concat!("kfp-event-router/", env!("CARGO_PKG_VERSION"));

/// How long an idle connection is kept for the next request.
pub(super) const IDLE: Duration = Duration::from_secs(90);

/// The URI to send to `url` with the lean client: a plain `http://` URL that no proxy setting
/// of this process's environment (`HTTP_PROXY`, `NO_PROXY`, ...) covers; `None` otherwise.
pub(super) fn lean_uri(url: &Url) -> Option<Uri> {
    lean_uri_under(url, &Matcher::from_system())
}

/// [`lean_uri`] under the proxy settings `proxies`.
fn lean_uri_under(url: &Url, proxies: &Matcher) -> Option<Uri> {
    if url.scheme() != "http" {
        return None;
    }
    let uri = Uri::try_from(url.as_str()).ok()?;
    proxies.intercept(&uri).is_none().then_some(uri)
}

/// An answer: its status, headers and body.
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
}

/// Why no answer came.
#[derive(Debug)]
pub(super) enum NoAnswer {
    /// None within the endpoint's timeout.
    Timeout,
    /// The connection could not be made.
    Connect(String),
    /// Anything else: the connection closed, a malformed answer.
    Other(String),
}

/// A keep-alive pool of plain HTTP/1.1 connections per host.
#[derive(Clone, Debug)]
pub(super) struct Lean {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for Lean {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Self { client }
    }
}

impl Lean {
    /// POSTs `body` with `headers` to `uri`, within `timeout` for the whole exchange. A body
    /// the timeout or the connection cuts short reads as empty: the status has answered.
    pub(super) async fn post(
        &self,
        uri: &Uri,
        mut headers: HeaderMap,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Answer, NoAnswer> {
        let deadline = Instant::now() + timeout;
        headers.insert(USER_AGENT, HeaderValue::from_static(AGENT));
        headers
            .entry(ACCEPT)
            .or_insert(HeaderValue::from_static("*/*"));
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri.clone();
        *request.headers_mut() = headers;
        let response = match timeout_at(deadline, self.client.request(request)).await {
            Err(_) => return Err(NoAnswer::Timeout),
            Ok(Err(e)) if e.is_connect() => return Err(NoAnswer::Connect(describe(&e))),
            Ok(Err(e)) => return Err(NoAnswer::Other(describe(&e))),
            Ok(Ok(response)) => response,
        };
        let (parts, incoming) = response.into_parts();
        let body = match timeout_at(deadline, incoming.collect()).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            _ => Bytes::new(),
        };
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// The error and its causes on one line.
pub(super) fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// Reads one request (headers, then a `Content-Length` body) from `socket`; `None` once
    /// the client has closed it.
    async fn read_request(socket: &mut TcpStream) -> Option<String> {
        let mut request = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = socket.read(&mut chunk).await.unwrap();
            if n == 0 {
                return None;
            }
            request.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&request).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if request.len() >= end + 4 + length {
                    return Some(text);
                }
            }
        }
    }

    /// A listener on 127.0.0.1 and the URL of `/hook?token=abc` on it.
    async fn listen() -> (TcpListener, Uri) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let uri = format!("http://127.0.0.1:{port}/hook?token=abc")
            .parse()
            .unwrap();
        (listener, uri)
    }

    #[test]
    fn plain_http_goes_lean_unless_a_proxy_setting_covers_it() {
        let url = Url::parse("http://receiver.ns.svc:8080/hook?token=abc").unwrap();
        let none = Matcher::builder().build();
        let uri = lean_uri_under(&url, &none).unwrap();
        assert_eq!(uri.to_string(), url.as_str());
        let proxied = Matcher::builder().http("http://proxy:3128").build();
        assert_eq!(lean_uri_under(&url, &proxied), None);
        let exempt = Matcher::builder()
            .http("http://proxy:3128")
            .no(".svc")
            .build();
        assert!(lean_uri_under(&url, &exempt).is_some());
        let https = Url::parse("https://hooks.example.com/x").unwrap();
        assert_eq!(lean_uri_under(&https, &none), None);
    }

    #[tokio::test]
    async fn posts_the_body_and_headers_and_reads_the_answer_on_one_kept_connection() {
        let (listener, uri) = listen().await;
        let server = tokio::spawn(async move {
            // One connection only: the second request must come on the first's.
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut requests = Vec::new();
            for status in ["202 Accepted", "503 Service Unavailable"] {
                requests.push(read_request(&mut socket).await.unwrap());
                let answer =
                    format!("HTTP/1.1 {status}\r\nRetry-After: 7\r\nContent-Length: 4\r\n\r\nthx!");
                socket.write_all(answer.as_bytes()).await.unwrap();
            }
            requests
        });
        let lean = Lean::default();
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        let timeout = Duration::from_secs(30);
        let body = Bytes::from_static(b"{\"EventType\":\"WorkflowSucceeded\"}");
        let first = lean
            .post(&uri, headers.clone(), body.clone(), timeout)
            .await
            .unwrap();
        assert_eq!(first.status, StatusCode::ACCEPTED);
        assert_eq!(first.headers["retry-after"], "7");
        assert_eq!(first.body, "thx!");
        let second = lean.post(&uri, headers, body, timeout).await.unwrap();
        assert_eq!(second.status, StatusCode::SERVICE_UNAVAILABLE);

        let requests = server.await.unwrap();
        let request = requests[0].to_ascii_lowercase();
        assert!(
            request.starts_with("post /hook?token=abc http/1.1\r\n"),
            "{request}"
        );
        for header in [
            "content-type: application/json\r\n",
            "content-length: 33\r\n",
            "accept: */*\r\n",
            &format!("user-agent: {}\r\n", AGENT.to_ascii_lowercase()),
            &format!("host: {}\r\n", uri.authority().unwrap()),
        ] {
            assert!(
                request.contains(header),
                "{header:?} missing from {request}"
            );
        }
        assert!(
            request.ends_with("\r\n\r\n{\"eventtype\":\"workflowsucceeded\"}"),
            "{request}"
        );
    }

    #[tokio::test]
    async fn an_endpoint_that_never_answers_times_out() {
        let (listener, uri) = listen().await;
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let request = read_request(&mut socket).await;
            // Hold the connection open, unanswered, until the client gives up on it.
            let rest = read_request(&mut socket).await;
            (request.is_some(), rest.is_none())
        });
        let answer = Lean::default()
            .post(
                &uri,
                HeaderMap::new(),
                Bytes::from_static(b"{}"),
                Duration::from_millis(200),
            )
            .await;
        assert!(
            matches!(answer, Err(NoAnswer::Timeout)),
            "{:?}",
            answer.err()
        );
        assert_eq!(
            server.await.unwrap(),
            (true, true),
            "the request arrived, then the connection closed"
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_a_connect_error() {
        let (listener, uri) = listen().await;
        drop(listener);
        let answer = Lean::default()
            .post(
                &uri,
                HeaderMap::new(),
                Bytes::new(),
                Duration::from_secs(30),
            )
            .await;
        match answer {
            Err(NoAnswer::Connect(error)) => {
                assert!(error.to_ascii_lowercase().contains("refused"), "{error}");
                assert!(!error.contains("token=abc"), "{error}");
            }
            other => panic!("expected a connect error, got {:?}", other.err()),
        }
    }
}
