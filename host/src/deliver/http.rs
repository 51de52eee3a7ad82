//! Sends one request to an endpoint and sorts the outcome into delivered, retry, or final.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use url::Url;

use super::Delivery;
use super::lean::{AGENT, Answer, IDLE, Lean, NoAnswer, describe};
use super::record::Exchange;
use super::retry::retry_after;
use crate::model::request::Request;

/// Headers the router sets itself, which plugins may not override.
const RESERVED: [&str; 4] = [
    "content-type",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// The Standard Webhooks headers, named once rather than per request.
const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");

/// The content type of every built-in format.
const JSON: &str = "application/json";

/// Characters of a response body quoted in an error.
const EXCERPT_CHARS: usize = 200;

/// Path segments and query values this long or longer are redacted: they may be tokens.
const MIN_SECRET_CHARS: usize = 6;

/// What redacted text is replaced with.
const REDACTED: &str = "<redacted>";

/// Why an attempt did not deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Worth trying again: connect errors, timeouts, 408, 429, 5xx.
    Retry {
        /// What happened.
        error: String,
        /// How long the endpoint asked us to wait.
        retry_after: Option<Duration>,
        /// The attempt's result class, as [`class`] names it.
        class: &'static str,
    },
    /// Not worth trying again: any other status.
    Final {
        /// What happened.
        error: String,
        /// The attempt's result class, as [`class`] names it.
        class: &'static str,
    },
}

impl Failure {
    /// The error text.
    pub(crate) fn error(&self) -> &str {
        match self {
            Self::Retry { error, .. } | Self::Final { error, .. } => error,
        }
    }

    /// The attempt's result class: `1xx`, `3xx`, `4xx`, `5xx` for an answer, `timeout`,
    /// `connect` or `error` for none.
    pub(crate) fn class(&self) -> &'static str {
        match self {
            Self::Retry { class, .. } | Self::Final { class, .. } => class,
        }
    }
}

/// The result class of an answer with `status`.
fn class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// The shared HTTP clients: keep-alive pools per host, TLS verified, redirects not followed (a
/// redirected POST would lose its body).
///
/// Over HTTPS the client may speak HTTP/2, and sends a request again at once, on a new
/// connection, when the server refused it unprocessed (a graceful `GOAWAY`, `REFUSED_STREAM`),
/// which servers do routinely. For that it keeps a copy of every request. Plain `http://`
/// endpoints speak HTTP/1.1 only, where that never happens: they go through the [`Lean`]
/// client, or, when a proxy setting covers them, a reqwest client that keeps no copy.
#[derive(Clone, Debug)]
pub(crate) struct HttpSender {
    client: reqwest::Client,
    plain: reqwest::Client,
    lean: Lean,
}

impl Default for HttpSender {
    fn default() -> Self {
        let build = |builder: reqwest::ClientBuilder| {
            builder
                .build()
                .expect("the HTTP client's settings are valid")
        };
        Self {
            client: build(client_builder()),
            plain: build(
                client_builder().retry(reqwest::retry::never().max_retries_per_request(0)),
            ),
            lean: Lean::default(),
        }
    }
}

/// How every HTTP client of the router is set up, before an endpoint's own TLS settings.
pub(super) fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(IDLE)
        .tcp_nodelay(true)
}

impl HttpSender {
    /// POSTs `request` to `endpoint`, signed when the endpoint has a key, and returns the
    /// outcome, with the exchange when `keep` (for the console's history). Errors never
    /// include the URL, which may hold a token.
    pub(crate) async fn post(
        &self,
        endpoint: &Delivery,
        request: &Request,
        webhook_id: &str,
        keep: bool,
    ) -> (Result<u16, Failure>, Option<Exchange>) {
        let mut exchange = keep.then(Exchange::default);
        let result = self
            .send(endpoint, request, webhook_id, exchange.as_mut())
            .await;
        (result, exchange)
    }

