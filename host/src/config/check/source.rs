//! `[source]`: the replay file, or the cluster's namespaces, history window and lease.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use super::Checker;
use crate::config::file::{self, SourceKind};
use crate::source::SourceSettings;

impl Checker<'_> {
    pub(super) fn source(&mut self, section: &file::SourceSection) -> SourceSettings {
        match section.kind.get_ref() {
            SourceKind::Kubernetes => {
                if let Some(key) = [
                    ("path", section.path.as_ref().map(|p| p.span())),
                    ("rate", section.rate.as_ref().map(|r| r.span())),
                ]
                .into_iter()
                .find_map(|(key, span)| Some((key, span?)))
                {
                    self.problem(
                        key.1,
                        format!("source.{}: only for kind = \"replay\"", key.0),
                    );
                }
                SourceSettings::Kubernetes(self.kubernetes(section))
            }
            SourceKind::Replay => {
                let kube_only = [
                    ("namespaces", section.namespaces.as_ref().map(|v| v.span())),
                    ("history", section.history.as_ref().map(|v| v.span())),
                    (
                        "checkpoint_configmap",
                        section.checkpoint_configmap.as_ref().map(|v| v.span()),
                    ),
                ];
                for (key, span) in kube_only {
                    if let Some(span) = span {
                        self.problem(
                            span,
                            format!("source.{key}: only for kind = \"kubernetes\""),
                        );
                    }
                }
                if section.checkpoint_interval.is_some()
                    || section.workflow_wait.is_some()
                    || section.leader_election.is_some()
                {
                    self.problem(
                        section.kind.span(),
                        "source: checkpoint_interval, workflow_wait and leader_election are only for kind = \"kubernetes\"",
                    );
                }
                let path = match &section.path {
                    Some(path) if !self.offline && !path.get_ref().is_file() => {
                        let message = format!(
                            "source.path: {} is not a readable file",
                            path.get_ref().display()
                        );
                        self.problem(path.span(), message);
                        path.get_ref().clone()
                    }
                    Some(path) => path.get_ref().clone(),
                    None => {
                        self.problem(
                            section.kind.span(),
                            "source.path: kind = \"replay\" needs the path of a recording",
                        );
                        PathBuf::new()
                    }
                };
                let rate = section.rate.as_ref().and_then(|rate| {
                    let value = *rate.get_ref();
                    if value > 0.0 {
                        Some(value)
                    } else {
                        self.problem(rate.span(), "source.rate: must be above 0");
                        None
                    }
                });
                SourceSettings::Replay { path, rate }
            }
        }
    }

    /// Checks the `kubernetes` keys of `[source]`.
    fn kubernetes(
        &mut self,
        section: &file::SourceSection,
    ) -> crate::source::kubernetes::KubernetesSettings {
        use crate::source::kubernetes::{KubernetesSettings, Namespaces, leader::LeaderSettings};
        let mut settings = KubernetesSettings::default();
        if let Some(namespaces) = &section.namespaces {
            let names = namespaces.get_ref();
            settings.namespaces = match names.as_slice() {
                [] => Namespaces::Own,
                [all] if all == "*" => Namespaces::All,
                names => {
                    let mut seen = HashSet::new();
                    for name in names {
                        let problem = if name == "*" {
                            Some("\"*\" (every namespace) must be the only entry".to_owned())
                        } else if !is_dns_label(name) {
                            Some(format!("{name:?} is not a namespace name"))
                        } else if !seen.insert(name.as_str()) {
                            Some(format!("{name:?} is listed twice"))
                        } else {
                            None
                        };
                        if let Some(problem) = problem {
                            self.problem(
                                namespaces.span(),
                                format!("source.namespaces: {problem}"),
                            );
                        }
                    }
                    Namespaces::Listed(names.to_vec())
                }
            };
        }
        if let Some(history) = &section.history {
            settings.history = match history.get_ref().as_str() {
                "none" | "" => None,
                text => match humantime::parse_duration(text) {
                    Ok(window) => Some(window),
                    Err(e) => {
                        let message = format!(
                            "source.history: {text:?} is neither \"none\" nor a window such as \"1h\": {e}"
                        );
                        self.problem(history.span(), message);
                        None
                    }
                },
            };
        }
        if let Some(name) = &section.checkpoint_configmap {
            let text = name.get_ref();
            settings.checkpoint_configmap = match text.as_str() {
                "" => None,
                text if is_dns_subdomain(text) => Some(text.to_owned()),
                text => {
                    self.problem(
                        name.span(),
                        format!("source.checkpoint_configmap: {text:?} is not a ConfigMap name"),
                    );
                    None
                }
            };
        }
        if let Some(interval) = section.checkpoint_interval {
            settings.checkpoint_interval = interval.max(Duration::from_millis(100));
        }
        if let Some(wait) = section.workflow_wait {
            settings.workflow_wait = wait;
        }
        if let Some(election) = &section.leader_election {
            settings.leader_election = election.enabled.then(|| {
                let mut leader = LeaderSettings::default();
                if let Some(name) = &election.lease_name {
                    if is_dns_subdomain(name.get_ref()) {
                        leader.lease_name = name.get_ref().clone();
                    } else {
                        self.problem(
                            name.span(),
                            format!(
                                "source.leader_election.lease_name: {:?} is not a Lease name",
                                name.get_ref()
                            ),
                        );
                    }
                }
                if let Some(duration) = election.lease_duration {
                    if duration < Duration::from_secs(1) {
                        self.problem(
                            section.kind.span(),
                            "source.leader_election.lease_duration: must be at least 1s",
                        );
                    }
                    leader.lease_duration = duration.max(Duration::from_secs(1));
                }
                leader.identity = election.identity.clone().filter(|i| !i.is_empty());
                leader
            });
        }
        settings
    }
}

/// Whether `name` is a DNS label, as namespace names are (RFC 1123, at most 63 characters).
fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Whether `name` is a DNS subdomain, as most object names are (at most 253 characters).
fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns_label)
}
