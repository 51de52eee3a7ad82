//! `event-filter`: a kfp-event-router plugin that drops events that don't match
//! its configuration and passes the others unchanged. See README.md.

use std::collections::BTreeMap;

use kfp_event_router_sdk::{Action, Config, Event, Payload, Plugin, log};
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

impl EventFilter {
    /// Why `event` is dropped, or `None` when it is kept.
    fn reject_reason(&self, event: &Event) -> Option<String> {
        let s = &self.settings;
        if s.exclude_reasons.contains(&event.reason) {
            return Some(format!("reason {} is excluded", event.reason));
        }
        if !s.reasons.is_empty() && !s.reasons.contains(&event.reason) {
            return Some(format!("reason {} is not selected", event.reason));
        }
        if !s.event_types.is_empty()
            && !s
                .event_types
                .iter()
                .any(|t| t.eq_ignore_ascii_case(&event.event_type))
        {
            return Some(format!("event type {} is not selected", event.event_type));
        }
        if !s.namespaces.is_empty() && !s.namespaces.contains(&event.namespace) {
            return Some(format!("namespace {} is not selected", event.namespace));
        }
        for (key, want) in &s.labels {
            if event.label(key) != Some(want.as_str()) {
                return Some(format!("label {key} is not {want:?}"));
            }
        }
        if !s.workflow_names.is_empty()
            && !s
                .workflow_names
                .iter()
                .any(|p| glob_match(p, &event.workflow_name))
        {
            return Some(format!(
                "workflow name {} matches no pattern",
                event.workflow_name
            ));
        }
        None
    }
}

impl Plugin for EventFilter {
    fn init(config: Config) -> Result<Self, String> {
        Ok(Self {
            settings: config.parse()?,
        })
    }

    fn handle(&self, event: &Event, _payload: Payload) -> Result<Action, String> {
        Ok(match self.reject_reason(event) {
            Some(why) => {
                log::debug(format!(
                    "dropping {} of {}/{} for {}: {why}",
                    event.reason, event.namespace, event.workflow_name, event.endpoint
                ));
                Action::Drop
            }
            None => Action::Pass,
        })
    }
}

kfp_event_router_sdk::export_plugin!(EventFilter);

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
        p.handle(e, Payload::from_json(&json!({"KfpRunId": "r1"})))
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
