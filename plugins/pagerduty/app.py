"""pagerduty: a kfp-event-router plugin (Python) that turns failed KFP runs into PagerDuty
Events API v2 `trigger` events and recovered runs into `resolve` events, one incident per run
(dedup_key from the run id). Other events are dropped. See README.md."""

import kfp_plugin as kfp
from wit_world import exports
from wit_world.exports.transform import Action, Event, Payload

KNOWN = ["routing_key", "severity", "source", "kfp_ui_url", "dedup_prefix"]
SEVERITIES = ["critical", "error", "warning", "info"]


class Settings:
    """The checked configuration. Kept at module level: componentize-py makes a new
    `Transform` object for every call."""

    def __init__(self, config: str) -> None:
        settings = kfp.parse_config(config, KNOWN)
        self.routing_key = settings.get("routing_key")
        if not isinstance(self.routing_key, str) or not self.routing_key:
            raise kfp.Err("invalid plugin config: routing_key (the integration key) is required")
        self.severity = settings.get("severity", "error")
        if self.severity not in SEVERITIES:
            raise kfp.Err(f"invalid plugin config at severity: use one of {SEVERITIES}")
        self.source = settings.get("source")
        self.kfp_ui_url = settings.get("kfp_ui_url")
        self.dedup_prefix = settings.get("dedup_prefix", "kfp-run-")


settings: Settings = None  # set by init


class Transform(exports.Transform):
    def init(self, config: str) -> None:
        global settings
        settings = Settings(config)

    def handle(self, event: Event, payload: Payload) -> Action:
        s = settings
        if event.node is not None or event.task is not None:
            return kfp.DROP
        outcome = kfp.outcome(event)
        if outcome not in ("failed", "succeeded"):
            return kfp.DROP
        run = event.run_id or f"{event.namespace}/{event.workflow_name}"
        body = {
            "routing_key": s.routing_key,
            "event_action": "trigger" if outcome == "failed" else "resolve",
            "dedup_key": s.dedup_prefix + run,
        }
        if outcome == "succeeded":
            return kfp.replace_json(body)
        summary = f"KFP run {kfp.display_name(event)} failed in {event.namespace}"
        why = event.workflow_message or event.message
        if why:
            summary += f": {why}"
        details = {
            "run_id": event.run_id,
            "run_name": event.run_name,
            "pipeline": event.pipeline_name,
            "workflow": event.workflow_name,
            "phase": event.phase,
            "attempt": event.attempt,
            "started_at": event.started_at,
            "finished_at": event.finished_at,
            "reason": event.reason,
            "parameters": dict(event.parameters),
        }
        body["payload"] = {
            "summary": summary[:1024],
            "source": s.source or f"{event.namespace}/{event.workflow_name}",
            "severity": s.severity,
            "timestamp": event.finished_at or event.event_time,
            "component": event.pipeline_name or event.workflow_name,
            "group": event.namespace,
            "class": event.reason,
            "custom_details": {k: v for k, v in details.items() if v not in (None, "", {})},
        }
        body["client"] = "kfp-event-router"
        url = kfp.fill(s.kfp_ui_url, event) if s.kfp_ui_url else None
        if url:
            body["client_url"] = url
            body["links"] = [{"href": url, "text": "Run in Kubeflow Pipelines"}]
        kfp.log("debug", f"triggering {body['dedup_key']}")
        return kfp.replace_json(body)
