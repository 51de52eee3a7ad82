//! Leadership end to end: router processes against the test API server of
//! `support::kube_api`, each replica delivering to its own path of the test sink, so the sink's
//! arrival times tell who delivered when.
//!
//! - A leader whose Lease calls stall, or are throttled with a `Retry-After` longer than the
//!   lease, stops delivering before the standby starts: never two leaders at once. With a
//!   shared PostgreSQL outbox, where every replica delivers the workflows it claims, the watch
//!   moves and a workflow's deliveries never overlap between replicas.
//! - A replica that leads again delivers what it left undelivered in its earlier term before
//!   any new event.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::kube_api::{self, KubeApi, Res, Trouble, webhook_id};
use support::postgres::{Backend, URL_ENV};
use support::router::{PATIENCE, RouterProcess, Scratch, http_get, run_command, toml_path};
use support::sink::{Received, Reply, Sink};

const NS: &str = "kubeflow";

/// The test's world: an API server, a sink, a scratch folder, the replicas' state backend.
struct World {
    api: KubeApi,
    sink: Sink,
    scratch: Scratch,
    backend: Backend,
}

impl World {
    async fn new() -> Self {
        Self::with(Backend::Redb).await
    }

    /// A world whose replicas keep their state in `backend` (a PostgreSQL database is shared).
    async fn with(backend: Backend) -> Self {
        Self {
            api: KubeApi::start().await,
            sink: Sink::start().await,
            scratch: Scratch::new(),
            backend,
        }
    }

    /// Writes the config of replica `name`: its own state folder, Events only, quick
    /// checkpoints, a 2 s lease, and one endpoint at `path` of the sink.
    fn config(&self, name: &str, path: &str) -> PathBuf {
        let text = format!(
            "[source]\nkind = \"kubernetes\"\nfrom = \"events\"\nworkflow_wait = \"200ms\"\ncheckpoint_interval = \"100ms\"\n\n\
             [source.leader_election]\nlease_duration = \"2s\"\n\n\
             [state]\ndir = {}\n\n[server]\nlisten = \"127.0.0.1:0\"\n\n\
             [[endpoints]]\nname = \"sink\"\nurl = \"{}\"\nformat = \"extended\"\n",
            toml_path(&self.scratch.path(&format!("state-{name}"))),
            self.sink.url(path),
        );
        self.scratch
            .write(&format!("{name}.toml"), &self.backend.tables(text))
    }

    /// Starts replica `name` (its `POD_NAME`, and its own API token) with `config`.
    fn start(&self, name: &str, config: &Path) -> RouterProcess {
        let kubeconfig = self.api.kubeconfig_as(self.scratch.dir.path(), NS, name);
        let mut command = run_command(config);
        command
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAMESPACE", NS)
            .env("POD_NAME", name)
            .env("RUST_LOG", "info,kube=warn")
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("KUBERNETES_SERVICE_HOST");
        if let Backend::Postgres(url) = &self.backend {
            command.env(URL_ENV, url);
        }
        RouterProcess::spawn(command)
    }

    /// Creates Workflow `name`; returns its uid.
    fn workflow(&self, name: &str) -> String {
        let wf = kube_api::workflow(name, &format!("run-{name}"), &[("n1", "train", "Running")]);
        let created = self.api.create(Res::Workflows, NS, wf);
        created["metadata"]["uid"].as_str().unwrap().to_owned()
    }

    /// Creates a node Event `name` about Workflow `wf`; returns the `webhook-id` it is
    /// delivered with.
    fn event(&self, name: &str, wf: &str, wf_uid: &str) -> String {
        let event = kube_api::event(
            name,
            wf,
            wf_uid,
            "WorkflowNodeSucceeded",
            Some(("n1", "train")),
        );
        webhook_id(&self.api.create(Res::Events, NS, event))
    }
}

fn id(received: &Received) -> String {
    received.header("webhook-id").to_owned()
}

/// Waits until `router` leads and its Event watch is open: from then on, every new Event is
/// delivered.
async fn wait_watching(world: &World, router: &mut RouterProcess) {
    router.wait_for_log("listed Events", PATIENCE).await;
    world.api.wait_for_watches(Res::Events, 1, PATIENCE).await;
}

