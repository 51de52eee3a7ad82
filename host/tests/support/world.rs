//! A cluster for one test: the test API server, a sink, a scratch folder, and router processes
//! that reach the server through a kubeconfig, as a user runs the router outside a cluster.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::kube_api::{self, KubeApi, Res};
use super::router::{PATIENCE, RouterProcess, Scratch, run_command, toml_path};
use super::sink::{Received, Sink};

/// The namespace the routers run and watch in.
pub const NS: &str = "kubeflow";

/// The test's world: an API server, a sink, a scratch folder.
pub struct World {
    pub api: KubeApi,
    pub sink: Sink,
    pub scratch: Scratch,
    pub kubeconfig: PathBuf,
}

impl World {
    pub async fn new() -> Self {
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

    /// Writes the config of router `name` (its own state folder): the kubernetes source with
    /// `source_keys` added to `[source]`, quick checkpoints, a 2 s lease, and one `extended`
    /// endpoint on the sink's `/hook`.
    pub fn config(&self, name: &str, source_keys: &str) -> PathBuf {
        let text = format!(
            "[source]\nkind = \"kubernetes\"\nworkflow_wait = \"200ms\"\ncheckpoint_interval = \"100ms\"\n{source_keys}\n\n\
             [source.leader_election]\nlease_duration = \"2s\"\n\n\
             [state]\ndir = {}\n\n[server]\nlisten = \"127.0.0.1:0\"\n\n\
             [[endpoints]]\nname = \"sink\"\nurl = \"{}\"\nformat = \"extended\"\n",
            toml_path(&self.scratch.path(&format!("state-{name}"))),
            self.sink.url("/hook"),
        );
        self.scratch.write(&format!("{name}.toml"), &text)
    }

    /// As [`World::config`], reporting from Events only (`source.from = "events"`).
    pub fn events_config(&self, name: &str, source_keys: &str) -> PathBuf {
        self.config(name, &format!("from = \"events\"\n{source_keys}"))
    }

    /// Starts router `name` (its `POD_NAME`) with `config`, in namespace [`NS`].
    pub fn start(&self, name: &str, config: &Path) -> RouterProcess {
        let mut command = run_command(config);
        command
            .env("KUBECONFIG", &self.kubeconfig)
            .env("POD_NAMESPACE", NS)
            .env("POD_NAME", name)
            .env("RUST_LOG", "info,kube=warn")
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("KUBERNETES_SERVICE_HOST");
        RouterProcess::spawn(command)
    }

    /// Creates Workflow `name` of run `run-<name>` with two nodes (`train` succeeded, `eval`
    /// running); returns its uid.
    pub fn workflow(&self, namespace: &str, name: &str) -> String {
        let wf = kube_api::workflow(
            name,
            &format!("run-{name}"),
            &[("n1", "train", "Succeeded"), ("n2", "eval", "Running")],
        );
        let created = self.api.create(Res::Workflows, namespace, wf);
        created["metadata"]["uid"].as_str().unwrap().to_owned()
    }

    /// Creates Event `name` (a node event of node `n1` when `node`) about `wf`.
    pub fn event(&self, namespace: &str, name: &str, wf: &str, wf_uid: &str, node: bool) -> Value {
        let (reason, node) = match node {
            true => ("WorkflowNodeSucceeded", Some(("n1", "train"))),
            false => ("WorkflowRunning", None),
        };
        self.api.create(
            Res::Events,
            namespace,
            kube_api::event(name, wf, wf_uid, reason, node),
        )
    }

    /// The deliveries so far.
    pub fn deliveries(&self) -> Vec<Received> {
        self.sink.received_on("/hook")
    }

    /// Waits until `router` leads and has listed the Events of its `scopes` watches: from then
    /// on, every new Event is delivered (the watch resumes from the list).
    pub async fn wait_watching(&self, router: &mut RouterProcess, scopes: usize) {
        router
            .wait_for_log("watching Events and Workflows", PATIENCE)
            .await;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while router.logs().matches("listed Events").count() < scopes {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no Event list; logs:\n{}",
                router.logs()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.api
            .wait_for_watches(Res::Events, scopes as i64, PATIENCE)
            .await;
    }
}
