"""The pipeline used by the KFP recordings and what KFP's Argo compiler and API server make of it.

Our own code. It reproduces the *shapes* written by kubeflow/pipelines
`backend/src/v2/compiler/argocompiler` (argo.go, dag.go, container.go at tags 2.4.1 and 2.17.0)
and `backend/src/apiserver/template/v2_template.go RunWorkflow`, checked against the compiler's
golden files (2.4.1 `argocompiler/testdata/multiple_parallel_loops.yaml`, 2.17.0
`test_data/compiled-workflows/parallel_for_after_dependency.yaml`). The `components-<hash>` /
`implementations-<hash>` names use the compiler's own hash: sha256 of Go's json.Marshal of the
PipelineContainerSpec (fields image, command, args), checked to reproduce the hash in the 2.4.1
golden file.

The pipeline (KFP SDK DSL, for reference):

    @dsl.pipeline(name="churn-training")
    def churn_training(dataset_uri: str, learning_rate: float = 0.01, epochs: int = 10):
        prep = preprocess(dataset_uri=dataset_uri)
        with dsl.ParallelFor(["small", "medium", "large"]) as size:          # for-loop-2
            train(dataset_uri=prep.output, model_size=size,
                  learning_rate=learning_rate, epochs=epochs)
        base = baseline(dataset_uri=prep.output).set_display_name("Baseline model")
        report(baseline_score=base.output).after(loop)
"""

import hashlib
import json

from argosim import gojson

PIPELINE = "churn-training"
LOOP_ITEMS = ["small", "medium", "large"]

SOURCES = {
    "preprocess": '''def preprocess(dataset_uri: str) -> str:
    import pandas as pd
    out = dataset_uri.rsplit("/", 1)[0] + "/clean.parquet"
    pd.read_parquet(dataset_uri).dropna().to_parquet(out)
    return out
''',
    "train": '''def train(dataset_uri: str, model_size: str, learning_rate: float, epochs: int) -> str:
    from churnlib import fit
    model = fit(dataset_uri, size=model_size, lr=learning_rate, epochs=epochs)
    return model.save(f"{dataset_uri}.{model_size}.model")
''',
    "baseline": '''def baseline(dataset_uri: str) -> float:
    from churnlib import logistic_baseline
    return logistic_baseline(dataset_uri)
''',
    "report": '''def report(baseline_score: float):
    print(f"baseline AUC: {baseline_score:.3f}")
''',
}

INPUTS = {
    "preprocess": {"dataset_uri": "STRING"},
    "train": {"dataset_uri": "STRING", "epochs": "NUMBER_INTEGER",
              "learning_rate": "NUMBER_DOUBLE", "model_size": "STRING"},
    "baseline": {"dataset_uri": "STRING"},
    "report": {"baseline_score": "NUMBER_DOUBLE"},
}
OUTPUTS = {"preprocess": "STRING", "train": "STRING", "baseline": "NUMBER_DOUBLE", "report": None}


def implementation(comp, kfp_sdk):
    """The lightweight-component container the KFP SDK writes (same text as the SDK's golden
    files, with our function)."""
    command = [
        "sh", "-c",
        "\nif ! [ -x \"$(command -v pip)\" ]; then\n    python3 -m ensurepip || python3 -m ensurepip --user "
        "|| apt-get install python3-pip\nfi\n\nPIP_DISABLE_PIP_VERSION_CHECK=1 python3 -m pip install --quiet "
        "--no-warn-script-location 'kfp==%s' '--no-deps' 'typing-extensions>=3.7.4,<5; python_version<\"3.9\"'"
        " && \"$0\" \"$@\"\n" % kfp_sdk,
        "sh", "-ec",
        "program_path=$(mktemp -d)\n\nprintf \"%s\" \"$0\" > \"$program_path/ephemeral_component.py\"\n"
        "_KFP_RUNTIME=true python3 -m kfp.dsl.executor_main                         --component_module_path"
        "                         \"$program_path/ephemeral_component.py\"                         \"$@\"\n",
        "\nimport kfp\nfrom kfp import dsl\nfrom kfp.dsl import *\nfrom typing import *\n\n" + SOURCES[comp] + "\n",
    ]
    args = ["--executor_input", "{{$}}", "--function_to_execute", comp]
    return {"image": "python:3.11", "command": command, "args": args}


