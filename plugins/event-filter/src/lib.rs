//! `event-filter`: a kfp-event-router plugin that drops events that don't match
//! its configuration and passes the others unchanged. See README.md.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::BTreeMap;

use kfp_event_router_sdk::{Action, Config, LazyEvent, LazyPayload, LazyPlugin, log};
use serde::Deserialize;

/// Configuration; every criterion is optional, an empty one matches everything.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    /// Event reasons to keep (exact, e.g. `WorkflowFailed`).
    reasons: Vec<String>,
    /// Reasons to drop, even if `reasons` matches.
    exclude_reasons: Vec<String>,
    /// Kubernetes event types to keep (`Normal`, `Warning`).
    event_types: Vec<String>,
    /// Namespaces to keep.
    namespaces: Vec<String>,
    /// Workflow labels that must all be present with these values.
    labels: BTreeMap<String, String>,
    /// Glob patterns (`*`, `?`) for workflow names to keep.
    workflow_names: Vec<String>,
}

/// The filter plugin.
pub struct EventFilter {
    settings: Settings,
}

/// The facts of one event that the filter and its log read, each asked of the host at most
/// once, and only when a criterion (or the log of a drop) needs it.
struct Facts<'e, 'a> {
    event: &'e LazyEvent<'a>,
    reason: OnceCell<Cow<'a, str>>,
    namespace: OnceCell<Cow<'a, str>>,
    workflow_name: OnceCell<Cow<'a, str>>,
}

impl<'e, 'a> Facts<'e, 'a> {
    fn new(event: &'e LazyEvent<'a>) -> Self {
        Self {
            event,
            reason: OnceCell::new(),
            namespace: OnceCell::new(),
            workflow_name: OnceCell::new(),
        }
    }

    fn reason(&self) -> &str {
        self.reason.get_or_init(|| self.event.reason())
    }

    fn namespace(&self) -> &str {
        self.namespace.get_or_init(|| self.event.namespace())
    }

    fn workflow_name(&self) -> &str {
        self.workflow_name
            .get_or_init(|| self.event.workflow_name())
    }
}

impl EventFilter {
    /// Why the event is dropped, or `None` when it is kept.
    fn reject_reason(&self, event: &Facts) -> Option<String> {
        let s = &self.settings;
        if !s.exclude_reasons.is_empty() || !s.reasons.is_empty() {
            let reason = event.reason();
            if s.exclude_reasons.iter().any(|r| r == reason) {
                return Some(format!("reason {reason} is excluded"));
            }
            if !s.reasons.is_empty() && !s.reasons.iter().any(|r| r == reason) {
                return Some(format!("reason {reason} is not selected"));
            }
        }
        if !s.event_types.is_empty() {
            let event_type = event.event.event_type();
            if !s
                .event_types
                .iter()
                .any(|t| t.eq_ignore_ascii_case(&event_type))
            {
                return Some(format!("event type {event_type} is not selected"));
            }
        }
        if !s.namespaces.is_empty() && !s.namespaces.iter().any(|n| n == event.namespace()) {
            return Some(format!("namespace {} is not selected", event.namespace()));
        }
        for (key, want) in &s.labels {
            if event.event.label(key).as_deref() != Some(want.as_str()) {
                return Some(format!("label {key} is not {want:?}"));
            }
        }
        if !s.workflow_names.is_empty()
            && !s
                .workflow_names
                .iter()
                .any(|p| glob_match(p, event.workflow_name()))
        {
            return Some(format!(
                "workflow name {} matches no pattern",
                event.workflow_name()
            ));
        }
        None
    }
}

impl LazyPlugin for EventFilter {
    fn init(config: Config) -> Result<Self, String> {
        Ok(Self {
            settings: config.parse()?,
        })
    }

    fn handle(&self, event: &LazyEvent, _payload: &LazyPayload) -> Result<Action, String> {
        let facts = Facts::new(event);
        Ok(match self.reject_reason(&facts) {
            Some(why) => {
                log::debug(format!(
                    "dropping {} of {}/{} for {}: {why}",
                    facts.reason(),
                    facts.namespace(),
                    facts.workflow_name(),
                    event.endpoint()
                ));
                Action::Drop
            }
            None => Action::Pass,
        })
    }
}

