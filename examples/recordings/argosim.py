"""A small model of what Argo Workflows' controller and client-go write to the API server.

Our own code (no upstream code is copied). It models, for the recordings in this folder:

* node naming and ids: `<boundary name>.<task>`, `(i:item)` for expanded tasks, `(n)` for retry
  attempts; id = `<wf>-<fnv32a(name)>` (root node id = wf name), pod name v2 =
  `<wf>-<template>-<fnv32a(name)>`, v1 = node id
  (argo `Workflow.NodeID`, `workflow/util/pod_name.go GeneratePodName`);
* `displayName` = name minus the boundary node's name and a leading `.`
  (`operator.go initializeNode`);
* `children` / `outboundNodes` per `dag.go executeDAGTask.connectDependencies` and
  `operator.go getOutboundNodes`; `progress` per `workflow/progress/updater.go`;
* node events per `operator.go recordNodePhaseChangeEvents / recordNodePhaseEvent` (recorded
  after the Workflow update of the pass; a node first seen completed, or going Pending ->
  completed, gets a synthetic Running first; Skipped/Omitted/Pending never produce one);
  workflow events per `markWorkflowPhase` (recorded before the update);
* client-go `tools/record` correlation: the aggregator keyed by source+involvedObject+type+
  reason (+reportingController/Instance, Argo's `customEventAggregatorFuncWithAnnotations`,
  annotations ignored by default) that turns the 10th distinct message within 600 s into a
  `(combined from similar events): ` Event without annotations, and the event logger that turns
  a repeat of the same key into a PATCH (count+1, lastTimestamp, message) of the same Event.

Times are integers in nanoseconds since the Unix epoch.
"""

import copy
import datetime
import json
import random
import re
import uuid as _uuid

DISPLAY_SEP = re.compile(r"^(\[\d+\])?\.")


