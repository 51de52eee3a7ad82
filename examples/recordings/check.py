#!/usr/bin/env python3
"""Checks the recordings in this folder (our own code). Run: python3 check.py

* every line parses, is a watch event or a plain object of kind Workflow/Event;
* metadata.resourceVersion increases line by line (DELETED lines too);
* every node id is `<wf>-<fnv32a(name)>` (root: the wf name), every child/boundary/outbound id
  exists, displayName follows Argo's rule;
* Event names are `<wf>.<hex>`; a MODIFIED Event has the same name and uid as an earlier one and
  count + 1; involvedObject points at the Workflow (name, uid);
* every Workflow label/annotation key used is one of the known keys.
"""

import glob
import json
import os
import re
import sys

from derive import fnv32a

HERE = os.path.dirname(os.path.abspath(__file__))
SEP = re.compile(r"^(\[\d+\])?\.")
KNOWN_KEYS = {
    "pipeline/runid", "pipeline/persistedFinalState", "pipelines.kubeflow.org/run_name",
    "pipelines.kubeflow.org/kfp_sdk_version", "pipelines.kubeflow.org/pipeline_compilation_time",
    "pipelines.kubeflow.org/pipeline_spec", "workflows.argoproj.io/phase", "workflows.argoproj.io/completed",
    "workflows.argoproj.io/pod-name-format", "app.kubernetes.io/part-of"}


def check(path):
    errors = []
    last_rv = 0
    events = {}
    wf_uid = None
    for no, text in enumerate(open(path), 1):
        where = "%s:%d" % (os.path.basename(path), no)
        try:
            line = json.loads(text)
        except ValueError as e:
            errors.append("%s: invalid JSON: %s" % (where, e))
            continue
        typ = line.get("type")
        obj = line.get("object", line) if typ else line
        if typ not in (None, "ADDED", "MODIFIED", "DELETED"):
            errors.append("%s: watch type %r" % (where, typ))
        rv = int(obj["metadata"]["resourceVersion"])
        if rv <= last_rv:
            errors.append("%s: resourceVersion %d not above %d" % (where, rv, last_rv))
        last_rv = rv
        if obj["kind"] == "Workflow":
            wf = obj["metadata"]["name"]
            if wf_uid is None:
                wf_uid = obj["metadata"]["uid"]
            elif obj["metadata"]["uid"] != wf_uid:
                errors.append("%s: Workflow uid changed" % where)
            for k in list(obj["metadata"].get("labels", {})) + list(obj["metadata"].get("annotations", {})):
                if k not in KNOWN_KEYS:
                    errors.append("%s: unexpected label/annotation %s" % (where, k))
            nodes = obj["status"].get("nodes", {})
            for nid, n in nodes.items():
                want = wf if n["name"] == wf else "%s-%d" % (wf, fnv32a(n["name"]))
                if nid != want or n["id"] != want:
                    errors.append("%s: node %s id %s, want %s" % (where, n["name"], nid, want))
                for ref in n.get("children", []) + n.get("outboundNodes", []) + (
                        [n["boundaryID"]] if n.get("boundaryID") else []):
                    if ref not in nodes:
                        errors.append("%s: node %s refers to missing %s" % (where, n["name"], ref))
                b = nodes.get(n.get("boundaryID") or "")
                want_dn = SEP.sub("", n["name"][len(b["name"]):], count=1) if b else n["name"]
                if n["displayName"] != want_dn:
                    errors.append("%s: node %s displayName %r, want %r" % (where, n["name"], n["displayName"],
                                                                          want_dn))
        elif obj["kind"] == "Event":
            name = obj["metadata"]["name"]
            inv = obj["involvedObject"]
            if inv["kind"] != "Workflow" or inv["uid"] != wf_uid or not name.startswith(inv["name"] + "."):
                errors.append("%s: event %s involvedObject/name mismatch" % (where, name))
            if not re.match(r"^[0-9a-f]+$", name.rsplit(".", 1)[1]):
                errors.append("%s: event name %s" % (where, name))
            prev = events.get(name)
            if typ == "MODIFIED":
                if prev is None or prev["metadata"]["uid"] != obj["metadata"]["uid"] or \
                        obj["count"] != prev["count"] + 1:
                    errors.append("%s: MODIFIED event %s is not a count bump" % (where, name))
            elif typ == "ADDED":
                if prev is not None or obj["count"] != 1:
                    errors.append("%s: ADDED event %s seen before or count != 1" % (where, name))
            elif typ == "DELETED":
                if prev is None:
                    errors.append("%s: DELETED unknown event %s" % (where, name))
            events[name] = obj
        else:
            errors.append("%s: kind %s" % (where, obj["kind"]))
    return errors


def main():
    bad = 0
    for path in sorted(glob.glob(os.path.join(HERE, "*.jsonl"))):
        errors = check(path)
        n = sum(1 for _ in open(path))
        print("%-30s %4d lines %8d bytes  %s" % (os.path.basename(path), n, os.path.getsize(path),
                                                 "ok" if not errors else "%d errors" % len(errors)))
        for e in errors[:20]:
            print("   ", e)
        bad += len(errors)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
