//! `{{name}}`: a kfp-event-router plugin that adds a configured field to every JSON object
//! payload. Edit `handle` to make it yours; see README.md.
use kfp_event_router_sdk::serde_json::Value;
use kfp_event_router_sdk::{Action, Config, Event, Payload, Plugin};

/// Configuration and plugin in one: `name = "Cluster"`, `value = "prod-eu"`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddField {
    name: String,
    value: Value,
}

impl Plugin for AddField {
    fn init(config: Config) -> Result<Self, String> {
        config.parse()
    }

    fn handle(&self, _event: &Event, payload: Payload) -> Result<Action, String> {
        if !payload.is_json() {
            return Ok(Action::Pass); // not JSON: leave it alone
        }
        let mut body = payload.json_value()?;
        let Some(object) = body.as_object_mut() else {
            return Ok(Action::Pass);
        };
        object.insert(self.name.clone(), self.value.clone());
        Ok(Action::replace(body.to_string(), payload.content_type))
    }
}

kfp_event_router_sdk::export_plugin!(AddField);

#[cfg(test)]
mod tests {
    use super::*;
    use kfp_event_router_sdk::serde_json::json;

    #[test]
    fn adds_the_field() {
        let plugin =
            AddField::init(Config::new(r#"{"name": "Cluster", "value": "prod-eu"}"#)).unwrap();
        let payload = Payload::from_json(&json!({"KfpRunId": "r1"}));
        let action = plugin.handle(&Event::default(), payload).unwrap();
        assert_eq!(
            action.json_body(),
            Some(json!({"KfpRunId": "r1", "Cluster": "prod-eu"}))
        );
        let text = Payload::new("hello", "text/plain");
        assert_eq!(plugin.handle(&Event::default(), text), Ok(Action::Pass));
    }
}
