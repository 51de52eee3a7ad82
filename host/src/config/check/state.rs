//! `[state]`: the folder, and the backend with its URL.

use super::Checker;
use crate::config::file::{StateBackend, StateSection};
use crate::model::secret::Secret;
use crate::state::{Backend, StateSettings, check_url};

impl Checker<'_> {
    pub(super) fn state(&mut self, section: &StateSection) -> StateSettings {
        let backend = section
            .backend
            .as_ref()
            .map_or(StateBackend::Redb, |b| *b.get_ref());
        let backend = match (backend, &section.url) {
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
            (StateBackend::Postgres, Some(_)) if self.offline => {
                Backend::Postgres(Secret::new(String::new()))
            }
            (StateBackend::Postgres, Some(url)) => {
                match url
                    .get_ref()
                    .0
                    .resolve()
                    .and_then(|secret| check_url(&secret).map(|()| secret))
                {
                    Ok(secret) => Backend::Postgres(secret),
                    Err(e) => {
                        self.problem(url.span(), format!("state.url: {e}"));
                        Backend::Redb
                    }
                }
            }
        };
        StateSettings {
            dir: section.dir.clone(),
            backend,
        }
    }
}
