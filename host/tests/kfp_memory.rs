//! Memory bound: a backlog of thousands of realistic KFP 2.x events for an endpoint that is down
//! keeps the router binary under [`RSS_BOUND`] of peak resident memory.
//!
//! The recording is `examples/recordings/kfp-2.4-parallelfor.jsonl` (Workflows carrying the
//! compiler's component blobs and up to 32 nodes each), copied for [`COPIES`] distinct
//! workflows, interleaved line by line as concurrent runs are, with `source.from = "both"` and
//! an endpoint with `nodes = "all"`, so every node's transitions (plumbing included) wait in the
//! outbox. The endpoint's port refuses connections and the retry schedule is long: nothing
//! leaves the outbox. Once the replay is accepted, the process's `VmHWM` (peak RSS) is read from
//! `/proc/<pid>/status`. Only memory is asserted, never time.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::router::{RouterProcess, Scratch, closed_port, metric, toml_path, toml_str};

/// The recording copied.
const RECORDING: &str = "examples/recordings/kfp-2.4-parallelfor.jsonl";
/// Distinct workflows in the backlog.
const COPIES: usize = 100;
/// Events the backlog must hold at least.
const MIN_EVENTS: f64 = 5_000.0;
/// Peak resident memory the router must stay under.
const RSS_BOUND: u64 = 256 << 20;
/// Only a guard against a hung router, far beyond what the replay takes.
const HANG_GUARD: Duration = Duration::from_secs(900);

/// The ids one copy of the recording renames: the workflow's name, its uid, its KFP run id and
/// every Event uid.
fn ids(lines: &[Value]) -> Vec<String> {
    let mut ids = Vec::new();
    for line in lines {
        let object = line.get("object").unwrap_or(line);
        let meta = &object["metadata"];
        match object["kind"].as_str() {
            Some("Workflow") => {
                ids.push(meta["name"].as_str().unwrap().to_owned());
                ids.push(meta["uid"].as_str().unwrap().to_owned());
                ids.push(
                    meta["labels"]["pipeline/runid"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                );
            }
            _ => ids.push(meta["uid"].as_str().unwrap().to_owned()),
        }
    }
    ids.sort();
    ids.dedup();
    ids
}

/// `id` for copy `copy`: the same length, its last 4 characters replaced by the copy number
/// (uids stay UUID-shaped, names stay DNS names).
fn renamed(id: &str, copy: usize) -> String {
    format!("{}{copy:04x}", &id[..id.len() - 4])
}

/// The backlog: line `j` of every copy, then line `j + 1`, with resourceVersions increasing
/// along the file. Returns the JSON Lines text.
fn backlog() -> String {
    let text = std::fs::read_to_string(support::root().join(RECORDING)).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids = ids(&lines);
    let mut out = String::new();
    let mut version = 51_000_000u64;
    for line in text.lines() {
        let object: Value = serde_json::from_str(line).unwrap();
        let object = object.get("object").unwrap_or(&object);
        let old_version = object["metadata"]["resourceVersion"].as_str().unwrap();
        let old_version = format!("\"resourceVersion\":\"{old_version}\"");
        let present: Vec<&String> = ids.iter().filter(|id| line.contains(id.as_str())).collect();
        for copy in 0..COPIES {
            let mut line = line.to_owned();
            for id in &present {
                line = line.replace(id.as_str(), &renamed(id, copy));
            }
            version += 1;
            line = line.replace(&old_version, &format!("\"resourceVersion\":\"{version}\""));
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// The process's peak resident memory (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .expect("a VmHWM line")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kfp_backlog_for_a_down_endpoint_stays_under_the_memory_bound() {
    let scratch = Scratch::new();
    let recording = scratch.path("backlog.jsonl");
    let backlog = backlog();
    std::fs::write(&recording, &backlog).unwrap();
    let down = closed_port();
    let config = scratch.write(
        "router.toml",
        &format!(
            "[source]\nkind = \"replay\"\npath = {}\nfrom = \"both\"\n\n[state]\ndir = {}\n\n\
             [server]\nlisten = \"127.0.0.1:0\"\n\n\
             [[endpoints]]\nname = \"down\"\nurl = {}\nformat = \"extended\"\nnodes = \"all\"\n\
             [endpoints.retry]\nschedule = [\"0s\", \"1h\"]\n",
            toml_path(&recording),
            toml_path(&scratch.state_dir()),
            toml_str(&format!("http://{down}/hook")),
        ),
    );

    let mut router = RouterProcess::start(&config);
    let guard = Instant::now() + HANG_GUARD;
    while !router.logs().contains("source finished") {
        assert!(
            router.is_running() && Instant::now() < guard,
            "the replay did not finish; logs:\n{}",
            router.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = router.metrics().await;
    let peak = peak_rss(router.id());
    router.kill();

    let received = metric(&metrics, "kfp_event_router_events_received_total").unwrap();
    let waiting = metric(&metrics, "kfp_event_router_outbox_depth").unwrap();
    println!(
        "{COPIES} workflows, {} MB of recording: {received} events accepted, {waiting} \
         deliveries waiting, VmHWM {:.1} MiB",
        backlog.len() / 1_000_000,
        peak as f64 / f64::from(1 << 20)
    );
    assert!(received >= MIN_EVENTS, "{received} events in the backlog");
    assert_eq!(waiting, received, "every event waits for the endpoint");
    assert!(
        peak < RSS_BOUND,
        "peak RSS {peak} bytes for {received} events"
    );
}
