"""Applies the node-to-task mapping rules of README.md to a recording (our own code).

Used by generate.py to write the <name>.EXPECTED.md tables, so the tables are what the rules
give, and by check.py. It reads only what a subscriber has: the recording's lines.
"""

import json
import re

PHASE_RE = re.compile(r"^(Running|Succeeded|Failed|Error|Pending|Skipped|Omitted) node (.+)$")
COMBINED = "(combined from similar events): "
ITER_RE = re.compile(r"^(?:iteration-iterations|(?P<t>.+)-iterations)\((?P<i>\d+):(?P<item>[^)]*)\)$")
ATTEMPT_RE = re.compile(r"^(.*)\((\d+)\)$")


def fnv32a(text):
    h = 0x811C9DC5
    for b in text.encode("utf-8"):
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def node_id(wf, name):
    return wf if name == wf else "%s-%d" % (wf, fnv32a(name))


def node_name_of(event, wf_name):
    """The full node name: annotation if present, else parsed from the message."""
    ann = (event["metadata"].get("annotations") or {}).get("workflows.argoproj.io/node-name")
    if ann:
        return ann
    msg = event.get("message", "")
    if msg.startswith(COMBINED):
        msg = msg[len(COMBINED):]
    m = PHASE_RE.match(msg)
    if not m:
        return None
    rest = m.group(2)
    # "<name>: <node message>": node names never contain ": " (KFP v2 names never contain ':'
    # outside "(i:i)"; Argo item suffixes are "(i:item)" without a space after the colon)
    return rest.split(": ", 1)[0]


def kind_of(wf):
    labels = wf["metadata"].get("labels", {})
    pod_labels = (wf["spec"].get("podMetadata") or {}).get("labels", {})
    if "pipeline/runid" not in labels:
        return "argo"
    if pod_labels.get("pipelines.kubeflow.org/v2_component") == "true" or \
            any(t["name"] == "system-dag-driver" for t in wf["spec"]["templates"]):
        return "kfp-v2"
    return "kfp-v1"


