//! `github-dispatch`: a kfp-event-router plugin that replaces the payload with
//! a GitHub `repository_dispatch` request body, so KFP events can trigger
//! GitHub Actions workflows. See README.md.

use kfp_event_router_sdk::serde_json::{Map, Value};
use kfp_event_router_sdk::{Action, Config, Event, Payload, Plugin, Template, log};
use serde::{Deserialize, Serialize};

/// The default `event_type` template: `WorkflowFailed` → `kfp-workflow-failed`.
const DEFAULT_EVENT_TYPE: &str = "kfp-{reason_kebab}";

/// GitHub rejects longer `event_type` values.
const EVENT_TYPE_MAX: usize = 100;

/// Configuration.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    /// Template for `event_type`.
    event_type: Template,
    /// Whether to put the original JSON payload under `client_payload.payload`.
    include_payload: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            event_type: Template::parse(DEFAULT_EVENT_TYPE).expect("valid default template"),
            include_payload: true,
        }
    }
}

/// The GitHub dispatch plugin.
pub struct GithubDispatch {
    settings: Settings,
}

impl Plugin for GithubDispatch {
    fn init(config: Config) -> Result<Self, String> {
        Ok(Self {
            settings: config.parse()?,
        })
    }

    fn handle(&self, event: &Event, payload: Payload) -> Result<Action, String> {
        let mut event_type = self.settings.event_type.render(event);
        if event_type.is_empty() {
            return Err("event_type template rendered an empty string".to_owned());
        }
        if event_type.chars().count() > EVENT_TYPE_MAX {
            log::warn(format!(
                "event_type {event_type:?} is longer than {EVENT_TYPE_MAX} characters; truncating"
            ));
            event_type = event_type.chars().take(EVENT_TYPE_MAX).collect();
        }

        // GitHub allows at most 10 top-level properties in client_payload.
        let mut client = Map::new();
        for (key, value) in [
            ("reason", &event.reason),
            ("namespace", &event.namespace),
            ("workflow_name", &event.workflow_name),
            ("run_id", &event.run_id),
            ("run_name", &event.run_name),
            ("node_name", &event.node_name),
            ("phase", &event.phase),
            ("message", &event.message),
            ("event_time", &event.event_time),
        ] {
            client.insert(key.to_owned(), value.as_str().into());
        }
        if self.settings.include_payload
            && let Ok(original) = payload.json_value()
        {
            client.insert("payload".to_owned(), original);
        }

        Action::json_with_headers(
            // Moved in, not copied as `json!` would.
            &Dispatch {
                event_type,
                client_payload: client,
            },
            [
                ("Accept", "application/vnd.github+json"),
                ("X-GitHub-Api-Version", "2022-11-28"),
            ],
        )
    }
}

kfp_event_router_sdk::export_plugin!(GithubDispatch);

/// A `repository_dispatch` request body.
#[derive(Serialize)]
struct Dispatch {
    event_type: String,
    client_payload: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kfp_event_router_sdk::serde_json::json;

    fn event() -> Event {
        Event {
            reason: "WorkflowFailed".into(),
            event_type: "Warning".into(),
            message: "failed".into(),
            namespace: "team-a".into(),
            workflow_name: "train-x7k2p".into(),
            run_id: "run-1".into(),
            phase: "Failed".into(),
            event_time: "2025-01-31T12:00:00Z".into(),
            ..Event::default()
        }
    }

    #[test]
    fn default_dispatch_body_and_headers() {
        let p = GithubDispatch::init(Config::default()).unwrap();
        let original = json!({"KfpRunId": "run-1", "WorkflowName": "train-x7k2p"});
        let action = p.handle(&event(), Payload::from_json(&original)).unwrap();
        let body = action.json_body().unwrap();
        assert_eq!(body["event_type"], "kfp-workflow-failed");
        let client = body["client_payload"].as_object().unwrap();
        assert!(client.len() <= 10, "GitHub allows 10 top-level keys");
        assert_eq!(client["run_id"], "run-1");
        assert_eq!(client["reason"], "WorkflowFailed");
        assert_eq!(client["event_time"], "2025-01-31T12:00:00Z");
        assert_eq!(client["payload"], original);
        assert_eq!(action.header("accept"), Some("application/vnd.github+json"));
        assert_eq!(action.header("x-github-api-version"), Some("2022-11-28"));
    }

    #[test]
    fn custom_template_and_no_payload() {
        let p = GithubDispatch::init(Config::from(json!({
            "event_type": "{namespace}:{reason}", "include_payload": false,
        })))
        .unwrap();
        let body = p
            .handle(&event(), Payload::from_json(&json!({"a": 1})))
            .unwrap()
            .json_body()
            .unwrap();
        assert_eq!(body["event_type"], "team-a:WorkflowFailed");
        assert!(body["client_payload"].get("payload").is_none());
    }

    #[test]
    fn non_json_payload_is_left_out_and_long_types_truncated() {
        let p = GithubDispatch::init(Config::from(json!({"event_type": "{message}"}))).unwrap();
        let event = Event {
            message: "m".repeat(300),
            ..event()
        };
        let body = p
            .handle(&event, Payload::new("plain text", "text/plain"))
            .unwrap()
            .json_body()
            .unwrap();
        assert_eq!(body["event_type"].as_str().unwrap().len(), EVENT_TYPE_MAX);
        assert!(body["client_payload"].get("payload").is_none());
    }

    #[test]
    fn empty_event_type_is_an_error() {
        let p = GithubDispatch::init(Config::from(json!({"event_type": "{node_name}"}))).unwrap();
        assert!(p.handle(&event(), Payload::default()).is_err());
        assert!(GithubDispatch::init(Config::from(json!({"event_type": "{nope}"}))).is_err());
    }
}
