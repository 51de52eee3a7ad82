//! Throughput of the kubernetes source against the replay source, and its API cost. Not a
//! timed test: it prints figures. Run with
//!
//! ```text
//! cargo test --release -p kfp-event-router --test kube_bench -- --ignored --nocapture
//! ```
//!
//! The same Workflows and Events go once through the kubernetes source (the test API server,
//! watched by the router binary) and once through a replay of a recording of them; both end at
//! the same local sink, so the ratio is what the cluster path costs. `KUBE_BENCH_EVENTS` sets
//! the number of events (default 5000, over 20 workflows).

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use support::kube_api::{self, KubeApi, Res};
use support::router::{RouterProcess, Scratch, run_command, toml_path};
use support::sink::Sink;

const NS: &str = "kubeflow";
const WORKFLOWS: usize = 20;

fn events() -> usize {
    std::env::var("KUBE_BENCH_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5000)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark; run with --ignored --nocapture (and --release)"]
async fn kube_source_throughput_and_api_cost() {
    let n = events();
    let api = KubeApi::start().await;
    let scratch = Scratch::new();
    let kubeconfig = api.kubeconfig(scratch.dir.path(), NS);
    let workflows: Vec<(String, String)> = (0..WORKFLOWS)
        .map(|i| {
            let name = format!("bench-{i:02}");
            let wf =
                kube_api::workflow(&name, &format!("run-{i}"), &[("n1", "train", "Succeeded")]);
            let uid = api.create(Res::Workflows, NS, wf)["metadata"]["uid"]
                .as_str()
                .unwrap()
                .to_owned();
            (name, uid)
        })
        .collect();

    // ---- kubernetes source ----------------------------------------------------------------
    let sink = Sink::start().await;
    let config = scratch.write(
        "kube.toml",
        &format!(
            "[source]\nkind = \"kubernetes\"\nfrom = \"events\"\n\n[state]\ndir = {}\n\n[server]\nlisten = \"127.0.0.1:0\"\n\n\
             [[endpoints]]\nname = \"sink\"\nurl = \"{}\"\n",
            toml_path(&scratch.path("kube-state")),
            sink.url("/kube")
        ),
    );
    let mut command = run_command(&config);
    command
        .env("KUBECONFIG", &kubeconfig)
        .env("POD_NAMESPACE", NS)
        .env("POD_NAME", "bench")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy");
    let mut router = RouterProcess::spawn(command);
    router
        .wait_for_log("listed Events", Duration::from_secs(30))
        .await;
    api.wait_for_watches(Res::Events, 1, Duration::from_secs(30))
        .await;
    let before = api.all_requests();
    let started = Instant::now();
    let mut recorded = Vec::with_capacity(n);
    for i in 0..n {
        let (name, uid) = &workflows[i % WORKFLOWS];
        let event = kube_api::event(
            &format!("ev-{i:06}"),
            name,
            uid,
            "WorkflowNodeSucceeded",
            Some(("n1", "train")),
        );
        recorded.push(api.create(Res::Events, NS, event));
    }
    sink.wait_for("/kube", n, Duration::from_secs(600)).await;
    let kube_elapsed = started.elapsed();
    let after = api.all_requests();
    router.terminate();
    router.wait(Duration::from_secs(30)).await;
    let mut during: BTreeMap<String, u64> = BTreeMap::new();
    for ((verb, resource), count) in &after {
        let delta = count
            - before
                .get(&(verb.clone(), resource.clone()))
                .copied()
                .unwrap_or(0);
        if delta > 0 {
            during.insert(format!("{verb} {resource}"), delta);
        }
    }

    // ---- replay of the same objects -------------------------------------------------------
    let recording = scratch.path("recording.jsonl");
    {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&recording).unwrap());
        for (name, _) in &workflows {
            let wf = api.get(Res::Workflows, NS, name).unwrap();
            writeln!(
                file,
                "{}",
                serde_json::json!({"type": "ADDED", "object": wf})
            )
            .unwrap();
        }
        for event in &recorded {
            writeln!(
                file,
                "{}",
                serde_json::json!({"type": "ADDED", "object": event})
            )
            .unwrap();
        }
    }
    let replay = scratch.write(
        "replay.toml",
        &format!(
            "[source]\nkind = \"replay\"\npath = {}\n\n[state]\ndir = {}\n\n[server]\nlisten = \"127.0.0.1:0\"\n\n\
             [[endpoints]]\nname = \"sink\"\nurl = \"{}\"\n",
            toml_path(&recording),
            toml_path(&scratch.path("replay-state")),
            sink.url("/replay")
        ),
    );
    let started = Instant::now();
    let mut router = RouterProcess::start(&replay);
    sink.wait_for("/replay", n, Duration::from_secs(600)).await;
    let replay_elapsed = started.elapsed();
    router.wait(Duration::from_secs(60)).await;

    let rate = |elapsed: Duration| n as f64 / elapsed.as_secs_f64();
    let per_1000 = |count: u64| count as f64 * 1000.0 / n as f64;
    let workflow_gets = during
        .get("get workflows.argoproj.io")
        .copied()
        .unwrap_or(0);
    let total: u64 = during.values().sum();
    let event_requests: u64 = during
        .iter()
        .filter(|(k, _)| k.ends_with(" events") || k.ends_with(" workflows.argoproj.io"))
        .map(|(_, v)| v)
        .sum();
    println!();
    println!("kubernetes source vs replay: {n} events over {WORKFLOWS} workflows, to a local sink");
    println!(
        "  kubernetes source : {:>9.0} events/s ({:.2?})",
        rate(kube_elapsed),
        kube_elapsed
    );
    println!(
        "  replay source     : {:>9.0} events/s ({:.2?})",
        rate(replay_elapsed),
        replay_elapsed
    );
    println!(
        "  ratio kube/replay : {:>9.2}",
        replay_elapsed.as_secs_f64() / kube_elapsed.as_secs_f64()
    );
    println!(
        "API requests while delivering them (the Go handler: 1000 Workflow GETs per 1000 events):"
    );
    for (what, count) in &during {
        println!("  {what:<40} {count:>6}");
    }
    println!(
        "  Workflow GETs per 1000 events          {:>8.2}",
        per_1000(workflow_gets)
    );
    println!(
        "  Event/Workflow requests per 1000 events {:>7.2}",
        per_1000(event_requests)
    );
    println!(
        "  all requests per 1000 events (+ lease, checkpoint) {:>5.2}",
        per_1000(total)
    );
}