/// Waits until `path` of the sink has had every one of `ids` (answered or not) since `since`.
async fn wait_for_ids(sink: &Sink, path: &str, ids: &BTreeSet<String>, since: Instant) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let seen: BTreeSet<String> = sink
            .received_on(path)
            .iter()
            .filter(|r| r.at >= since)
            .map(id)
            .collect();
        if seen.is_superset(ids) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path}: {} of {} events after {PATIENCE:?}",
            ids.intersection(&seen).count(),
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Replica A leads, delivering to `/a`, replica B stands by (`/b`), while Events keep coming;
/// then A's Lease calls are mistreated as `trouble` says, until B leads. Returns what was
/// created, once every one of those Events has been delivered by one or the other (nothing is
/// lost: what A had not delivered, B watched again from the checkpoint), and when the trouble
/// began.
async fn failover(world: &Arc<World>, trouble: Trouble) -> (BTreeSet<String>, Instant) {
    let uid = world.workflow("wf-ha");
    let mut a = world.start("router-a", &world.config("a", "/a"));
    wait_watching(world, &mut a).await;
    let mut b = world.start("router-b", &world.config("b", "/b"));
    b.wait_for_log("standing by", PATIENCE).await;

    // Events keep coming, about 20 a second, until the test has seen B lead and deliver.
    let producing = Arc::new(AtomicBool::new(true));
    let producer = tokio::spawn({
        let (world, producing) = (Arc::clone(world), Arc::clone(&producing));
        async move {
            let mut ids = BTreeSet::new();
            let mut i = 0;
            while producing.load(Ordering::SeqCst) {
                ids.insert(world.event(&format!("e-{i:05}"), "wf-ha", &uid));
                i += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            ids
        }
    });
    world.sink.wait_for_any(5, PATIENCE).await;
    let troubled = Instant::now();
    world.api.trouble("router-a", Res::Leases, Some(trouble));
    b.wait_for_log("became the leader", PATIENCE).await;
    assert_eq!(a.exit_code(PATIENCE).await, 2, "{}", a.logs());
    assert!(a.logs().contains("stepping down"), "{}", a.logs());
    let delivered_before = world.sink.received().len();
    world
        .sink
        .wait_for_any(delivered_before + 5, PATIENCE)
        .await;
    producing.store(false, Ordering::SeqCst);
    let created = producer.await.unwrap();

    let deadline = Instant::now() + PATIENCE;
    loop {
        let seen: BTreeSet<String> = world.sink.received().iter().map(id).collect();
        if seen.is_superset(&created) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} events lost; logs of b:\n{}",
            created.difference(&seen).count(),
            b.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (created, troubled)
}

/// With a local outbox only the leader delivers: A must stop delivering before B starts (the
/// last request at `/a` arrives before the first at `/b`), never two leaders at once.
async fn a_troubled_leader_stops_before_the_standby_starts(trouble: Trouble) {
    let world = Arc::new(World::with(Backend::Redb).await);
    let (_, troubled) = failover(&world, trouble).await;
    let at_a = world.sink.received_on("/a");
    let at_b = world.sink.received_on("/b");
    let last_a = at_a.iter().map(|r| r.at).max().unwrap();
    let first_b = at_b.iter().map(|r| r.at).min().unwrap();
    assert!(
        last_a < first_b,
        "A delivered until {:?} after the trouble began, B from {:?}",
        last_a - troubled,
        first_b - troubled
    );
    eprintln!(
        "failover ({trouble:?}, redb): Lease calls troubled -> A's last delivery {:?}, B's first {:?}",
        last_a - troubled,
        first_b - troubled
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_calls_stall_stops_delivering_before_the_standby_starts() {
    a_troubled_leader_stops_before_the_standby_starts(Trouble::Stall).await;
}

/// With the outbox shared in PostgreSQL both replicas deliver, each the workflows it claims,
/// whoever leads: the watch moves to B and nothing is lost, and the one workflow's deliveries
/// never overlap between replicas: they come from one replica, then perhaps (when A held the
/// workflow and released it on stepping down) from the other, in one switch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_shared_postgres_outbox_the_watch_moves_from_a_stalled_leader_and_delivery_never_overlaps()
 {
    let world = Arc::new(World::with(Backend::postgres().await).await);
    let (_, troubled) = failover(&world, Trouble::Stall).await;
    let mut received = world.sink.received();
    received.sort_by_key(|r| r.at);
    let replicas: Vec<&str> = received.iter().map(|r| r.path.as_str()).collect();
    let switches = replicas.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(
        switches <= 1 && (switches == 0 || replicas[0] == "/a"),
        "the workflow's deliveries went {} times between replicas: {replicas:?}",
        switches
    );
    let last = |path: &str| {
        received
            .iter()
            .filter(|r| r.path == path)
            .map(|r| r.at)
            .max()
    };
    let first = |path: &str| {
        received
            .iter()
            .filter(|r| r.path == path)
            .map(|r| r.at)
            .min()
    };
    eprintln!(
        "failover (Stall, postgres): {} deliveries, first from {}, {switches} switch(es); \
         Lease calls troubled -> A's last delivery {:?}, B's first {:?}",
        replicas.len(),
        replicas[0],
        last("/a").map(|at| at.saturating_duration_since(troubled)),
        first("/b").map(|at| at.saturating_duration_since(troubled)),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_throttled_for_longer_than_the_lease_stops_delivering_before_the_standby_starts() {
    let trouble = Trouble::TooManyRequests { retry_after: 3600 };
    a_troubled_leader_stops_before_the_standby_starts(trouble).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_again_delivers_its_leftovers_before_any_new_event() {
    let start = Instant::now();
    let world = World::new().await;
    let w1 = world.workflow("wf-1");
    let w2 = world.workflow("wf-2");
    let w3 = world.workflow("wf-3");
    let config_a = world.config("a", "/a");

    // A's first term: the endpoint is down; what A accepts stays in its outbox.
    world.sink.always("/a", Reply::status(503));
    let mut a = world.start("router-a", &config_a);
    wait_watching(&world, &mut a).await;
    let leftovers: Vec<(&str, String)> = (0..10)
        .map(|i| {
            let (wf, uid) = if i % 3 == 2 {
                ("wf-2", &w2)
            } else {
                ("wf-1", &w1)
            };
            (wf, world.event(&format!("first-{i}"), wf, uid))
        })
        .collect();
    a.wait_for_metric("kfp_event_router_events_received_total", 10.0, PATIENCE)
        .await;
    world.sink.wait_for("/a", 2, PATIENCE).await;
    a.terminate();
    a.expect_success().await;

    // B leads a while, then stops too; more Events come while nobody leads.
    let mut b = world.start("router-b", &world.config("b", "/b"));
    wait_watching(&world, &mut b).await;
    let during_b: BTreeSet<String> = (0..4)
        .map(|i| {
            let (wf, uid) = if i % 2 == 0 {
                ("wf-1", &w1)
            } else {
                ("wf-2", &w2)
            };
            world.event(&format!("during-b-{i}"), wf, uid)
        })
        .collect();
    wait_for_ids(&world.sink, "/b", &during_b, start).await;
    b.terminate();
    b.expect_success().await;
    let mut new = BTreeSet::new();
    for i in 0..6 {
        let (wf, uid) = [("wf-1", &w1), ("wf-2", &w2), ("wf-3", &w3)][i % 3];
        new.insert(world.event(&format!("between-{i}"), wf, uid));
    }

    // A leads again, the endpoint up (slow to answer the first request, so that the leftovers
    // take a while): the leftovers first, then the Events since the checkpoint and new ones.
    let since = Instant::now();
    world
        .sink
        .script("/a", [Reply::status(200).after(Duration::from_secs(2))]);
    world
        .sink
        .always("/a", Reply::status(200).after(Duration::from_millis(20)));
    let mut a = world.start("router-a", &config_a);
    let line = a
        .wait_for_log("leftovers of an earlier term", PATIENCE)
        .await;
    assert!(line.contains("delivering 10 leftovers"), "{line}");
    let addr = a.metrics_addr().await;
    let ready: Value =
        serde_json::from_str(&http_get(&format!("http://{addr}/readyz")).await).unwrap();
    assert!(
        ready["leftovers"].as_u64().is_some_and(|n| n >= 1),
        "/readyz tells the leftovers being delivered: {ready}"
    );
    wait_watching(&world, &mut a).await;
    for i in 0..6 {
        let (wf, uid) = [("wf-3", &w3), ("wf-2", &w2), ("wf-1", &w1)][i % 3];
        new.insert(world.event(&format!("after-{i}"), wf, uid));
    }
    let first: BTreeSet<String> = leftovers.iter().map(|(_, id)| id.clone()).collect();
    let all: BTreeSet<String> = first.union(&new).cloned().collect();
    wait_for_ids(&world.sink, "/a", &all, since).await;

    let term: Vec<String> = world
        .sink
        .received_on("/a")
        .iter()
        .filter(|r| r.at >= since)
        .map(id)
        .collect();
    let last_leftover = term.iter().rposition(|i| first.contains(i)).unwrap();
    let first_new = term.iter().position(|i| new.contains(i)).unwrap();
    assert!(
        last_leftover < first_new,
        "leftovers and new events interleaved: {term:?}"
    );
    for wf in ["wf-1", "wf-2"] {
        let expected: Vec<&String> = leftovers
            .iter()
            .filter(|(w, _)| *w == wf)
            .map(|(_, id)| id)
            .collect();
        let sent: Vec<&String> = term.iter().filter(|i| expected.contains(i)).collect();
        assert_eq!(sent, expected, "{wf}: each leftover once, in order");
    }
    let ready: Value =
        serde_json::from_str(&http_get(&format!("http://{addr}/readyz")).await).unwrap();
    assert_eq!(ready["leftovers"], 0, "{ready}");
}
