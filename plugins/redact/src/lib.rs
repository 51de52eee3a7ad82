//! `redact`: a kfp-event-router plugin that removes or masks fields of JSON
//! payloads before they leave the cluster. See README.md.

use std::collections::BTreeMap;

use kfp_event_router_sdk::serde_json::{self, Value};
use kfp_event_router_sdk::{
    Action, Config, LazyEvent, LazyPayload, LazyPlugin, Payload, PayloadFormat, log,
};
use serde::Deserialize;
use serde::de::IgnoredAny;

/// What masked values become.
const MASK: &str = "***";

/// Configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    /// Paths to remove.
    drop: Vec<String>,
    /// Paths whose values are replaced by `***`.
    mask: Vec<String>,
    /// Names of run parameters (keys of `Parameters`) to mask; `*` masks all.
    mask_parameters: Vec<String>,
}

/// A parsed path: the reference tokens of a JSON pointer.
type Path = Vec<String>;

/// Parses `/a/b~1c` (RFC 6901 JSON pointer) or a bare top-level key `Key`.
fn parse_path(path: &str) -> Result<Path, String> {
    let tokens: Path = match path.strip_prefix('/') {
        Some(pointer) => pointer
            .split('/')
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect(),
        None => vec![path.to_owned()],
    };
    if path.is_empty() || tokens.iter().all(String::is_empty) {
        return Err(format!(
            "path {path:?} must name a field, e.g. \"Parameters\" or \"/Node/Message\""
        ));
    }
    Ok(tokens)
}

/// The redaction plugin.
pub struct Redact {
    drop: Vec<Path>,
    mask: Vec<Path>,
    mask_parameters: Vec<String>,
}

fn child<'a>(value: &'a mut Value, token: &str) -> Option<&'a mut Value> {
    match value {
        Value::Object(map) => map.get_mut(token),
        Value::Array(items) => items.get_mut(token.parse::<usize>().ok()?),
        _ => None,
    }
}

fn resolve<'a>(mut value: &'a mut Value, tokens: &[String]) -> Option<&'a mut Value> {
    for token in tokens {
        value = child(value, token)?;
    }
    Some(value)
}

