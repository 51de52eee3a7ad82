//! `teams-card`: a kfp-event-router plugin that replaces the payload with a
//! Microsoft Teams message carrying an Adaptive Card (1.4). See README.md.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use kfp_event_router_sdk::serde_json::{self, Value};
use kfp_event_router_sdk::{Action, Config, Event, Outcome, Payload, Plugin, Template};
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

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
        Action::json(&self.message(event, &Extra::of(&payload)))
    }
}

kfp_event_router_sdk::export_plugin!(TeamsCard);

/// What the card reads from the payload's event object (the body, or the `data` of a
/// CloudEvents envelope), beyond the event itself: its non-empty strings. Read without
/// building the whole object, so the fields the card does not show (a long `Message`) cost
/// no copy.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct Extra {
    #[serde(deserialize_with = "lenient")]
    run_name: Option<String>,
    #[serde(deserialize_with = "lenient")]
    kfp_run_id: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pipeline_name: Option<String>,
    #[serde(deserialize_with = "lenient")]
    namespace: Option<String>,
    #[serde(deserialize_with = "lenient")]
    phase: Option<String>,
    #[serde(deserialize_with = "lenient")]
    started_at: Option<String>,
    #[serde(deserialize_with = "lenient")]
    finished_at: Option<String>,
    #[serde(deserialize_with = "lenient")]
    event_time: Option<String>,
    #[serde(deserialize_with = "lenient")]
    node: Option<ExtraNode>,
    /// A CloudEvents envelope's marks: `specversion`, and the event object in `data`.
    #[serde(rename = "specversion")]
    spec_version: Option<IgnoredAny>,
    #[serde(rename = "data")]
    data: Option<Value>,
}

/// What the card reads of the payload's `Node`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct ExtraNode {
    #[serde(deserialize_with = "lenient")]
    display_name: Option<String>,
    #[serde(deserialize_with = "lenient")]
    message: Option<String>,
}

/// What [`lenient`] keeps of a field's JSON value; by default nothing.
trait Keep<'de>: Sized {
    /// The value is the string `s`.
    fn string(_s: &str) -> Option<Self> {
        None
    }

    /// The value is an object.
    fn object<A: MapAccess<'de>>(map: A) -> Result<Option<Self>, A::Error> {
        IgnoredAny.visit_map(map).map(|_| None)
    }
}

/// A non-empty string.
impl Keep<'_> for String {
    fn string(s: &str) -> Option<Self> {
        Some(s.to_owned()).filter(|s| !s.is_empty())
    }
}

/// An object, read as a node.
impl<'de> Keep<'de> for ExtraNode {
    fn object<A: MapAccess<'de>>(map: A) -> Result<Option<Self>, A::Error> {
        ExtraNode::deserialize(MapAccessDeserializer::new(map)).map(Some)
    }
}

/// Reads a field as `T` when its value has the type `T` is read from, and as nothing
/// otherwise: values of other types are read past without being built.
fn lenient<'de, D: Deserializer<'de>, T: Keep<'de>>(d: D) -> Result<Option<T>, D::Error> {
    d.deserialize_any(Lenient(PhantomData))
}

/// The [`Visitor`] of [`lenient`].
struct Lenient<T>(PhantomData<T>);

impl<'de, T: Keep<'de>> Visitor<'de> for Lenient<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(T::string(s))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::object(map)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_seq(seq).map(|_| None)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

impl Extra {
    /// Reads `payload`; nothing when it is not a JSON object.
    fn of(payload: &Payload) -> Self {
        let top = match serde_json::from_slice::<Extra>(&payload.body) {
            Ok(top) => top,
            // Not JSON, not an object, or an object with a key given twice (which this
            // reading refuses): read it the general way.
            Err(_) => match payload.event_object() {
                Some(object) => serde_json::from_value(Value::Object(object)).unwrap_or_default(),
                None => return Self::default(),
            },
        };
        match top.data {
            Some(data @ Value::Object(_)) if top.spec_version.is_some() => {
                serde_json::from_value(data).unwrap_or_default()
            }
            _ => top,
        }
    }
}

/// `value` unless it is empty, then `fallback`.
fn or<'a>(value: &'a str, fallback: Option<&'a str>) -> Option<&'a str> {
    Some(value).filter(|v| !v.is_empty()).or(fallback)
}

