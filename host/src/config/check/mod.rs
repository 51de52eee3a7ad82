//! Checks a parsed file and builds the [`Config`] from it, collecting every problem with its
//! place rather than stopping at the first. One file per part of the config: [`source`],
//! [`state`], [`endpoints`], [`plugins`].

pub(super) mod endpoints;
mod plugins;
mod source;
mod state;
mod tls;

use std::collections::{BTreeSet, HashSet};
use std::ops::Range;
use std::path::Path;

use super::diagnostic::line_column;
use super::file::{ConfigFile, SourceKind};
use super::{Config, ConfigError, Diagnostic, Endpoint};
use crate::model::secret::Secret;

/// Checks `text`, the contents of the file at `path`. `offline` checks it as it would be
/// checked where it runs, without reading the files and variables it names (secrets, plugins,
/// subscribers, recordings), which may exist only there.
pub(super) fn check(path: &Path, text: &str, offline: bool) -> Result<Config, ConfigError> {
    let mut checker = Checker {
        path,
        text,
        offline,
        problems: Vec::new(),
    };
    let file: ConfigFile = toml::from_str(text).map_err(|e| {
        let message = hint(e.message());
        ConfigError::Invalid(vec![checker.at(e.span(), message)])
    })?;
    let config = checker.build(file);
    match checker.problems.is_empty() {
        true => Ok(config),
        false => Err(ConfigError::Invalid(checker.problems)),
    }
}

impl Checker<'_> {
    /// `server.admin_token`: read (unless offline) and not empty.
    fn admin_token(
        &mut self,
        token: Option<&toml::Spanned<super::file::TokenSource>>,
    ) -> Option<Secret> {
        let token = token?;
        if self.offline {
            return None;
        }
        match token.get_ref().0.resolve() {
            Ok(secret) if secret.expose().is_empty() => {
                self.problem(token.span(), "server.admin_token: the token is empty");
                None
            }
            Ok(secret) => Some(secret),
            Err(e) => {
                self.problem(token.span(), format!("server.admin_token: {e}"));
                None
            }
        }
    }

    /// `server.console_history`: from 0 to [`Config::MAX_CONSOLE_HISTORY`].
    fn console_history(&mut self, keep: Option<&toml::Spanned<i64>>) -> usize {
        let Some(keep) = keep else {
            return Config::DEFAULT_CONSOLE_HISTORY;
        };
        match usize::try_from(*keep.get_ref()) {
            Ok(n) if n <= Config::MAX_CONSOLE_HISTORY => n,
            _ => {
                self.problem(
                    keep.span(),
                    format!(
                        "server.console_history: a whole number from 0 to {}",
                        Config::MAX_CONSOLE_HISTORY
                    ),
                );
                Config::DEFAULT_CONSOLE_HISTORY
            }
        }
    }

    /// `router.cluster`: a name, printable and at most 253 characters (a DNS name's limit).
    fn cluster(&mut self, cluster: Option<&toml::Spanned<String>>) -> Option<String> {
        let cluster = cluster?;
        let name = cluster.get_ref();
        if name.is_empty() || name.len() > 253 || name.chars().any(char::is_control) {
            self.problem(
                cluster.span(),
                "router.cluster: must be 1 to 253 printable characters",
            );
            return None;
        }
        Some(name.clone())
    }
}

/// Adds advice to the parser's messages for the mistakes that are easy to make.
pub(super) fn hint(message: &str) -> String {
    let message = message.trim_end().to_owned();
    if message.contains("unknown field `subscribers_dir`") {
        return format!(
            "{message}\n  `subscribers_dir` is a top-level key: move it above the first [table]"
        );
    }
    message
}

/// Collects every problem of one file while building its [`Config`].
struct Checker<'a> {
    path: &'a Path,
    text: &'a str,
    /// Whether files and variables named by the config are left unread.
    offline: bool,
    problems: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn at(&self, span: Option<Range<usize>>, message: String) -> Diagnostic {
        let (line, column) = match span {
            Some(span) => {
                let (l, c) = line_column(self.text, span.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        Diagnostic {
            path: self.path.to_owned(),
            line,
            column,
            message,
        }
    }

    fn problem(&mut self, span: Range<usize>, message: impl Into<String>) {
        let d = self.at(Some(span), message.into());
        self.problems.push(d);
    }

    fn build(&mut self, file: ConfigFile) -> Config {
        let mut watched = BTreeSet::from([self.path.to_owned()]);
        let source = self.source(&file.source);
        let plugins = self.plugins(&file.plugins);
        let state = self.state(&file.state);
        let mut endpoints: Vec<Endpoint> = Vec::new();
        let mut names = HashSet::new();
        for (i, section) in file.endpoints.iter().enumerate() {
            if !names.insert(section.name.get_ref().clone()) {
                self.problem(
                    section.name.span(),
                    format!(
                        "endpoints[{i}].name: another endpoint is already named {:?}",
                        section.name.get_ref()
                    ),
                );
            }
            self.chain(
                &format!("endpoints[{i}].plugins"),
                &section.plugins,
                &file.plugins,
            );
            if let Some(endpoint) = self.endpoint(i, section, &mut watched) {
                endpoints.push(endpoint);
            }
        }
        if let Some(dir) = file.subscribers_dir.as_ref().filter(|_| !self.offline) {
            watched.insert(dir.get_ref().clone());
            for endpoint in self.subscribers(dir) {
                if !names.insert(endpoint.name().to_owned()) {
                    self.problem(
                        dir.span(),
                        format!(
                            "subscribers_dir: subscriber file {:?} has the name of an endpoint",
                            endpoint.name()
                        ),
                    );
                }
                endpoints.push(endpoint);
            }
        }
        Config {
            path: self.path.to_owned(),
            paths: file
                .source
                .from
                .unwrap_or(match file.source.kind.get_ref() {
                    SourceKind::Replay => crate::enrich::Paths::Events,
                    SourceKind::Kubernetes => crate::enrich::Paths::Both,
                }),
            source,
            state,
            removed_endpoint_grace: file
                .state
                .removed_endpoint_grace
                .unwrap_or(Config::DEFAULT_REMOVED_ENDPOINT_GRACE),
            listen: file.server.listen,
            admin_token: self.admin_token(file.server.admin_token.as_ref()),
            console_history: self.console_history(file.server.console_history.as_ref()),
            cluster: self.cluster(file.router.cluster.as_ref()),
            endpoints,
            plugins,
            watched,
        }
    }
}
