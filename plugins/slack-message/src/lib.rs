//! `slack-message`: a kfp-event-router plugin that replaces the payload with a
//! Slack Block Kit message (incoming webhook or `chat.postMessage` body).
//! See README.md.

use kfp_event_router_sdk::serde_json::{Map, Value};
use kfp_event_router_sdk::{Action, Config, Event, Outcome, Payload, Plugin, Template};
use serde::{Deserialize, Serialize};

/// Configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    /// Channel to post to (`chat.postMessage`, legacy webhooks).
    channel: Option<String>,
    /// Bot user name to post as (legacy webhooks).
    username: Option<String>,
    /// Link to the run in the KFP UI; the button is omitted when a
    /// placeholder it uses is empty for an event.
    kfp_ui_url: Option<Template>,
    /// Text put before the run name in the header.
    title_prefix: String,
}

/// The Slack message plugin.
pub struct SlackMessage {
    settings: Settings,
}

impl Plugin for SlackMessage {
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

kfp_event_router_sdk::export_plugin!(SlackMessage);

/// Slack limits (characters).
const HEADER_MAX: usize = 150;
const SECTION_MAX: usize = 3000;
const FIELD_MAX: usize = 2000;
const TEXT_MAX: usize = 4000;

/// Escapes the three characters Slack mrkdwn treats as control characters.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Cuts `s` to at most `max` characters, ending with `…` when cut.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max - 1).collect();
        out.push('…');
        out
    }
}

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

impl SlackMessage {
    fn message<'a>(&'a self, event: &Event, extra: &Map<String, Value>) -> Message<'a> {
        let outcome = event.outcome();
        let (emoji, status) = match outcome {
            Outcome::Failed => (":x:", "failed"),
            Outcome::Succeeded => (":white_check_mark:", "succeeded"),
            Outcome::Running => (":arrow_forward:", "running"),
            Outcome::Other => (":information_source:", ""),
        };
        let run_name = or(&event.run_name, extra_str(extra, "RunName"));
        let name = run_name.unwrap_or(&event.workflow_name);
        let node = extra.get("Node").and_then(Value::as_object);
        let node_name = node
            .and_then(|n| extra_str(n, "DisplayName"))
            .or(Some(event.node_name.as_str()).filter(|s| !s.is_empty()));
        let what = match (node_name, status) {
            (Some(node), "") => format!("step {node}: {}", event.reason),
            (Some(node), status) => format!("step {node} {status}"),
            (None, "") => event.reason.clone(),
            (None, status) => status.to_owned(),
        };
        let title = format!("{}{name} {what}", self.settings.title_prefix);

        let mut blocks = vec![Block::Header {
            text: Text::PlainText {
                text: truncate(&format!("{emoji} {title}"), HEADER_MAX),
                emoji: Some(true),
            },
        }];
        let mut message = escape(&event.message);
        // Argo's node Events end with the node's message (`Failed node wf.train: OOMKilled`):
        // it is quoted apart only when the event message does not say it already.
        if let Some(msg) = node.and_then(|n| extra_str(n, "Message"))
            && !event.message.ends_with(msg)
        {
            message = format!("{message}\n>{}", escape(msg));
        }
        if !message.trim().is_empty() {
            blocks.push(Block::Section {
                text: Text::Mrkdwn {
                    text: truncate(&message, SECTION_MAX),
                },
            });
        }
        let fields: Vec<Text> = [
            (
                "Run ID",
                or(&event.run_id, extra_str(extra, "KfpRunId")),
                true,
            ),
            (
                "Workflow",
                run_name.and(Some(event.workflow_name.as_str())),
                true,
            ),
            ("Pipeline", extra_str(extra, "PipelineName"), false),
            (
                "Namespace",
                or(&event.namespace, extra_str(extra, "Namespace")),
                false,
            ),
            ("Node", node_name, false),
            ("Phase", or(&event.phase, extra_str(extra, "Phase")), false),
            ("Reason", or(&event.reason, None), false),
            ("Finished", extra_str(extra, "FinishedAt"), false),
            (
                "Event time",
                or(&event.event_time, extra_str(extra, "EventTime")),
                false,
            ),
        ]
        .into_iter()
        .filter_map(|(label, value, code)| {
            let value = escape(value.filter(|v| !v.is_empty())?);
            let value = if code { format!("`{value}`") } else { value };
            Some(Text::Mrkdwn {
                text: truncate(&format!("*{label}*\n{value}"), FIELD_MAX),
            })
        })
        .take(10)
        .collect();
        if !fields.is_empty() {
            blocks.push(Block::Fields { fields });
        }
        if let Some(url) = self
            .settings
            .kfp_ui_url
            .as_ref()
            .and_then(|t| t.render_complete(event))
        {
            let button = Button {
                kind: "button",
                text: Text::PlainText {
                    text: "Open run in Kubeflow".to_owned(),
                    emoji: None,
                },
                url,
                style: (outcome == Outcome::Failed).then_some("danger"),
            };
            blocks.push(Block::Actions { elements: [button] });
        }

        let mut text = format!("{emoji} {title}");
        if !event.message.is_empty() {
            text = format!("{text}: {}", escape(&event.message));
        }
        Message {
            text: truncate(&text, TEXT_MAX),
            blocks,
            channel: self.settings.channel.as_deref(),
            username: self.settings.username.as_deref(),
        }
    }
}

