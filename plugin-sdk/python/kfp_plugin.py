"""Helpers for kfp-event-router plugins written in Python (componentize-py).

The contract is `wit/0.2.0/world.wit` (kfp:event-router@0.2.0, which the router still runs);
componentize-py generates the `wit_world` bindings from it at build time. A plugin module defines `class Transform` with
`init(self, config: str) -> None` and `handle(self, event, payload) -> Action`; these helpers
keep that code short.
"""

import json
from typing import Any, Dict, Iterable, Optional, Tuple

from componentize_py_types import Err
from wit_world.exports.transform import (
    Action,
    Action_Drop,
    Action_Pass,
    Action_Replace,
    Event,
    Payload,
    Replacement,
)
from wit_world.imports import host

__all__ = [
    "Err", "PASS", "DROP", "parse_config", "replace_json", "json_body", "outcome",
    "display_name", "label", "parameter", "fill", "log",
]

#: Keep the payload unchanged and continue with the next plugin.
PASS: Action = Action_Pass()
#: Do not deliver this payload to this endpoint.
DROP: Action = Action_Drop()


def parse_config(config: str, known: Iterable[str]) -> Dict[str, Any]:
    """The configuration JSON as a dict; raises `Err` naming an unknown key."""
    try:
        settings = json.loads(config or "{}")
    except ValueError as e:
        raise Err(f"invalid plugin config: {e}")
    if not isinstance(settings, dict):
        raise Err("invalid plugin config: expected a table")
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise Err(f"invalid plugin config: unknown field `{unknown[0]}`, expected one of {sorted(known)}")
    return settings


def replace_json(value: Any, headers: Iterable[Tuple[str, str]] = ()) -> Action:
    """Replace the payload with `value` as `application/json` (keys in insertion order)."""
    body = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    return Action_Replace(Replacement(body, "application/json", list(headers)))


def json_body(payload: Payload) -> Any:
    """The payload body parsed as JSON; raises `Err` when it is not JSON."""
    try:
        return json.loads(payload.body)
    except ValueError as e:
        raise Err(f"payload is not valid JSON: {e}")


def outcome(event: Event) -> str:
    """`failed`, `succeeded`, `running` or `other`: from the reason, else the phase, else the type."""
    for word in (event.reason, event.phase or ""):
        if word.endswith(("Failed", "Error", "TimedOut", "Failure")):
            return "failed"
        if word.endswith("Succeeded"):
            return "succeeded"
        if word.endswith(("Running", "Pending")):
            return "running"
    return "failed" if event.event_type.lower() == "warning" else "other"


def display_name(event: Event) -> str:
    """The run name, else the workflow name."""
    return event.run_name or event.workflow_name


def label(event: Event, key: str) -> Optional[str]:
    """The value of workflow label `key`, if present."""
    return next((v for k, v in event.labels if k == key), None)


def parameter(event: Event, name: str) -> Optional[str]:
    """The value of run parameter `name`, if present."""
    return next((v for k, v in event.parameters if k == name), None)


def fill(template: str, event: Event) -> Optional[str]:
    """`template` with `{run_id}`, `{namespace}`, `{workflow_name}` filled; None when one is unknown."""
    values = {"run_id": event.run_id, "namespace": event.namespace, "workflow_name": event.workflow_name}
    if any(f"{{{k}}}" in template and not v for k, v in values.items()):
        return None
    for k, v in values.items():
        template = template.replace(f"{{{k}}}", v or "")
    return template


def log(level: str, message: str) -> None:
    """Writes to the router's log: `level` is trace, debug, info, warn or error."""
    host.log(host.Level[level.upper()], message)