impl TeamsCard {
    /// The whole Teams webhook body.
    fn message<'a>(&'a self, event: &'a Event, extra: &'a Extra) -> Message<'a> {
        Message {
            kind: "message",
            attachments: [Attachment {
                content_type: "application/vnd.microsoft.card.adaptive",
                content_url: (),
                content: self.card(event, extra),
            }],
        }
    }

    /// The Adaptive Card.
    fn card<'a>(&'a self, event: &'a Event, extra: &'a Extra) -> Card<'a> {
        let (style, color, icon, status) = match event.outcome() {
            Outcome::Failed => ("attention", "attention", "❌", "failed"),
            Outcome::Succeeded => ("good", "good", "✅", "succeeded"),
            Outcome::Running => ("accent", "accent", "▶️", "running"),
            Outcome::Other => ("emphasis", "default", "ℹ️", ""),
        };
        let run_name = or(&event.run_name, extra.run_name.as_deref());
        let name = run_name.unwrap_or(&event.workflow_name);
        let node = extra.node.as_ref();
        let node_name = node
            .and_then(|n| n.display_name.as_deref())
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

        let mut body = vec![Element::Container {
            style,
            bleed: true,
            items: vec![
                Element::TextBlock(TextBlock {
                    size: Some("Large"),
                    weight: Some("Bolder"),
                    ..TextBlock::new(format!("{}{name}", self.settings.title_prefix))
                }),
                Element::TextBlock(TextBlock {
                    color: Some(color),
                    weight: Some("Bolder"),
                    spacing: Some("None"),
                    ..TextBlock::new(status_line)
                }),
            ],
        }];
        if !event.message.is_empty() {
            body.push(Element::TextBlock(TextBlock::new(&event.message)));
        }
        // Argo's node Events end with the node's message (`Failed node wf.train: OOMKilled`):
        // it is shown apart only when the event message does not say it already.
        if let Some(msg) = node.and_then(|n| n.message.as_deref())
            && !event.message.ends_with(msg)
        {
            body.push(Element::TextBlock(TextBlock {
                is_subtle: Some(true),
                ..TextBlock::new(msg)
            }));
        }

        let facts = [
            ("Run ID", or(&event.run_id, extra.kfp_run_id.as_deref())),
            (
                "Workflow",
                // Only when the title shows the run name instead.
                run_name
                    .and(Some(event.workflow_name.as_str()))
                    .filter(|w| Some(*w) != run_name),
            ),
            ("Pipeline", extra.pipeline_name.as_deref()),
            (
                "Namespace",
                or(&event.namespace, extra.namespace.as_deref()),
            ),
            ("Node", node_name),
            ("Phase", or(&event.phase, extra.phase.as_deref())),
            ("Reason", or(&event.reason, None)),
            ("Started", extra.started_at.as_deref()),
            ("Finished", extra.finished_at.as_deref()),
            (
                "Event time",
                or(&event.event_time, extra.event_time.as_deref()),
            ),
        ]
        .into_iter()
        .filter_map(|(title, value)| {
            value
                .filter(|v| !v.is_empty())
                .map(|value| Fact { title, value })
        })
        .collect();
        body.push(Element::FactSet { facts });

        let actions = self
            .settings
            .kfp_ui_url
            .as_ref()
            .and_then(|t| t.render_complete(event))
            .map(|url| {
                let title = self
                    .settings
                    .button_title
                    .as_deref()
                    .unwrap_or("Open run in Kubeflow");
                [OpenUrl {
                    kind: "Action.OpenUrl",
                    title,
                    url,
                }]
            });
        Card {
            schema: "http://adaptivecards.io/schemas/adaptive-card.json",
            kind: "AdaptiveCard",
            version: "1.4",
            msteams: MsTeams { width: "Full" },
            body,
            actions,
        }
    }
}

// The body's parts, borrowed from the event and serialised once, in the order Teams' samples
// write their keys.

/// A Teams webhook message with one attachment.
#[derive(Serialize)]
struct Message<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    attachments: [Attachment<'a>; 1],
}

/// The attachment carrying the card.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Attachment<'a> {
    content_type: &'static str,
    /// Always `null`.
    content_url: (),
    content: Card<'a>,
}

/// An Adaptive Card.
#[derive(Serialize)]
struct Card<'a> {
    #[serde(rename = "$schema")]
    schema: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    version: &'static str,
    msteams: MsTeams,
    body: Vec<Element<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    actions: Option<[OpenUrl<'a>; 1]>,
}

/// Teams' own card options.
#[derive(Serialize)]
struct MsTeams {
    width: &'static str,
}

/// An element of the card's body.
#[derive(Serialize)]
#[serde(tag = "type")]
enum Element<'a> {
    Container {
        style: &'static str,
        bleed: bool,
        items: Vec<Element<'a>>,
    },
    TextBlock(TextBlock<'a>),
    FactSet {
        facts: Vec<Fact<'a>>,
    },
}

/// A `TextBlock`'s text and the options it sets.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TextBlock<'a> {
    text: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    color: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    weight: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    spacing: Option<&'static str>,
    wrap: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_subtle: Option<bool>,
}

impl<'a> TextBlock<'a> {
    /// A wrapping block of `text` with no other option.
    fn new(text: impl Into<Cow<'a, str>>) -> Self {
        Self {
            text: text.into(),
            size: None,
            color: None,
            weight: None,
            spacing: None,
            wrap: true,
            is_subtle: None,
        }
    }
}

/// A row of the `FactSet`.
#[derive(Serialize)]
struct Fact<'a> {
    title: &'static str,
    value: &'a str,
}