class Graph:
    def __init__(self, wf):
        self.wf = wf
        self.name = wf["metadata"]["name"]
        self.nodes = wf["status"].get("nodes", {})
        self.parents = {}
        for n in self.nodes.values():
            for c in n.get("children", []):
                self.parents.setdefault(c, []).append(n["id"])
        self.templates = {t["name"]: t for t in wf["spec"]["templates"]}

    def get(self, name):
        return self.nodes.get(node_id(self.name, name))

    def is_attempt(self, n):
        """(a') retry attempt: a child of a Retry node."""
        return any(self.nodes[p]["type"] == "Retry" for p in self.parents.get(n["id"], []) if p in self.nodes)

    def base_display(self, n):
        """displayName without a retry-attempt suffix."""
        d = n["displayName"]
        if self.is_attempt(n):
            m = ATTEMPT_RE.match(d)
            if m:
                return m.group(1)
        return d

    def boundary(self, n):
        b = n.get("boundaryID")
        return self.nodes.get(b) if b else None

    def sibling(self, n, display):
        """The node `<boundary name>.<display>` (the Retry parent in layout a')."""
        b = self.boundary(n)
        return self.get("%s.%s" % (b["name"], display)) if b else None

    # --- KFP v2 --------------------------------------------------------------------------
    def v2_kind(self, n):
        if n["name"] == self.name or self.is_attempt(n):
            return None
        t = n["templateName"]
        d = self.base_display(n)
        if t == "system-container-executor" or t.endswith("-system-container-executor"):
            return "container"
        if t in ("system-container-driver", "system-dag-driver"):
            return "driver"
        if n["type"] in ("DAG", "Retry") and t.endswith("-iterator"):
            return "loop"  # 2.4.1+: T (template comp-X-T-iterator); 2.4.0: T-loop
        if n["type"] == "TaskGroup" and d.endswith("-iterations") and d != "iteration-iterations":
            return "loop"  # 2.0-2.3: T-iterations TaskGroup
        if ITER_RE.match(d):
            return "iteration"
        if d in ("root", "iteration-item", "iteration", "executor") or n["type"] in ("TaskGroup", "Skipped"):
            return None
        if n["type"] in ("DAG", "Retry") and self.sibling(n, d + "-driver") is not None:
            return "dag"  # sub-pipeline / condition / exit-handler group
        return None

    def v2_task_of(self, n):
        """(kind, task key, display name, iteration index, DAG path) of a task node, else None.
        Driver failures are attributed to their task."""
        kind = self.v2_kind(n)
        d = self.base_display(n)
        if kind == "driver":
            if n["phase"] not in ("Failed", "Error") or not d.endswith("-driver") or \
                    d in ("root-driver", "iteration-driver", "iteration-item-driver"):
                return None
            kind, d = "container-driver", d[:-len("-driver")]
        if kind not in ("container", "loop", "dag", "container-driver"):
            return None
        key = d
        if kind == "loop":
            if key.endswith("-loop"):
                key = key[:-len("-loop")]
            elif key.endswith("-iterations"):
                key = key[:-len("-iterations")]
        display = self.v2_display(n, key, kind)
        index, path = self.v2_context(n)
        return ("loop" if kind == "loop" else "container" if kind.startswith("container") else "dag",
                key, display, index, path)

    def v2_display(self, n, key, kind):
        """taskInfo.name from the `task` input of the task's driver."""
        drivers = []
        b = self.boundary(n)
        if kind == "loop":
            own = n if not self.is_attempt(n) else None
            # 2.4.1+: <T>.iteration-driver under T (or under T's attempt)
            for cand in (n["name"], n["name"] + "(0)"):
                drivers.append("%s.iteration-driver" % cand)
            if b:
                drivers.append("%s.%s-driver" % (b["name"], key))  # 2.0-2.3
        elif b:
            drivers.append("%s.%s-driver" % (b["name"], key))
        for name in drivers:
            dn = self.get(name)
            if not dn:
                continue
            for p in (dn.get("inputs") or {}).get("parameters", []):
                if p["name"] == "task" and p.get("value"):
                    try:
                        return json.loads(p["value"])["taskInfo"]["name"]
                    except (ValueError, KeyError):
                        pass
        return key

    def v2_context(self, n):
        """Nearest ParallelFor iteration index and the DAG path (task keys of enclosing DAG
        tasks), from the boundary chain."""
        index, path = None, []
        b = self.boundary(n)
        while b is not None:
            d = self.base_display(b)
            m = ITER_RE.match(d)
            if m and index is None:
                index = int(m.group("i"))
            k = self.v2_kind(b) if not self.is_attempt(b) else self.v2_kind(self.get(ATTEMPT_RE.match(b["name"]).group(1)))
            if k in ("loop", "dag"):
                key = d
                if key.endswith("-loop"):
                    key = key[:-5]
                path.insert(0, key)
            b = self.boundary(b)
        return index, "/".join(["root"] + path)

    # --- KFP v1 and plain Argo ----------------------------------------------------------
    def v1_task_of(self, n):
        if n["name"] == self.name or self.is_attempt(n):
            return None
        d = n["displayName"]
        if ITER_RE.match(d) or re.match(r"^.+\(\d+:.*\)$", d):
            return None  # iteration of a loop (index is read by v1_context)
        if n["type"] == "TaskGroup":
            kind = "loop"
        elif n["type"] in ("Pod", "Skipped", "Retry", "Container"):
            kind = "container"
        elif n["type"] in ("DAG", "Steps"):
            kind = "dag"
        else:
            return None
        tmpl = self.templates.get(n["templateName"], {})
        display = ((tmpl.get("metadata") or {}).get("annotations") or {}).get(
            "pipelines.kubeflow.org/task_display_name", d)
        index, path = None, []
        b = self.boundary(n)
        while b is not None:
            m = re.match(r"^(.+)\((\d+):(.*)\)$", b["displayName"])
            if m:
                if index is None:
                    index = int(m.group(2))
                path.insert(0, m.group(1))
            elif b["name"] != self.name:
                path.insert(0, b["displayName"])
            b = self.boundary(b)
        return kind, d, display, index, "/".join(["root"] + path)


def run_parameters(wf, kind):
    if kind == "kfp-v2":
        g = Graph(wf)
        for n in g.nodes.values():
            if g.base_display(n) == "root-driver" and n["type"] != "Retry":
                for p in n.get("inputs", {}).get("parameters", []):
                    if p["name"] == "runtime-config":
                        return json.loads(p["value"]).get("parameterValues", {})
        for t in wf["spec"]["templates"]:  # before the root driver node exists
            for task in (t.get("dag") or {}).get("tasks", []):
                for p in (task.get("arguments") or {}).get("parameters", []):
                    if p["name"] == "runtime-config":
                        return json.loads(p["value"]).get("parameterValues", {})
        return {}
    return {p["name"]: p.get("value") for p in wf["spec"].get("arguments", {}).get("parameters", [])}


