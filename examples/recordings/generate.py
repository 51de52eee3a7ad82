#!/usr/bin/env python3
"""Writes the recordings in this folder (and nothing else). Run: python3 generate.py

Our own code: a small *model* of Argo Workflows' controller, client-go's event recorder and
KFP's Argo compiler/API server, written from reading their sources (see README.md, section
"Provenance", for every rule and where it comes from). No upstream code is copied. It models:

* argoproj/argo-workflows v3.3.8, v3.4.17, v3.7.3, v4.0.5: `workflow/controller/operator.go`
  (executeTemplate retry nodes, initializeNode, markWorkflowPhase, persistUpdates,
  recordNodePhaseChangeEvents, recordNodePhaseEvent, getOutboundNodes, processNodeRetries),
  `workflow/controller/dag.go` (executeDAG, executeDAGTask, expandTask, assessDAGPhase),
  `workflow/progress/updater.go`, `workflow/util/pod_name.go`, `pkg/apis/.../workflow_types.go`
  (Workflow.NodeID), `workflow/events/event_recorder_manager.go`;
* kubernetes/client-go v0.23/v0.24/v0.33 `tools/record` (event.go makeEvent/generateEvent,
  events_cache.go EventAggregator + eventLogger);
* kubeflow/pipelines 1.8.x (SDK v1 compiler, API server CreateRun), 2.4.1 and 2.17.0
  (`backend/src/v2/compiler/argocompiler`, `apiserver/template/v2_template.go`,
  `apiserver/resource/resource_manager.go RetryRun`, `common/util/workflow.go
  GenerateRetryExecution`, `manifests/kustomize/third-party/argo`).

Modules: argosim.py (Argo controller + client-go event recorder model), kfpcompile.py (the
pipeline and KFP's compiler/API-server output), derive.py (the README's node-to-task mapping rules,
used to write the <name>.EXPECTED.md tables). check.py validates the recordings.

The model is deterministic (fixed seeds), so running it again rewrites the same files.
"""

import copy
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from argosim import Sim, gojson, parse_ts, ts  # noqa: E402
import kfpcompile as kc  # noqa: E402
import derive  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
S = 1_000_000_000


def at(base, seconds, ms=0):
    return base + seconds * S + ms * 1_000_000


# ==============================================================================================
# KFP v2 layouts (a) 2.4.1-2.16 and (a') 2.17 with templateDefaults.retryStrategy
# ==============================================================================================

def abbreviated(argument):
    """Node inputs `component` and `container` are, in a real cluster, full copies of the
    spec.arguments blob (Argo substitutes {{workflow.parameters.<name>}}). They are abbreviated
    here to keep the recordings small; nothing in the mapping rules reads them."""
    return "(abbreviated in this recording: the value of spec.arguments.parameters[%s])" % argument


class Kfp:
    def __init__(self, sim, c, retry):
        self.sim = sim
        self.c = c
        self.retry = retry
        self.exec_id = 4180
        self.flag_skip = {} if sim.argo == "4.0" else None

    def next_exec(self):
        self.exec_id += 1
        return str(self.exec_id)

    # --- nodes -----------------------------------------------------------------------------
    def top(self):
        """The entrypoint: DAG `<wf>` (a) or Retry `<wf>` + DAG `<wf>(0)` (a')."""
        sim = self.sim
        wf = sim.wf_name
        if not self.retry:
            sim.init_node(wf, "DAG", "entrypoint", None, "Running")
            return wf, wf
        sim.init_node(wf, "Retry", "entrypoint", None, "Running")
        sim.init_node(wf + "(0)", "DAG", "entrypoint", None, "Running", node_flag={"retried": True})
        sim.add_child(wf, wf + "(0)")
        return wf, wf + "(0)"

    def task(self, boundary, name, template, kind, deps=(), inputs=None):
        """One execution of a DAG task: returns (outer, inner) node names. deps are task names
        in the same DAG."""
        sim = self.sim
        outer = "%s.%s" % (boundary, name)
        phase = "Running" if kind == "DAG" else "Pending"
        dep_nodes = ["%s.%s" % (boundary, d) for d in deps]
        if not self.retry:
            sim.init_node(outer, kind, template, boundary, phase, inputs=inputs)
            sim.connect(boundary, outer, dep_nodes)
            return outer, outer
        # executeTemplate with a retryStrategy: Retry node (v4: created Running) + attempt (0)
        sim.init_node(outer, "Retry", template, boundary, "Running", inputs=inputs)
        sim.connect(boundary, outer, dep_nodes)
        inner = outer + "(0)"
        sim.init_node(inner, kind, template, boundary, phase, inputs=inputs, node_flag={"retried": True})
        sim.add_child(outer, inner)
        return outer, inner

    def skipped(self, boundary, name, template, phase, message, deps=()):
        sim = self.sim
        node = "%s.%s" % (boundary, name)
        sim.init_node(node, "Skipped", template, boundary, phase, message=message, node_flag=self.flag_skip)
        sim.connect(boundary, node, ["%s.%s" % (boundary, d) for d in deps])
        return node

    def task_group(self, boundary, name, template, deps):
        sim = self.sim
        node = "%s.%s" % (boundary, name)
        sim.init_node(node, "TaskGroup", template, boundary, "Running", node_flag=self.flag_skip)
        sim.connect(boundary, node, ["%s.%s" % (boundary, d) for d in deps])
        return node

    def expanded(self, group, boundary, name, template, kind, inputs):
        """An item of a TaskGroup (withSequence): child of the group node, same boundary."""
        sim = self.sim
        outer = "%s.%s" % (boundary, name)
        phase = "Running" if kind == "DAG" else "Pending"
        if not self.retry:
            sim.init_node(outer, kind, template, boundary, phase, inputs=inputs)
            sim.add_child(group, outer)
            return outer, outer
        sim.init_node(outer, "Retry", template, boundary, "Running", inputs=inputs)
        sim.add_child(group, outer)
        inner = outer + "(0)"
        sim.init_node(inner, kind, template, boundary, phase, inputs=inputs, node_flag={"retried": True})
        sim.add_child(outer, inner)
        return outer, inner

    def pod_done(self, pair, phase="Succeeded", message=None, params=None, exit_code="0", cpu=1, mem=4):
        outer, inner = pair
        self.sim.pod_done(inner, phase, message, params, exit_code, cpu, mem)
        if self.retry:
            # processNodeRetries: Succeeded -> markNodePhase(Succeeded);
            # Failed under retryPolicy OnError -> markNodePhase(child phase, child message)
            self.sim.set_phase(outer, phase, message if phase != "Succeeded" else None)
            self.sim.node(outer)["outputs"] = copy.deepcopy(self.sim.node(inner)["outputs"])

    def dag_done(self, pair, phase):
        outer, inner = pair
        self.sim.dag_done(inner, phase)
        if self.retry:
            self.sim.set_phase(outer, phase)

    def running(self, pair, host):
        self.sim.pod_running(pair[1], host)

    # --- inputs and outputs of KFP's system templates ----------------------------------------
    def cdriver_inputs(self, comp, task_spec, task_name, parent, iteration="-1"):
        c = self.c
        params = [{"name": "component", "value": abbreviated("components-" + c.hashes[comp])},
                  {"name": "task", "value": gojson(task_spec)},
                  {"name": "container", "value": abbreviated("implementations-" + c.hashes[comp])}]
        if c.v217:
            params.append({"name": "task-name", "value": task_name})
        params += [{"name": "parent-dag-id", "value": parent},
                   {"default": "-1", "name": "iteration-index", "value": iteration},
                   {"default": "", "name": "kubernetes-config", "value": ""}]
        return params

    def ddriver_inputs(self, component_blob, task="", task_name="", parent="0", iteration="-1",
                       runtime_config="", driver_type="DAG"):
        params = [{"name": "component", "value": abbreviated(component_blob)},
                  {"default": "", "name": "runtime-config", "value": runtime_config},
                  {"default": "", "name": "task", "value": task}]
        if self.c.v217:
            params.append({"default": "", "name": "task-name", "value": task_name})
        params += [{"default": "0", "name": "parent-dag-id", "value": parent},
                   {"default": "-1", "name": "iteration-index", "value": iteration},
                   {"default": "DAG", "name": "driver-type", "value": driver_type}]
        return params

    @staticmethod
    def ddriver_outputs(execution_id, iteration_count="0"):
        return [{"name": "execution-id", "value": execution_id, "valueFrom": {"path": "/tmp/outputs/execution-id"}},
                {"name": "iteration-count", "value": iteration_count,
                 "valueFrom": {"default": "0", "path": "/tmp/outputs/iteration-count"}},
                {"name": "condition", "value": "true",
                 "valueFrom": {"default": "true", "path": "/tmp/outputs/condition"}}]

    @staticmethod
    def cdriver_outputs(patch, cached="false"):
        return [{"name": "pod-spec-patch", "value": patch,
                 "valueFrom": {"default": "", "path": "/tmp/outputs/pod-spec-patch"}},
                {"default": "false", "name": "cached-decision", "value": cached,
                 "valueFrom": {"default": "false", "path": "/tmp/outputs/cached-decision"}},
                {"name": "condition", "value": "true",
                 "valueFrom": {"default": "true", "path": "/tmp/outputs/condition"}}]

    @staticmethod
    def executor_inputs(patch, cached="false"):
        return [{"name": "pod-spec-patch", "value": patch},
                {"default": "false", "name": "cached-decision", "value": cached}]