kfp_event_router_sdk::export_lazy_plugin!(EventFilter);

/// Matches `text` against a glob `pattern` where `*` is any run of characters
/// (including none) and `?` is exactly one character.
fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // Position of the last `*` seen and the text position it was tried at.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            // Let the last `*` swallow one more character.
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use kfp_event_router_sdk::serde_json::{Value, json};
    use kfp_event_router_sdk::{Event, Payload};

    fn plugin(config: Value) -> EventFilter {
        EventFilter::init(Config::from(config)).unwrap()
    }

    fn event() -> Event {
        Event {
            reason: "WorkflowFailed".into(),
            event_type: "Warning".into(),
            namespace: "team-a".into(),
            workflow_name: "training-pipeline-x7k2p".into(),
            labels: vec![
                ("pipeline/runid".into(), "r1".into()),
                ("env".into(), "prod".into()),
            ],
            ..Event::default()
        }
    }

    fn run(p: &EventFilter, e: &Event) -> Action {
        let payload = Payload::from_json(&json!({"KfpRunId": "r1"}));
        p.handle(&LazyEvent::from(e), &LazyPayload::new(&payload, false))
            .unwrap()
    }

    #[test]
    fn empty_config_passes_everything() {
        assert_eq!(run(&plugin(json!({})), &event()), Action::Pass);
    }

    #[test]
    fn reasons_and_excludes() {
        let p = plugin(json!({"reasons": ["WorkflowFailed", "WorkflowSucceeded"]}));
        assert_eq!(run(&p, &event()), Action::Pass);
        let running = Event {
            reason: "WorkflowRunning".into(),
            ..event()
        };
        assert_eq!(run(&p, &running), Action::Drop);
        let p = plugin(json!({"exclude_reasons": ["WorkflowFailed"]}));
        assert_eq!(run(&p, &event()), Action::Drop);
        assert_eq!(run(&p, &running), Action::Pass);
    }

    #[test]
    fn namespaces_types_and_labels() {
        assert_eq!(
            run(&plugin(json!({"namespaces": ["team-b"]})), &event()),
            Action::Drop
        );
        assert_eq!(
            run(
                &plugin(json!({"namespaces": ["team-a", "team-b"]})),
                &event()
            ),
            Action::Pass
        );
        assert_eq!(
            run(&plugin(json!({"event_types": ["warning"]})), &event()),
            Action::Pass
        );
        assert_eq!(
            run(&plugin(json!({"event_types": ["Normal"]})), &event()),
            Action::Drop
        );
        assert_eq!(
            run(&plugin(json!({"labels": {"env": "prod"}})), &event()),
            Action::Pass
        );
        assert_eq!(
            run(&plugin(json!({"labels": {"env": "dev"}})), &event()),
            Action::Drop
        );
        assert_eq!(
            run(&plugin(json!({"labels": {"team": "x"}})), &event()),
            Action::Drop
        );
    }

    #[test]
    fn workflow_name_patterns() {
        let p = plugin(json!({"workflow_names": ["training-*", "eval-?"]}));
        assert_eq!(run(&p, &event()), Action::Pass);
        let other = Event {
            workflow_name: "eval-12".into(),
            ..event()
        };
        assert_eq!(run(&p, &other), Action::Drop);
    }

    #[test]
    fn glob() {
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(glob_match("a*b", "ab"));
        assert!(glob_match("?b", "ab"));
        assert!(glob_match("*-prod", "x-prod"));
        assert!(glob_match("a**", "a"));
        assert!(!glob_match("a*b", "acd"));
        assert!(!glob_match("?", ""));
        assert!(!glob_match("abc", "abcd"));
        assert!(glob_match("*a*a*a", "aaaaaa"));
        assert!(!glob_match("*a*a*b", "aaaaaa"));
    }

    #[test]
    fn bad_config_is_rejected_with_the_field() {
        let err = EventFilter::init(Config::new(r#"{"reasons": "WorkflowFailed"}"#))
            .err()
            .unwrap();
        assert!(err.contains("at reasons"), "{err}");
        let err = EventFilter::init(Config::new(r#"{"reason": []}"#))
            .err()
            .unwrap();
        assert!(err.contains("unknown field `reason`"), "{err}");
    }
}
