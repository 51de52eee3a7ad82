//! `teams-card`: a kfp-event-router plugin that replaces the payload with a
//! Microsoft Teams message carrying an Adaptive Card (1.4). See README.md.

use kfp_event_router_sdk::serde_json::{Map, Value, json};
use kfp_event_router_sdk::{Action, Config, Event, Outcome, Payload, Plugin, Template};
use serde::Deserialize;

/// Configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    /// Text put before the run name in the card title, e.g. `"[prod] "`.
    title_prefix: String,
    /// Link to the run in the KFP UI; the button is omitted when a
    /// placeholder it uses is empty for an event.
    kfp_ui_url: Option<Template>,
    /// Label of the link button.
    button_title: Option<String>,
}

/// The Teams card plugin.
pub struct TeamsCard {
    settings: Settings,
}

impl Plugin for TeamsCard {
    fn init(config: Config) -> Result<Self, String> {
        Ok(Self {
            settings: config.parse()?,
        })
    }

    fn handle(&self, event: &Event, payload: Payload) -> Result<Action, String> {
        let extra = payload.event_object().unwrap_or_default();
        Action::json(&self.message(event, &extra))
    }
}

kfp_event_router_sdk::export_plugin!(TeamsCard);

/// A string from the payload's event object, if present and not empty.
fn extra_str<'a>(extra: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    extra
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// `value` unless it is empty, then `fallback`.
fn or<'a>(value: &'a str, fallback: Option<&'a str>) -> Option<&'a str> {
    Some(value).filter(|v| !v.is_empty()).or(fallback)
}

