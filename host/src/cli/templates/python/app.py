"""{{name}}: a kfp-event-router plugin (Python) that adds a configured field to every JSON
object payload. Edit `handle` to make it yours; see README.md."""

import json

import kfp_plugin as kfp
from wit_world import exports
from wit_world.exports.transform import Action, Event, Payload

# Set by init. componentize-py makes a new `Transform` for every call: keep state here.
field = ("", None)


class Transform(exports.Transform):
    def init(self, config: str) -> None:
        global field
        settings = kfp.parse_config(config, ["name", "value"])
        if "name" not in settings or "value" not in settings:
            raise kfp.Err("invalid plugin config: `name` and `value` are required")
        field = (settings["name"], settings["value"])

    def handle(self, event: Event, payload: Payload) -> Action:
        try:
            body = json.loads(payload.body)
        except ValueError:
            return kfp.PASS  # not JSON: leave it alone
        if not isinstance(body, dict):
            return kfp.PASS
        body[field[0]] = field[1]
        return kfp.replace_json(body)