def container_hash(container):
    # Go's json.Marshal of pipelinespec.PipelineDeploymentConfig_PipelineContainerSpec:
    # struct field order image, command, args (argo.go hashValue)
    ordered = {"image": container["image"], "command": container["command"], "args": container["args"]}
    return hashlib.sha256(gojson(ordered, sort_keys=False).encode()).hexdigest()


def component_spec(comp):
    spec = {"executorLabel": "exec-" + comp,
            "inputDefinitions": {"parameters": {k: {"parameterType": v} for k, v in INPUTS[comp].items()}}}
    if OUTPUTS[comp]:
        spec["outputDefinitions"] = {"parameters": {"Output": {"parameterType": OUTPUTS[comp]}}}
    return spec


def task_specs():
    """PipelineTaskSpec of each task, as the SDK compiles them (taskInfo.name = display name)."""
    loop_items = json.dumps(LOOP_ITEMS)  # the SDK writes the raw items with json.dumps
    train = {"cachingOptions": {"enableCache": True}, "componentRef": {"name": "comp-train"},
             "inputs": {"parameters": {
                 "dataset_uri": {"componentInputParameter": "pipelinechannel--preprocess-Output"},
                 "epochs": {"componentInputParameter": "pipelinechannel--epochs"},
                 "learning_rate": {"componentInputParameter": "pipelinechannel--learning_rate"},
                 "model_size": {"componentInputParameter": "pipelinechannel--loop-item-param-1"}}},
             "taskInfo": {"name": "train"}}
    root = {
        "baseline": {"cachingOptions": {"enableCache": True}, "componentRef": {"name": "comp-baseline"},
                     "dependentTasks": ["preprocess"],
                     "inputs": {"parameters": {"dataset_uri": {"taskOutputParameter": {
                         "outputParameterKey": "Output", "producerTask": "preprocess"}}}},
                     "taskInfo": {"name": "Baseline model"}},
        "for-loop-2": {"componentRef": {"name": "comp-for-loop-2"}, "dependentTasks": ["preprocess"],
                       "inputs": {"parameters": {
                           "pipelinechannel--epochs": {"componentInputParameter": "epochs"},
                           "pipelinechannel--learning_rate": {"componentInputParameter": "learning_rate"},
                           "pipelinechannel--preprocess-Output": {"taskOutputParameter": {
                               "outputParameterKey": "Output", "producerTask": "preprocess"}}}},
                       "parameterIterator": {"itemInput": "pipelinechannel--loop-item-param-1",
                                             "items": {"raw": loop_items}},
                       "taskInfo": {"name": "for-loop-2"}},
        "preprocess": {"cachingOptions": {"enableCache": True}, "componentRef": {"name": "comp-preprocess"},
                       "inputs": {"parameters": {"dataset_uri": {"componentInputParameter": "dataset_uri"}}},
                       "taskInfo": {"name": "preprocess"}},
        "report": {"cachingOptions": {"enableCache": True}, "componentRef": {"name": "comp-report"},
                   "dependentTasks": ["baseline", "for-loop-2"],
                   "inputs": {"parameters": {"baseline_score": {"taskOutputParameter": {
                       "outputParameterKey": "Output", "producerTask": "baseline"}}}},
                   "taskInfo": {"name": "report"}},
    }
    loop_component = {"dag": {"tasks": {"train": train}},
                      "inputDefinitions": {"parameters": {
                          "pipelinechannel--epochs": {"parameterType": "NUMBER_INTEGER"},
                          "pipelinechannel--learning_rate": {"parameterType": "NUMBER_DOUBLE"},
                          "pipelinechannel--loop-item-param-1": {"parameterType": "STRING"},
                          "pipelinechannel--preprocess-Output": {"parameterType": "STRING"}}}}
    root_component = {"dag": {"tasks": root},
                      "inputDefinitions": {"parameters": {
                          "dataset_uri": {"parameterType": "STRING"},
                          "epochs": {"defaultValue": 10, "isOptional": True, "parameterType": "NUMBER_INTEGER"},
                          "learning_rate": {"defaultValue": 0.01, "isOptional": True,
                                            "parameterType": "NUMBER_DOUBLE"}}}}
    return root, train, loop_component, root_component


