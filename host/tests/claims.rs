//! Delivery from every replica, with the outbox shared in PostgreSQL: router processes
//! against the test API server of `support::kube_api` and one database, each replica
//! delivering to its own path of the test sink (`/a`, `/b`), so the sink tells who delivered
//! what, and when.
//!
//! - Two replicas share the workflows: both deliver, every event arrives, each workflow's in
//!   order and from one replica only.
//! - A replica killed with `kill -9` while it holds claims: the other takes its workflows once
//!   the claims expire; nothing is lost and each workflow stays in order.
//! - Each replica's console lists both replicas' deliveries (the history is shared), also
//!   after a restart on a wiped state folder.
//! - A replica whose database connection stalls stops delivering its workflows before the
//!   other takes them.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::kube_api::{self, KubeApi, Res, webhook_id};
use support::postgres::{PgServer, URL_ENV};
use support::proxy::Proxy;
use support::router::{PATIENCE, RouterProcess, Scratch, metric, run_command, toml_path};
use support::sink::{Received, Sink};

const NS: &str = "kubeflow";

/// The claims' life in these tests: a dead replica's workflows wait about this long.
const CLAIM_TTL: &str = "3s";

/// The series of the buckets a replica holds.
const CLAIMS: &str = "kfp_event_router_delivery_claims";

/// An API server, a sink, a scratch folder and one database for the replicas.
struct World {
    api: KubeApi,
    sink: Sink,
    scratch: Scratch,
    url: String,
}

/// One created Event: its `webhook-id`, its workflow and its place among that workflow's.
#[derive(Clone, Debug)]
struct Created {
    id: String,
    workflow: usize,
    index: usize,
}

impl World {
    async fn new() -> Self {
        Self {
            api: KubeApi::start().await,
            sink: Sink::start().await,
            scratch: Scratch::new(),
            url: PgServer::shared().database().await,
        }
    }

    /// The config of replica `name`: the shared database, a 2 s lease, short claims, one
    /// endpoint at `path` of the sink; `server` adds to `[server]`.
    fn config(&self, name: &str, path: &str, server: &str) -> PathBuf {
        let text = format!(
            "[source]\nkind = \"kubernetes\"\nfrom = \"events\"\nworkflow_wait = \"200ms\"\ncheckpoint_interval = \"100ms\"\n\n\
             [source.leader_election]\nlease_duration = \"2s\"\n\n\
             [state]\ndir = {}\nbackend = \"postgres\"\nurl = {{ env = \"{URL_ENV}\" }}\nclaim_ttl = \"{CLAIM_TTL}\"\n\n\
             [server]\nlisten = \"127.0.0.1:0\"\n{server}\n\
             [[endpoints]]\nname = \"sink\"\nurl = \"{}\"\nformat = \"extended\"\n",
            toml_path(&self.scratch.path(&format!("state-{name}"))),
            self.sink.url(path),
        );
        self.scratch.write(&format!("{name}.toml"), &text)
    }

    /// Starts replica a (the leader, delivering to `/a`, database at the world's URL) and then
    /// b (`/b`, database at `b_url`), both with `server` in `[server]`, and waits until they
    /// share the claims.
    async fn pair(&self, b_url: &str, server: &str) -> (RouterProcess, RouterProcess) {
        let mut a = self.start_with("router-a", "/a", &self.url, server);
        wait_watching(self, &mut a).await;
        let mut b = self.start_with("router-b", "/b", b_url, server);
        b.wait_for_log("standing by", PATIENCE).await;
        wait_shared(&mut a, &mut b).await;
        (a, b)
    }

    /// Starts replica `name`, delivering to `path`, with its database at `url` and `server`
    /// added to `[server]`.
    fn start_with(&self, name: &str, path: &str, url: &str, server: &str) -> RouterProcess {
        let config = self.config(name, path, server);
        let kubeconfig = self.api.kubeconfig_as(self.scratch.dir.path(), NS, name);
        let mut command = run_command(&config);
        command
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAMESPACE", NS)
            .env("POD_NAME", name)
            .env("RUST_LOG", "info,kube=warn")
            .env(URL_ENV, url)
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("KUBERNETES_SERVICE_HOST");
        RouterProcess::spawn(command)
    }