HOSTS = ["gke-ml-pool-2c7f9d1e-4kqz", "gke-ml-pool-2c7f9d1e-9wbx", "gke-ml-pool-2c7f9d1e-r2mh"]

RUN_PARAMS = {"dataset_uri": "s3://acme-churn/datasets/2026-11-19/events.parquet",
              "epochs": 20, "learning_rate": 0.05}


def kfp_v2_run(*, version, name, run_id, run_name, uid, created, rv0, seed, cached_preprocess=False,
               retry_run_after=None):
    """Simulates one KFP v2 run of churn-training. Returns (sim, info)."""
    retry_layout = version == "2.17.0"
    ns = "kubeflow"
    c = kc.compile_pipeline(version, run_id, run_name, RUN_PARAMS, ns)
    if retry_layout:
        art = {"artifactRepository": {"archiveLogs": True, "s3": {
            "accessKeySecret": {"key": "accesskey", "name": "mlpipeline-minio-artifact"},
            "bucket": "mlpipeline", "endpoint": "seaweedfs.kubeflow.svc:9000", "insecure": True,
            "keyFormat": "private-artifacts/{{workflow.namespace}}/{{workflow.name}}/{{workflow.creationTimestamp.Y}}"
                         "/{{workflow.creationTimestamp.m}}/{{workflow.creationTimestamp.d}}/{{pod.name}}",
            "secretKeySecret": {"key": "secretkey", "name": "mlpipeline-minio-artifact"}}}, "default": True}
        logs = "private-artifacts/%s/%s/%s/{pod}" % (ns, name, ts(created)[:10].replace("-", "/"))
    else:
        art = {"artifactRepository": {"archiveLogs": True, "s3": {
            "accessKeySecret": {"key": "accesskey", "name": "mlpipeline-minio-artifact"},
            "bucket": "mlpipeline", "endpoint": "minio-service.kubeflow:9000", "insecure": True,
            "keyFormat": "artifacts/{{workflow.name}}/{{workflow.creationTimestamp.Y}}"
                         "/{{workflow.creationTimestamp.m}}/{{workflow.creationTimestamp.d}}/{{pod.name}}",
            "secretKeySecret": {"key": "secretkey", "name": "mlpipeline-minio-artifact"}}}, "default": True}
        logs = "artifacts/%s/%s/{pod}" % (name, ts(created)[:10].replace("-", "/"))
    meta = {"annotations": {"pipelines.kubeflow.org/run_name": run_name},
            "generateName": kc.PIPELINE + "-", "labels": {"pipeline/runid": run_id}}
    sim = Sim(wf_name=name, namespace=ns, uid=uid, created_ns=created, rv0=rv0, spec=c.spec, metadata=meta,
              argo="4.0" if retry_layout else "3.4", seed=seed, artifact_repository_ref=art,
              main_logs_key=logs, retry_layout=retry_layout)
    sim.leaves = c.leaves
    k = Kfp(sim, c, retry_layout)
    t0 = created
    rt = c.root_tasks

    # pass 1: Unknown -> Running; entrypoint DAG and the root driver pod
    sim.begin(at(t0, 1, 180))
    sim.workflow_phase("Running")
    sim.meta.setdefault("annotations", {})["workflows.argoproj.io/pod-name-format"] = "v2"
    if retry_layout:
        # setExecWorkflow -> setWorkflowDefaults: the controller's workflowDefaults (KFP 2.17
        # manifests) are merged into the Workflow's own spec and written back
        sim.spec["templateDefaults"] = {"retryStrategy": {"limit": "2", "retryPolicy": "OnError"}}
        sim.spec["ttlStrategy"] = {"secondsAfterCompletion": 3600, "secondsAfterFailure": 3600,
                                   "secondsAfterSuccess": 3600}
    top = k.top()
    root_exec = k.next_exec()
    rd = k.task(top[1], "root-driver", "system-dag-driver", "Pod",
                inputs=k.ddriver_inputs("components-root", runtime_config=c.runtime_config, driver_type="ROOT_DAG"))
    sim.commit()

    # root driver done -> root DAG -> preprocess driver
    sim.begin(at(t0, 12, 77))
    sim.node(rd[1])["hostNodeName"] = HOSTS[0]
    k.pod_done(rd, params=k.ddriver_outputs(root_exec), mem=3)
    root = k.task(top[1], "root", "root", "DAG", deps=["root-driver"],
                  inputs=[{"name": "parent-dag-id", "value": root_exec}])
    R = root[1]
    pre_d = k.task(R, "preprocess-driver", "system-container-driver", "Pod",
                   inputs=k.cdriver_inputs("preprocess", rt["preprocess"], "preprocess", root_exec))
    sim.commit()

    sim.begin(at(t0, 19, 903)); k.running(pre_d, HOSTS[1]); sim.commit()

    pre_exec = k.next_exec()
    pre_patch = kc.pod_spec_patch(c, "preprocess", run_id, pre_exec, {"dataset_uri": RUN_PARAMS["dataset_uri"]})
    clean = RUN_PARAMS["dataset_uri"].rsplit("/", 1)[0] + "/clean.parquet"

    def after_preprocess():
        """preprocess done (same pass): the loop and the baseline driver start."""
        fl = k.task(R, "for-loop-2", "comp-for-loop-2-for-loop-2-iterator", "DAG", deps=["preprocess"],
                    inputs=[{"name": "parent-dag-id", "value": root_exec}])
        itd = k.task(fl[1], "iteration-driver", "system-dag-driver", "Pod",
                     inputs=k.ddriver_inputs("components-comp-for-loop-2", task=c.loop_task_json,
                                             task_name="for-loop-2", parent=root_exec))
        bd = k.task(R, "baseline-driver", "system-container-driver", "Pod", deps=["preprocess"],
                    inputs=k.cdriver_inputs("baseline", rt["baseline"], "baseline", root_exec))
        return fl, itd, bd

    if cached_preprocess:
        # the driver finds a cache hit: cached-decision=true, no pod-spec-patch; the executor task's
        # `when: '{{inputs.parameters.cached-decision}} != true'` is false -> Skipped node
        sim.begin(at(t0, 26, 655))
        k.pod_done(pre_d, params=k.cdriver_outputs("", cached="true"), mem=5)
        pre = k.task(R, "preprocess", "system-container-executor", "DAG", deps=["preprocess-driver"],
                     inputs=k.executor_inputs("", cached="true"))
        k.skipped(pre[1], "executor", "system-container-impl", "Skipped", "when 'true != true' evaluated false")
        k.dag_done(pre, "Succeeded")
        fl, itd, bd = after_preprocess()
        sim.commit()
        t_next = 32
    else:
        sim.begin(at(t0, 27, 210))
        k.pod_done(pre_d, params=k.cdriver_outputs(pre_patch), mem=5)
        pre = k.task(R, "preprocess", "system-container-executor", "DAG", deps=["preprocess-driver"],
                     inputs=k.executor_inputs(pre_patch))
        pre_x = k.task(pre[1], "executor", "system-container-impl", "Pod",
                       inputs=[{"name": "pod-spec-patch", "value": pre_patch}])
        sim.commit()
        sim.begin(at(t0, 33, 18)); k.running(pre_x, HOSTS[2]); sim.commit()
        sim.begin(at(t0, 71, 540))
        k.pod_done(pre_x, cpu=38, mem=151)
        k.dag_done(pre, "Succeeded")
        fl, itd, bd = after_preprocess()
        sim.commit()
        t_next = 77

    # iteration driver: 3 iterations; baseline driver done -> baseline executor
    loop_exec = k.next_exec()
    base_exec = k.next_exec()
    base_patch = kc.pod_spec_patch(c, "baseline", run_id, base_exec, {"dataset_uri": clean})
    sim.begin(at(t0, t_next + 8, 64))
    sim.node(itd[1])["hostNodeName"] = HOSTS[0]
    k.pod_done(itd, params=k.ddriver_outputs(loop_exec, "3"), mem=3)
    grp = k.task_group(fl[1], "iteration-iterations", "comp-for-loop-2-iteration", deps=["iteration-driver"])
    iters, item_drivers = [], []
    for i in range(3):
        it = k.expanded(grp, fl[1], "iteration-iterations(%d:%d)" % (i, i), "comp-for-loop-2-iteration", "DAG",
                        inputs=[{"name": "parent-dag-id", "value": loop_exec},
                                {"name": "iteration-index", "value": str(i)}])
        iters.append(it)
        item_drivers.append(k.task(it[1], "iteration-item-driver", "system-dag-driver", "Pod",
                                   inputs=k.ddriver_inputs("components-comp-for-loop-2", task=c.loop_task_json,
                                                           task_name="for-loop-2", parent=loop_exec,
                                                           iteration=str(i))))
    sim.node(bd[1])["hostNodeName"] = HOSTS[1]
    k.pod_done(bd, params=k.cdriver_outputs(base_patch), mem=5)
    base = k.task(R, "baseline", "system-container-executor", "DAG", deps=["baseline-driver"],
                  inputs=k.executor_inputs(base_patch))
    base_x = k.task(base[1], "executor", "system-container-impl", "Pod",
                    inputs=[{"name": "pod-spec-patch", "value": base_patch}])
    sim.commit()

    sim.begin(at(t0, t_next + 14, 870))
    k.running(item_drivers[0], HOSTS[2]); k.running(item_drivers[1], HOSTS[0]); k.running(base_x, HOSTS[1])
    sim.commit()

    item_execs = [k.next_exec() for _ in range(3)]
    items, train_drivers = [], []
    sim.begin(at(t0, t_next + 21, 402))
    for i in range(3):
        k.pod_done(item_drivers[i], params=k.ddriver_outputs(item_execs[i]), mem=3)
        item = k.task(iters[i][1], "iteration-item", "comp-for-loop-2", "DAG", deps=["iteration-item-driver"],
                      inputs=[{"name": "parent-dag-id", "value": item_execs[i]}])
        items.append(item)
        train_drivers.append(k.task(item[1], "train-driver", "system-container-driver", "Pod",
                                    inputs=k.cdriver_inputs("train", c.train_task, "train", item_execs[i],
                                                            iteration=str(i))))
    sim.commit()

    # train drivers done (seen Pending -> Succeeded: synthetic Running events); baseline fails
    train_execs = [k.next_exec() for _ in range(3)]
    train_patches = [kc.pod_spec_patch(c, "train", run_id, train_execs[i], {
        "dataset_uri": clean, "epochs": RUN_PARAMS["epochs"], "learning_rate": RUN_PARAMS["learning_rate"],
        "model_size": kc.LOOP_ITEMS[i]}) for i in range(3)]
    trains, train_xs = [], []
    sim.begin(at(t0, t_next + 36, 733))
    for i in range(3):
        k.pod_done(train_drivers[i], params=k.cdriver_outputs(train_patches[i]), mem=5)
        tr = k.task(items[i][1], "train", "system-container-executor", "DAG", deps=["train-driver"],
                    inputs=k.executor_inputs(train_patches[i]))
        trains.append(tr)
        train_xs.append(k.task(tr[1], "executor", "system-container-impl", "Pod",
                               inputs=[{"name": "pod-spec-patch", "value": train_patches[i]}]))
    for i in range(3):
        sim.node(train_drivers[i][1])["hostNodeName"] = HOSTS[i]
    k.pod_done(base_x, "Failed", "Error (exit code 1)", exit_code="1", cpu=14, mem=57)
    k.dag_done(base, "Failed")
    sim.commit()

    sim.begin(at(t0, t_next + 43, 310))
    for i, h in enumerate((HOSTS[2], HOSTS[0], HOSTS[1])):
        k.running(train_xs[i], h)
    sim.commit()

    def finish_iteration(i, cpu, mem):
        k.pod_done(train_xs[i], cpu=cpu, mem=mem)
        k.dag_done(trains[i], "Succeeded")
        k.dag_done(items[i], "Succeeded")
        k.dag_done(iters[i], "Succeeded")

    sim.begin(at(t0, t_next + 224, 18))
    finish_iteration(1, 176, 2811)
    sim.commit()

    sim.begin(at(t0, t_next + 258, 902))
    finish_iteration(0, 204, 3270)
    finish_iteration(2, 231, 3698)
    sim.set_phase(grp, "Succeeded")
    k.dag_done(fl, "Succeeded")
    k.skipped(R, "report-driver", "system-container-driver", "Omitted", "omitted: depends condition not met",
              deps=["baseline", "for-loop-2"])
    k.skipped(R, "report", "system-container-executor", "Omitted", "omitted: depends condition not met",
              deps=["report-driver"])
    k.dag_done(root, "Failed")
    k.dag_done(top, "Failed")
    sim.workflow_phase("Failed", "")
    sim.commit()
    t_end = parse_ts(sim.status["finishedAt"])

    # KFP persistence agent -> API server ReportWorkflowResource: final state stored
    sim.label_only_update(at(t_end, 2, 640), {"pipeline/persistedFinalState": "true"})
    info = {"c": c, "k": k, "first_attempt_lines": len(sim.lines), "base": base, "base_x": base_x,
            "R": R, "root": root, "top": top}

    if retry_run_after is not None:
        kfp_retry(sim, k, info, at(t_end, retry_run_after), base_patch)
    elif retry_layout:
        sim.expire_events_and_delete(at(t_end, 3600, 217))
    return sim, info