impl TeamsCard {
    /// The whole Teams webhook body.
    fn message(&self, event: &Event, extra: &Map<String, Value>) -> Value {
        json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": null,
                "content": self.card(event, extra),
            }],
        })
    }

    /// The Adaptive Card.
    fn card(&self, event: &Event, extra: &Map<String, Value>) -> Value {
        let (style, color, icon, status) = match event.outcome() {
            Outcome::Failed => ("attention", "attention", "❌", "failed"),
            Outcome::Succeeded => ("good", "good", "✅", "succeeded"),
            Outcome::Running => ("accent", "accent", "▶️", "running"),
            Outcome::Other => ("emphasis", "default", "ℹ️", ""),
        };
        let run_name = or(&event.run_name, extra_str(extra, "RunName"));
        let name = run_name.unwrap_or(&event.workflow_name);
        let node = extra.get("Node").and_then(Value::as_object);
        let node_name = node
            .and_then(|n| extra_str(n, "DisplayName"))
            .or(Some(event.node_name.as_str()).filter(|s| !s.is_empty()));
        let subject = match node_name {
            Some(node) => format!("Step {node}"),
            None => "Run".to_owned(),
        };
        let status_line = if status.is_empty() {
            format!("{icon} {subject}: {}", event.reason)
        } else {
            format!("{icon} {subject} {status} ({})", event.reason)
        };

        let mut body = vec![json!({
            "type": "Container",
            "style": style,
            "bleed": true,
            "items": [
                {
                    "type": "TextBlock",
                    "text": format!("{}{name}", self.settings.title_prefix),
                    "size": "Large",
                    "weight": "Bolder",
                    "wrap": true,
                },
                {
                    "type": "TextBlock",
                    "text": status_line,
                    "color": color,
                    "weight": "Bolder",
                    "spacing": "None",
                    "wrap": true,
                },
            ],
        })];
        if !event.message.is_empty() {
            body.push(json!({"type": "TextBlock", "text": event.message, "wrap": true}));
        }
        if let Some(msg) = node.and_then(|n| extra_str(n, "Message"))
            && msg != event.message
        {
            body.push(json!({
                "type": "TextBlock", "text": msg, "wrap": true, "isSubtle": true,
            }));
        }

        let facts: Vec<Value> = [
            ("Run ID", or(&event.run_id, extra_str(extra, "KfpRunId"))),
            (
                "Workflow",
                // Only when the title shows the run name instead.
                run_name
                    .and(Some(event.workflow_name.as_str()))
                    .filter(|w| Some(*w) != run_name),
            ),
            ("Pipeline", extra_str(extra, "PipelineName")),
            (
                "Namespace",
                or(&event.namespace, extra_str(extra, "Namespace")),
            ),
            ("Node", node_name),
            ("Phase", or(&event.phase, extra_str(extra, "Phase"))),
            ("Reason", or(&event.reason, None)),
            ("Started", extra_str(extra, "StartedAt")),
            ("Finished", extra_str(extra, "FinishedAt")),
            (
                "Event time",
                or(&event.event_time, extra_str(extra, "EventTime")),
            ),
        ]
        .into_iter()
        .filter_map(|(title, value)| {
            value
                .filter(|v| !v.is_empty())
                .map(|v| json!({"title": title, "value": v}))
        })
        .collect();
        body.push(json!({"type": "FactSet", "facts": facts}));

        let mut card = json!({
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": "1.4",
            "msteams": {"width": "Full"},
            "body": body,
        });
        if let Some(url) = self
            .settings
            .kfp_ui_url
            .as_ref()
            .and_then(|t| t.render_complete(event))
        {
            let title = self
                .settings
                .button_title
                .as_deref()
                .unwrap_or("Open run in Kubeflow");
            card["actions"] = json!([{"type": "Action.OpenUrl", "title": title, "url": url}]);
        }
        card
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(config: Value) -> TeamsCard {
        TeamsCard::init(Config::from(config)).unwrap()
    }

    fn failed() -> Event {
        Event {
            reason: "WorkflowFailed".into(),
            event_type: "Warning".into(),
            message: "child 'train' failed".into(),
            namespace: "team-a".into(),
            workflow_name: "train-x7k2p".into(),
            run_id: "6f1c0c1e-5f5e-4a8e-9e7e-0c6f4c7d2b11".into(),
            phase: "Failed".into(),
            ..Event::default()
        }
    }

    fn card(action: &Action) -> Value {
        let body = action.json_body().expect("JSON replacement");
        assert_eq!(body["type"], "message");
        let att = &body["attachments"][0];
        assert_eq!(
            att["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert_eq!(att["content"]["version"], "1.4");
        att["content"].clone()
    }

    fn fact(card: &Value, title: &str) -> Option<String> {
        card["body"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["type"] == "FactSet")?["facts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["title"] == title)
            .map(|f| f["value"].as_str().unwrap().to_owned())
    }

    #[test]
    fn failed_run_with_kfp_format() {
        let p = plugin(json!({
            "title_prefix": "[prod] ",
            "kfp_ui_url": "https://kubeflow.example.com/pipeline/#/runs/details/{run_id}",
        }));
        let payload = Payload::from_json(&json!({
            "KfpRunId": "6f1c0c1e-5f5e-4a8e-9e7e-0c6f4c7d2b11",
            "WorkflowName": "train-x7k2p", "NodeName": "", "EventType": "WorkflowFailed",
            "Message": "child 'train' failed",
        }));
        let card = card(&p.handle(&failed(), payload).unwrap());
        let header = &card["body"][0];
        assert_eq!(header["style"], "attention");
        assert_eq!(header["items"][0]["text"], "[prod] train-x7k2p");
        assert_eq!(header["items"][1]["color"], "attention");
        assert_eq!(header["items"][1]["text"], "❌ Run failed (WorkflowFailed)");
        assert_eq!(card["body"][1]["text"], "child 'train' failed");
        assert_eq!(
            fact(&card, "Run ID").as_deref(),
            Some("6f1c0c1e-5f5e-4a8e-9e7e-0c6f4c7d2b11")
        );
        assert_eq!(fact(&card, "Namespace").as_deref(), Some("team-a"));
        assert_eq!(fact(&card, "Phase").as_deref(), Some("Failed"));
        assert_eq!(fact(&card, "Reason").as_deref(), Some("WorkflowFailed"));
        assert_eq!(fact(&card, "Workflow"), None, "title already shows it");
        assert_eq!(
            card["actions"][0],
            json!({"type": "Action.OpenUrl", "title": "Open run in Kubeflow",
                   "url": "https://kubeflow.example.com/pipeline/#/runs/details/6f1c0c1e-5f5e-4a8e-9e7e-0c6f4c7d2b11"})
        );
    }

    #[test]
    fn extended_format_adds_facts() {
        let p = plugin(json!({}));
        let event = Event {
            reason: "WorkflowNodeFailed".into(),
            node_name: "train-x7k2p-123".into(),
            ..failed()
        };
        let payload = Payload::from_json(&json!({
            "specversion": "1.0", "type": "x", "source": "y", "id": "z",
            "data": {
                "RunName": "nightly training", "PipelineName": "training",
                "StartedAt": "2025-01-31T12:00:00Z", "FinishedAt": "2025-01-31T12:05:00Z",
                "Node": {"DisplayName": "train", "Message": "OOMKilled"},
            }
        }));
        let card = card(&p.handle(&event, payload).unwrap());
        assert_eq!(card["body"][0]["items"][0]["text"], "nightly training");
        assert_eq!(
            card["body"][0]["items"][1]["text"],
            "❌ Step train failed (WorkflowNodeFailed)"
        );
        assert_eq!(card["body"][2]["text"], "OOMKilled");
        assert_eq!(fact(&card, "Workflow").as_deref(), Some("train-x7k2p"));
        assert_eq!(fact(&card, "Pipeline").as_deref(), Some("training"));
        assert_eq!(fact(&card, "Node").as_deref(), Some("train"));
        assert_eq!(
            fact(&card, "Finished").as_deref(),
            Some("2025-01-31T12:05:00Z")
        );
        assert!(card.get("actions").is_none());
    }

    #[test]
    fn success_style_and_missing_run_id_hides_button() {
        let p = plugin(json!({"kfp_ui_url": "https://kfp/#/runs/details/{run_id}"}));
        let event = Event {
            reason: "WorkflowSucceeded".into(),
            event_type: "Normal".into(),
            run_id: String::new(),
            phase: "Succeeded".into(),
            ..failed()
        };
        let card = card(
            &p.handle(&event, Payload::new("not json", "text/plain"))
                .unwrap(),
        );
        assert_eq!(card["body"][0]["style"], "good");
        assert!(card.get("actions").is_none());
        assert_eq!(fact(&card, "Run ID"), None);
    }

    #[test]
    fn bad_template_is_rejected() {
        let err = TeamsCard::init(Config::new(r#"{"kfp_ui_url": "https://x/{runid}"}"#))
            .err()
            .unwrap();
        assert!(
            err.contains("at kfp_ui_url") && err.contains("{runid}"),
            "{err}"
        );
    }
}