// The message's parts, serialised once, keys in the order Slack's samples write them.

/// A Block Kit message.
#[derive(Serialize)]
struct Message<'a> {
    text: String,
    blocks: Vec<Block>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<&'a str>,
}

/// A block of the message.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Block {
    Header {
        text: Text,
    },
    Section {
        text: Text,
    },
    /// A section of fields.
    #[serde(rename = "section")]
    Fields {
        fields: Vec<Text>,
    },
    Actions {
        elements: [Button; 1],
    },
}

/// A text object.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Text {
    PlainText {
        text: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        emoji: Option<bool>,
    },
    Mrkdwn {
        text: String,
    },
}

/// The button opening the run.
#[derive(Serialize)]
struct Button {
    #[serde(rename = "type")]
    kind: &'static str,
    text: Text,
    url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    style: Option<&'static str>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kfp_event_router_sdk::serde_json::json;

    fn plugin(config: Value) -> SlackMessage {
        SlackMessage::init(Config::from(config)).unwrap()
    }

    fn failed() -> Event {
        Event {
            reason: "WorkflowFailed".into(),
            event_type: "Warning".into(),
            message: "child <train> failed & stopped".into(),
            namespace: "team-a".into(),
            workflow_name: "train-x7k2p".into(),
            run_id: "run-1".into(),
            phase: "Failed".into(),
            ..Event::default()
        }
    }