def kfp_retry(sim, k, info, t_retry, base_patch):
    """KFP "Retry run" (2.4.1 resource_manager.go RetryRun + common/util/workflow.go
    GenerateRetryExecution), then the controller re-runs the removed nodes."""
    # --- the API server's Update ------------------------------------------------------------
    labels = sim.meta["labels"]
    labels.pop("workflows.argoproj.io/completed", None)
    labels.pop("pipeline/persistedFinalState", None)
    labels["workflows.argoproj.io/phase"] = "Running"
    sim.status["phase"] = "Running"
    sim.status["conditions"] = [c if c["type"] != "Completed" else {"status": "False", "type": "Completed"}
                                for c in sim.status["conditions"]]
    sim.status.pop("message", None)
    sim.status["finishedAt"] = None
    keep = {}
    for nid, n in sim.nodes.items():
        if n["phase"] in ("Succeeded", "Skipped"):
            keep[nid] = n
        elif n["phase"] in ("Failed", "Error", "Omitted") and n["type"] == "DAG":
            n = dict(n)
            n["phase"] = "Running"
            n.pop("message", None)
            n["finishedAt"] = None
            keep[nid] = n
    for n in keep.values():
        if "children" in n:
            n["children"] = [x for x in n["children"] if x in keep] or None
            if n["children"] is None:
                del n["children"]
        if "outboundNodes" in n:
            n["outboundNodes"] = [x for x in n["outboundNodes"] if x in keep] or None
            if n["outboundNodes"] is None:
                del n["outboundNodes"]
    sim.nodes = keep
    sim.order = [i for i in sim.order if i in keep]
    sim.status["nodes"] = {nid: sim.nodes[nid] for nid in sorted(sim.nodes)}
    sim.meta["generation"] += 1
    sim.meta["resourceVersion"] = sim.next_rv()
    sim.emit("MODIFIED", sim.workflow_object())
    info["retry_update_line"] = len(sim.lines)

    # --- controller: the Workflow is already Running (no WorkflowRunning event) ---------------
    base, R, root, top = info["base"], info["R"], info["root"], info["top"]
    sim.begin(t_retry + 1 * S + 312_000_000)
    base_x = k.task(base[1], "executor", "system-container-impl", "Pod",
                    inputs=[{"name": "pod-spec-patch", "value": base_patch}])
    sim.commit()
    sim.begin(t_retry + 7 * S + 95_000_000); k.running(base_x, HOSTS[2]); sim.commit()
    sim.begin(t_retry + 39 * S + 488_000_000)
    k.pod_done(base_x, "Failed", "Error (exit code 1)", exit_code="1", cpu=13, mem=52)
    k.dag_done(base, "Failed")
    k.skipped(R, "report-driver", "system-container-driver", "Omitted", "omitted: depends condition not met",
              deps=["baseline", "for-loop-2"])
    k.skipped(R, "report", "system-container-executor", "Omitted", "omitted: depends condition not met",
              deps=["report-driver"])
    k.dag_done(root, "Failed")
    k.dag_done(top, "Failed")
    sim.workflow_phase("Failed", "")
    sim.commit()
    t_end = parse_ts(sim.status["finishedAt"])
    sim.label_only_update(t_end + 2 * S, {"pipeline/persistedFinalState": "true"})


