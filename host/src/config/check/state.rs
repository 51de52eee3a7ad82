//! `[state]`: the folder, and the backend with its URL and TLS.

use std::collections::BTreeSet;
use std::time::Duration;

use super::Checker;
use crate::config::file::{StateBackend, StateSection, TlsSection};
use crate::model::secret::Secret;
use crate::state::{Backend, DatabaseTls, StateSettings, check_url};

/// `state.claim_ttl` when not set.
const DEFAULT_CLAIM_TTL: Duration = Duration::from_secs(15);

/// The shortest `state.claim_ttl`: a round of claims must fit in a third of it.
const MIN_CLAIM_TTL: Duration = Duration::from_secs(3);

impl Checker<'_> {
    pub(super) fn state(&mut self, section: &StateSection) -> StateSettings {
        let backend = section
            .backend
            .as_ref()
            .map_or(StateBackend::Redb, |b| *b.get_ref());
        let backend = match (backend, &section.url) {
            (StateBackend::Redb, None) if section.tls.is_some() => {
                let span = section.tls.as_ref().and_then(TlsSection::span);
                self.problem(
                    span.unwrap_or(0..0),
                    "state.tls: only for backend = \"postgres\"",
                );
                Backend::Redb
            }
            (StateBackend::Redb, None) => Backend::Redb,
            (StateBackend::Redb, Some(url)) => {
                self.problem(url.span(), "state.url: only for backend = \"postgres\"");
                Backend::Redb
            }

            (StateBackend::Postgres, None) => {
                let span = section.backend.as_ref().map_or(0..0, |b| b.span());
                self.problem(
                    span,
                    "state.url: required with backend = \"postgres\", e.g. url = { env = \"DATABASE_URL\" }",
                );
                Backend::Redb
            }
            // Offline, the URL is left unread: the config is for checking, not running.
            (StateBackend::Postgres, Some(_)) if self.offline => Backend::Postgres {
                url: Secret::new(String::new()),
                tls: DatabaseTls::default(),
            },
            (StateBackend::Postgres, Some(url)) => {
                match url
                    .get_ref()
                    .0
                    .resolve()
                    .and_then(|secret| check_url(&secret).map(|()| secret))
                {
                    Ok(url) => Backend::Postgres {
                        url,
                        tls: self.database_tls(section),
                    },
                    Err(e) => {
                        self.problem(url.span(), format!("state.url: {e}"));
                        Backend::Redb
                    }
                }
            }
        };
        let claim_ttl = match section.claim_ttl {
            Some(ttl) if ttl < MIN_CLAIM_TTL => {
                self.problem(0..0, "state.claim_ttl: must be at least 3s");
                MIN_CLAIM_TTL
            }
            Some(ttl) => ttl,
            None => DEFAULT_CLAIM_TTL,
        };
        StateSettings {
            dir: section.dir.clone(),
            backend,
            claim_ttl,
        }
    }

    /// `[state.tls]`, read once at start: trust and identity for TLS to PostgreSQL.
    fn database_tls(&mut self, section: &StateSection) -> DatabaseTls {
        let mut read = BTreeSet::new();
        let files = section
            .tls
            .as_ref()
            .and_then(|tls| self.tls_files("state", tls, &mut read));
        let Some(files) = files else {
            return DatabaseTls::default();
        };
        DatabaseTls::new(files.ca.as_deref(), files.identity())
            .map_err(|e| self.problem(files.place, format!("state.tls: {e}")))
            .unwrap_or_default()
    }
}
