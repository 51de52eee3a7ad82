//! The kubernetes source end to end: the router binary, with a real kube client, against the
//! test API server of `support::kube_api`, delivering to the test sink.
//!
//! Each test runs router processes with `KUBECONFIG` pointing at the test server, as a user
//! would run it outside a cluster, and checks what the sink received (every event once, with a
//! stable `webhook-id`) and what the router asked the API server (request counts by verb).

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use serde_json::Value;
use support::kube_api::{self, KubeApi, Res, webhook_id};
use support::router::{PATIENCE, RouterProcess, Scratch, http_get, metric, run_command, toml_path};
use support::sink::Received;
use support::world::{NS, World};

/// The verbs the router may use, per resource: exactly what `deploy/` grants.
fn allowed() -> BTreeMap<String, BTreeSet<String>> {
    kfp_event_router::source::kubernetes::API_USAGE
        .iter()
        .map(|(resource, verbs)| {
            (
                resource.to_string(),
                verbs.iter().map(|v| v.to_string()).collect(),
            )
        })
        .collect()
}

/// Panics when the router used a verb `deploy/`'s RBAC does not grant.
fn assert_requests_allowed(api: &KubeApi) {
    let allowed = allowed();
    for ((verb, resource), count) in api.all_requests() {
        assert!(
            allowed
                .get(&resource)
                .is_some_and(|verbs| verbs.contains(&verb)),
            "the router made {count} `{verb}` request(s) on {resource}, which the Role does not grant"
        );
    }
}

fn ids(received: &[Received]) -> Vec<String> {
    received
        .iter()
        .map(|r| r.header("webhook-id").to_owned())
        .collect()
}