/// The button opening the run.
#[derive(Serialize)]
struct OpenUrl<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'a str,
    url: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kfp_event_router_sdk::serde_json::json;

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
    fn payload_fields_of_other_types_or_given_twice_are_read_as_before() {
        let p = plugin(json!({}));
        // Not strings: ignored, as if absent.
        let payload = Payload::from_json(&json!({
            "RunName": 7, "PipelineName": ["a"], "Node": "train", "Phase": "",
        }));
        let first = card(&p.handle(&failed(), payload).unwrap());
        assert_eq!(first["body"][0]["items"][0]["text"], "train-x7k2p");
        assert_eq!(fact(&first, "Pipeline"), None);
        assert_eq!(fact(&first, "Phase").as_deref(), Some("Failed"));
        // A key given twice: the last wins, as JSON readers commonly do.
        let body = r#"{"RunName": "first", "PipelineName": "p", "RunName": "second"}"#;
        let card = card(
            &p.handle(&failed(), Payload::new(body, "application/json"))
                .unwrap(),
        );
        assert_eq!(card["body"][0]["items"][0]["text"], "second");
        assert_eq!(fact(&card, "Pipeline").as_deref(), Some("p"));
    }

    #[test]
    fn the_node_message_is_shown_apart_only_when_the_event_message_does_not_end_with_it() {
        let p = plugin(json!({}));
        let texts = |message: &str, node_message: &str| -> Vec<String> {
            let event = Event {
                reason: "WorkflowNodeFailed".into(),
                message: message.into(),
                ..failed()
            };
            let payload = Payload::from_json(&json!({"Node": {"Message": node_message}}));
            let card = card(&p.handle(&event, payload).unwrap());
            card["body"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["type"] == "TextBlock")
                .map(|e| e["text"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(
            texts("Failed node wf.train: OOMKilled", "OOMKilled"),
            ["Failed node wf.train: OOMKilled"]
        );
        assert_eq!(
            texts("child 'train' failed", "OOMKilled"),
            ["child 'train' failed", "OOMKilled"]
        );
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

    #[test]
    fn the_body_is_written_key_by_key_as_before() {
        // Byte for byte what the plugin wrote when it built the card as a JSON tree: receivers
        // that compare bodies, or sign them, see no change.
        let p = plugin(json!({"button_title": "Go", "kfp_ui_url": "https://k/{run_id}"}));
        let event = Event {
            reason: "WorkflowNodeFailed".into(),
            message: "m".into(),
            node_name: "train-x7k2p-123".into(),
            run_id: "r".into(),
            phase: String::new(),
            ..failed()
        };
        let payload = Payload::from_json(&json!({"specversion": "1.0", "data": {
            "RunName": "nightly", "PipelineName": "training", "StartedAt": "s", "FinishedAt": "f",
            "Node": {"DisplayName": "train", "Message": "OOMKilled"}}}));
        let Action::Replace { body, .. } = p.handle(&event, payload).unwrap() else {
            panic!("a card replaces the payload");
        };
        let expected = concat!(
            "{\"type\":\"message\",\"attachments\":[{\"contentType\":\"application/vnd.microsoft.card.adaptive",
            "\",\"contentUrl\":null,\"content\":{\"$schema\":\"http://adaptivecards.io/schemas/adaptive-card.",
            "json\",\"type\":\"AdaptiveCard\",\"version\":\"1.4\",\"msteams\":{\"width\":\"Full\"},\"body\":[{\"type\":\"",
            "Container\",\"style\":\"attention\",\"bleed\":true,\"items\":[{\"type\":\"TextBlock\",\"text\":\"nightly",
            "\",\"size\":\"Large\",\"weight\":\"Bolder\",\"wrap\":true},{\"type\":\"TextBlock\",\"text\":\"❌ Step train",
            " failed (WorkflowNodeFailed)\",\"color\":\"attention\",\"weight\":\"Bolder\",\"spacing\":\"None\",\"wr",
            "ap\":true}]},{\"type\":\"TextBlock\",\"text\":\"m\",\"wrap\":true},{\"type\":\"TextBlock\",\"text\":\"OOMK",
            "illed\",\"wrap\":true,\"isSubtle\":true},{\"type\":\"FactSet\",\"facts\":[{\"title\":\"Run ID\",\"value\"",
            ":\"r\"},{\"title\":\"Workflow\",\"value\":\"train-x7k2p\"},{\"title\":\"Pipeline\",\"value\":\"training\"}",
            ",{\"title\":\"Namespace\",\"value\":\"team-a\"},{\"title\":\"Node\",\"value\":\"train\"},{\"title\":\"Reaso",
            "n\",\"value\":\"WorkflowNodeFailed\"},{\"title\":\"Started\",\"value\":\"s\"},{\"title\":\"Finished\",\"va",
            "lue\":\"f\"}]}],\"actions\":[{\"type\":\"Action.OpenUrl\",\"title\":\"Go\",\"url\":\"https://k/r\"}]}}]}",
        );
        assert_eq!(String::from_utf8(body).unwrap(), expected);
    }
}