# ==============================================================================================
# KFP v1 (SDK 1.8 compiler, KFP 1.8.5 API server, Argo v3.3.8)
# ==============================================================================================

V1_SDK = "1.8.22"


def v1_component(name, display, inputs, output_type, source, args_for):
    """A func_to_container_op template as the v1 SDK writes it."""
    spec = {"implementation": {"container": {
        "args": args_for, "command": ["sh", "-ec",
                                      "program_path=$(mktemp)\nprintf \"%s\" \"$0\" > \"$program_path\"\n"
                                      "python3 -u \"$program_path\" \"$@\"\n", source],
        "image": "python:3.9"}}, "inputs": [{"name": k, "type": v} for k, v in inputs],
        "name": display}
    if output_type:
        spec["outputs"] = [{"name": "Output", "type": output_type}]
    return spec


def kfp_v1_run():
    name, ns = "churn-training-v1-8xq2c", "kubeflow"
    run_id = "0b6a3f2e-6c1d-4b8e-9f57-3c2d1a7e4b90"
    uid = "7e0c1b55-93a2-4f0d-b6d1-24c8a9e3f611"
    created = parse_ts("2026-11-20T08:02:11Z")
    params = {"dataset_uri": RUN_PARAMS["dataset_uri"], "learning_rate": "0.05", "epochs": "20"}
    items = kc.LOOP_ITEMS

    def labels():
        return {"pipelines.kubeflow.org/cache_enabled": "true",
                "pipelines.kubeflow.org/enable_caching": "true",
                "pipelines.kubeflow.org/kfp_sdk_version": V1_SDK,
                "pipelines.kubeflow.org/pipeline-sdk-type": "kfp"}

    def op(tname, comp_display, inputs, out_type, source, arg_pairs, display=None, loop_param=None):
        cmd_args = []
        for flag, pname in arg_pairs:
            cmd_args += [flag, "{{inputs.parameters.%s}}" % pname]
        if out_type:
            cmd_args += ["----output-paths", "/tmp/outputs/Output/data"]
        name_of = {p: n for p, (n, _) in inputs}
        spec_args = []
        for flag, pname in arg_pairs:
            spec_args += [flag, {"inputValue": name_of[pname]}]
        comp_spec = v1_component(tname, comp_display, [(n, t) for _, (n, t) in inputs], out_type,
                                 source, spec_args + (["----output-paths", {"outputPath": "Output"}] if out_type else []))
        ann = {"pipelines.kubeflow.org/arguments.parameters": json.dumps(
            {n: "{{inputs.parameters.%s}}" % p for p, (n, _) in inputs}, sort_keys=True),
            "pipelines.kubeflow.org/component_ref": "{}",
            "pipelines.kubeflow.org/component_spec": json.dumps(comp_spec, sort_keys=True),
            "sidecar.istio.io/inject": "false"}
        if display:
            ann["pipelines.kubeflow.org/task_display_name"] = display
        t = {"container": {"args": cmd_args, "command": comp_spec["implementation"]["container"]["command"],
                           "image": "python:3.9"},
             "inputs": {"parameters": [{"name": p} for p, _ in inputs]},
             "metadata": {"annotations": ann, "labels": labels()}, "name": tname}
        if out_type:
            t["outputs"] = {"artifacts": [{"name": "%s-Output" % tname, "path": "/tmp/outputs/Output/data"}],
                            "parameters": [{"name": "%s-Output" % tname,
                                            "valueFrom": {"path": "/tmp/outputs/Output/data"}}]}
        return t

    src = lambda comp: "def %s" % kc.SOURCES[comp].split("def ", 1)[1] + \
        "\nimport argparse\n_parser = argparse.ArgumentParser(prog=%r)\n(...argparse wrapper the v1 SDK " \
        "generates, abbreviated in this recording...)\n" % comp  # noqa: E731
    pre = op("preprocess", "Preprocess", [("dataset_uri", ("dataset_uri", "String"))], "String", src("preprocess"),
             [("--dataset-uri", "dataset_uri")])
    train = op("train", "Train", [("epochs", ("epochs", "Integer")), ("learning_rate", ("learning_rate", "Float")),
                                  ("loop-item-param-1", ("model_size", "String")),
                                  ("preprocess-Output", ("dataset_uri", "String"))], "String", src("train"),
               [("--dataset-uri", "preprocess-Output"), ("--model-size", "loop-item-param-1"),
                ("--learning-rate", "learning_rate"), ("--epochs", "epochs")])
    base = op("baseline", "Baseline", [("preprocess-Output", ("dataset_uri", "String"))], "Float",
              src("baseline"), [("--dataset-uri", "preprocess-Output")], display="Baseline model")
    rep = op("report", "Report", [("baseline-Output", ("baseline_score", "Float"))], None, src("report"),
             [("--baseline-score", "baseline-Output")])
    loop = {"dag": {"tasks": [{"arguments": {"parameters": [
        {"name": "epochs", "value": "{{inputs.parameters.epochs}}"},
        {"name": "learning_rate", "value": "{{inputs.parameters.learning_rate}}"},
        {"name": "loop-item-param-1", "value": "{{inputs.parameters.loop-item-param-1}}"},
        {"name": "preprocess-Output", "value": "{{inputs.parameters.preprocess-Output}}"}]},
        "name": "train", "template": "train"}]},
        "inputs": {"parameters": [{"name": "epochs"}, {"name": "learning_rate"}, {"name": "loop-item-param-1"},
                                  {"name": "preprocess-Output"}]},
        "metadata": {"annotations": {"sidecar.istio.io/inject": "false"},
                     "labels": {"pipelines.kubeflow.org/cache_enabled": "true"}},
        "name": "for-loop-1", "parallelism": 0}
    main = {"dag": {"tasks": [
        {"arguments": {"parameters": [{"name": "preprocess-Output",
                                       "value": "{{tasks.preprocess.outputs.parameters.preprocess-Output}}"}]},
         "dependencies": ["preprocess"], "name": "baseline", "template": "baseline"},
        {"arguments": {"parameters": [
            {"name": "epochs", "value": "{{inputs.parameters.epochs}}"},
            {"name": "learning_rate", "value": "{{inputs.parameters.learning_rate}}"},
            {"name": "loop-item-param-1", "value": "{{item}}"},
            {"name": "preprocess-Output", "value": "{{tasks.preprocess.outputs.parameters.preprocess-Output}}"}]},
         "dependencies": ["preprocess"], "name": "for-loop-1", "template": "for-loop-1", "withItems": items},
        {"arguments": {"parameters": [{"name": "dataset_uri", "value": "{{inputs.parameters.dataset_uri}}"}]},
         "name": "preprocess", "template": "preprocess"},
        {"arguments": {"parameters": [{"name": "baseline-Output",
                                       "value": "{{tasks.baseline.outputs.parameters.baseline-Output}}"}]},
         "dependencies": ["baseline", "for-loop-1"], "name": "report", "template": "report"}]},
        "inputs": {"parameters": [{"name": "dataset_uri"}, {"name": "epochs"}, {"name": "learning_rate"}]},
        "metadata": {"annotations": {"sidecar.istio.io/inject": "false"},
                     "labels": {"pipelines.kubeflow.org/cache_enabled": "true"}},
        "name": "churn-training"}
    spec = {"arguments": {"parameters": [{"name": "dataset_uri", "value": params["dataset_uri"]},
                                         {"name": "learning_rate", "value": params["learning_rate"]},
                                         {"name": "epochs", "value": params["epochs"]}]},
            "entrypoint": "churn-training", "podMetadata": {"labels": {"pipeline/runid": run_id}},
            "serviceAccountName": "pipeline-runner",
            "templates": [base, main, loop, pre, rep, train]}
    pipeline_spec = {"inputs": [{"name": "dataset_uri", "type": "String"},
                                {"default": "0.01", "name": "learning_rate", "optional": True, "type": "Float"},
                                {"default": "10", "name": "epochs", "optional": True, "type": "Integer"}],
                     "name": "churn-training"}
    meta = {"annotations": {"pipelines.kubeflow.org/kfp_sdk_version": V1_SDK,
                            "pipelines.kubeflow.org/pipeline_compilation_time": "2026-11-18T16:40:02.118734",
                            "pipelines.kubeflow.org/pipeline_spec": json.dumps(pipeline_spec, sort_keys=True),
                            "pipelines.kubeflow.org/run_name": "churn-training v1 (nightly 2026-11-20)"},
            "generateName": "churn-training-v1-",
            "labels": {"pipeline/runid": run_id, "pipelines.kubeflow.org/kfp_sdk_version": V1_SDK}}
    art = {"artifactRepository": {"archiveLogs": True, "s3": {
        "accessKeySecret": {"key": "accesskey", "name": "mlpipeline-minio-artifact"},
        "bucket": "mlpipeline", "endpoint": "minio-service.kubeflow:9000", "insecure": True,
        "keyFormat": "artifacts/{{workflow.name}}/{{workflow.creationTimestamp.Y}}"
                     "/{{workflow.creationTimestamp.m}}/{{workflow.creationTimestamp.d}}/{{pod.name}}",
        "secretKeySecret": {"key": "secretkey", "name": "mlpipeline-minio-artifact"}}}, "default": True}
    sim = Sim(wf_name=name, namespace=ns, uid=uid, created_ns=created, rv0=30127702, spec=spec, metadata=meta,
              argo="3.3", seed=11, artifact_repository_ref=art, pod_name_format="v1",
              main_logs_key="artifacts/%s/2026/11/20/{pod}" % name)
    sim.leaves = {"churn-training": ["report"], "for-loop-1": ["train"]}
    clean = RUN_PARAMS["dataset_uri"].rsplit("/", 1)[0] + "/clean.parquet"
    W = name

    def pin(pairs):
        return [{"name": p, "value": v} for p, v in pairs]

    def outp(tname, value):
        return [{"name": "%s-Output" % tname, "value": value, "valueFrom": {"path": "/tmp/outputs/Output/data"}}]

    sim.begin(at(created, 1, 90))
    sim.workflow_phase("Running")
    sim.meta.setdefault("annotations", {})["workflows.argoproj.io/pod-name-format"] = "v1"
    sim.init_node(W, "DAG", "churn-training", None, "Running",
                  inputs=pin([("dataset_uri", params["dataset_uri"]), ("epochs", "20"), ("learning_rate", "0.05")]))
    sim.init_node(W + ".preprocess", "Pod", "preprocess", W, "Pending",
                  inputs=pin([("dataset_uri", params["dataset_uri"])]))
    sim.connect(W, W + ".preprocess", [])
    sim.commit()
    sim.begin(at(created, 5, 300)); sim.pod_running(W + ".preprocess", HOSTS[0]); sim.commit()
    sim.begin(at(created, 48, 720))
    sim.pod_done(W + ".preprocess", params=outp("preprocess", clean), cpu=31, mem=120)
    sim.init_node(W + ".for-loop-1", "TaskGroup", "for-loop-1", W, "Running")
    sim.connect(W, W + ".for-loop-1", [W + ".preprocess"])
    loops = []
    for i, item in enumerate(items):
        ln = "%s.for-loop-1(%d:%s)" % (W, i, item)
        sim.init_node(ln, "DAG", "for-loop-1", W, "Running", inputs=pin([
            ("epochs", "20"), ("learning_rate", "0.05"), ("loop-item-param-1", item), ("preprocess-Output", clean)]))
        sim.add_child(W + ".for-loop-1", ln)
        tn = ln + ".train"
        sim.init_node(tn, "Pod", "train", ln, "Pending", inputs=pin([
            ("epochs", "20"), ("learning_rate", "0.05"), ("loop-item-param-1", item), ("preprocess-Output", clean)]))
        sim.connect(ln, tn, [])
        loops.append((ln, tn))
    sim.init_node(W + ".baseline", "Pod", "baseline", W, "Pending", inputs=pin([("preprocess-Output", clean)]))
    sim.connect(W, W + ".baseline", [W + ".preprocess"])
    sim.commit()
    sim.begin(at(created, 53, 11))
    for (ln, tn), h in zip(loops, HOSTS):
        sim.pod_running(tn, h)
    sim.pod_running(W + ".baseline", HOSTS[0])
    sim.commit()
    sim.begin(at(created, 71, 404))
    sim.pod_done(W + ".baseline", "Failed", "Error (exit code 1)", exit_code="1", cpu=12, mem=44)
    sim.commit()
    sim.begin(at(created, 236, 590))
    sim.pod_done(loops[1][1], params=outp("train", clean + ".medium.model"), cpu=170, mem=2650)
    sim.dag_done(loops[1][0], "Succeeded")
    sim.commit()
    sim.begin(at(created, 262, 13))
    for i in (0, 2):
        sim.pod_done(loops[i][1], params=outp("train", clean + ".%s.model" % items[i]), cpu=190 + i, mem=3100 + i)
        sim.dag_done(loops[i][0], "Succeeded")
    sim.set_phase(W + ".for-loop-1", "Succeeded")
    sim.init_node(W + ".report", "Skipped", "report", W, "Omitted", message="omitted: depends condition not met")
    sim.connect(W, W + ".report", [W + ".baseline", W + ".for-loop-1"])
    sim.dag_done(W, "Failed")
    sim.workflow_phase("Failed", "")
    sim.commit()
    sim.label_only_update(parse_ts(sim.status["finishedAt"]) + 3 * S, {"pipeline/persistedFinalState": "true"})
    return sim, {"run_id": run_id, "params": params}


