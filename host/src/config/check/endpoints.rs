//! `[[endpoints]]` and `subscribers_dir`: URLs, secrets, headers, limits and retries.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use reqwest::header::{HeaderMap, HeaderName};
use url::Url;

use super::Checker;
use crate::accept::Route;
use crate::config::file::{EndpointSection, HeaderValue, TlsSection};
use crate::config::{Diagnostic, Endpoint};
use crate::deliver::Delivery;
use crate::deliver::retry::RetryPolicy;
use crate::deliver::signing::SigningKey;
use crate::deliver::tls::EndpointTls;
use crate::model::secret;
use crate::payload::EndpointPayload;

impl Checker<'_> {
    pub(super) fn endpoint(
        &mut self,
        i: usize,
        section: &EndpointSection,
        watched: &mut BTreeSet<PathBuf>,
    ) -> Option<Endpoint> {
        let key = format!("endpoints[{i}]");
        let url = match parse_url(section.url.get_ref()) {
            Ok(url) => Some(url),
            Err(message) => {
                self.problem(section.url.span(), format!("{key}.url: {message}"));
                None
            }
        };
        let signing_key = self.signing_key(&key, section, watched);
        let mut headers = HeaderMap::new();
        for (name, value) in &section.headers {
            let name_ok = HeaderName::from_bytes(name.as_bytes());
            let (text, sensitive) = match value.get_ref() {
                HeaderValue::Plain(text) => (Ok(text.clone()), false),
                HeaderValue::Secret(_) if self.offline => continue,
                HeaderValue::Secret(source) => {
                    watch_secret(source, watched);
                    (source.resolve().map(|s| s.expose().to_owned()), true)
                }
            };
            let built = name_ok
                .map_err(|_| "not a valid header name".to_owned())
                .and_then(|name| {
                    let mut value = reqwest::header::HeaderValue::from_str(&text?)
                        .map_err(|_| "not a valid header value".to_owned())?;
                    value.set_sensitive(sensitive);
                    Ok((name, value))
                });
            match built {
                Ok((name, value)) => {
                    headers.insert(name, value);
                }
                Err(e) => self.problem(value.span(), format!("{key}.headers.{name}: {e}")),
            }
        }
        let concurrency = *section.concurrency.get_ref();
        if concurrency == 0 {
            self.problem(
                section.concurrency.span(),
                format!("{key}.concurrency: must be at least 1"),
            );
        }
        let retry = &section.retry;
        if *retry.max_attempts.get_ref() == 0 {
            self.problem(
                retry.max_attempts.span(),
                format!("{key}.retry.max_attempts: must be at least 1"),
            );
        }
        let rate = section.rate.as_ref().and_then(|rate| {
            let value = *rate.get_ref();
            let valid = value.is_finite() && value > 0.0;
            if !valid {
                let message = format!("{key}.rate: requests per second, above 0 (e.g. 5.0)");
                self.problem(rate.span(), message);
            }
            valid.then_some(value)
        });
        let tls = section
            .tls
            .as_ref()
            .and_then(|tls| self.tls(&key, tls, watched));
        let jitter = *retry.jitter.get_ref();
        if !(0.0..=1.0).contains(&jitter) {
            self.problem(
                retry.jitter.span(),
                format!(
                    "{key}.retry.jitter: {jitter} is out of range: from 0 (no jitter) to 1 (each delay between 0 and twice itself); 0.2 varies it by 20% either way"
                ),
            );
        }
        let policy = RetryPolicy {
            max_attempts: *retry.max_attempts.get_ref(),
            max_elapsed: retry.max_elapsed,
            schedule: retry.schedule.clone(),
            jitter: jitter.clamp(0.0, 1.0),
        };
        Some(Endpoint {
            route: Route {
                reasons: section
                    .reasons
                    .as_ref()
                    .map(|t| t.iter().cloned().collect()),
                namespaces: section
                    .namespaces
                    .as_ref()
                    .map(|n| n.iter().cloned().collect()),
                nodes: section.nodes,
            },
            payload: EndpointPayload {
                format: section.format,
                nodes: section.nodes,
                plugins: section
                    .plugins
                    .iter()
                    .map(|n| n.get_ref().clone())
                    .collect(),
            },
            delivery: Arc::new(Delivery {
                signing_key,
                headers,
                timeout: section.timeout,
                concurrency: concurrency.max(1),
                retry: policy,
                rate,
                tls,
                ..Delivery::new(section.name.get_ref().clone(), url?)
            }),
        })
    }

    /// The keys of `signing_secret` or `signing_secrets`, read (unless offline).
    fn signing_key(
        &mut self,
        key: &str,
        section: &EndpointSection,
        watched: &mut BTreeSet<PathBuf>,
    ) -> Option<SigningKey> {
        let (name, span, sources) = match (&section.signing_secret, &section.signing_secrets) {
            (None, None) => return None,
            (Some(one), None) => (
                "signing_secret",
                one.span(),
                std::slice::from_ref(one.get_ref()),
            ),
            (None, Some(many)) => ("signing_secrets", many.span(), many.get_ref().as_slice()),
            (Some(one), Some(_)) => {
                let message = format!("{key}: give signing_secret or signing_secrets, not both");
                self.problem(one.span(), message);
                return None;
            }
        };
        for source in sources {
            watch_secret(source, watched);
        }
        if self.offline {
            return None;
        }
        let parsed = sources
            .iter()
            .map(secret::SecretSource::resolve)
            .collect::<Result<Vec<_>, _>>()
            .and_then(|secrets| SigningKey::from_secrets(&secrets));
        parsed
            .map_err(|e| self.problem(span, format!("{key}.{name}: {e}")))
            .ok()
    }

    /// `[endpoints.tls]`: its files read and made into a client (unless offline).
    fn tls(
        &mut self,
        key: &str,
        section: &TlsSection,
        watched: &mut BTreeSet<PathBuf>,
    ) -> Option<EndpointTls> {
        let files = self.tls_files(key, section, watched)?;
        EndpointTls::new(files.ca.as_deref(), files.identity())
            .map_err(|e| self.problem(files.place, format!("{key}.tls: {e}")))
            .ok()
    }

    /// One endpoint per regular, non-hidden file of the folder, named after the file.
    pub(super) fn subscribers(&mut self, dir: &toml::Spanned<PathBuf>) -> Vec<Endpoint> {
        let entries = match std::fs::read_dir(dir.get_ref()) {
            Ok(entries) => entries,
            Err(e) => {
                let message = format!(
                    "subscribers_dir: cannot read {}: {e}",
                    dir.get_ref().display()
                );
                self.problem(dir.span(), message);
                return Vec::new();
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| {
                let hidden = path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'));
                !hidden && path.is_file()
            })
            .collect();
        files.sort();
        let mut endpoints = Vec::new();
        for file in files {
            let name = file
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let url = std::fs::read_to_string(&file)
                .map_err(|e| format!("cannot read: {e}"))
                .and_then(|text| parse_url(text.trim()));
            match url {
                Ok(url) => endpoints.push(Endpoint::subscriber(name, url)),
                Err(message) => self.problems.push(Diagnostic {
                    path: file,
                    line: None,
                    column: None,
                    message: format!("subscriber {name:?}: {message}"),
                }),
            }
        }
        endpoints
    }
}

/// Parses a webhook URL. The message never repeats the URL, which may hold a token.
pub(in crate::config) fn parse_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("invalid URL: {e}"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        "http" | "https" => Err("invalid URL: it has no host".into()),
        other => Err(format!(
            "invalid URL: scheme {other:?} is not http or https"
        )),
    }
}

pub(super) fn watch_secret(source: &secret::SecretSource, watched: &mut BTreeSet<PathBuf>) {
    if let secret::SecretSource::File(path) = source {
        watched.insert(path.clone());
    }
}
