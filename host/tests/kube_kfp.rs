//! KFP runs through the kubernetes source, end to end: the router binary, with a real kube
//! client, watches the test API server of `support::kube_api` while a run happens there, and
//! delivers `kfp` payloads (default `nodes = "tasks"`, signed) to the test sink; once for each
//! `source.from` (`both`, `events`, `workflows`).
//!
//! - A KFP *Retry run* (`examples/recordings/kfp-2.4-retried-run.jsonl`, fed to the server line
//!   by line as the watch events they are): both attempts are delivered, each with its own
//!   `webhook-id`, and no plumbing node is. The recording is nine days old by now: its
//!   timestamps are history to the wall clock, its objects are not (they arrive live).
//! - A run whose controller's clock is 30 s behind the router's: every timestamp of a run that
//!   starts after the router reads as before the router's start, and every transition is
//!   delivered all the same ("live beats wall clock").

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use support::kube_api::{KubeApi, Res};
use support::router::{PATIENCE, RouterProcess, Scratch, run_command, toml_path};
use support::sink::{Received, Sink};

const NS: &str = "kubeflow";
/// The endpoint's Standard Webhooks signing secret.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// How far the controller's clock is behind the router's, in the clock-skew test.
const SKEW: SignedDuration = SignedDuration::from_secs(30);

/// The test's world: an API server, a sink, a scratch folder.
struct World {
    api: KubeApi,
    sink: Sink,
    scratch: Scratch,
    kubeconfig: PathBuf,
}

impl World {
    async fn new() -> Self {
        let api = KubeApi::start().await;
        let sink = Sink::start().await;
        let scratch = Scratch::new();
        let kubeconfig = api.kubeconfig(scratch.dir.path(), NS);
        Self {
            api,
            sink,
            scratch,
            kubeconfig,
        }
    }

    /// Writes a config reporting from `from`, with one signed `kfp` endpoint (default nodes).
    fn config(&self, from: &str) -> PathBuf {
        let secret = self.scratch.write("secret", SECRET);
        let text = format!(
            "[source]\nkind = \"kubernetes\"\nfrom = \"{from}\"\nworkflow_wait = \"200ms\"\n\
             checkpoint_interval = \"100ms\"\n\n\
             [source.leader_election]\nlease_duration = \"2s\"\n\n\
             [state]\ndir = {}\n\n[server]\nlisten = \"127.0.0.1:0\"\n\n\
             [[endpoints]]\nname = \"kfp\"\nurl = \"{}\"\nformat = \"kfp\"\n\
             signing_secret = {{ file = {} }}\n",
            toml_path(&self.scratch.path("state")),
            self.sink.url("/hook"),
            toml_path(&secret),
        );
        self.scratch.write("router.toml", &text)
    }

    /// Starts the router with `config`, in namespace [`NS`].
    fn start(&self, config: &Path) -> RouterProcess {
        let mut command = run_command(config);
        command
            .env("KUBECONFIG", &self.kubeconfig)
            .env("POD_NAMESPACE", NS)
            .env("POD_NAME", "router")
            .env("RUST_LOG", "info,kube=warn")
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("KUBERNETES_SERVICE_HOST");
        RouterProcess::spawn(command)
    }

    /// The deliveries so far.
    fn deliveries(&self) -> Vec<Received> {
        self.sink.received_on("/hook")
    }
}

/// Waits until the router leads, has listed the Events and watches Events and Workflows: from
/// then on, everything that happens is live.
async fn wait_watching(world: &World, router: &mut RouterProcess) {
    router.wait_for_log("listed Events", PATIENCE).await;
    world
        .api
        .wait_for_watches(Res::Workflows, 1, PATIENCE)
        .await;
    world.api.wait_for_watches(Res::Events, 1, PATIENCE).await;
}

/// `(EventType, NodeName)` of a `kfp` body.
fn key(received: &Received) -> (String, String) {
    let body = received.json();
    let text = |k: &str| body[k].as_str().unwrap_or_default().to_owned();
    (text("EventType"), text("NodeName"))
}

