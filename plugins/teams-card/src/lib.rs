//! `teams-card`: a kfp-event-router plugin that replaces the payload with a
//! Microsoft Teams message carrying an Adaptive Card (1.4). See README.md.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use kfp_event_router_sdk::serde_json::{self, Value};
use kfp_event_router_sdk::{
    Action, Config, Fields, LazyEvent, LazyPayload, LazyPlugin, Outcome, PayloadFormat, Template,
};
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use json::Json;

mod json;

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

impl LazyPlugin for TeamsCard {
    fn init(config: Config) -> Result<Self, String> {
        Ok(Self {
            settings: config.parse()?,
        })
    }

    fn handle(&self, event: &LazyEvent, payload: &LazyPayload) -> Result<Action, String> {
        let facts = Facts::of(event);
        let extra = if payload.rendered() {
            Extra::rendered(&facts)
        } else {
            Extra::of(payload)
        };
        let body = self.message(&facts, &extra).json();
        Ok(Action::replace(body, "application/json"))
    }
}

kfp_event_router_sdk::export_lazy_plugin!(TeamsCard);

/// The event's facts the card shows, each read from the host once.
struct Facts<'e, 'a> {
    event: &'e LazyEvent<'a>,
    reason: Cow<'a, str>,
    message: Cow<'a, str>,
    namespace: Cow<'a, str>,
    workflow_name: Cow<'a, str>,
    run_id: Cow<'a, str>,
    run_name: Cow<'a, str>,
    phase: Cow<'a, str>,
    node_name: Cow<'a, str>,
    event_time: Cow<'a, str>,
}

impl<'e, 'a> Facts<'e, 'a> {
    fn of(event: &'e LazyEvent<'a>) -> Self {
        Self {
            event,
            reason: event.reason(),
            message: event.message(),
            namespace: event.namespace(),
            workflow_name: event.workflow_name(),
            run_id: event.run_id(),
            run_name: event.run_name(),
            phase: event.phase(),
            node_name: event.node_name(),
            event_time: event.event_time(),
        }
    }

    /// The event's outcome; reads the event type only when reason and phase do not tell.
    fn outcome(&self) -> Outcome {
        Outcome::of(&self.reason, || &self.phase, || self.event.event_type())
    }
}

/// The link template's fields: those read already, the others from the event.
impl Fields for Facts<'_, '_> {
    fn field(&self, name: &str) -> Option<Cow<'_, str>> {
        let read = match name {
            "reason" => &self.reason,
            "message" => &self.message,
            "namespace" => &self.namespace,
            "workflow_name" => &self.workflow_name,
            "run_id" => &self.run_id,
            "run_name" => &self.run_name,
            "phase" => &self.phase,
            "node_name" => &self.node_name,
            "event_time" => &self.event_time,
            "display_name" => or(&self.run_name, None).unwrap_or(&self.workflow_name),
            _ => return self.event.field(name),
        };
        Some(Cow::Borrowed(read))
    }
}

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

/// A non-empty string, as [`Keep`] reads one.
fn keep(s: &str) -> Option<String> {
    String::string(s)
}

impl Extra {
    /// What parsing the router's own rendering of the event would give, from the event: the
    /// keys `host/src/payload/format/kfp.rs` renders (of those the card reads, `KfpRunId`),
    /// or for `extended` and `cloudevents` (whose `data` is `extended`) the facts
    /// `host/src/payload/format/extended.rs` renders under each key.
    fn rendered(facts: &Facts) -> Self {
        let kfp_run_id = keep(&facts.run_id);
        let event = facts.event;
        match event.format() {
            PayloadFormat::Kfp => Self {
                kfp_run_id,
                ..Self::default()
            },
            PayloadFormat::Extended | PayloadFormat::Cloudevents => Self {
                run_name: keep(&facts.run_name),
                kfp_run_id,
                pipeline_name: keep(&event.pipeline_name()),
                namespace: keep(&facts.namespace),
                phase: keep(&facts.phase),
                started_at: keep(&event.started_at()),
                finished_at: keep(&event.finished_at()),
                event_time: keep(&facts.event_time),
                node: event.node().map(|node| ExtraNode {
                    display_name: node.display_name.as_deref().and_then(keep),
                    message: node.message.as_deref().and_then(keep),
                }),
                spec_version: None,
                data: None,
            },
        }
    }