# ==============================================================================================
# plain Argo Workflow (Argo v3.7.3): no KFP labels
# ==============================================================================================

def argo_plain_run():
    name, ns = "etl-nightly-k5v9m", "argo"
    uid = "c41d2a6e-0f3b-4b7a-8e65-1a9d0c7f2e38"
    created = parse_ts("2026-11-20T02:00:04Z")

    def ctr(tname, args):
        return {"container": {"args": args, "command": ["sh", "-c"], "image": "alpine:3.20", "name": "",
                              "resources": {}},
                "inputs": {}, "metadata": {}, "name": tname, "outputs": {}}

    spec = {"arguments": {"parameters": [{"name": "date", "value": "2026-11-19"}]}, "entrypoint": "main",
            "templates": [
                {"dag": {"tasks": [
                    {"arguments": {}, "name": "extract", "template": "extract"},
                    {"arguments": {}, "depends": "extract", "name": "validate", "template": "validate"},
                    {"arguments": {}, "depends": "extract", "name": "transform", "template": "transform"},
                    {"arguments": {}, "depends": "validate && transform", "name": "load", "template": "load"}]},
                    "inputs": {}, "metadata": {}, "name": "main", "outputs": {}},
                ctr("extract", ["echo extracting {{workflow.parameters.date}}; sleep 20"]),
                ctr("validate", ["echo validating; exit 1"]),
                ctr("transform", ["echo transforming; sleep 30"]),
                ctr("load", ["echo loading"])]}
    meta = {"generateName": "etl-nightly-", "labels": {"app.kubernetes.io/part-of": "etl"}}
    art = {"artifactRepository": {"archiveLogs": False, "s3": {
        "accessKeySecret": {"key": "accesskey", "name": "my-minio-cred"}, "bucket": "my-bucket",
        "endpoint": "minio:9000", "insecure": True,
        "secretKeySecret": {"key": "secretkey", "name": "my-minio-cred"}}},
        "configMap": "artifact-repositories", "key": "default-v1", "namespace": ns}
    sim = Sim(wf_name=name, namespace=ns, uid=uid, created_ns=created, rv0=8812340, spec=spec, metadata=meta,
              argo="4.0", seed=23, artifact_repository_ref=art)
    sim.leaves = {"main": ["load"]}
    W = name
    sim.begin(at(created, 0, 870))
    sim.workflow_phase("Running")
    sim.meta.setdefault("annotations", {})["workflows.argoproj.io/pod-name-format"] = "v2"
    sim.init_node(W, "DAG", "main", None, "Running")
    sim.init_node(W + ".extract", "Pod", "extract", W, "Pending")
    sim.connect(W, W + ".extract", [])
    sim.commit()
    sim.begin(at(created, 4, 120)); sim.pod_running(W + ".extract", "kind-worker"); sim.commit()
    sim.begin(at(created, 27, 333))
    sim.pod_done(W + ".extract", cpu=2, mem=9)
    for t in ("validate", "transform"):
        sim.init_node(W + "." + t, "Pod", t, W, "Pending")
        sim.connect(W, W + "." + t, [W + ".extract"])
    sim.commit()
    sim.begin(at(created, 31, 47)); sim.pod_running(W + ".transform", "kind-worker2"); sim.commit()
    # validate ran and exited between two passes: Pending -> Failed (synthetic Running event)
    sim.begin(at(created, 34, 612))
    sim.pod_done(W + ".validate", "Failed", "Error (exit code 1)", exit_code="1", cpu=1, mem=2, host="kind-worker")
    sim.commit()
    sim.begin(at(created, 63, 208))
    sim.pod_done(W + ".transform", cpu=3, mem=14)
    sim.init_node(W + ".load", "Skipped", "load", W, "Omitted", message="omitted: depends condition not met",
                  node_flag={})
    sim.connect(W, W + ".load", [W + ".validate", W + ".transform"])
    sim.dag_done(W, "Failed")
    sim.workflow_phase("Failed", "")
    sim.commit()
    return sim, {}