/// Waits for `n` deliveries, then a moment more, and checks there are exactly `n`, all
/// different; returns them.
async fn exactly(world: &World, n: usize) -> Vec<Received> {
    world.sink.wait_for("/hook", n, PATIENCE).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let got = world.deliveries();
    let unique: BTreeSet<String> = ids(&got).into_iter().collect();
    assert_eq!(got.len(), n, "deliveries: {:?}", ids(&got));
    assert_eq!(unique.len(), n, "duplicates among the deliveries");
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_skips_what_exists_then_restart_delivers_exactly_what_happened_while_down() {
    let world = World::new().await;
    let uid = world.workflow(NS, "wf-a");
    for i in 0..500 {
        world.event(NS, &format!("old-{i:04}"), "wf-a", &uid, i % 2 == 0);
    }
    let config = world.events_config("a", "");
    let mut router = world.start("a", &config);
    world.wait_watching(&mut router, 1).await;

    let mut expected = BTreeSet::new();
    for i in 0..50 {
        expected.insert(webhook_id(&world.event(
            NS,
            &format!("new-{i:04}"),
            "wf-a",
            &uid,
            i % 2 == 0,
        )));
    }
    let got = exactly(&world, 50).await;
    assert_eq!(
        ids(&got).into_iter().collect::<BTreeSet<_>>(),
        expected,
        "exactly the new Events"
    );

    // Down for a while (a graceful stop), with Events happening meanwhile.
    router.terminate();
    router.expect_success().await;
    for i in 0..30 {
        expected.insert(webhook_id(&world.event(
            NS,
            &format!("while-down-{i:04}"),
            "wf-a",
            &uid,
            true,
        )));
    }
    let mut router = world.start("a", &config);
    world.wait_watching(&mut router, 1).await;
    let got = exactly(&world, 80).await;
    assert_eq!(ids(&got).into_iter().collect::<BTreeSet<_>>(), expected);

    // The checkpoint is mirrored in the ConfigMap, where a replacement pod would find it.
    let cm = world
        .api
        .get(Res::ConfigMaps, NS, "kfp-event-router-state")
        .expect("the checkpoint ConfigMap");
    assert!(
        cm["data"]["kubernetes"]
            .as_str()
            .unwrap()
            .contains("resourceVersion"),
        "{cm}"
    );
    // A crash this time (no graceful stop), and a restart from the local outbox alone.
    router.kill();
    world
        .api
        .delete(Res::ConfigMaps, NS, "kfp-event-router-state");
    for i in 0..10 {
        expected.insert(webhook_id(&world.event(
            NS,
            &format!("after-crash-{i:04}"),
            "wf-a",
            &uid,
            false,
        )));
    }
    let mut router = world.start("a", &config);
    world.wait_watching(&mut router, 1).await;
    // Deliveries completed just before the kill may repeat (at least once), with their ids.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while ids(&world.deliveries())
        .into_iter()
        .collect::<BTreeSet<_>>()
        != expected
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "missing events after the crash:\n{}",
            router.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = ids(&world.deliveries());
    let before: BTreeSet<&String> = got[..80].iter().collect();
    for id in expected.iter().filter(|id| !before.contains(id)) {
        assert_eq!(
            got.iter().filter(|g| *g == id).count(),
            1,
            "{id} delivered once"
        );
    }
    assert_requests_allowed(&world.api);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_watches_and_410_gone_lose_nothing_and_double_nothing() {
    let world = World::new().await;
    let uid = world.workflow(NS, "wf-b");
    let config = world.events_config("b", "");
    let mut router = world.start("b", &config);
    world.wait_watching(&mut router, 1).await;
    let mut created = Vec::new();
    for i in 0..20 {
        created.push(world.event(NS, &format!("e-{i:04}"), "wf-b", &uid, true));
    }
    exactly(&world, 20).await;

    // The connection breaks; Events happen before the watch is back: it resumes.
    world.api.drop_watches();
    for i in 20..40 {
        created.push(world.event(NS, &format!("e-{i:04}"), "wf-b", &uid, true));
    }
    exactly(&world, 40).await;

    // The history is compacted and the connection breaks: the resumed watch gets 410 Gone,
    // and the router lists again; what it had is not delivered twice.
    world.api.compact();
    world.api.drop_watches();
    for i in 40..60 {
        created.push(world.event(NS, &format!("e-{i:04}"), "wf-b", &uid, i % 2 == 0));
    }
    exactly(&world, 60).await;
    assert!(
        world.api.requests("list", Res::Events) >= 2,
        "a relist happened"
    );

    // Repeats bump the count on the same Event (the aggregator's rolled-up ones too): each is
    // a new occurrence, delivered with its own webhook-id.
    let mut bumped = BTreeSet::new();
    for (i, event) in created.iter().take(5).enumerate() {
        let name = event["metadata"]["name"].as_str().unwrap();
        bumped.insert(webhook_id(&world.api.bump_event(NS, name, i % 2 == 0)));
    }
    let got = exactly(&world, 65).await;
    let last: BTreeSet<String> = ids(&got[60..]).into_iter().collect();
    assert_eq!(last, bumped);
    let combined = got[60..]
        .iter()
        .find(|r| {
            r.json()["Message"]
                .as_str()
                .unwrap()
                .starts_with("(combined from similar events)")
        })
        .expect("a rolled-up Event");
    assert_eq!(combined.json()["EventCount"], 2);
    assert_eq!(
        combined.json()["KfpRunId"],
        "run-wf-b",
        "enriched without node annotations"
    );
    // An update that is not a new occurrence (same count) is not delivered.
    world.api.update(Res::Events, NS, "e-0010", |e| {
        e["message"] = "edited".into()
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(world.deliveries().len(), 65);
    assert_requests_allowed(&world.api);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_events_of_twenty_workflows_cost_no_workflow_get_and_are_enriched() {
    let world = World::new().await;
    let uids: Vec<(String, String)> = (0..20)
        .map(|i| {
            let name = format!("wf-{i:02}");
            (world.workflow(NS, &name), name)
        })
        .collect();
    let config = world.events_config("c", "");
    let mut router = world.start("c", &config);
    world.wait_watching(&mut router, 1).await;
    for i in 0..1000 {
        let (uid, name) = &uids[i % 20];
        world.event(NS, &format!("ev-{i:05}"), name, uid, i % 4 != 0);
    }
    // Two Workflows created while running, their first Events right behind them.
    for name in ["late-1", "late-2"] {
        let uid = world.workflow(NS, name);
        world.event(NS, &format!("{name}-first"), name, &uid, true);
    }
    let got = exactly(&world, 1002).await;
    let gets = world.api.requests("get", Res::Workflows);
    assert!(gets <= 3, "{gets} GETs of Workflows for 1002 events");
    let text = router.metrics().await;
    let counted = metric(
        &text,
        "kfp_event_router_kube_requests_total{verb=\"get\",resource=\"workflows.argoproj.io\"}",
    )
    .unwrap_or(0.0);
    assert_eq!(
        counted as u64, gets,
        "the metric counts what the server saw"
    );
    assert!(
        metric(
            &text,
            "kfp_event_router_kube_requests_total{verb=\"watch\",resource=\"events\"}"
        )
        .unwrap_or(0.0)
            >= 1.0
    );

    for received in &got {
        let body = received.json();
        let wf = body["WorkflowName"].as_str().unwrap();
        assert_eq!(body["KfpRunId"], format!("run-{wf}"), "{body}");
        assert_eq!(body["RunName"], format!("run of {wf}"));
        assert_eq!(body["PipelineName"], "my-pipeline");
        assert_eq!(body["Parameters"]["lr"], "0.1");
        if body["EventType"] == "WorkflowNodeSucceeded" {
            assert_eq!(body["Node"]["DisplayName"], "train", "{body}");
            assert_eq!(body["Node"]["TemplateName"], "train-template");
            assert_eq!(body["NodeName"], "train");
        }
    }
    assert_requests_allowed(&world.api);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_whose_workflow_is_gone_is_delivered_with_the_event_facts() {
    let world = World::new().await;
    let kept = world.workflow(NS, "wf-deleted-later");
    let config = world.events_config("d", "");
    let mut router = world.start("d", &config);
    world.wait_watching(&mut router, 1).await;

    // Never seen (archived before the router started): found gone once, not looked up again.
    for i in 0..3 {
        world.event(
            NS,
            &format!("ghost-{i}"),
            "wf-archived",
            "uid-archived",
            true,
        );
    }
    // Deleted after the router saw it: the cache keeps its last state for late Events.
    world.api.delete(Res::Workflows, NS, "wf-deleted-later");
    tokio::time::sleep(Duration::from_millis(300)).await;
    world.event(NS, "late", "wf-deleted-later", &kept, true);

    let got = exactly(&world, 4).await;
    let by_wf: HashMap<String, Vec<Value>> = got.iter().fold(HashMap::new(), |mut m, r| {
        let body = r.json();
        m.entry(body["WorkflowName"].as_str().unwrap().to_owned())
            .or_default()
            .push(body);
        m
    });
    for body in &by_wf["wf-archived"] {
        assert_eq!(body["EventType"], "WorkflowNodeSucceeded");
        assert_eq!(body["KfpRunId"], "", "no Workflow, no run id");
        assert_eq!(
            body["NodeName"], "train",
            "the node from the Event's annotations"
        );
        assert_eq!(body["WorkflowUid"], "uid-archived");
    }
    assert_eq!(
        by_wf["wf-deleted-later"][0]["KfpRunId"],
        "run-wf-deleted-later"
    );
    assert_eq!(
        world.api.requests("get", Res::Workflows),
        1,
        "one GET for the gone Workflow, then remembered"
    );
    assert_requests_allowed(&world.api);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_takes_over_when_the_leader_dies_and_every_event_arrives() {
    let world = World::new().await;
    let uid = world.workflow(NS, "wf-ha");
    let config_a = world.events_config("a", "");
    let config_b = world.events_config("b", "");
    let mut a = world.start("router-a", &config_a);
    world.wait_watching(&mut a, 1).await;
    let mut b = world.start("router-b", &config_b);
    b.wait_for_log("standing by", PATIENCE).await;
    let addr_a = a.metrics_addr().await;
    let addr_b = b.metrics_addr().await;
    let ready_a: Value =
        serde_json::from_str(&http_get(&format!("http://{addr_a}/readyz")).await).unwrap();
    let ready_b: Value =
        serde_json::from_str(&http_get(&format!("http://{addr_b}/readyz")).await).unwrap();
    assert_eq!(
        (ready_a["role"].as_str(), ready_b["role"].as_str()),
        (Some("leader"), Some("standby"))
    );

    // Events keep coming; the leader dies (SIGKILL) in the middle of them.
    let mut expected = BTreeSet::new();
    for i in 0..300 {
        if i == 120 {
            a.kill();
        }
        expected.insert(webhook_id(&world.event(
            NS,
            &format!("ha-{i:04}"),
            "wf-ha",
            &uid,
            i % 3 != 0,
        )));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    b.wait_for_log("became the leader", PATIENCE).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let seen: BTreeSet<String> = ids(&world.deliveries()).into_iter().collect();
        if seen.is_superset(&expected) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "missing {} events after the failover; logs of b:\n{}",
            expected.difference(&seen).count(),
            b.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = world.deliveries();
    let seen: BTreeSet<String> = ids(&got).into_iter().collect();
    assert_eq!(seen, expected, "every event, and nothing else");
    let duplicates = got.len() - seen.len();
    // Only what the dead leader had in flight (accepted, not yet known delivered) repeats.
    assert!(duplicates <= 120, "{duplicates} duplicates");
    eprintln!(
        "failover: {} deliveries of {} events ({duplicates} repeated, same webhook-id)",
        got.len(),
        seen.len()
    );
    let ready_b: Value =
        serde_json::from_str(&http_get(&format!("http://{addr_b}/readyz")).await).unwrap();
    assert_eq!(ready_b["role"], "leader");
    let lease = world
        .api
        .get(Res::Leases, NS, "kfp-event-router")
        .expect("the Lease");
    assert_eq!(lease["spec"]["holderIdentity"], "router-b");
    assert!(lease["spec"]["leaseTransitions"].as_i64().unwrap() >= 1);

    // A graceful stop releases the Lease at once.
    b.terminate();
    b.expect_success().await;
    let lease = world.api.get(Res::Leases, NS, "kfp-event-router").unwrap();
    assert!(lease["spec"]["holderIdentity"].is_null(), "{lease}");
    assert_requests_allowed(&world.api);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_namespaces_and_all_namespaces() {
    let world = World::new().await;
    let mut uids = HashMap::new();
    for ns in ["team-a", "team-b", "team-c"] {
        uids.insert(ns, world.workflow(ns, "wf"));
    }
    let listed = world.events_config("listed", "namespaces = [\"team-a\", \"team-b\"]");
    let mut router = world.start("listed", &listed);
    world.wait_watching(&mut router, 2).await;
    for ns in ["team-a", "team-b", "team-c"] {
        world.event(ns, "e1", "wf", &uids[ns], true);
    }
    let got = exactly(&world, 2).await;
    let namespaces: BTreeSet<String> = got
        .iter()
        .map(|r| r.json()["Namespace"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        namespaces,
        BTreeSet::from(["team-a".to_owned(), "team-b".to_owned()])
    );
    assert!(
        got.iter().all(|r| r.json()["KfpRunId"] == "run-wf"),
        "enriched from each namespace's cache"
    );
    router.terminate();
    router.wait(PATIENCE).await;

    let all = world.events_config("all", "namespaces = [\"*\"]");
    let mut router = world.start("all", &all);
    world.wait_watching(&mut router, 1).await;
    for ns in ["team-a", "team-b", "team-c"] {
        world.event(ns, "e2", "wf", &uids[ns], true);
    }
    let got = exactly(&world, 5).await;
    let namespaces: BTreeSet<String> = got[2..]
        .iter()
        .map(|r| r.json()["Namespace"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(namespaces.len(), 3, "every namespace");
    assert!(got[2..].iter().all(|r| r.json()["KfpRunId"] == "run-wf"));
    assert_requests_allowed(&world.api);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_with_history_delivers_the_recent_window() {
    let world = World::new().await;
    let uid = world.workflow(NS, "wf-h");
    let mut old = kube_api::event("old", "wf-h", &uid, "WorkflowRunning", None);
    old["lastTimestamp"] = "2020-01-01T00:00:00Z".into();
    world.api.create(Res::Events, NS, old);
    let recent = world.event(NS, "recent", "wf-h", &uid, true);
    let config = world.events_config("h", "history = \"1h\"");
    let mut router = world.start("h", &config);
    world.wait_watching(&mut router, 1).await;
    let got = exactly(&world, 1).await;
    assert_eq!(ids(&got), [webhook_id(&recent)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credentials_is_a_clear_error() {
    let scratch = Scratch::new();
    let config = scratch.write(
        "router.toml",
        &format!(
            "[source]\nkind = \"kubernetes\"\n\n[state]\ndir = {}\n\n[server]\nlisten = \"127.0.0.1:0\"\n",
            toml_path(&scratch.state_dir())
        ),
    );
    let mut command = run_command(&config);
    command
        .env("KUBECONFIG", scratch.path("missing-kubeconfig"))
        .env("HOME", scratch.dir.path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT");
    let mut router = RouterProcess::spawn(command);
    assert_eq!(router.exit_code(PATIENCE).await, 2);
    assert!(
        router.logs().contains("cannot find Kubernetes credentials"),
        "{}",
        router.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_writes_a_recording_that_replays() {
    let world = World::new().await;
    let uid = world.workflow(NS, "wf-r");
    world.event(NS, "r1", "wf-r", &uid, true);
    world.event(NS, "r2", "wf-r", &uid, false);
    let output = world.scratch.path("recording.jsonl");
    let mut command = support::router::command();
    command
        .args(["record", "--namespace", NS, "--duration", "2s", "--output"])
        .arg(&output)
        .env("KUBECONFIG", &world.kubeconfig)
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy");
    let mut recorder = RouterProcess::spawn(command);
    world.api.wait_for_watches(Res::Events, 1, PATIENCE).await;
    world.event(NS, "r3", "wf-r", &uid, true);
    world.api.bump_event(NS, "r1", false);
    recorder.expect_success().await;
    let lines: Vec<Value> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<String> = lines
        .iter()
        .map(|l| {
            format!(
                "{} {} {}",
                l["type"].as_str().unwrap(),
                l["object"]["kind"].as_str().unwrap(),
                l["object"]["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "ADDED Workflow wf-r",
            "ADDED Event r1",
            "ADDED Event r2",
            "ADDED Event r3",
            "MODIFIED Event r1"
        ],
        "{kinds:#?}"
    );
    assert!(
        lines[0]["object"]["status"]["nodes"].is_object(),
        "Workflows are recorded whole"
    );

    // The recording replays through a config: 4 occurrences (r1 twice).
    let replay = world.scratch.write(
        "replay.toml",
        &format!(
            "[source]\nkind = \"replay\"\npath = {}\n\n[state]\ndir = {}\n\n[server]\nlisten = \"127.0.0.1:0\"\n\n[[endpoints]]\nname = \"sink\"\nurl = \"{}\"\nformat = \"extended\"\n",
            toml_path(&output),
            toml_path(&world.scratch.path("replay-state")),
            world.sink.url("/replayed"),
        ),
    );
    let mut router = RouterProcess::start(&replay);
    router.expect_success().await;
    let replayed = world.sink.received_on("/replayed");
    assert_eq!(replayed.len(), 4);
    assert!(replayed.iter().all(|r| r.json()["KfpRunId"] == "run-wf-r"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_default_paths_a_transition_is_delivered_once_and_nothing_from_before() {
    let world = World::new().await;
    let uid = world.workflow(NS, "wf-both");
    world.event(NS, "before", "wf-both", &uid, true);
    let config = world.config("both", "");
    let mut router = world.start("both", &config);
    world.wait_watching(&mut router, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        world.deliveries().is_empty(),
        "nothing that happened before the first start"
    );

    // Node n2 succeeds: the status changes and the controller records an Event.
    world.api.update(Res::Workflows, NS, "wf-both", |wf| {
        wf["status"]["nodes"]["n2"]["phase"] = "Succeeded".into();
        wf["status"]["nodes"]["n2"]["finishedAt"] = kube_api::now().into();
    });
    let mut event = kube_api::event(
        "n2-done",
        "wf-both",
        &uid,
        "WorkflowNodeSucceeded",
        Some(("n2", "eval")),
    );
    event["message"] = "Succeeded node wf-both.eval".into();
    world.api.create(Res::Events, NS, event);
    let got = exactly(&world, 1).await;
    let body = got[0].json();
    assert_eq!(body["EventType"], "WorkflowNodeSucceeded", "{body}");
    assert_eq!(body["NodeName"], "eval");
    assert_eq!(body["KfpRunId"], "run-wf-both");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_loses_its_lease_stops_delivering_and_exits() {
    let world = World::new().await;
    let uid = world.workflow(NS, "wf-lost");
    let config = world.events_config("lost", "");
    let mut router = world.start("router-lost", &config);
    world.wait_watching(&mut router, 1).await;
    world.event(NS, "before-loss", "wf-lost", &uid, true);
    exactly(&world, 1).await;
    // Another replica (say, after a network partition) holds the Lease now.
    world
        .api
        .update(Res::Leases, NS, "kfp-event-router", |lease| {
            lease["spec"]["holderIdentity"] = "intruder".into();
            lease["spec"]["renewTime"] = "2099-01-01T00:00:00.000000Z".into();
        });
    assert_eq!(router.exit_code(PATIENCE).await, 2);
    assert!(
        router.logs().contains("lost the leader lease"),
        "{}",
        router.logs()
    );
    world.event(NS, "after-loss", "wf-lost", &uid, true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        world.deliveries().len(),
        1,
        "a former leader delivers nothing more"
    );
    let lease = world.api.get(Res::Leases, NS, "kfp-event-router").unwrap();
    assert_eq!(
        lease["spec"]["holderIdentity"], "intruder",
        "and does not touch the Lease"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_node_events_and_any_reason_flow_and_other_events_do_not() {
    let world = World::new().await;
    let uid = world.workflow(NS, "wf-pod");
    let config = world.events_config("pod", "");
    let mut router = world.start("pod", &config);
    world.wait_watching(&mut router, 1).await;

    // nodeEvents.sendAsPod: the node Event is about the Pod, and names its Workflow.
    let mut pod_event = kube_api::event(
        "pod-1",
        "wf-pod-n1-123",
        "pod-uid",
        "WorkflowNodeSucceeded",
        Some(("n1", "train")),
    );
    pod_event["involvedObject"] =
        serde_json::json!({"kind": "Pod", "name": "wf-pod-n1-123", "apiVersion": "v1"});
    pod_event["metadata"]["annotations"]["workflows.argoproj.io/workflow-name"] = "wf-pod".into();
    pod_event["metadata"]["annotations"]["workflows.argoproj.io/workflow-uid"] = uid.clone().into();
    pod_event["message"] = "Succeeded node wf-pod.train".into();
    world.api.create(Res::Events, NS, pod_event);
    // A reason Argo may add one day passes unchanged.
    world.api.create(
        Res::Events,
        NS,
        kube_api::event(
            "future",
            "wf-pod",
            &uid,
            "WorkflowNodeTeleported",
            Some(("n1", "train")),
        ),
    );
    // Not the workflow-controller's: left out by the field selector.
    let mut kubelet = kube_api::event("kubelet", "wf-pod", &uid, "Pulled", None);
    kubelet["source"]["component"] = "kubelet".into();
    world.api.create(Res::Events, NS, kubelet);
    // The controller's, but about a Pod that names no Workflow: left out in code.
    let mut stray = kube_api::event("stray", "some-pod", "x", "WorkflowNodeRunning", None);
    stray["involvedObject"] = serde_json::json!({"kind": "Pod", "name": "some-pod"});
    world.api.create(Res::Events, NS, stray);

    let got = exactly(&world, 2).await;
    let by_reason: HashMap<String, Value> = got
        .iter()
        .map(|r| (r.json()["EventType"].as_str().unwrap().to_owned(), r.json()))
        .collect();
    let pod = &by_reason["WorkflowNodeSucceeded"];
    assert_eq!(pod["WorkflowName"], "wf-pod");
    assert_eq!(
        pod["KfpRunId"], "run-wf-pod",
        "enriched from the annotated Workflow"
    );
    assert_eq!(pod["Node"]["DisplayName"], "train");
    assert_eq!(
        by_reason["WorkflowNodeTeleported"]["KfpRunId"],
        "run-wf-pod"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_start_in_an_empty_namespace_still_resumes_after_a_restart() {
    let world = World::new().await;
    let uid = world.workflow(NS, "wf-empty");
    let config = world.events_config("empty", "");
    let mut router = world.start("empty", &config);
    world.wait_watching(&mut router, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    router.terminate();
    router.expect_success().await;
    let expected: BTreeSet<String> = (0..5)
        .map(|i| webhook_id(&world.event(NS, &format!("down-{i}"), "wf-empty", &uid, true)))
        .collect();
    let mut router = world.start("empty", &config);
    world.wait_watching(&mut router, 1).await;
    let got = exactly(&world, 5).await;
    assert_eq!(ids(&got).into_iter().collect::<BTreeSet<_>>(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_pod_resumes_from_the_configmap_through_transient_errors_reading_it() {
    let world = World::new().await;
    let uid = world.workflow(NS, "wf-flaky");
    let config = world.events_config("flaky-a", "");
    let mut router = world.start("flaky-a", &config);
    world.wait_watching(&mut router, 1).await;
    world.event(NS, "before", "wf-flaky", &uid, true);
    exactly(&world, 1).await;
    router.terminate();
    router.expect_success().await;
    let cm = world
        .api
        .get(Res::ConfigMaps, NS, "kfp-event-router-state")
        .expect("the checkpoint ConfigMap");
    assert!(
        cm["data"]["kubernetes"]
            .as_str()
            .unwrap()
            .contains("resourceVersion"),
        "{cm}"
    );

    // Events happen while no router runs; then a new pod starts, with an empty state dir, and
    // its first reads of the checkpoint ConfigMap fail (the API server is having a bad moment).
    let mut expected = BTreeSet::new();
    for i in 0..5 {
        expected.insert(webhook_id(&world.event(
            NS,
            &format!("while-down-{i}"),
            "wf-flaky",
            &uid,
            true,
        )));
    }
    world.api.fail_next("get", Res::ConfigMaps, 3, 500);
    let gets_before = world.api.requests("get", Res::ConfigMaps);
    let config = world.events_config("flaky-b", "");
    let mut router = world.start("flaky-b", &config);
    world.wait_watching(&mut router, 1).await;
    let got = exactly(&world, 6).await;
    assert_eq!(
        ids(&got[1..]).into_iter().collect::<BTreeSet<_>>(),
        expected,
        "the Events after the checkpoint, not skipped as history; logs:\n{}",
        router.logs()
    );
    assert!(
        world.api.requests("get", Res::ConfigMaps) - gets_before >= 4,
        "the read was retried"
    );
    assert!(
        router.logs().contains("resuming after the checkpoint"),
        "{}",
        router.logs()
    );
    assert_requests_allowed(&world.api);
}