    /// Reads `payload`; nothing when it is not a JSON object.
    fn of(payload: &LazyPayload) -> Self {
        let top = match serde_json::from_slice::<Extra>(&payload.body()) {
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

/// `text` ends with `tail`, compared eight bytes at a time. `str::ends_with` calls wasi-libc's
/// `memcmp`, which compares one byte at a time, and the node's message Argo repeats at the end
/// of the event's can be long: the byte loop was a fifth of the plugin's instructions.
fn ends_with(text: &str, tail: &str) -> bool {
    let Some(start) = text.len().checked_sub(tail.len()) else {
        return false;
    };
    let (mut ours, mut theirs) = (
        text.as_bytes()[start..].chunks_exact(8),
        tail.as_bytes().chunks_exact(8),
    );
    let word = |chunk: &[u8]| u64::from_ne_bytes(chunk.try_into().expect("8 bytes"));
    ours.by_ref()
        .zip(theirs.by_ref())
        .all(|(a, b)| word(a) == word(b))
        && ours.remainder() == theirs.remainder()
}

/// `value` unless it is empty, then `fallback`.
fn or<'a>(value: &'a str, fallback: Option<&'a str>) -> Option<&'a str> {
    Some(value).filter(|v| !v.is_empty()).or(fallback)
}

impl TeamsCard {
    /// The whole Teams webhook body.
    fn message<'a>(&'a self, event: &'a Facts, extra: &'a Extra) -> Message<'a> {
        Message {
            card: self.card(event, extra),
        }
    }

    /// The Adaptive Card.
    fn card<'a>(&'a self, event: &'a Facts, extra: &'a Extra) -> Card<'a> {
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
            .or(or(&event.node_name, None));
        // Joined rather than `format!`ted: in WebAssembly the formatting machinery cost more
        // than writing the rest of the card.
        let subject: &[&str] = match node_name {
            Some(node) => &["Step ", node],
            None => &["Run"],
        };
        let reason = &*event.reason;
        let tail: &[&str] = if status.is_empty() {
            &[": ", reason]
        } else {
            &[" ", status, " (", reason, ")"]
        };
        let status_line: String = [icon, " "]
            .iter()
            .chain(subject)
            .chain(tail)
            .copied()
            .collect();
        let title = match self.settings.title_prefix.as_str() {
            "" => Cow::Borrowed(name),
            prefix => Cow::Owned([prefix, name].concat()),
        };

        let mut body = vec![Element::Container {
            style,
            bleed: true,
            items: vec![
                Element::TextBlock(TextBlock {
                    size: Some("Large"),
                    weight: Some("Bolder"),
                    ..TextBlock::new(title)
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
            body.push(Element::TextBlock(TextBlock::new(&*event.message)));
        }
        // Argo's node Events end with the node's message (`Failed node wf.train: OOMKilled`):
        // it is shown apart only when the event message does not say it already.
        if let Some(msg) = node.and_then(|n| n.message.as_deref())
            && !ends_with(&event.message, msg)
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
                    .and(Some(&*event.workflow_name))
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
                OpenUrl { title, url }
            });
        Card { body, actions }
    }
}

// The body's parts, borrowed from the event and written once ([`json`]), keys in the order
// Teams' samples write them.

/// A Teams webhook message with one attachment, the card.
struct Message<'a> {
    card: Card<'a>,
}

impl Message<'_> {
    /// The message as its JSON body.
    fn json(&self) -> Vec<u8> {
        let mut json = Json::with_capacity(1024 + self.card.text_bytes());
        json.raw(concat!(
            r#"{"type":"message","attachments":[{"contentType":"#,
            r#""application/vnd.microsoft.card.adaptive","contentUrl":null,"content":"#,
        ));
        self.card.write(&mut json);
        json.raw("}]}");
        json.into_bytes()
    }
}

/// An Adaptive Card.
struct Card<'a> {
    body: Vec<Element<'a>>,
    actions: Option<OpenUrl<'a>>,
}