    /// [`HttpSender::post`], noting what was sent and received in `exchange` when given.
    async fn send(
        &self,
        endpoint: &Delivery,
        request: &Request,
        webhook_id: &str,
        mut exchange: Option<&mut Exchange>,
    ) -> Result<u16, Failure> {
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let body = request.payload.body.clone();
        let mut headers = endpoint.headers.clone();
        for (name, value) in &request.headers {
            if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
                continue;
            }
            if let (Ok(name), Ok(value)) =
                (HeaderName::try_from(name), HeaderValue::try_from(value))
            {
                headers.insert(name, value);
            }
        }
        let header = |s: &str| HeaderValue::from_str(s).expect("ids and signatures are ASCII");
        let content_type = match request.payload.content_type.as_str() {
            JSON => HeaderValue::from_static(JSON),
            // Plugins' content types are checked when they return them.
            other => header(other),
        };
        headers.insert(CONTENT_TYPE, content_type);
        headers.insert(WEBHOOK_ID, header(webhook_id));
        headers.insert(WEBHOOK_TIMESTAMP, HeaderValue::from(timestamp));
        if let Some(key) = &endpoint.signing_key {
            headers.insert(
                WEBHOOK_SIGNATURE,
                header(&key.sign(webhook_id, timestamp, &body)),
            );
        }
        if let Some(exchange) = exchange.as_deref_mut() {
            exchange.sent = headers.clone();
            exchange.body = body.clone();
        }
        let answer = match (&endpoint.tls, &endpoint.lean) {
            (None, Some(uri)) => self.lean.post(uri, headers, body, endpoint.timeout).await,
            (Some(tls), _) => through(tls.client(), endpoint, headers, body).await,
            (None, None) if endpoint.url.scheme() == "http" => {
                through(&self.plain, endpoint, headers, body).await
            }
            (None, None) => through(&self.client, endpoint, headers, body).await,
        };
        let Answer {
            status,
            headers: answered,
            body,
        } = answer.map_err(|e| {
            let (class, error) = match e {
                NoAnswer::Timeout => ("timeout", "no answer within the timeout".to_owned()),
                NoAnswer::Connect(error) => ("connect", error),
                NoAnswer::Other(error) => ("error", error),
            };
            Failure::Retry {
                class,
                error: redact(&error, &endpoint.url),
                retry_after: None,
            }
        })?;
        let wait = retry_after(&answered);
        let code = status.as_u16();
        let error = || format!("HTTP {status}: {}", excerpt(&body, &endpoint.url));
        let result = match code {
            200..=299 => Ok(code),
            408 | 429 | 500..=599 => Err(Failure::Retry {
                error: error(),
                retry_after: wait,
                class: class(code),
            }),
            _ => Err(Failure::Final {
                error: error(),
                class: class(code),
            }),
        };
        if let Some(exchange) = exchange {
            exchange.answer = Some((code, answered, body));
        }
        result
    }
}

/// The first [`EXCERPT_CHARS`] characters of a response body, with `url`'s secrets redacted.
fn excerpt(body: &[u8], url: &Url) -> String {
    // Redact a window long enough to hold any secret that starts in the excerpt, so that a
    // secret cut by the excerpt's end is not quoted in part. A character is 4 bytes at most.
    let window = EXCERPT_CHARS + url.as_str().chars().count();
    let head = &body[..body.len().min(4 * window)];
    let text: String = String::from_utf8_lossy(head).chars().take(window).collect();
    redact(&text, url).chars().take(EXCERPT_CHARS).collect()
}