# ==============================================================================================
# <name>.EXPECTED.md: what the mapping rules of README.md give for each recording
# ==============================================================================================

DESCRIPTIONS = {
    "kfp-2.4-parallelfor.jsonl": (
        "KFP 2.4.1 run, Argo v3.4.17 (the versions KFP 2.4.1 ships), layout (a) of README.md: no Retry "
        "nodes. `preprocess` succeeds; the ParallelFor `for-loop-2` runs `train` for the items "
        "`small`, `medium`, `large` (all succeed); `baseline` (display name `Baseline model`) fails "
        "with `Error (exit code 1)`; `report` depends on both and is Omitted; the run fails.",
        ["Events have `reportingComponent: \"\"` (client-go v0.24).",
         "From the 10th distinct `WorkflowNodeRunning` / `WorkflowNodeSucceeded` message on, events are "
         "rolled up into one Event per reason (`(combined from similar events): ...`, no annotations); "
         "every later transition of that reason is a MODIFIED of that Event with `count`+1. Most `train` "
         "transitions arrive only that way.",
         "`WorkflowFailed` (no `message` key) arrives before the Workflow MODIFIED with phase Failed.",
         "The last Workflow line is the KFP persistence agent's label `pipeline/persistedFinalState`."]),
    "kfp-2.4-retried-run.jsonl": (
        "The same pipeline on KFP 2.4.1 / Argo v3.4.17, run on the next day. The run fails as in "
        "`kfp-2.4-parallelfor.jsonl`; 1312 s after it finished the user clicks *Retry* in the KFP UI. "
        "The API server (`RetryRun` -> `GenerateRetryExecution`) updates the same Workflow (same uid): "
        "phase Failed -> Running, labels `completed` and `persistedFinalState` removed, failed Pod "
        "nodes and Omitted nodes removed, failed DAG nodes reset to Running. The controller re-creates "
        "`baseline`'s executor Pod, which fails again.",
        ["Attempt 2 has **no** `WorkflowRunning` Event and no Running Event for the DAG nodes the API "
         "server reset (the controller never saw them change phase): the retry is visible only as the "
         "Workflow MODIFIED (phase Failed -> Running, same uid). The rows marked *Workflow (no Event)* "
         "come from that line.",
         "Attempt 2's `Failed` Events are MODIFIED count bumps (count 2) of attempt 1's Events: same "
         "message -> same client-go event key -> PATCH. The PATCH does not touch annotations or "
         "`involvedObject`, so they still carry attempt 1's `node-start-time` and resourceVersion.",
         "Attempt 2's `Running node ...baseline.executor` is a new Event (ADDED): in attempt 1 that "
         "message went into the roll-up (aggregate key), so the event logger had no entry for its own "
         "key; and >600 s after the last Running event the aggregator starts afresh.",
         "If the retry came more than 1 h (kube-apiserver `--event-ttl`) after the failure, the old "
         "Events would be gone and attempt 2's Events would be new ADDED Events."]),
    "kfp-2.17-retry.jsonl": (
        "The same pipeline compiled by KFP 2.17.0 and run under its default manifests: Argo v4.0.5, "
        "`workflowDefaults` with `templateDefaults.retryStrategy {limit: \"2\", retryPolicy: OnError}` "
        "and `ttlStrategy` 3600 s (merged into the Workflow's spec by the controller on its first "
        "write). Every template execution is a `Retry` node with one attempt `(0)` (layout (a')). "
        "`preprocess` is a cache hit: its driver outputs `cached-decision: \"true\"` and the executor "
        "task is Skipped (`when 'true != true' evaluated false`). One hour after the run the Events "
        "expire and the Workflow is deleted by its TTL (DELETED lines).",
        ["Events have `reportingComponent: workflow-controller` (client-go v0.33), except roll-ups "
         "(`\"\"`).",
         "Each task transition produces two node Events (the Retry node and its attempt); only the "
         "Retry node (no `(n)` suffix) counts. With twice the events, roll-ups start earlier.",
         "The cached `preprocess` is created and completed in the same controller pass: a synthetic "
         "`Running` Event and a `Succeeded` Event for the same node, in random order with others.",
         "`retryPolicy: OnError` does not retry a Failed (exit code 1) attempt: the Retry node fails "
         "with the attempt's message."]),
    "kfp-v1-flat.jsonl": (
        "A KFP v1 run (SDK 1.8 v1 compiler output, KFP 1.8.5 API server, Argo v3.3.8): a flat Argo "
        "DAG whose templates are the components; the ParallelFor is a `withItems` task `for-loop-1` "
        "over `small`, `medium`, `large` (a TaskGroup with one DAG per item); `baseline` (display name "
        "`Baseline model` via `pipelines.kubeflow.org/task_display_name`) fails; `report` is Omitted. "
        "Pod names are v1 (= node ids).",
        ["Argo v3.3 node Events carry only `node-name` and `node-type` annotations (no `node-id`, no "
         "`node-start-time`); `reportingComponent` is `\"\"`.",
         "User parameters are plain `spec.arguments.parameters` (strings)."]),
    "argo-plain.jsonl": (
        "A plain Argo Workflow (Argo v3.7.3, created with `kubectl create`, no KFP labels): DAG "
        "`extract` -> (`validate`, `transform`) -> `load`; `validate` exits 1, `load` is Omitted.",
        ["`validate` ran and exited between two controller passes (Pending -> Failed): Argo records a "
         "synthetic `Running` Event first, and that copy keeps the node's message: "
         "`Running node etl-nightly-k5v9m.validate: Error (exit code 1)`.",
         "Without a `pipeline/runid` label this is not a KFP run; tasks are the DAG's Argo tasks."]),
}