def P(name, value=None, default=None):
    p = {"name": name}
    if value is not None:
        p["value"] = value
    if default is not None:
        p["default"] = default
    return p


class Compiled:
    """A compiled Workflow spec plus the values the nodes will carry."""


def compile_pipeline(version, run_id, run_display_name, runtime_params, namespace):
    v217 = version == "2.17.0"
    kfp_sdk = "2.14.3" if v217 else "2.10.1"
    driver_image = "ghcr.io/kubeflow/kfp-driver:%s" % version
    launcher_image = "ghcr.io/kubeflow/kfp-launcher:%s" % version
    root_tasks, train_task, loop_component, root_component = task_specs()
    impls = {c: implementation(c, kfp_sdk) for c in SOURCES}
    hashes = {c: container_hash(impls[c]) for c in SOURCES}

    # spec.arguments.parameters, in the compiler's DFS order (root tasks sorted, sub-DAGs first)
    arguments = []
    blobs = {}

    def save(name, value):
        text = gojson(value)
        blobs[name] = text
        if not any(a["name"] == name for a in arguments):
            arguments.append({"name": name, "value": text})

    for comp in ("baseline", "train"):
        save("components-" + hashes[comp], component_spec(comp))
        save("implementations-" + hashes[comp], impls[comp])
    save("components-comp-for-loop-2", loop_component)
    for comp in ("preprocess", "report"):
        save("components-" + hashes[comp], component_spec(comp))
        save("implementations-" + hashes[comp], impls[comp])
    save("components-root", root_component)

    wfp = lambda n: "{{workflow.parameters.%s}}" % n  # noqa: E731
    istio = {"annotations": {"sidecar.istio.io/inject": "false"}}
    sec_ctx = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
               "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    driver_res = {"limits": {"cpu": "500m", "memory": "512Mi"}, "requests": {"cpu": "100m", "memory": "64Mi"}}
    run_args = ["--run_id", run_id]
    if v217:
        run_args += ["--run_name", "{{workflow.name}}", "--run_display_name", run_display_name,
                     "--pipeline_job_create_time_utc", "{{workflow.creationTimestamp}}"]
    server_args = [] if not v217 else [
        "--http_proxy", "", "--https_proxy", "", "--no_proxy", "",
        "--ml_pipeline_server_address", "ml-pipeline.kubeflow.svc.cluster.local",
        "--ml_pipeline_server_port", "8887",
        "--mlmd_server_address", "metadata-grpc-service.kubeflow.svc.cluster.local",
        "--mlmd_server_port", "8080"]

    def tmeta(role=None):
        m = {"annotations": {"sidecar.istio.io/inject": "false"}}
        if role and v217:
            m["annotations"]["pipelines.kubeflow.org/runtime-role"] = role
        return m

    cdriver_args = ["--type", "CONTAINER", "--pipeline_name", PIPELINE] + run_args + [
        "--dag_execution_id", "{{inputs.parameters.parent-dag-id}}",
        "--component", "{{inputs.parameters.component}}", "--task", "{{inputs.parameters.task}}"] + (
        ["--task_name", "{{inputs.parameters.task-name}}"] if v217 else []) + [
        "--container", "{{inputs.parameters.container}}",
        "--iteration_index", "{{inputs.parameters.iteration-index}}",
        "--cached_decision_path", "{{outputs.parameters.cached-decision.path}}",
        "--pod_spec_patch_path", "{{outputs.parameters.pod-spec-patch.path}}",
        "--condition_path", "{{outputs.parameters.condition.path}}",
        "--kubernetes_config", "{{inputs.parameters.kubernetes-config}}"] + server_args
    cdriver = {"container": {"args": cdriver_args, "command": ["driver"], "image": driver_image, "name": "",
                             "resources": driver_res},
               "inputs": {"parameters": [P("component"), P("task"), P("container")] +
                          ([P("task-name")] if v217 else []) +
                          [P("parent-dag-id"), P("iteration-index", default="-1"),
                           P("kubernetes-config", default="")]},
               "metadata": tmeta("driver"), "name": "system-container-driver",
               "outputs": {"parameters": [
                   {"name": "pod-spec-patch", "valueFrom": {"default": "", "path": "/tmp/outputs/pod-spec-patch"}},
                   {"default": "false", "name": "cached-decision",
                    "valueFrom": {"default": "false", "path": "/tmp/outputs/cached-decision"}},
                   {"name": "condition", "valueFrom": {"default": "true", "path": "/tmp/outputs/condition"}}]}}
    if v217:
        cdriver["container"]["env"] = [
            {"name": "KFP_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "KFP_POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}}]
        cdriver["container"]["securityContext"] = sec_ctx
        cdriver["securityContext"] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    executor = {"dag": {"tasks": [{"arguments": {"parameters": [
        {"name": "pod-spec-patch", "value": "{{inputs.parameters.pod-spec-patch}}"}]},
        "name": "executor", "template": "system-container-impl",
        "when": "{{inputs.parameters.cached-decision}} != true"}]},
        "inputs": {"parameters": [P("pod-spec-patch"), P("cached-decision", default="false")]},
        "metadata": tmeta(), "name": "system-container-executor", "outputs": {}}
    scratch = [("kfp-launcher", "/kfp-launcher"), ("gcs-scratch", "/gcs"), ("s3-scratch", "/s3"),
               ("minio-scratch", "/minio"), ("dot-local-scratch", "/.local"),
               ("dot-cache-scratch", "/.cache"), ("dot-config-scratch", "/.config")]
    impl = {"container": {"command": ["should-be-overridden-during-runtime"],
                          "env": [{"name": "KFP_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                                  {"name": "KFP_POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}}],
                          "envFrom": [{"configMapRef": {"name": "metadata-grpc-configmap", "optional": True}}],
                          "image": "gcr.io/ml-pipeline/should-be-overridden-during-runtime", "name": "",
                          "resources": {},
                          "volumeMounts": [{"mountPath": p, "name": n} for n, p in scratch]},
            "initContainers": [{"command": ["launcher-v2", "--copy", "/kfp-launcher/launch"],
                                "image": launcher_image, "name": "kfp-launcher",
                                "resources": {"limits": {"cpu": "500m", "memory": "128Mi"},
                                              "requests": {"cpu": "100m"}},
                                "volumeMounts": [{"mountPath": "/kfp-launcher", "name": "kfp-launcher"}]}],
            "inputs": {"parameters": [P("pod-spec-patch")]}, "metadata": tmeta("launcher"),
            "name": "system-container-impl", "outputs": {},
            "podSpecPatch": "{{inputs.parameters.pod-spec-patch}}",
            "volumes": [{"emptyDir": {}, "name": n} for n, _ in scratch]}
    if v217:
        ic = impl["initContainers"][0]
        ic["args"] = ["--copy", "/kfp-launcher/launch"]
        ic["command"] = ["launcher-v2"]
        ic["resources"]["limits"]["memory"] = "256Mi"
        ic["securityContext"] = sec_ctx
        impl["container"]["securityContext"] = {k: v for k, v in sec_ctx.items() if k != "runAsNonRoot"}
        impl["securityContext"] = {"seccompProfile": {"type": "RuntimeDefault"}}
    ddriver_args = ["--type", "{{inputs.parameters.driver-type}}", "--pipeline_name", PIPELINE] + run_args + [
        "--dag_execution_id", "{{inputs.parameters.parent-dag-id}}",
        "--component", "{{inputs.parameters.component}}", "--task", "{{inputs.parameters.task}}"] + (
        ["--task_name", "{{inputs.parameters.task-name}}"] if v217 else []) + [
        "--runtime_config", "{{inputs.parameters.runtime-config}}",
        "--iteration_index", "{{inputs.parameters.iteration-index}}",
        "--execution_id_path", "{{outputs.parameters.execution-id.path}}",
        "--iteration_count_path", "{{outputs.parameters.iteration-count.path}}",
        "--condition_path", "{{outputs.parameters.condition.path}}"] + server_args
    ddriver = {"container": {"args": ddriver_args, "command": ["driver"], "image": driver_image, "name": "",
                             "resources": driver_res},
               "inputs": {"parameters": [P("component"), P("runtime-config", default=""), P("task", default="")] +
                          ([P("task-name", default="")] if v217 else []) +
                          [P("parent-dag-id", default="0"), P("iteration-index", default="-1"),
                           P("driver-type", default="DAG")]},
               "metadata": tmeta("driver"), "name": "system-dag-driver",
               "outputs": {"parameters": [
                   {"name": "execution-id", "valueFrom": {"path": "/tmp/outputs/execution-id"}},
                   {"name": "iteration-count", "valueFrom": {"default": "0", "path": "/tmp/outputs/iteration-count"}},
                   {"name": "condition", "valueFrom": {"default": "true", "path": "/tmp/outputs/condition"}}]}}
    if v217:
        ddriver["container"]["securityContext"] = sec_ctx
        ddriver["securityContext"] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}

    def container_task(name, comp, task_spec, parent, iteration=None, depends=None):
        params = [{"name": "component", "value": wfp("components-" + hashes[comp])},
                  {"name": "task", "value": gojson(task_spec)},
                  {"name": "container", "value": wfp("implementations-" + hashes[comp])}]
        if v217:
            params.append({"name": "task-name", "value": name})
        params.append({"name": "parent-dag-id", "value": parent})
        if iteration:
            params.append({"name": "iteration-index", "value": iteration})
        drv = {"arguments": {"parameters": params}, "name": name + "-driver", "template": "system-container-driver"}
        if depends:
            drv["depends"] = depends
        ex = {"arguments": {"parameters": [
            {"name": "pod-spec-patch", "value": "{{tasks.%s-driver.outputs.parameters.pod-spec-patch}}" % name},
            {"default": "false", "name": "cached-decision",
             "value": "{{tasks.%s-driver.outputs.parameters.cached-decision}}" % name}]},
            "depends": name + "-driver.Succeeded", "name": name, "template": "system-container-executor"}
        return [drv, ex]

    loop_task_json = gojson(root_tasks["for-loop-2"])
    comp_loop = {"dag": {"tasks": container_task("train", "train", train_task, "{{inputs.parameters.parent-dag-id}}")},
                 "inputs": {"parameters": [P("parent-dag-id")]}, "metadata": tmeta(),
                 "name": "comp-for-loop-2", "outputs": {}}
    item_driver_params = [{"name": "component", "value": wfp("components-comp-for-loop-2")},
                          {"name": "iteration-index", "value": "{{inputs.parameters.iteration-index}}"},
                          {"name": "parent-dag-id", "value": "{{inputs.parameters.parent-dag-id}}"},
                          {"name": "task", "value": loop_task_json}]
    if v217:
        item_driver_params.append({"name": "task-name", "value": "for-loop-2"})
    iteration = {"dag": {"tasks": [
        {"arguments": {"parameters": item_driver_params}, "name": "iteration-item-driver",
         "template": "system-dag-driver"},
        {"arguments": {"parameters": [
            {"name": "parent-dag-id", "value": "{{tasks.iteration-item-driver.outputs.parameters.execution-id}}"},
            {"name": "condition", "value": "{{tasks.iteration-item-driver.outputs.parameters.condition}}"}]},
         "depends": "iteration-item-driver.Succeeded", "name": "iteration-item", "template": "comp-for-loop-2"}]},
        "inputs": {"parameters": [P("parent-dag-id"), P("iteration-index")]}, "metadata": tmeta(),
        "name": "comp-for-loop-2-iteration", "outputs": {}}
    it_driver_params = [{"name": "component", "value": wfp("components-comp-for-loop-2")},
                        {"name": "parent-dag-id", "value": "{{inputs.parameters.parent-dag-id}}"},
                        {"name": "task", "value": loop_task_json}]
    if v217:
        it_driver_params.append({"name": "task-name", "value": "for-loop-2"})
    iterator = {"dag": {"tasks": [
        {"arguments": {"parameters": it_driver_params}, "name": "iteration-driver", "template": "system-dag-driver"},
        {"arguments": {"parameters": [
            {"name": "parent-dag-id", "value": "{{tasks.iteration-driver.outputs.parameters.execution-id}}"},
            {"name": "iteration-index", "value": "{{item}}"}]},
         "depends": "iteration-driver.Succeeded", "name": "iteration-iterations",
         "template": "comp-for-loop-2-iteration",
         "withSequence": {"count": "{{tasks.iteration-driver.outputs.parameters.iteration-count}}"}}]},
        "inputs": {"parameters": [P("parent-dag-id")]}, "metadata": tmeta(),
        "name": "comp-for-loop-2-for-loop-2-iterator", "outputs": {}}
    pdag = "{{inputs.parameters.parent-dag-id}}"
    root_dag_tasks = (container_task("baseline", "baseline", root_tasks["baseline"], pdag,
                                     depends="preprocess.Succeeded") +
                      [{"arguments": {"parameters": [{"name": "parent-dag-id", "value": pdag}]},
                        "depends": "preprocess.Succeeded", "name": "for-loop-2",
                        "template": "comp-for-loop-2-for-loop-2-iterator"}] +
                      container_task("preprocess", "preprocess", root_tasks["preprocess"], pdag) +
                      container_task("report", "report", root_tasks["report"], pdag,
                                     depends="baseline.Succeeded && for-loop-2.Succeeded"))
    root = {"dag": {"tasks": root_dag_tasks}, "inputs": {"parameters": [P("parent-dag-id")]},
            "metadata": tmeta(), "name": "root", "outputs": {}}
    runtime_config = gojson({"parameterValues": runtime_params})
    entrypoint = {"dag": {"tasks": [
        {"arguments": {"parameters": [{"name": "component", "value": wfp("components-root")},
                                      {"name": "runtime-config", "value": runtime_config},
                                      {"name": "driver-type", "value": "ROOT_DAG"}]},
         "name": "root-driver", "template": "system-dag-driver"},
        {"arguments": {"parameters": [
            {"name": "parent-dag-id", "value": "{{tasks.root-driver.outputs.parameters.execution-id}}"},
            {"name": "condition", "value": ""}]},
         "depends": "root-driver.Succeeded", "name": "root", "template": "root"}]},
        "inputs": {}, "metadata": tmeta(), "name": "entrypoint", "outputs": {}}
    templates = [cdriver, executor, impl, comp_loop, ddriver, iteration, iterator, root, entrypoint]
    spec = {"arguments": {"parameters": arguments}, "entrypoint": "entrypoint",
            "podMetadata": {"annotations": {"pipelines.kubeflow.org/v2_component": "true"},
                            "labels": {"pipeline/runid": run_id, "pipelines.kubeflow.org/v2_component": "true"}},
            "serviceAccountName": "pipeline-runner", "templates": templates}
    if v217:
        spec["securityContext"] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}

    c = Compiled()
    c.spec = spec
    c.blobs = blobs
    c.hashes = hashes
    c.impls = impls
    c.root_tasks = root_tasks
    c.train_task = train_task
    c.runtime_config = runtime_config
    c.loop_task_json = loop_task_json
    c.v217 = v217
    c.leaves = {"entrypoint": ["root"], "root": ["report"],
                "comp-for-loop-2-for-loop-2-iterator": ["iteration-iterations"],
                "comp-for-loop-2-iteration": ["iteration-item"], "comp-for-loop-2": ["train"],
                "system-container-executor": ["executor"]}
    return c


# ----- values the nodes carry at run time (driver inputs/outputs) -----------------------------

def pod_spec_patch(c, comp, run_id, execution_id, inputs):
    """What the container driver writes to /tmp/outputs/pod-spec-patch (driver.go
    initPodSpecPatch): container `main` running /kfp-launcher/launch with the launcher flags,
    then `--` and the user's command and args. Abbreviated here (executor input, component spec
    and the user's command are replaced by markers) to keep the recordings small."""
    impl = c.impls[comp]
    args = ["--pipeline_name", PIPELINE, "--run_id", run_id, "--execution_id", str(execution_id),
            "--executor_input", "(abbreviated: %s)" % gojson({"inputs": {"parameterValues": inputs}}),
            "--component_spec", "(abbreviated)",
            "--pod_name", "$(KFP_POD_NAME)", "--pod_uid", "$(KFP_POD_UID)",
            "--mlmd_server_address", "$(METADATA_GRPC_SERVICE_HOST)",
            "--mlmd_server_port", "$(METADATA_GRPC_SERVICE_PORT)", "--", "(abbreviated)"]
    patch = {"containers": [{"args": args, "command": ["/kfp-launcher/launch"],
                             "image": impl["image"], "name": "main", "resources": {}}]}
    return gojson(patch)