def derive(path):
    """Rows: dict(line, source, attempt, level, task, display, iteration, path, reason, note)."""
    rows, seen = [], set()
    wf = None
    counts = {}
    attempt = 1
    prev_phase = None
    for no, text in enumerate(open(path), 1):
        line = json.loads(text)
        obj = line.get("object", line)
        typ = line.get("type", "")
        if obj["kind"] == "Workflow":
            if typ == "DELETED":
                continue
            phase = obj["status"].get("phase")
            if prev_phase in ("Failed", "Error", "Succeeded") and phase == "Running":
                attempt += 1
                rows.append(dict(line=no, source="Workflow (no Event)", attempt=attempt, level="run", task="",
                                 display="", iteration=None, path="", reason="WorkflowRunning",
                                 note="run retried: phase %s -> Running, same uid" % prev_phase))
                old = Graph(wf)
                new = Graph(obj)
                for nid, n in new.nodes.items():
                    o = old.nodes.get(nid)
                    if o and o["phase"] in ("Failed", "Error") and n["phase"] == "Running":
                        t = new.v2_task_of(n) if kind_of(obj) == "kfp-v2" else new.v1_task_of(n)
                        if t:
                            rows.append(dict(line=no, source="Workflow (no Event)", attempt=attempt, level="task",
                                             task=t[1], display=t[2], iteration=t[3], path=t[4],
                                             reason="WorkflowNodeRunning",
                                             note="reset to Running by the retry; no Event"))
            prev_phase = phase
            wf = obj
            continue
        if typ == "DELETED":
            continue
        name = obj["metadata"]["name"]
        if counts.get(name, 0) >= obj.get("count", 1):
            continue
        counts[name] = obj.get("count", 1)
        reason = obj["reason"]
        source = "%s count %d" % (typ or "object", obj.get("count", 1))
        if reason in ("WorkflowRunning", "WorkflowSucceeded", "WorkflowFailed"):
            key = (attempt, "run", reason)
            if key not in seen:
                seen.add(key)
                rows.append(dict(line=no, source=source, attempt=attempt, level="run", task="", display="",
                                 iteration=None, path="", reason=reason, note=obj.get("message", "")))
            continue
        if not reason.startswith("WorkflowNode"):
            continue
        g = Graph(wf)
        nname = node_name_of(obj, g.name)
        n = g.get(nname) if nname else None
        if n is None:
            continue
        kind = kind_of(wf)
        t = g.v2_task_of(n) if kind == "kfp-v2" else g.v1_task_of(n)
        if not t:
            continue
        key = (attempt, t[1], t[3], t[4], reason)
        if key in seen:
            continue
        seen.add(key)
        note = []
        if obj.get("message", "").startswith(COMBINED):
            note.append("roll-up")
        if reason == "WorkflowNodeFailed" or reason == "WorkflowNodeError":
            # the task's message is on its executor Pod (a, a') or on the Pod itself (v1, Argo)
            ex = g.get(n["name"] + ".executor") or g.get(n["name"] + "(0).executor")
            msg = (ex or n).get("message") or n.get("message")
            if msg:
                note.append(msg)
        if kind == "kfp-v2" and t[0] == "container" and reason == "WorkflowNodeSucceeded":
            ex = g.get(n["name"] + ".executor") or g.get(n["name"] + "(0).executor")
            if ex and ex["type"] == "Skipped":
                note.append("cache hit: executor Skipped (%s)" % ex.get("message", ""))
        rows.append(dict(line=no, source=source, attempt=attempt, level="task", task=t[1], display=t[2],
                         iteration=t[3], path=t[4], reason=reason, note="; ".join(note)))
    # omitted tasks: only in the final Workflow status
    if wf is not None:
        g = Graph(wf)
        kind = kind_of(wf)
        for n in g.nodes.values():
            if n["phase"] != "Omitted":
                continue
            t = g.v2_task_of(dict(n, phase="Omitted")) if kind == "kfp-v2" else g.v1_task_of(n)
            if t:
                rows.append(dict(line=None, source="final Workflow (no Event)", attempt=attempt, level="task",
                                 task=t[1], display=t[2], iteration=t[3], path=t[4], reason="(Omitted)",
                                 note=n.get("message", "")))
    return rows, wf