/// `text` with every occurrence of `url`, its path, its query, its password, and each of its
/// path segments and query values of [`MIN_SECRET_CHARS`] or more replaced with [`REDACTED`].
pub(super) fn redact(text: &str, url: &Url) -> String {
    let mut secrets = vec![url.as_str().to_owned(), url.path().to_owned()];
    secrets.extend(url.password().map(str::to_owned));
    if let Some(query) = url.query() {
        secrets.push(query.to_owned());
        secrets.extend(
            query
                .split('&')
                .filter_map(|pair| pair.split_once('=').map(|(_, value)| value.to_owned())),
        );
    }
    secrets.extend(url.query_pairs().map(|(_, value)| value.into_owned()));
    secrets.extend(url.path_segments().into_iter().flatten().map(str::to_owned));
    secrets.retain(|s| s.chars().count() >= MIN_SECRET_CHARS);
    // Longest first, so that the whole URL goes before the parts it contains.
    secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    secrets.dedup();
    secrets.iter().fold(text.to_owned(), |text, secret| {
        text.replace(secret, REDACTED)
    })
}

/// POSTs through `client`, one of reqwest's, within the endpoint's timeout for the whole
/// exchange; a body the timeout or the connection cuts short reads as empty.
async fn through(
    client: &reqwest::Client,
    endpoint: &Delivery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Answer, NoAnswer> {
    let mut response = client
        .post(endpoint.url.clone())
        .timeout(endpoint.timeout)
        .headers(headers)
        .body(body)
        .send()
        .await
        .map_err(|e| match () {
            () if e.is_timeout() => NoAnswer::Timeout,
            () if e.is_connect() => NoAnswer::Connect(describe(&e.without_url())),
            () => NoAnswer::Other(describe(&e.without_url())),
        })?;
    let status = response.status();
    let headers = std::mem::take(response.headers_mut());
    let body = response.bytes().await.unwrap_or_default();
    Ok(Answer {
        status,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::model::request::Payload;

    /// Serves one request on 127.0.0.1 with a raw HTTP/1.1 `404` whose body is `body`; returns
    /// the port.
    async fn serve_404(body: &'static str) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read the whole request (headers, then a `Content-Length` body) before answering.
            loop {
                let n = socket.read(&mut chunk).await.unwrap();
                request.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            let response = format!(
                "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(response.as_bytes()).await.unwrap();
            socket.shutdown().await.unwrap();
        });
        port
    }

    #[tokio::test]
    async fn an_echoed_url_is_redacted_from_the_error() {
        let port = serve_404("Cannot POST /hooks/T0KEN123?sig=abcdef123").await;
        let url = Url::parse(&format!(
            "http://127.0.0.1:{port}/hooks/T0KEN123?sig=abcdef123"
        ))
        .unwrap();
        let request = Request {
            payload: Payload {
                body: Bytes::from_static(b"{}"),
                content_type: "application/json".into(),
            },
            headers: Vec::new(),
        };
        let failure = HttpSender::default()
            .post(&Delivery::new("hook".into(), url), &request, "msg_1", false)
            .await
            .0
            .unwrap_err();
        let error = failure.error();
        assert!(matches!(failure, Failure::Final { .. }), "{error}");
        assert!(error.contains("404"), "{error}");
        assert!(!error.contains("T0KEN123"), "{error}");
        assert!(!error.contains("abcdef123"), "{error}");
    }

    #[test]
    fn redacts_the_url_its_path_query_and_long_parts() {
        let url = Url::parse("https://user:hunter22@example.com/hook/abcdefgh/x?token=s3cr3tv&v=1")
            .unwrap();
        let text = format!(
            "{url} | {} | {} | abcdefgh | s3cr3tv | hunter22 | /hook | v=1",
            url.path(),
            url.query().unwrap()
        );
        assert_eq!(
            redact(&text, &url),
            "<redacted> | <redacted> | <redacted> | <redacted> | <redacted> | <redacted> \
             | /hook | v=1"
        );
    }

    #[test]
    fn an_excerpt_does_not_quote_a_secret_it_cuts() {
        let url = Url::parse("http://example.com/hooks/T0KEN123").unwrap();
        let body = format!("{}T0KEN123", "x".repeat(EXCERPT_CHARS - 4));
        let excerpt = excerpt(body.as_bytes(), &url);
        assert_eq!(excerpt.chars().count(), EXCERPT_CHARS);
        assert!(!excerpt.contains("T0KE"), "{excerpt}");
    }
}
