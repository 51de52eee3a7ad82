//! The fault suite: the router under the faults a cluster brings, each bounded in time.
//!
//! Every scenario asserts the same three things: nothing lost (each event reaches the sink),
//! nothing out of order within a workflow (the first arrivals of a workflow's events follow
//! the order they happened in), and repeats counted: a repeat is a redelivery of the same
//! webhook-id and payload, reported on stderr (`faults: ...`) for the closing figures.
//!
//! Here: an endpoint down for the whole run, then up; `kill -9` at random points, repeated; and
//! Events that expire while the router is down (the Workflow status fills the gap). The lease
//! faults live in `leadership.rs`, the shared-backend faults (PostgreSQL restarted, state dir
//! wiped) in `state_backends.rs`.

mod support;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use support::kube_api::{self, Res};
use support::recording::{self, Generated};
use support::router::{PATIENCE, RouterProcess, Scratch, closed_port, toml_str};
use support::sink::{Received, Reply, Sink};
use support::world::{NS, World};

/// What a sink received, checked against a generated recording.
struct Tally {
    /// Distinct events received.
    distinct: usize,
    /// Requests that repeated an event already received.
    repeats: usize,
}

/// Checks that `received` (the 2xx-answered requests) holds every event of `generated` with
/// one payload per webhook-id, and each workflow's first arrivals in recording order.
fn tally(generated: &Generated, received: &[Received]) -> Tally {
    let mut bodies: HashMap<String, HashSet<Vec<u8>>> = HashMap::new();
    let mut first: HashMap<String, Vec<String>> = HashMap::new();
    let mut uids = BTreeSet::new();
    for r in received {
        let id = r.header("webhook-id").to_owned();
        let fresh = !bodies.contains_key(&id);
        bodies.entry(id).or_default().insert(r.body.to_vec());
        let json = r.json();
        uids.insert(json["EventUid"].as_str().unwrap().to_owned());
        if fresh {
            first
                .entry(json["WorkflowName"].as_str().unwrap().to_owned())
                .or_default()
                .push(json["NodeName"].as_str().unwrap().to_owned());
        }
    }
    let expected: BTreeSet<String> = generated.event_uids.iter().cloned().collect();
    assert_eq!(uids, expected, "every event arrived, none invented");
    assert_eq!(bodies.len(), generated.events(), "one webhook-id per event");
    for (id, payloads) in &bodies {
        assert_eq!(payloads.len(), 1, "{id}: a repeat carries the same payload");
    }
    for (workflow, nodes) in &generated.order {
        assert_eq!(
            first.get(workflow),
            Some(nodes),
            "{workflow}: events arrived out of order"
        );
    }
    Tally {
        distinct: bodies.len(),
        repeats: received.len() - bodies.len(),
    }
}

/// Writes a recording of `workflows` x `per_workflow` events and a config replaying it to one
/// endpoint at `url`, with quick retries.
fn setup(
    scratch: &Scratch,
    workflows: usize,
    per_workflow: usize,
    url: &str,
) -> (Generated, std::path::PathBuf) {
    let generated = recording::interleaved(workflows, per_workflow);
    let path = scratch.path("recording.jsonl");
    generated.recording.write(&path);
    let config = scratch.write(
        "router.toml",
        &format!(
            "{}[[endpoints]]\nname = \"hook\"\nurl = {}\nformat = \"extended\"\nconcurrency = 8\n\
             [endpoints.retry]\nschedule = [\"0s\", \"50ms\", \"100ms\", \"200ms\"]\n",
            scratch.tables(&path, None),
            toml_str(url)
        ),
    );
    (generated, config)
}

/// How many distinct webhook-ids `sink` has on `/hook`.
fn distinct(sink: &Sink) -> usize {
    sink.received_on("/hook")
        .iter()
        .map(|r| r.header("webhook-id").to_owned())
        .collect::<HashSet<_>>()
        .len()
}