/// The deliveries, one a line, for failure messages.
fn listing(got: &[Received]) -> String {
    got.iter()
        .map(|r| {
            let (reason, node) = key(r);
            format!("  {reason:<24} {node:<12} {}\n", r.header("webhook-id"))
        })
        .collect()
}

/// How many deliveries are `(reason, node)`.
fn count(got: &[Received], reason: &str, node: &str) -> usize {
    got.iter()
        .filter(|r| key(r) == (reason.to_owned(), node.to_owned()))
        .count()
}

/// Waits (at most [`PATIENCE`]) until the deliveries satisfy `done`.
async fn wait_until(
    world: &World,
    router: &RouterProcess,
    what: &str,
    done: impl Fn(&[Received]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let got = world.deliveries();
        if done(&got) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waiting for {what}; received:\n{}logs:\n{}",
            listing(&got),
            router.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Why `node` names a KFP v2 plumbing node, if it does (checked whole and by its last part).
fn plumbing(node: &str) -> Option<&'static str> {
    let last = node.rsplit('.').next().unwrap_or(node);
    [node, last].into_iter().find_map(|n| match n {
        "executor" => Some("an executor"),
        "root" => Some("the root DAG"),
        _ if n.ends_with("-driver") => Some("a driver"),
        _ if n.starts_with("iteration-") => Some("a loop iteration node"),
        _ => None,
    })
}

/// Checks what every delivery has in common: signed, each with its own `webhook-id`.
fn assert_signed_and_distinct(got: &[Received]) {
    let ids: BTreeSet<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(
        ids.len(),
        got.len(),
        "every delivery has its own webhook-id:\n{}",
        listing(got)
    );
    for r in got {
        assert!(
            r.header("webhook-id").starts_with("msg_"),
            "{:?}",
            r.headers
        );
        assert!(
            r.header("webhook-signature").starts_with("v1,"),
            "{:?}",
            r.headers
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 1. A KFP "Retry run", live.
// ---------------------------------------------------------------------------------------------

/// The recording's watch events, in order.
fn recording() -> Vec<Value> {
    let path = support::root().join("examples/recordings/kfp-2.4-retried-run.jsonl");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).expect("a recording line is JSON"))
        .collect()
}

/// Makes the change of one recording line on the API server.
fn feed(api: &KubeApi, line: &Value) {
    let object = line["object"].clone();
    let res = match object["kind"].as_str() {
        Some("Workflow") => Res::Workflows,
        Some("Event") => Res::Events,
        other => panic!("a recording line of kind {other:?}"),
    };
    let name = object["metadata"]["name"].as_str().unwrap().to_owned();
    match line["type"].as_str() {
        Some("DELETED") => api.delete(res, NS, &name),
        _ => {
            api.put(res, NS, object);
        }
    }
}

/// The index of the line where the run is retried: its Workflow goes from Failed to Running.
fn retry_line(lines: &[Value]) -> usize {
    let mut failed = false;
    for (i, line) in lines.iter().enumerate() {
        let object = &line["object"];
        if object["kind"] != "Workflow" {
            continue;
        }
        match object["status"]["phase"].as_str() {
            Some("Failed") => failed = true,
            Some("Running") if failed => return i,
            _ => {}
        }
    }
    panic!("the recording has no retry")
}

async fn retried_run(from: &str) {
    let world = World::new().await;
    let config = world.config(from);
    let mut router = world.start(&config);
    wait_watching(&world, &mut router).await;

    let lines = recording();
    let retry = retry_line(&lines);
    for line in &lines[..retry] {
        feed(&world.api, line);
    }
    // The first attempt has failed (in the cluster, 22 minutes before the retry).
    wait_until(&world, &router, "the first attempt", |got| {
        count(got, "WorkflowRunning", "") >= 1
            && count(got, "WorkflowNodeFailed", "baseline") >= 1
            && count(got, "WorkflowFailed", "") >= 1
    })
    .await;
    feed(&world.api, &lines[retry]);
    wait_until(&world, &router, "the retried run's Running", |got| {
        count(got, "WorkflowRunning", "") >= 2
    })
    .await;
    for line in &lines[retry + 1..] {
        feed(&world.api, line);
    }
    let wanted = [
        ("WorkflowRunning", ""),
        ("WorkflowNodeFailed", "baseline"),
        ("WorkflowFailed", ""),
    ];
    wait_until(&world, &router, "the second attempt", |got| {
        wanted.iter().all(|(r, n)| count(got, r, n) >= 2)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;

    let got = world.deliveries();
    let what = format!("source.from = {from}; received:\n{}", listing(&got));
    for (reason, node) in wanted {
        let ids: BTreeSet<&str> = got
            .iter()
            .filter(|r| key(r) == (reason.to_owned(), node.to_owned()))
            .map(|r| r.header("webhook-id"))
            .collect();
        assert_eq!(
            (count(&got, reason, node), ids.len()),
            (2, 2),
            "{reason} {node:?}: once per attempt, two webhook-ids; {what}"
        );
    }
    assert_signed_and_distinct(&got);
    for r in &got {
        let (reason, node) = key(r);
        assert_eq!(plumbing(&node), None, "{reason} about {node:?}; {what}");
        assert_eq!(
            r.json()["KfpRunId"],
            "b82e0d17-41c9-4a6e-9d3f-7c15e2a08b64",
            "{what}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_run_is_delivered_twice_from_both_paths() {
    retried_run("both").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_run_is_delivered_twice_from_events() {
    retried_run("events").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_run_is_delivered_twice_from_workflows() {
    retried_run("workflows").await;
}

// ---------------------------------------------------------------------------------------------
// 2. The controller's clock is 30 s behind the router's.
// ---------------------------------------------------------------------------------------------

/// A run's objects as a controller whose clock reads `at` writes them.
struct SkewedRun {
    at: Timestamp,
}

const WF: &str = "skewed-run";
const WF_UID: &str = "5e1f0c2a-0000-4000-8000-00000000beef";

impl SkewedRun {
    /// The controller's time, as Kubernetes writes times.
    fn time(&self) -> String {
        self.at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    }

    /// Node `short` (id `<wf>-<short>`, a Pod) in `phase`.
    fn node(&self, short: &str, phase: &str, message: Option<&str>) -> (String, Value) {
        let id = format!("{WF}-{short}");
        let mut node = json!({
            "id": id, "name": format!("{WF}.{short}"), "displayName": short, "type": "Pod",
            "phase": phase, "templateName": short, "boundaryID": WF, "startedAt": self.time(),
        });
        if !matches!(phase, "Running" | "Pending") {
            node["finishedAt"] = json!(self.time());
        }
        if let Some(message) = message {
            node["message"] = json!(message);
        }
        (id, node)
    }

    /// The Workflow in `phase` with `nodes`, stamped by the controller's clock.
    fn workflow(&self, phase: &str, nodes: &[(String, Value)], message: Option<&str>) -> Value {
        let mut status = json!({
            "phase": phase, "startedAt": self.time(),
            "nodes": nodes.iter().cloned().collect::<serde_json::Map<_, _>>(),
        });
        if phase != "Running" {
            status["finishedAt"] = json!(self.time());
        }
        if let Some(message) = message {
            status["message"] = json!(message);
        }
        json!({
            "metadata": {
                "name": WF, "uid": WF_UID, "generateName": "skewed-",
                "creationTimestamp": self.time(),
                "labels": {"pipeline/runid": "run-skewed", "workflows.argoproj.io/phase": phase},
            },
            "spec": {"arguments": {"parameters": [{"name": "lr", "value": "0.1"}]}},
            "status": status,
        })
    }

    /// The controller's Event `name`: `reason` about the Workflow, or about node `short`.
    fn event(&self, name: &str, reason: &str, node: Option<&str>, message: &str) -> Value {
        let annotations = match node {
            Some(short) => json!({
                "workflows.argoproj.io/node-id": format!("{WF}-{short}"),
                "workflows.argoproj.io/node-name": format!("{WF}.{short}"),
                "workflows.argoproj.io/node-type": "Pod",
                "workflows.argoproj.io/node-start-time": self.at.as_nanosecond().to_string(),
            }),
            None => json!({}),
        };
        let warning = reason.contains("Failed");
        json!({
            "metadata": {"name": format!("{WF}.{name}"), "annotations": annotations,
                         "creationTimestamp": self.time()},
            "involvedObject": {"kind": "Workflow", "name": WF, "namespace": NS, "uid": WF_UID,
                               "apiVersion": "argoproj.io/v1alpha1"},
            "reason": reason, "message": message,
            "type": if warning { "Warning" } else { "Normal" },
            "source": {"component": "workflow-controller"},
            "reportingComponent": "workflow-controller", "reportingInstance": "",
            "firstTimestamp": self.time(), "lastTimestamp": self.time(),
            "eventTime": null, "count": 1,
        })
    }
}

async fn skewed_run(from: &str) {
    let world = World::new().await;
    let config = world.config(from);
    let started = Timestamp::now();
    let mut router = world.start(&config);
    wait_watching(&world, &mut router).await;

    // The run starts now; the controller stamps everything 30 s before the router started.
    // The router first sees the Workflow with the controller's status already in it (as after a
    // relist of its Workflow watch), and its Events live.
    let run = SkewedRun { at: started - SKEW };
    let api = &world.api;
    let train = |phase| run.node("train", phase, None);
    api.put(
        Res::Workflows,
        NS,
        run.workflow("Running", &[train("Running")], None),
    );
    api.put(
        Res::Events,
        NS,
        run.event("1", "WorkflowRunning", None, "Workflow Running"),
    );
    let running = format!("Running node {WF}.train");
    api.put(
        Res::Events,
        NS,
        run.event("2", "WorkflowNodeRunning", Some("train"), &running),
    );
    api.put(
        Res::Workflows,
        NS,
        run.workflow(
            "Running",
            &[train("Succeeded"), run.node("eval", "Running", None)],
            None,
        ),
    );
    for (name, reason, node) in [
        ("3", "WorkflowNodeSucceeded", "train"),
        ("4", "WorkflowNodeRunning", "eval"),
    ] {
        let phase = reason.trim_start_matches("WorkflowNode");
        let message = format!("{phase} node {WF}.{node}");
        api.put(
            Res::Events,
            NS,
            run.event(name, reason, Some(node), &message),
        );
    }
    let why = "Error (exit code 1)";
    api.put(
        Res::Events,
        NS,
        run.event(
            "5",
            "WorkflowFailed",
            None,
            "child 'skewed-run-eval' failed",
        ),
    );
    api.put(
        Res::Workflows,
        NS,
        run.workflow(
            "Failed",
            &[train("Succeeded"), run.node("eval", "Failed", Some(why))],
            Some("child 'skewed-run-eval' failed"),
        ),
    );
    let failed = format!("Failed node {WF}.eval: {why}");
    api.put(
        Res::Events,
        NS,
        run.event("6", "WorkflowNodeFailed", Some("eval"), &failed),
    );

    let expected: BTreeMap<(String, String), usize> = [
        ("WorkflowRunning", ""),
        ("WorkflowNodeRunning", "train"),
        ("WorkflowNodeSucceeded", "train"),
        ("WorkflowNodeRunning", "eval"),
        ("WorkflowFailed", ""),
        ("WorkflowNodeFailed", "eval"),
    ]
    .into_iter()
    .map(|(r, n)| ((r.to_owned(), n.to_owned()), 1))
    .collect();
    let what = format!("every transition of the skewed run (source.from = {from})");
    wait_until(&world, &router, &what, |got| {
        expected.keys().all(|(r, n)| count(got, r, n) >= 1)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let got = world.deliveries();
    let mut received = BTreeMap::new();
    for r in &got {
        *received.entry(key(r)).or_insert(0) += 1;
    }
    assert_eq!(
        received,
        expected,
        "{what}, each once; received:\n{}",
        listing(&got)
    );
    assert_signed_and_distinct(&got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_clock_behind_loses_nothing_from_both_paths() {
    skewed_run("both").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_clock_behind_loses_nothing_from_events() {
    skewed_run("events").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_clock_behind_loses_nothing_from_workflows() {
    skewed_run("workflows").await;
}