/// Removes the value at `path`; true if something was removed.
fn remove(root: &mut Value, path: &[String]) -> bool {
    let Some((last, parent)) = path.split_last() else {
        return false;
    };
    match resolve(root, parent) {
        Some(Value::Object(map)) => map.remove(last).is_some(),
        Some(Value::Array(items)) => match last.parse::<usize>() {
            Ok(i) if i < items.len() => {
                items.remove(i);
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// Masks every scalar in `value` (nulls stay null); true if anything changed.
fn mask(value: &mut Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) if s == MASK => false,
        Value::Object(map) => map.values_mut().fold(false, |changed, v| mask(v) | changed),
        Value::Array(items) => items.iter_mut().fold(false, |changed, v| mask(v) | changed),
        _ => {
            *value = Value::String(MASK.to_owned());
            true
        }
    }
}

/// The run parameters of a JSON payload, read without building the rest of it: the
/// `Parameters` of the body, or of the `data` of a CloudEvents envelope.
#[derive(Deserialize)]
struct Probe {
    #[serde(rename = "Parameters", default)]
    parameters: Option<BTreeMap<String, IgnoredAny>>,
    #[serde(default)]
    specversion: Option<IgnoredAny>,
    #[serde(default)]
    data: Option<Box<Probe>>,
}

impl Redact {
    /// Whether a parameter of that name is masked.
    fn masks_parameter(&self, name: &str) -> bool {
        self.mask_parameters.iter().any(|n| n == "*" || n == name)
    }

    /// Whether the configuration cannot change the router's rendering of `event`, decided
    /// from the event without reading the body: it only masks parameters, and the rendering
    /// has none of those. The `kfp` format renders no `Parameters` (`host/src/payload/format/
    /// kfp.rs`); `extended` renders the event's parameters as `Parameters`, and `cloudevents`
    /// wraps `extended` in `data` (`host/src/payload/format/extended.rs`, `cloudevents.rs`,
    /// where `parameters` and the event's are both the workflow's).
    fn leaves_rendering_alone(&self, event: &LazyEvent) -> bool {
        if !self.drop.is_empty() || !self.mask.is_empty() {
            return false;
        }
        match event.format() {
            PayloadFormat::Kfp => true,
            PayloadFormat::Extended | PayloadFormat::Cloudevents => {
                self.mask_parameters.is_empty()
                    || !event
                        .parameter_names()
                        .iter()
                        .any(|name| self.masks_parameter(name))
            }
        }
    }

    /// Whether the configuration cannot change `body`: it only masks parameters, and the
    /// payload has none of those. False whenever that is not certain (a body this reading
    /// refuses is read the general way), so that nothing is let through unredacted.
    fn leaves_alone(&self, body: &[u8]) -> bool {
        if !self.drop.is_empty() || !self.mask.is_empty() {
            return false;
        }
        let Ok(probe) = serde_json::from_slice::<Probe>(body) else {
            return false;
        };
        let parameters = match (probe.specversion, probe.data) {
            (Some(_), Some(data)) => data.parameters,
            _ => probe.parameters,
        };
        parameters
            .unwrap_or_default()
            .keys()
            .all(|name| !self.masks_parameter(name))
    }

    /// Applies the configuration to a KFP event object; true if anything changed.
    fn redact(&self, object: &mut Value) -> bool {
        let mut changed = false;
        for path in &self.drop {
            changed |= remove(object, path);
        }
        for path in &self.mask {
            if let Some(v) = resolve(object, path) {
                changed |= mask(v);
            }
        }
        if !self.mask_parameters.is_empty()
            && let Some(Value::Object(params)) = object.get_mut("Parameters")
        {
            for (name, value) in params.iter_mut() {
                if self.masks_parameter(name) {
                    changed |= mask(value);
                }
            }
        }
        changed
    }
}

impl LazyPlugin for Redact {
    fn init(config: Config) -> Result<Self, String> {
        let settings: Settings = config.parse()?;
        let parse_all = |paths: &[String], field: &str| {
            paths
                .iter()
                .map(|p| {
                    parse_path(p).map_err(|e| format!("invalid plugin config at {field}: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self {
            drop: parse_all(&settings.drop, "drop")?,
            mask: parse_all(&settings.mask, "mask")?,
            mask_parameters: settings.mask_parameters,
        })
    }

    fn handle(&self, event: &LazyEvent, payload: &LazyPayload) -> Result<Action, String> {
        let content_type = payload.content_type();
        if !Payload::is_json_type(&content_type) {
            log::trace(format!(
                "{content_type} payload for {} is not JSON; left unchanged",
                event.endpoint()
            ));
            return Ok(Action::Pass);
        }
        if payload.rendered() && self.leaves_rendering_alone(event) {
            return Ok(Action::Pass);
        }
        let body = payload.body();
        if self.leaves_alone(&body) {
            return Ok(Action::Pass);
        }
        // Fail closed: a body that claims to be JSON but isn't can't be redacted.
        let mut root: Value =
            serde_json::from_slice(&body).map_err(|e| format!("payload is not valid JSON: {e}"))?;
        let is_cloudevent =
            root.get("specversion").is_some() && root.get("data").is_some_and(Value::is_object);
        let target = if is_cloudevent {
            &mut root["data"]
        } else {
            &mut root
        };
        if !self.redact(target) {
            return Ok(Action::Pass);
        }
        let body = kfp_event_router_sdk::serde_json::to_vec(&root).map_err(|e| e.to_string())?;
        Ok(Action::Replace {
            body,
            content_type: content_type.into_owned(),
            headers: Vec::new(),
        })
    }
}

kfp_event_router_sdk::export_lazy_plugin!(Redact);

#[cfg(test)]
mod tests {
    use super::*;
    use kfp_event_router_sdk::Event;
    use kfp_event_router_sdk::serde_json::json;

    fn extended() -> Value {
        json!({
            "KfpRunId": "run-1",
            "Message": "failed",
            "Parameters": {"learning_rate": "0.1", "api_token": "s3cret", "db_password": "pw"},
            "Labels": {"team": "a"},
            "Node": {"Id": "n1", "Message": "secret in logs", "Phase": "Failed"},
        })
    }

    fn handle(
        p: &Redact,
        event: &Event,
        payload: &Payload,
        rendered: bool,
    ) -> Result<Action, String> {
        p.handle(
            &LazyEvent::from(event),
            &LazyPayload::new(payload, rendered),
        )
    }

    fn run(config: Value, payload: Payload) -> Action {
        let p = Redact::init(Config::from(config)).unwrap();
        handle(&p, &Event::default(), &payload, false).unwrap()
    }

    #[test]
    fn drops_and_masks() {
        let action = run(
            json!({
                "drop": ["Labels", "/Node/Message"],
                "mask": ["/Message"],
                "mask_parameters": ["api_token", "db_password"],
            }),
            Payload::from_json(&extended()),
        );
        assert_eq!(
            action.json_body().unwrap(),
            json!({
                "KfpRunId": "run-1",
                "Message": "***",
                "Parameters": {"learning_rate": "0.1", "api_token": "***", "db_password": "***"},
                "Node": {"Id": "n1", "Phase": "Failed"},
            })
        );
        let Action::Replace { content_type, .. } = action else {
            panic!()
        };
        assert_eq!(content_type, "application/json");
    }

    #[test]
    fn masks_objects_recursively_and_all_parameters() {
        let body = run(
            json!({"mask": ["Node"], "mask_parameters": ["*"]}),
            Payload::from_json(&extended()),
        )
        .json_body()
        .unwrap();
        assert_eq!(
            body["Node"],
            json!({"Id": "***", "Message": "***", "Phase": "***"})
        );
        assert_eq!(body["Parameters"]["learning_rate"], "***");
    }

    #[test]
    fn applies_to_cloudevents_data() {
        let ce = json!({"specversion": "1.0", "id": "x", "data": extended()});
        let payload = Payload::new(ce.to_string(), "application/cloudevents+json");
        let body = run(json!({"drop": ["Parameters"]}), payload)
            .json_body()
            .unwrap();
        assert_eq!(body["id"], "x");
        assert!(body["data"].get("Parameters").is_none());
        assert_eq!(body["data"]["KfpRunId"], "run-1");
    }

    #[test]
    fn unchanged_payloads_pass() {
        let config = json!({"drop": ["/Missing/Path", "/Parameters/none"], "mask": ["/Nope"]});
        assert_eq!(
            run(config.clone(), Payload::from_json(&extended())),
            Action::Pass
        );
        assert_eq!(
            run(config, Payload::new("token=s3cret", "text/plain")),
            Action::Pass
        );
        assert_eq!(
            run(
                json!({"mask_parameters": ["x"]}),
                Payload::from_json(&json!({"KfpRunId": "r"}))
            ),
            Action::Pass
        );
    }

    #[test]
    fn only_payloads_with_a_parameter_to_mask_are_changed() {
        let config = json!({"mask_parameters": ["p"]});
        let masked = |action: Action| match action {
            Action::Replace { body, .. } => serde_json::from_slice::<Value>(&body).unwrap(),
            other => panic!("expected a replacement, got {other:?}"),
        };
        let other = json!({"KfpRunId": "r", "Parameters": {"q": "1"}, "Message": "x"});
        assert_eq!(
            run(config.clone(), Payload::from_json(&other)),
            Action::Pass
        );
        let plain = json!({"KfpRunId": "r", "Parameters": {"q": "1", "p": "s3cret"}});
        let body = masked(run(config.clone(), Payload::from_json(&plain)));
        assert_eq!(body["Parameters"], json!({"q": "1", "p": "***"}));
        // In a CloudEvents envelope, the parameters are those of `data`.
        let cloud = json!({"specversion": "1.0", "Parameters": {},
                           "data": {"Parameters": {"p": "s3cret"}}});
        let body = masked(run(config.clone(), Payload::from_json(&cloud)));
        assert_eq!(body["data"]["Parameters"]["p"], "***");
        // `Parameters` given twice, or not an object: read the general way, which masks
        // what it finds.
        let twice = r#"{"Parameters": {"q": "1"}, "Parameters": {"p": "s3cret"}}"#;
        let body = masked(run(config.clone(), Payload::new(twice, "application/json")));
        assert_eq!(body["Parameters"]["p"], "***");
        let odd = json!({"Parameters": ["p"], "data": "x", "specversion": "1.0"});
        assert_eq!(run(config, Payload::from_json(&odd)), Action::Pass);
    }

    #[test]
    fn pointer_escapes_and_array_indexes() {
        let payload = Payload::from_json(&json!({"a/b": {"~c": 1}, "list": [1, 2, 3]}));
        let body = run(json!({"mask": ["/a~1b/~0c"], "drop": ["/list/1"]}), payload)
            .json_body()
            .unwrap();
        assert_eq!(body, json!({"a/b": {"~c": "***"}, "list": [1, 3]}));
    }

    #[test]
    fn invalid_json_is_an_error_and_bad_paths_are_rejected() {
        let p = Redact::init(Config::from(json!({"mask": ["Message"]}))).unwrap();
        let payload = Payload::new("{not json", "application/json");
        assert!(handle(&p, &Event::default(), &payload, false).is_err());
        let err = Redact::init(Config::from(json!({"drop": ["/"]})))
            .err()
            .unwrap();
        assert!(err.contains("at drop"), "{err}");
    }

    /// An event with run parameters, and the router's rendering of it in `format`: the keys
    /// `host/src/payload/format/{kfp,extended,cloudevents}.rs` write, by hand.
    fn rendered(format: PayloadFormat) -> (Event, Payload) {
        let event = Event {
            reason: "WorkflowFailed".into(),
            message: "failed".into(),
            workflow_name: "wf".into(),
            run_id: "run-1".into(),
            parameters: vec![
                ("api_token".into(), "s3cret".into()),
                ("learning_rate".into(), "0.1".into()),
            ],
            format,
            ..Event::default()
        };
        let kfp = json!({"KfpRunId": "run-1", "WorkflowName": "wf", "NodeName": "",
                         "EventType": "WorkflowFailed", "Message": "failed"});
        let mut extended = kfp.clone();
        extended["Namespace"] = "team-a".into();
        extended["Parameters"] = json!({"api_token": "s3cret", "learning_rate": "0.1"});
        extended["Node"] = Value::Null;
        let payload = match format {
            PayloadFormat::Kfp => Payload::from_json(&kfp),
            PayloadFormat::Extended => Payload::from_json(&extended),
            PayloadFormat::Cloudevents => Payload::new(
                json!({"specversion": "1.0", "id": "x", "data": extended}).to_string(),
                "application/cloudevents+json",
            ),
        };
        (event, payload)
    }

    #[test]
    fn rendered_bodies_are_redacted_as_when_read() {
        let formats = [
            PayloadFormat::Kfp,
            PayloadFormat::Extended,
            PayloadFormat::Cloudevents,
        ];
        let configs = [
            json!({}),
            json!({"mask_parameters": ["seed"]}),
            json!({"mask_parameters": ["api_token"]}),
            json!({"mask_parameters": ["*"]}),
            json!({"mask_parameters": ["seed"], "drop": ["Message"]}),
        ];
        for format in formats {
            let (event, payload) = rendered(format);
            for config in &configs {
                let p = Redact::init(Config::from(config.clone())).unwrap();
                assert_eq!(
                    handle(&p, &event, &payload, true),
                    handle(&p, &event, &payload, false),
                    "{format:?} {config}"
                );
            }
        }
        // Still masked when the rendering has a parameter to mask.
        let (event, payload) = rendered(PayloadFormat::Cloudevents);
        let p = Redact::init(Config::from(json!({"mask_parameters": ["api_token"]}))).unwrap();
        let body = handle(&p, &event, &payload, true)
            .unwrap()
            .json_body()
            .unwrap();
        assert_eq!(
            body["data"]["Parameters"],
            json!({"api_token": "***", "learning_rate": "0.1"})
        );
    }

    #[test]
    fn a_rendered_body_without_parameters_to_mask_is_not_read() {
        // A body that cannot be read shows whether it was.
        let unread = Payload::new("{not read", "application/json");
        let p = Redact::init(Config::from(json!({"mask_parameters": ["*"]}))).unwrap();
        let (kfp, _) = rendered(PayloadFormat::Kfp);
        assert_eq!(handle(&p, &kfp, &unread, true), Ok(Action::Pass));
        let (extended, _) = rendered(PayloadFormat::Extended);
        let no_parameters = Event {
            parameters: Vec::new(),
            ..extended.clone()
        };
        assert_eq!(handle(&p, &no_parameters, &unread, true), Ok(Action::Pass));
        assert!(handle(&p, &extended, &unread, true).is_err());
        assert!(handle(&p, &kfp, &unread, false).is_err());
    }
}