    /// Creates `n` Workflows; returns their names and uids.
    fn workflows(&self, n: usize) -> Vec<(String, String)> {
        (0..n)
            .map(|i| {
                let name = format!("wf-{i:02}");
                let wf = kube_api::workflow(
                    &name,
                    &format!("run-{name}"),
                    &[("n1", "train", "Running")],
                );
                let created = self.api.create(Res::Workflows, NS, wf);
                (
                    name,
                    created["metadata"]["uid"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// Creates a node Event `name` about a Workflow; returns the `webhook-id` it is delivered
    /// with.
    fn event(&self, name: &str, (wf, uid): &(String, String)) -> String {
        let event = kube_api::event(
            name,
            wf,
            uid,
            "WorkflowNodeSucceeded",
            Some(("n1", "train")),
        );
        webhook_id(&self.api.create(Res::Events, NS, event))
    }
}

/// Creates Events round some workflows, one every so often, until finished.
struct Producer {
    producing: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<Created>>,
}

impl Producer {
    /// Starts creating Events round `workflows`, one every `every`.
    fn start(world: &Arc<World>, workflows: Vec<(String, String)>, every: Duration) -> Self {
        let world = Arc::clone(world);
        let producing = Arc::new(AtomicBool::new(true));
        let running = Arc::clone(&producing);
        let task = tokio::spawn(async move {
            let mut created = Vec::new();
            let mut counts = vec![0usize; workflows.len()];
            let mut i = 0;
            while running.load(Ordering::SeqCst) {
                let workflow = i % workflows.len();
                let id = world.event(&format!("e-{i:05}"), &workflows[workflow]);
                created.push(Created {
                    id,
                    workflow,
                    index: counts[workflow],
                });
                counts[workflow] += 1;
                i += 1;
                tokio::time::sleep(every).await;
            }
            created
        });
        Self { producing, task }
    }

    /// Stops creating, waits until the sink has had every Event created, and returns them.
    async fn finish(self, world: &World) -> Vec<Created> {
        self.producing.store(false, Ordering::SeqCst);
        let created = self.task.await.unwrap();
        wait_all(world, &created).await;
        created
    }
}

/// Waits until `router` leads and its Event watch is open.
async fn wait_watching(world: &World, router: &mut RouterProcess) {
    router.wait_for_log("listed Events", PATIENCE).await;
    world.api.wait_for_watches(Res::Events, 1, PATIENCE).await;
}

/// Waits until the replicas hold every bucket between them, each some.
async fn wait_shared(a: &mut RouterProcess, b: &mut RouterProcess) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let held_a = metric(&a.metrics().await, CLAIMS).unwrap_or(0.0);
        let held_b = metric(&b.metrics().await, CLAIMS).unwrap_or(0.0);
        if held_a > 0.0 && held_b > 0.0 && held_a + held_b == 64.0 {
            eprintln!("claims: a holds {held_a}, b {held_b}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the replicas do not share the claims: a {held_a}, b {held_b}\na:\n{}\nb:\n{}",
            a.logs(),
            b.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the sink has had every created Event.
async fn wait_all(world: &World, created: &[Created]) {
    let want: BTreeSet<&str> = created.iter().map(|c| c.id.as_str()).collect();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let received = world.sink.received();
        let seen: BTreeSet<&str> = received.iter().map(|r| r.header("webhook-id")).collect();
        let missing = want.difference(&seen).count();
        if missing == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} events never delivered",
            want.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One delivery as the sink saw it.
struct Seen {
    at: Instant,
    replica: String,
    index: usize,
}

/// The deliveries per workflow, in arrival order.
fn by_workflow(received: &[Received], created: &[Created]) -> BTreeMap<usize, Vec<Seen>> {
    let ids: HashMap<&str, &Created> = created.iter().map(|c| (c.id.as_str(), c)).collect();
    let mut received: Vec<&Received> = received.iter().collect();
    received.sort_by_key(|r| r.at);
    let mut out: BTreeMap<usize, Vec<Seen>> = BTreeMap::new();
    for r in received {
        let Some(c) = ids.get(r.header("webhook-id")) else {
            continue;
        };
        out.entry(c.workflow).or_default().push(Seen {
            at: r.at,
            replica: r.path.clone(),
            index: c.index,
        });
    }
    out
}

/// Checks each workflow's Events first arrived in the order they were created; returns how
/// many deliveries were duplicates.
fn check_order(deliveries: &BTreeMap<usize, Vec<Seen>>) -> usize {
    let mut duplicates = 0;
    for (workflow, seen) in deliveries {
        let mut first = Vec::new();
        let mut had = BTreeSet::new();
        for s in seen {
            if had.insert(s.index) {
                first.push(s.index);
            } else {
                duplicates += 1;
                eprintln!(
                    "duplicate: wf-{workflow:02} event {} again by {}",
                    s.index, s.replica
                );
            }
        }
        let sorted: Vec<usize> = (0..first.len()).collect();
        assert_eq!(
            first, sorted,
            "wf-{workflow:02}: first arrivals out of order"
        );
    }
    duplicates
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_the_workflows_each_in_order_from_one_replica() {
    let world = Arc::new(World::new().await);
    let workflows = world.workflows(24);
    let (mut a, mut b) = world.pair(&world.url, "").await;

    let producer = Producer::start(&world, workflows, Duration::from_millis(5));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let created = producer.finish(&world).await;

    let received = world.sink.received();
    let at_a = received.iter().filter(|r| r.path == "/a").count();
    let at_b = received.iter().filter(|r| r.path == "/b").count();
    eprintln!("{} events: a delivered {at_a}, b {at_b}", created.len());
    assert!(
        at_a > 0 && at_b > 0,
        "both replicas deliver: a {at_a}, b {at_b}"
    );
    let deliveries = by_workflow(&received, &created);
    let duplicates = check_order(&deliveries);
    assert_eq!(duplicates, 0, "no event twice while the claims stay put");
    for (workflow, seen) in &deliveries {
        let replicas: BTreeSet<&str> = seen.iter().map(|s| s.replica.as_str()).collect();
        assert_eq!(
            replicas.len(),
            1,
            "wf-{workflow:02} delivered by one replica only, not {replicas:?}"
        );
    }
    a.terminate();
    b.terminate();
    a.expect_success().await;
    b.expect_success().await;
}

/// The console's admin token in the next test.
const TOKEN: &str = "history-T0KEN";

/// The `webhook-id`s `router`'s console lists (`/admin/console/deliveries`).
async fn console_ids(router: &mut RouterProcess) -> BTreeSet<String> {
    let url = format!(
        "http://{}/admin/console/deliveries?limit=1000",
        router.metrics_addr().await
    );
    let list: serde_json::Value = reqwest::Client::new()
        .get(url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list["deliveries"]
        .as_array()
        .unwrap_or_else(|| panic!("a list of deliveries: {list}"))
        .iter()
        .map(|d| d["webhook_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until the console of `router` (replica `name`) lists every one of `want`.
async fn wait_listed(router: &mut RouterProcess, name: &str, want: &BTreeSet<String>) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let listed = console_ids(router).await;
        let missing: Vec<&String> = want.difference(&listed).collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}'s console misses {} of {} deliveries: {missing:?}\nlogs:\n{}",
            missing.len(),
            want.len(),
            router.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The console's history is shared in PostgreSQL: each replica's console lists the deliveries
/// of both, and a replica started again alone on a wiped state folder still lists them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replicas_console_lists_both_replicas_deliveries_even_after_a_wiped_restart() {
    let world = Arc::new(World::new().await);
    let token = world.scratch.write("admin-token", &format!("{TOKEN}\n"));
    let server = format!("admin_token = {{ file = {} }}\n", toml_path(&token));
    let workflows = world.workflows(8);
    let (mut a, mut b) = world.pair(&world.url, &server).await;

    let producer = Producer::start(&world, workflows, Duration::from_millis(20));
    tokio::time::sleep(Duration::from_secs(1)).await;
    producer.finish(&world).await;
    let received = world.sink.received();
    let delivered_at = |path: &str| -> BTreeSet<String> {
        received
            .iter()
            .filter(|r| r.path == path)
            .map(|r| r.header("webhook-id").to_owned())
            .collect()
    };
    let (by_a, by_b) = (delivered_at("/a"), delivered_at("/b"));
    assert!(
        !by_a.is_empty() && !by_b.is_empty(),
        "both replicas deliver: a {}, b {}",
        by_a.len(),
        by_b.len()
    );
    let every: BTreeSet<String> = by_a.union(&by_b).cloned().collect();
    wait_listed(&mut a, "a", &every).await;
    wait_listed(&mut b, "b", &every).await;
    assert!(
        !world.scratch.path("state-router-a/history.redb").exists(),
        "the history is in PostgreSQL, not the state folder"
    );

    a.terminate();
    b.terminate();
    a.expect_success().await;
    b.expect_success().await;
    std::fs::remove_dir_all(world.scratch.path("state-router-b")).unwrap();
    let mut b = world.start_with("router-b", "/b", &world.url, &server);
    wait_listed(&mut b, "b, started again on a wiped state folder", &every).await;
    b.terminate();
    b.expect_success().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workflows_of_a_killed_replica_are_taken_over_once_its_claims_expire() {
    let world = Arc::new(World::new().await);
    let workflows = world.workflows(16);
    let (mut a, mut b) = world.pair(&world.url, "").await;

    let producer = Producer::start(&world, workflows, Duration::from_millis(20));
    world.sink.wait_for("/b", 20, PATIENCE).await;
    b.kill();
    let killed = Instant::now();
    // A takes every bucket once B's claims have expired.
    a.wait_for_metric(CLAIMS, 64.0, PATIENCE).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let created = producer.finish(&world).await;

    let received = world.sink.received();
    let deliveries = by_workflow(&received, &created);
    let duplicates = check_order(&deliveries);
    let b_workflows: BTreeSet<usize> = deliveries
        .iter()
        .filter(|(_, seen)| seen.iter().any(|s| s.replica == "/b"))
        .map(|(w, _)| *w)
        .collect();
    let taken = b_workflows
        .iter()
        .filter(|w| {
            deliveries[w]
                .iter()
                .any(|s| s.replica == "/a" && s.at > killed)
        })
        .count();
    eprintln!(
        "kill -9: {} events, {duplicates} delivered twice, {} of B's {} workflows taken over by A",
        created.len(),
        taken,
        b_workflows.len()
    );
    assert!(
        !b_workflows.is_empty() && taken == b_workflows.len(),
        "A takes all of B's workflows"
    );
    a.terminate();
    a.expect_success().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_loses_the_database_stops_delivering_before_its_claims_expire() {
    let world = Arc::new(World::new().await);
    let workflows = world.workflows(16);
    let proxy = Proxy::start(&world.url).await;
    let (mut a, mut b) = world.pair(&proxy.url, "").await;

    let producer = Producer::start(&world, workflows, Duration::from_millis(20));
    world.sink.wait_for("/b", 20, PATIENCE).await;
    proxy.stall(true);
    let stalled = Instant::now();
    a.wait_for_metric(CLAIMS, 64.0, PATIENCE).await;
    b.wait_for_log("stopping delivery", PATIENCE).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let created = producer.finish(&world).await;

    let received = world.sink.received();
    let deliveries = by_workflow(&received, &created);
    let duplicates = check_order(&deliveries);
    let mut taken = 0;
    for (workflow, seen) in &deliveries {
        let Some(last_b) = seen
            .iter()
            .filter(|s| s.replica == "/b")
            .map(|s| s.at)
            .max()
        else {
            continue;
        };
        let Some(first_a) = seen
            .iter()
            .filter(|s| s.replica == "/a" && s.at > stalled)
            .map(|s| s.at)
            .min()
        else {
            continue;
        };
        taken += 1;
        assert!(
            last_b < first_a,
            "wf-{workflow:02}: B delivered until {:?} after the stall, A from {:?}",
            last_b - stalled,
            first_a - stalled
        );
    }
    eprintln!(
        "stalled database: {} events, {duplicates} delivered twice, {taken} of B's workflows \
         taken over by A after B stopped",
        created.len()
    );
    assert!(taken > 0, "A took over B's workflows");
    proxy.stall(false);
    a.terminate();
    a.expect_success().await;
    b.kill();
}