def fnv32a(text):
    h = 0x811C9DC5
    for b in text.encode("utf-8"):
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def ts(t_ns):
    """RFC 3339 at whole seconds, as metav1.Time marshals."""
    return datetime.datetime.fromtimestamp(t_ns // 1_000_000_000, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def parse_ts(text):
    d = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    return int(d.timestamp()) * 1_000_000_000


def gojson(value, sort_keys=True):
    """Compact JSON as Go's encoding/json writes it (HTML characters escaped)."""
    text = json.dumps(value, sort_keys=sort_keys, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


EXECUTABLE = {"Pod", "HTTP", "Plugin", "Container", "Suspend"}
COMPLETED = {"Succeeded", "Failed", "Error"}
FULFILLED = COMPLETED | {"Skipped", "Omitted"}


class Sim:
    """One Workflow and the Events recorded about it, written as watch lines."""

    def __init__(self, *, wf_name, namespace, uid, created_ns, rv0, spec, metadata,
                 argo, seed, artifact_repository_ref, pod_name_format="v2",
                 main_logs_key=None, retry_layout=False):
        self.rng = random.Random(seed)
        self.wf_name = wf_name
        self.ns = namespace
        self.uid = uid
        self.rv = rv0
        self.argo = argo  # "3.3", "3.4", "4.0"
        self.pod_name_format = pod_name_format
        self.main_logs_key = main_logs_key
        self.retry_layout = retry_layout
        self.lines = []
        self.meta = copy.deepcopy(metadata)
        self.meta.update({"creationTimestamp": ts(created_ns), "generation": 1, "name": wf_name,
                          "namespace": namespace, "uid": uid, "resourceVersion": self.next_rv()})
        self.spec = spec
        self.status = {"finishedAt": None, "startedAt": None}
        self.artifact_repository_ref = artifact_repository_ref
        self.nodes = {}  # id -> node
        self.order = []  # creation order of ids
        self.internal = {}  # id -> {"start_ns":, "pass":}
        self.pass_no = 0
        self.in_pass = False
        self.evlog = {}  # correlation key -> event object (as stored)
        self.agg = {}  # (type, reason) -> {"keys": [...], "last": ns}
        self.event_index = []  # (line number, event name) for reports
        self.leaves = {}  # template name -> target task names (DAG leaves)
        self.emit("ADDED", self.workflow_object())

    # ----- plumbing -------------------------------------------------------------------------
    def next_rv(self):
        self.rv += self.rng.randint(3, 41)
        return str(self.rv)

    def emit(self, kind, obj):
        self.lines.append({"type": kind, "object": copy.deepcopy(obj)} if kind else copy.deepcopy(obj))

    def node_id(self, name):
        return self.wf_name if name == self.wf_name else "%s-%d" % (self.wf_name, fnv32a(name))

    def pod_name(self, node):
        if self.pod_name_format == "v1":
            return node["id"]
        return "%s-%s-%d" % (self.wf_name, node["templateName"], fnv32a(node["name"]))

    def node(self, name):
        return self.nodes[self.node_id(name)]

    def has(self, name):
        return self.node_id(name) in self.nodes

    def workflow_object(self):
        obj = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": self.meta,
               "spec": self.spec, "status": self.status}
        return copy.deepcopy(obj)

    # ----- passes ---------------------------------------------------------------------------
    def begin(self, t_ns):
        assert not self.in_pass
        self.in_pass = True
        self.pass_no += 1
        self.t = t_ns
        self.sub = 0
        self.old_phases = {i: n["phase"] for i, n in self.nodes.items()}

    def tick(self):
        """A few hundred microseconds to milliseconds of controller work."""
        self.sub += self.rng.randint(300_000, 4_000_000)
        return self.t + self.sub

    def init_node(self, name, ntype, template, boundary, phase, message=None, inputs=None,
                  node_flag=None):
        nid = self.node_id(name)
        assert nid not in self.nodes, name
        start = self.tick()
        node = {"id": nid, "name": name, "type": ntype, "templateName": template,
                "templateScope": "local/%s" % self.wf_name, "phase": phase,
                "startedAt": ts(start), "finishedAt": None}
        if boundary is not None:
            bnode = self.node(boundary)
            node["boundaryID"] = bnode["id"]
            node["displayName"] = DISPLAY_SEP.sub("", name[len(bnode["name"]):], count=1) \
                if name.startswith(bnode["name"]) else name
        else:
            node["displayName"] = name
        if node_flag is not None:
            node["nodeFlag"] = node_flag
        if inputs:
            node["inputs"] = {"parameters": copy.deepcopy(inputs)}
        if message:
            node["message"] = message
        if phase in FULFILLED:
            node["finishedAt"] = node["startedAt"]
        self.nodes[nid] = node
        self.order.append(nid)
        self.internal[nid] = {"start_ns": start, "pass": self.pass_no}
        return name

    def add_child(self, parent, child):
        p = self.node(parent)
        cid = self.node_id(child)
        p.setdefault("children", [])
        if cid not in p["children"]:
            p["children"].append(cid)

    def outbound(self, name):
        """operator.go getOutboundNodes"""
        n = self.node(name)
        t = n["type"]
        if t in ("Skipped", "Suspend", "HTTP", "Plugin", "Pod"):
            return [n["id"]]
        if t in ("Container", "TaskGroup"):
            if not n.get("children"):
                return [n["id"]]
            out = []
            for c in n["children"]:
                out += self.outbound(self.nodes[c]["name"])
            return out
        if t == "Retry" and n.get("children"):
            return [n["children"][-1]]
        out = []
        for o in n.get("outboundNodes", []):
            out += self.outbound(self.nodes[o]["name"])
        return out

    def connect(self, boundary, node_name, deps):
        """dag.go connectDependencies: no deps -> child of the boundary node, else child of the
        outbound nodes of every dependency's node."""
        if not deps:
            self.add_child(boundary, node_name)
            return
        for dep in deps:
            for oid in self.outbound(dep):
                self.add_child(self.nodes[oid]["name"], node_name)

    def set_phase(self, name, phase, message=None, outputs=None):
        n = self.node(name)
        n["phase"] = phase
        if message is not None:
            if message:
                n["message"] = message
            else:
                n.pop("message", None)
        if phase in FULFILLED:
            n["finishedAt"] = ts(self.tick())
        if outputs is not None:
            n["outputs"] = outputs
        return n

    def pod_running(self, name, host):
        n = self.set_phase(name, "Running")
        n["hostNodeName"] = host

    def pod_done(self, name, phase="Succeeded", message=None, params=None, exit_code="0",
                 cpu=1, mem=4, host=None):
        n = self.node(name)
        if host:
            n["hostNodeName"] = host
        outputs = {"exitCode": exit_code}
        if self.main_logs_key:
            outputs["artifacts"] = [{"name": "main-logs", "s3": {
                "key": self.main_logs_key.format(pod=self.pod_name(n)) + "/main.log"}}]
        if params:
            outputs["parameters"] = params
        self.set_phase(name, phase, message, outputs)
        n["resourcesDuration"] = {"cpu": cpu, "memory": mem}

    def dag_done(self, name, phase, template_leaves=None):
        """executeDAG: updateOutboundNodesForTargetTasks, then markNodePhase without message."""
        n = self.node(name)
        leaves = template_leaves if template_leaves is not None else self.leaves[n["templateName"]]
        out = []
        for leaf in leaves:
            leaf_name = "%s.%s" % (name, leaf)
            if self.has(leaf_name):
                out += self.outbound(leaf_name)
        n["outboundNodes"] = out
        self.set_phase(name, phase)

    # ----- progress (workflow/progress/updater.go) ------------------------------------------
    def update_progress(self):
        total = [0, 0]
        for nid in self.order:
            n = self.nodes[nid]
            if n["type"] not in EXECUTABLE:
                continue
            if "progress" not in n:
                n["progress"] = "0/1"
            if n["phase"] in ("Succeeded", "Skipped", "Omitted"):
                n["progress"] = "1/1"
            a, b = map(int, n["progress"].split("/"))
            total[0] += a
            total[1] += b
        for nid in self.order:
            n = self.nodes[nid]
            if n["type"] in EXECUTABLE:
                continue
            a, b = self._sum(n, set())
            if b > 0:
                n["progress"] = "%d/%d" % (a, b)
        self.status["progress"] = "%d/%d" % tuple(total)

    def _sum(self, node, visited):
        a = b = 0
        for cid in node.get("children", []):
            if cid in visited or cid not in self.nodes:
                continue
            visited.add(cid)
            child = self.nodes[cid]
            x, y = self._sum(child, visited)
            a, b = a + x, b + y
            if child["type"] in EXECUTABLE:
                x, y = map(int, child["progress"].split("/"))
                a, b = a + x, b + y
        return a, b

    # ----- commit a pass --------------------------------------------------------------------
    def workflow_phase(self, wf_phase, wf_message=""):
        """markWorkflowPhase: labels and status now, and the Workflow event is recorded now,
        i.e. before the Workflow of this pass is written."""
        assert self.in_pass
        labels = self.meta.setdefault("labels", {})
        if self.status.get("phase") == wf_phase:
            return
        labels["workflows.argoproj.io/phase"] = wf_phase
        labels.setdefault("workflows.argoproj.io/completed", "false")
        if self.status.get("startedAt") is None:
            self.status["startedAt"] = ts(self.t)
        self.status["phase"] = wf_phase
        if wf_phase == "Running":
            self.record("Normal", "WorkflowRunning", "Workflow Running")
        elif wf_phase == "Succeeded":
            self.record("Normal", "WorkflowSucceeded", "Workflow completed")
        elif wf_phase in ("Failed", "Error"):
            self.record("Warning", "WorkflowFailed", wf_message)
        if wf_message:
            self.status["message"] = wf_message
        if wf_phase in COMPLETED:
            labels["workflows.argoproj.io/completed"] = "true"
            self.status["finishedAt"] = ts(self.tick())
            conds = [c for c in self.status.get("conditions", []) if c["type"] != "Completed"]
            conds.append({"status": "True", "type": "Completed"})
            self.status["conditions"] = conds

    def commit(self, extra_status=None):
        """Writes the Workflow (one MODIFIED), then records the node Events of this pass."""
        assert self.in_pass
        self.write_workflow(extra_status)
        self.in_pass = False
        # recordNodePhaseChangeEvents: Go map iteration order, i.e. no order
        ids = list(self.nodes)
        self.rng.shuffle(ids)
        for nid in ids:
            new = self.nodes[nid]
            old = self.old_phases.get(nid)
            if old is not None:
                if old == new["phase"]:
                    continue
                if old == "Pending" and new["phase"] in COMPLETED:
                    self.node_event(new, "Running")
                self.node_event(new, new["phase"])
            else:
                if new["phase"] == "Running":
                    self.node_event(new, "Running")
                elif new["phase"] in COMPLETED:
                    self.node_event(new, "Running")
                    self.node_event(new, new["phase"])

    def write_workflow(self, extra_status=None):
        self.update_progress()
        running = any(n["type"] == "Pod" and n["phase"] == "Running" for n in self.nodes.values())
        conds = [c for c in self.status.get("conditions", []) if c["type"] != "PodRunning"]
        conds.insert(0, {"status": "True" if running else "False", "type": "PodRunning"})
        self.status["conditions"] = conds
        self.status["artifactRepositoryRef"] = self.artifact_repository_ref
        self.status["artifactGCStatus"] = {"notSpecified": True}
        cpu = sum(n.get("resourcesDuration", {}).get("cpu", 0) for n in self.nodes.values())
        mem = sum(n.get("resourcesDuration", {}).get("memory", 0) for n in self.nodes.values())
        if cpu:
            self.status["resourcesDuration"] = {"cpu": cpu, "memory": mem}
        if self.argo == "4.0":
            done = {}
            for nid in self.order:
                n = self.nodes[nid]
                if n["type"] == "Pod":
                    done[nid] = n["phase"] in COMPLETED
            if done:
                self.status["taskResultsCompletionStatus"] = done
        if extra_status:
            self.status.update(extra_status)
        self.status["nodes"] = {nid: self.nodes[nid] for nid in sorted(self.nodes)}
        self.meta["generation"] += 1
        self.meta["resourceVersion"] = self.next_rv()
        self.emit("MODIFIED", self.workflow_object())

    def label_only_update(self, t_ns, labels):
        """A write by another client (the KFP API server) that only changes labels: the
        generation stays the same (no status subresource; metadata changes don't bump it)."""
        self.meta.setdefault("labels", {}).update(labels)
        self.meta["resourceVersion"] = self.next_rv()
        self.emit("MODIFIED", self.workflow_object())

    # ----- events ---------------------------------------------------------------------------
    def node_event(self, node, phase):
        message = "%s node %s" % (phase, node["name"])
        if node.get("message"):
            # the ephemeral Running copy of a node first seen completed keeps its message
            message += ": " + node["message"]
        etype = "Normal" if phase in ("Succeeded", "Running") else "Warning"
        info = self.internal[node["id"]]
        if self.argo == "3.3":
            ann = {"workflows.argoproj.io/node-name": node["name"],
                   "workflows.argoproj.io/node-type": node["type"]}
        else:
            # startedAt is in-memory (nanoseconds) for nodes created in this pass, otherwise
            # it came back from the API server at whole seconds
            start = info["start_ns"] if info["pass"] == self.pass_no else parse_ts(node["startedAt"])
            ann = {"workflows.argoproj.io/node-id": node["id"],
                   "workflows.argoproj.io/node-name": node["name"],
                   "workflows.argoproj.io/node-start-time": str(start),
                   "workflows.argoproj.io/node-type": node["type"]}
        self.record(etype, "WorkflowNode" + phase, message, ann)

    def involved(self):
        return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "name": self.wf_name,
                "namespace": self.ns, "resourceVersion": self.meta["resourceVersion"],
                "uid": self.uid}

    def record(self, etype, reason, message, annotations=None):
        now = self.tick()
        reporting = "workflow-controller" if self.argo == "4.0" else ""
        rec = self.agg.get((etype, reason))
        if rec is None or now - rec["last"] > 600 * 1_000_000_000:
            rec = {"keys": [], "last": 0}
            self.agg[(etype, reason)] = rec
        if message not in rec["keys"]:
            rec["keys"].append(message)
        rec["last"] = now
        if len(rec["keys"]) < 10:
            key = ("event", etype, reason, message)
            ev_message, ev_ann, ev_reporting = message, annotations, reporting
        else:
            rec["keys"].remove(self.rng.choice(rec["keys"]))  # sets.String.PopAny
            key = ("aggregate", etype, reason)
            ev_message = "(combined from similar events): " + message
            ev_ann, ev_reporting = None, ""
        stored = self.evlog.get(key)
        if stored is not None:
            ev = copy.deepcopy(stored)
            ev["count"] += 1
            ev["lastTimestamp"] = ts(now)
            if ev_message:
                ev["message"] = ev_message
            ev["metadata"]["resourceVersion"] = self.next_rv()
            self.evlog[key] = ev
            self.emit("MODIFIED", ev)
        else:
            ev = {"apiVersion": "v1", "count": 1, "eventTime": None, "firstTimestamp": ts(now),
                  "involvedObject": self.involved(), "kind": "Event", "lastTimestamp": ts(now),
                  "metadata": {"creationTimestamp": ts(now),
                               "name": "%s.%x" % (self.wf_name, now),
                               "namespace": self.ns, "resourceVersion": self.next_rv(),
                               "uid": str(_uuid.UUID(int=self.rng.getrandbits(128), version=4))},
                  "reason": reason, "reportingComponent": ev_reporting, "reportingInstance": "",
                  "source": {"component": "workflow-controller"}, "type": etype}
            if ev_message:
                ev["message"] = ev_message
            if ev_ann:
                ev["metadata"]["annotations"] = ev_ann
            self.evlog[key] = ev
            self.emit("ADDED", ev)

    def expire_events_and_delete(self, wf_delete_ns, event_ttl_s=3600):
        """kube-apiserver --event-ttl (1h default, counted from an Event's last write) and the
        Workflow's ttlStrategy: DELETED watch events, in time order."""
        dels = []
        for ev in self.evlog.values():
            dels.append((parse_ts(ev["lastTimestamp"]) + event_ttl_s * 1_000_000_000 +
                         self.rng.randint(0, 900_000_000), "ev", ev))
        dels.append((wf_delete_ns, "wf", None))
        dels.sort(key=lambda d: d[0])
        for _, kind, ev in dels:
            if kind == "ev":
                ev = copy.deepcopy(ev)
                ev["metadata"]["resourceVersion"] = self.next_rv()
                self.emit("DELETED", ev)
            else:
                self.meta["resourceVersion"] = self.next_rv()
                self.emit("DELETED", self.workflow_object())

    def dump(self, path):
        with open(path, "w") as f:
            for line in self.lines:
                f.write(json.dumps(line, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
                f.write("\n")