impl Card<'_> {
    fn write(&self, json: &mut Json) {
        json.raw(concat!(
            r#"{"$schema":"http://adaptivecards.io/schemas/adaptive-card.json","#,
            r#""type":"AdaptiveCard","version":"1.4","msteams":{"width":"Full"},"body":"#,
        ));
        Element::write_all(&self.body, json);
        if let Some(open) = &self.actions {
            json.raw(r#","actions":[{"type":"Action.OpenUrl","title":"#)
                .string(open.title)
                .raw(r#","url":"#)
                .string(&open.url)
                .raw("}]");
        }
        json.raw("}");
    }

    /// Bytes of the texts, to size the body once.
    fn text_bytes(&self) -> usize {
        self.body.iter().map(Element::text_bytes).sum()
    }
}

/// An element of the card's body.
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

impl Element<'_> {
    /// Writes `elements` as a JSON array.
    fn write_all(elements: &[Self], json: &mut Json) {
        json.array(elements, |json, element| element.write(json));
    }

    fn write(&self, json: &mut Json) {
        match self {
            Self::Container {
                style,
                bleed,
                items,
            } => {
                json.raw(r#"{"type":"Container","style":"#)
                    .string(style)
                    .raw(r#","bleed":"#)
                    .bool(*bleed)
                    .raw(r#","items":"#);
                Self::write_all(items, json);
                json.raw("}");
            }
            Self::TextBlock(block) => block.write(json),
            Self::FactSet { facts } => {
                json.raw(r#"{"type":"FactSet","facts":"#)
                    .array(facts, |json, fact| {
                        json.raw(r#"{"title":"#)
                            .string(fact.title)
                            .raw(r#","value":"#)
                            .string(fact.value)
                            .raw("}");
                    })
                    .raw("}");
            }
        }
    }

    fn text_bytes(&self) -> usize {
        match self {
            Self::Container { items, .. } => items.iter().map(Self::text_bytes).sum(),
            Self::TextBlock(block) => block.text.len(),
            Self::FactSet { facts } => facts.iter().map(|f| f.value.len()).sum(),
        }
    }
}

/// A `TextBlock`'s text and the options it sets.
struct TextBlock<'a> {
    text: Cow<'a, str>,
    size: Option<&'static str>,
    color: Option<&'static str>,
    weight: Option<&'static str>,
    spacing: Option<&'static str>,
    wrap: bool,
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

    fn write(&self, json: &mut Json) {
        json.raw(r#"{"type":"TextBlock","text":"#)
            .string(&self.text);
        let options = [
            (r#","size":"#, self.size),
            (r#","color":"#, self.color),
            (r#","weight":"#, self.weight),
            (r#","spacing":"#, self.spacing),
        ];
        for (key, value) in options {
            if let Some(value) = value {
                json.raw(key).string(value);
            }
        }
        json.raw(r#","wrap":"#).bool(self.wrap);
        if let Some(subtle) = self.is_subtle {
            json.raw(r#","isSubtle":"#).bool(subtle);
        }
        json.raw("}");
    }
}

/// A row of the `FactSet`.
struct Fact<'a> {
    title: &'static str,
    value: &'a str,
}

/// The button opening the run.
struct OpenUrl<'a> {
    title: &'a str,
    url: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kfp_event_router_sdk::serde_json::json;
    use kfp_event_router_sdk::{Event, Node, Payload};

    #[test]
    fn ends_with_agrees_with_the_standard_library() {
        let long = "Failed node wf.train: ".to_owned() + &"OOMKilled, exit code 137. ".repeat(40);
        let tails = [
            "",
            "7.",
            "exit code 137. ",
            "xit code 137.",
            "node wf.train",
        ];
        for text in ["", "short", "é OOM", long.as_str()] {
            for len in 0..=text.len() {
                if let Some(tail) = text.get(text.len() - len..) {
                    assert!(ends_with(text, tail), "{text:?} / {tail:?}");
                }
            }
            for tail in tails.iter().copied().chain([long.as_str(), "x"]) {
                assert_eq!(
                    ends_with(text, tail),
                    text.ends_with(tail),
                    "{text:?} / {tail:?}"
                );
            }
        }
        // A difference in any byte of a long tail, first, middle or last, is seen.
        for at in [0, 13, long.len() / 2, long.len() - 1] {
            let mut changed = long.clone().into_bytes();
            changed[at] ^= 1;
            let changed = String::from_utf8(changed).unwrap();
            assert!(!ends_with(&long, &changed), "byte {at}");
        }
    }

    fn plugin(config: Value) -> TeamsCard {
        TeamsCard::init(Config::from(config)).unwrap()
    }

    /// The card for `event` and a `payload` an earlier plugin wrote.
    fn run(p: &TeamsCard, event: &Event, payload: Payload) -> Action {
        p.handle(&LazyEvent::from(event), &LazyPayload::new(&payload, false))
            .unwrap()
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
        let card = card(&run(&p, &failed(), payload));
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
        let card = card(&run(&p, &event, payload));
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
        let card = card(&run(&p, &event, Payload::new("not json", "text/plain")));
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
        let first = card(&run(&p, &failed(), payload));
        assert_eq!(first["body"][0]["items"][0]["text"], "train-x7k2p");
        assert_eq!(fact(&first, "Pipeline"), None);
        assert_eq!(fact(&first, "Phase").as_deref(), Some("Failed"));
        // A key given twice: the last wins, as JSON readers commonly do.
        let body = r#"{"RunName": "first", "PipelineName": "p", "RunName": "second"}"#;
        let card = card(&run(&p, &failed(), Payload::new(body, "application/json")));
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
            let card = card(&run(&p, &event, payload));
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
        let Action::Replace { body, .. } = run(&p, &event, payload) else {
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

    /// The router's rendering of `event` in its format, written by hand with the keys of
    /// `host/src/payload/format/{kfp,extended,cloudevents}.rs` (unknown facts are `null`).
    fn rendering(event: &Event) -> Payload {
        fn opt(s: &str) -> Option<&str> {
            Some(s).filter(|s| !s.is_empty())
        }
        let kfp = json!({
            "KfpRunId": event.run_id, "WorkflowName": event.workflow_name,
            "NodeName": event.node_name, "EventType": event.reason, "Message": event.message,
        });
        let mut extended = kfp.clone();
        let more = json!({
            "Namespace": event.namespace, "EventUid": event.event_uid,
            "EventTime": opt(&event.event_time), "EventSeverity": event.event_type,
            "EventCount": event.event_count, "WorkflowUid": opt(&event.workflow_uid),
            "Phase": opt(&event.phase), "StartedAt": opt(&event.started_at),
            "FinishedAt": opt(&event.finished_at),
            "WorkflowMessage": opt(&event.workflow_message), "RunName": opt(&event.run_name),
            "PipelineName": opt(&event.pipeline_name),
            "RecurringRunName": opt(&event.recurring_run_name),
            "Parameters": {}, "Labels": {},
            "Node": event.node.as_ref().map(|n| json!({
                "Id": n.id, "Name": n.name, "FullName": n.full_name,
                "DisplayName": n.display_name, "Type": n.node_type, "Phase": n.phase,
                "Message": n.message, "TemplateName": n.template_name,
                "StartedAt": n.started_at, "FinishedAt": n.finished_at,
            })),
            "Attempt": event.attempt, "Synthesized": event.synthesized,
        });
        extended
            .as_object_mut()
            .unwrap()
            .extend(more.as_object().unwrap().clone());
        match event.format {
            PayloadFormat::Kfp => Payload::from_json(&kfp),
            PayloadFormat::Extended => Payload::from_json(&extended),
            PayloadFormat::Cloudevents => Payload::new(
                json!({"specversion": "1.0", "id": event.id, "type": "t", "source": "s",
                       "subject": event.workflow_name, "datacontenttype": "application/json",
                       "data": extended})
                .to_string(),
                "application/cloudevents+json",
            ),
        }
    }

    #[test]
    fn the_card_of_a_rendered_payload_is_read_from_the_event_as_from_the_body() {
        let p = plugin(json!({"kfp_ui_url": "https://k/{run_id}/{node_name}"}));
        let workflow = Event {
            run_name: "nightly training".into(),
            pipeline_name: "training".into(),
            started_at: "2025-01-31T12:00:00Z".into(),
            finished_at: "2025-01-31T12:05:00Z".into(),
            event_time: "2025-01-31T12:05:01Z".into(),
            ..failed()
        };
        let node = Event {
            reason: "WorkflowNodeFailed".into(),
            message: "Failed node train-x7k2p.train: OOMKilled".into(),
            node_name: "train".into(),
            phase: String::new(),
            node: Some(Node {
                name: "train".into(),
                full_name: "train-x7k2p.train".into(),
                display_name: Some("Train the model".into()),
                message: Some("OOMKilled".into()),
                ..Node::default()
            }),
            ..workflow.clone()
        };
        let node_without_names = Event {
            run_name: String::new(),
            node: Some(Node {
                display_name: Some(String::new()),
                message: Some("exit code 1".into()),
                ..Node::default()
            }),
            ..node.clone()
        };
        let unread = Payload::new("not the body", "application/json");
        for event in [workflow, node, node_without_names] {
            for format in [
                PayloadFormat::Kfp,
                PayloadFormat::Extended,
                PayloadFormat::Cloudevents,
            ] {
                let event = Event {
                    format,
                    ..event.clone()
                };
                let lazy = LazyEvent::from(&event);
                let read = p.handle(&lazy, &LazyPayload::new(&rendering(&event), false));
                let rendered = p.handle(&lazy, &LazyPayload::new(&unread, true));
                assert_eq!(rendered, read, "{format:?} {event:?}");
            }
        }
    }
}