def write_expected(fname):
    path = os.path.join(HERE, fname)
    rows, wf = derive.derive(path)
    kind = derive.kind_of(wf)
    params = derive.run_parameters(wf, kind)
    n_lines = sum(1 for _ in open(path))
    desc, notes = DESCRIPTIONS[fname]
    md = ["# Expected task-level transitions for `%s`" % fname, "",
          desc, "",
          "Workflow `%s`, namespace `%s`, uid `%s`%s; %d lines." % (
              wf["metadata"]["name"], wf["metadata"]["namespace"], wf["metadata"]["uid"],
              ", KFP run id `%s`" % wf["metadata"]["labels"]["pipeline/runid"]
              if "pipeline/runid" in wf["metadata"]["labels"] else "", n_lines), "",
          "## Run parameters (name -> value)", "",
          "| name | value |", "|---|---|"]
    for k in sorted(params):
        md.append("| `%s` | `%s` |" % (k, json.dumps(params[k]) if not isinstance(params[k], str) else params[k]))
    md += ["", "Source: %s." % (
        "the `runtime-config` input (`{\"parameterValues\": ...}`) of the root driver node "
        "(`<wf>.root-driver`, or the Retry node `<wf>(0).root-driver` and its attempt)" if kind == "kfp-v2"
        else "`spec.arguments.parameters`"), "",
        "## Transitions", "",
        "Each row is counted once: the first Event occurrence (an ADDED Event, or a MODIFIED one whose "
        "`count` went up) that the README's rules map to that (run attempt, task, iteration, reason). "
        "`line` is the recording line. Rows with source *no Event* are derived from Workflow lines.", "",
        "| # | line | source | attempt | level | task | display name | iteration | DAG path | reason | note |",
        "|---|---:|---|---:|---|---|---|---:|---|---|---|"]
    for i, r in enumerate(rows, 1):
        md.append("| %d | %s | %s | %d | %s | %s | %s | %s | %s | %s | %s |" % (
            i, r["line"] if r["line"] else "-", r["source"], r["attempt"], r["level"],
            "`%s`" % r["task"] if r["task"] else "", r["display"],
            "" if r["iteration"] is None else r["iteration"], r["path"], r["reason"],
            r["note"].replace("|", "\\|")))
    by = {}
    for r in rows:
        by[r["reason"]] = by.get(r["reason"], 0) + 1
    md += ["", "Totals: %d rows (%s)." % (len(rows), ", ".join("%s %d" % kv for kv in sorted(by.items()))), "",
           "## Notes", ""] + ["* " + n for n in notes] + [""]
    with open(os.path.join(HERE, fname.replace(".jsonl", ".EXPECTED.md")), "w") as f:
        f.write("\n".join(md))