/// Waits until `sink` has `n` distinct webhook-ids on `/hook`.
async fn wait_for_distinct(sink: &Sink, n: usize) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while distinct(sink) < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {n} distinct events",
            distinct(sink)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_down_for_the_whole_run_gets_everything_in_order_once_it_is_up() {
    let scratch = Scratch::new();
    let addr = closed_port();
    let (generated, config) = setup(&scratch, 20, 50, &format!("http://{addr}/hook"));
    let mut router = RouterProcess::start(&config);
    // The whole recording is accepted while nothing listens: connections are refused.
    router
        .wait_for_log("source finished; delivering what is left", PATIENCE)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(router.is_running(), "it waits for the endpoint");

    let sink = Sink::start_on(addr).await;
    sink.always("/hook", Reply::status(200));
    router.expect_success().await;
    let tally = tally(&generated, &sink.received_on("/hook"));
    eprintln!(
        "faults: endpoint down, then up: {} events, {} repeats",
        tally.distinct, tally.repeats
    );
    assert_eq!(
        tally.repeats, 0,
        "nothing was delivered before, so nothing repeats"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_points_loses_nothing_and_keeps_each_workflow_in_order() {
    const KILLS: usize = 6;
    let scratch = Scratch::new();
    let sink = Sink::start().await;
    sink.always("/hook", Reply::status(200).after(Duration::from_millis(2)));
    let (generated, config) = setup(&scratch, 25, 200, &sink.url("/hook"));
    let total = generated.events();
    let mut kills = 0;
    for _ in 0..KILLS {
        let distinct = distinct(&sink);
        let mut router = RouterProcess::start(&config);
        // Once it delivers again, at a random point of the next few hundred deliveries.
        wait_for_distinct(&sink, distinct + 1).await;
        tokio::time::sleep(Duration::from_millis(rand::random_range(0..300))).await;
        if !router.is_running() {
            break;
        }
        router.kill();
        kills += 1;
    }
    let mut router = RouterProcess::start(&config);
    router.expect_success().await;
    let received = sink.received_on("/hook");
    let tally = tally(&generated, &received);
    eprintln!(
        "faults: kill -9 x{kills}: {total} events, {} repeats ({:.2}%)",
        tally.repeats,
        100.0 * tally.repeats as f64 / total as f64
    );
}

/// `(EventType, NodeName)` of each delivery, in the order they first arrived.
fn transitions(received: &[Received]) -> Vec<(String, String)> {
    let mut seen = HashSet::new();
    received
        .iter()
        .filter(|r| seen.insert(r.header("webhook-id").to_owned()))
        .map(|r| {
            let json = r.json();
            (
                json["EventType"].as_str().unwrap_or_default().to_owned(),
                json["NodeName"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_that_expire_while_the_router_is_down_arrive_from_the_workflow_status() {
    let world = World::new().await;
    let config = world.config("a", "");
    let mut router = world.start("a", &config);
    world.wait_watching(&mut router, 1).await;

    // A run starts while the router watches: train succeeded, eval runs.
    world.api.create(
        Res::Workflows,
        NS,
        kube_api::workflow(
            "wf-x",
            "run-x",
            &[("n1", "train", "Succeeded"), ("n2", "eval", "Running")],
        ),
    );
    let running = ("WorkflowNodeRunning".to_owned(), "eval".to_owned());
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !transitions(&world.deliveries()).contains(&running) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            transitions(&world.deliveries())
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    router.kill();

    // While it is down the run finishes; its Events expire, and the watch history with them.
    let finished = "2026-11-20T10:05:00Z";
    world.api.update(Res::Workflows, NS, "wf-x", |wf| {
        wf["status"]["phase"] = "Succeeded".into();
        wf["status"]["finishedAt"] = finished.into();
        wf["status"]["nodes"]["n2"]["phase"] = "Succeeded".into();
        wf["status"]["nodes"]["n2"]["finishedAt"] = finished.into();
        wf["status"]["nodes"]["wf-x"]["phase"] = "Succeeded".into();
        wf["status"]["nodes"]["wf-x"]["finishedAt"] = finished.into();
        wf["metadata"]["labels"]["workflows.argoproj.io/phase"] = "Succeeded".into();
    });
    let uid = world.api.get(Res::Workflows, NS, "wf-x").unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_owned();
    for (name, reason, node) in [
        (
            "wf-x.eval-done",
            "WorkflowNodeSucceeded",
            Some(("n2", "eval")),
        ),
        ("wf-x.done", "WorkflowSucceeded", None),
    ] {
        world.api.create(
            Res::Events,
            NS,
            kube_api::event(name, "wf-x", &uid, reason, node),
        );
        world.api.delete(Res::Events, NS, name);
    }
    world.api.compact();

    let mut router = world.start("a", &config);
    world.wait_watching(&mut router, 1).await;
    let expected = [
        ("WorkflowNodeSucceeded".to_owned(), "eval".to_owned()),
        ("WorkflowSucceeded".to_owned(), String::new()),
    ];
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let got = transitions(&world.deliveries());
        let found: Vec<usize> = expected
            .iter()
            .filter_map(|t| got.iter().position(|g| g == t))
            .collect();
        if found.len() == expected.len() {
            assert!(
                found[0] < found[1],
                "the node's success before the run's: {got:?}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the expired transitions never arrived: {got:?}\n{}",
            router.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = transitions(&world.deliveries());
    let unique: BTreeSet<&(String, String)> = got.iter().collect();
    assert_eq!(
        unique.len(),
        got.len(),
        "each transition under one webhook-id: {got:?}"
    );
    let received = world.deliveries().len();
    eprintln!(
        "faults: Events expired while down: {} transitions, {} repeats",
        got.len(),
        received - got.len()
    );
}