    #[test]
    fn failed_run() {
        let p = plugin(json!({
            "channel": "#ml-alerts", "username": "kfp",
            "kfp_ui_url": "https://kubeflow.example.com/pipeline/#/runs/details/{run_id}",
        }));
        let payload = Payload::from_json(&json!({"KfpRunId": "run-1", "Message": "x"}));
        let body = p.handle(&failed(), payload).unwrap().json_body().unwrap();
        assert_eq!(body["channel"], "#ml-alerts");
        assert_eq!(body["username"], "kfp");
        assert_eq!(
            body["text"],
            ":x: train-x7k2p failed: child &lt;train&gt; failed &amp; stopped"
        );
        let blocks = body["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(blocks[0]["text"]["text"], ":x: train-x7k2p failed");
        assert_eq!(
            blocks[1]["text"]["text"],
            "child &lt;train&gt; failed &amp; stopped"
        );
        let fields = blocks[2]["fields"].as_array().unwrap();
        assert_eq!(fields[0]["text"], "*Run ID*\n`run-1`");
        assert!(fields.iter().any(|f| f["text"] == "*Phase*\nFailed"));
        assert_eq!(blocks[3]["type"], "actions");
        assert_eq!(
            blocks[3]["elements"][0]["url"],
            "https://kubeflow.example.com/pipeline/#/runs/details/run-1"
        );
        assert_eq!(blocks[3]["elements"][0]["style"], "danger");
    }

    #[test]
    fn the_node_message_is_quoted_only_when_the_event_message_does_not_end_with_it() {
        let p = plugin(json!({}));
        let section = |message: &str| -> String {
            let event = Event {
                reason: "WorkflowNodeFailed".into(),
                message: message.into(),
                ..Event::default()
            };
            let payload = Payload::from_json(&json!({"Node": {"Message": "OOMKilled"}}));
            let body = p.handle(&event, payload).unwrap().json_body().unwrap();
            body["blocks"][1]["text"]["text"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(
            section("Failed node wf.train: OOMKilled"),
            "Failed node wf.train: OOMKilled"
        );
        assert_eq!(section("child failed"), "child failed\n>OOMKilled");
    }

    #[test]
    fn node_event_with_extended_payload_and_no_button() {
        let p = plugin(json!({"kfp_ui_url": "https://kfp/{run_id}"}));
        let event = Event {
            reason: "WorkflowNodeSucceeded".into(),
            event_type: "Normal".into(),
            node_name: "train-x7k2p-1".into(),
            run_id: String::new(),
            message: String::new(),
            ..failed()
        };
        let payload = Payload::from_json(&json!({
            "RunName": "nightly", "Node": {"DisplayName": "train"}, "PipelineName": "training",
        }));
        let body = p.handle(&event, payload).unwrap().json_body().unwrap();
        let blocks = body["blocks"].as_array().unwrap();
        assert_eq!(
            blocks[0]["text"]["text"],
            ":white_check_mark: nightly step train succeeded"
        );
        assert_eq!(blocks[1]["type"], "section");
        let fields = blocks[1]["fields"].as_array().unwrap();
        assert!(
            fields
                .iter()
                .any(|f| f["text"] == "*Workflow*\n`train-x7k2p`")
        );
        assert!(fields.iter().any(|f| f["text"] == "*Node*\ntrain"));
        assert!(blocks.iter().all(|b| b["type"] != "actions"));
        assert!(body.get("channel").is_none());
    }

    #[test]
    fn header_is_truncated() {
        let event = Event {
            workflow_name: "w".repeat(300),
            ..failed()
        };
        let body = plugin(json!({}))
            .handle(&event, Payload::default())
            .unwrap()
            .json_body()
            .unwrap();
        let header = body["blocks"][0]["text"]["text"].as_str().unwrap();
        assert_eq!(header.chars().count(), HEADER_MAX);
        assert!(header.ends_with('…'));
    }

    #[test]
    fn the_body_is_written_key_by_key_as_before() {
        // Byte for byte what the plugin wrote when it built the message as a JSON tree.
        let p = plugin(
            json!({"channel": "#c", "username": "u", "title_prefix": "[p] ",
                              "kfp_ui_url": "https://k/{run_id}"}),
        );
        let event = Event {
            message: "child <train> & \"x\"\n".into(),
            run_id: "r1".into(),
            event_time: "2025".into(),
            ..failed()
        };
        let payload = Payload::from_json(&json!({"KfpRunId": "r1", "Message": "x"}));
        let Action::Replace { body, .. } = p.handle(&event, payload).unwrap() else {
            panic!("a message replaces the payload");
        };
        let expected = concat!(
            "{\"text\":\":x: [p] train-x7k2p failed: child &lt;train&gt; &amp; \\\"x\\\"\\n\",\"blocks\"",
            ":[{\"type\":\"header\",\"text\":{\"type\":\"plain_text\",\"text\":\":x: [p] train-x7k2p faile",
            "d\",\"emoji\":true}},{\"type\":\"section\",\"text\":{\"type\":\"mrkdwn\",\"text\":\"child &lt;tr",
            "ain&gt; &amp; \\\"x\\\"\\n\"}},{\"type\":\"section\",\"fields\":[{\"type\":\"mrkdwn\",\"text\":\"*R",
            "un ID*\\n`r1`\"},{\"type\":\"mrkdwn\",\"text\":\"*Namespace*\\nteam-a\"},{\"type\":\"mrkdwn\",\"",
            "text\":\"*Phase*\\nFailed\"},{\"type\":\"mrkdwn\",\"text\":\"*Reason*\\nWorkflowFailed\"},{\"t",
            "ype\":\"mrkdwn\",\"text\":\"*Event time*\\n2025\"}]},{\"type\":\"actions\",\"elements\":[{\"typ",
            "e\":\"button\",\"text\":{\"type\":\"plain_text\",\"text\":\"Open run in Kubeflow\"},\"url\":\"ht",
            "tps://k/r1\",\"style\":\"danger\"}]}],\"channel\":\"#c\",\"username\":\"u\"}",
        );
        assert_eq!(String::from_utf8(body).unwrap(), expected);
    }
}