def main():
    out = {}
    created = parse_ts("2026-11-20T09:30:07Z")
    sim, info = kfp_v2_run(version="2.4.1", name="churn-training-x7k2p",
                           run_id="3f1c9a52-7d4e-4b21-a8c6-5e0b9d2f7a14",
                           run_name="churn-training nightly 2026-11-20",
                           uid="9a7e2c41-5b3d-4f80-b1e6-c2d48f0a9e37", created=created, rv0=51203311, seed=7)
    out["kfp-2.4-parallelfor.jsonl"] = sim
    sim, info = kfp_v2_run(version="2.4.1", name="churn-training-q4m8t",
                           run_id="b82e0d17-41c9-4a6e-9d3f-7c15e2a08b64",
                           run_name="churn-training nightly 2026-11-21",
                           uid="1d5f8b30-6e2a-4c97-8f14-a03c7e9b2d55", created=parse_ts("2026-11-21T09:30:05Z"),
                           rv0=51988020, seed=8, retry_run_after=1312)
    out["kfp-2.4-retried-run.jsonl"] = sim
    sim, info = kfp_v2_run(version="2.17.0", name="churn-training-h2w6d",
                           run_id="6c04e9b1-2a7f-4d58-b3e0-9f61c8a5d27e",
                           run_name="churn-training nightly 2026-11-22",
                           uid="e3b7a915-0c62-4f1d-9a48-5d2e6b80c7f3", created=parse_ts("2026-11-22T09:30:04Z"),
                           rv0=7730415, seed=9, cached_preprocess=True)
    out["kfp-2.17-retry.jsonl"] = sim
    out["kfp-v1-flat.jsonl"] = kfp_v1_run()[0]
    out["argo-plain.jsonl"] = argo_plain_run()[0]
    for fname, sim in out.items():
        sim.dump(os.path.join(HERE, fname))
        print("%-28s %4d lines %8d bytes" % (fname, len(sim.lines), os.path.getsize(os.path.join(HERE, fname))))
        write_expected(fname)


if __name__ == "__main__":
    main()
