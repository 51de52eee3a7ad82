//! The recordings of `examples/recordings/` (KFP 2.4 ParallelFor, KFP 2.4 *Retry run*, KFP 2.17
//! with Retry nodes and a cache hit, KFP v1, plain Argo) replayed in process
//! (`kfp_event_router::pipeline::run`) to real HTTP sinks on 127.0.0.1, and held to the
//! task-level contract:
//!
//! - endpoint key `nodes = "tasks" | "all"` (default `"tasks"`): with `tasks`, a KFP v2 run
//!   delivers only task and run transitions, `NodeName` being the KFP task name; with `all`,
//!   every node event as before. KFP v1 and plain Argo runs are unchanged either way;
//! - `extended` payloads carry `"Task": {"Name", "DisplayName", "Iteration", "DagPath",
//!   "Cached"}` (null when the event is not about a task) and `Parameters` are the user's run
//!   parameters (for v2 from the root driver's `runtime-config`).
//!
//! What a subscriber should get is read from each recording's `<name>.EXPECTED.md` (parsed by
//! `support/expected_md.rs`).
//!
//! # Golden files
//!
//! `host/tests/golden/recordings/<recording>.<endpoint>.txt`, endpoint `kfp` or `extended`:
//! **one request body per line, exactly as received** (compact JSON, byte for byte, in the order
//! the endpoint received them), each line ending in `\n`. Run with `UPDATE_GOLDEN=1` to (re)write them
//! from what the router sends now instead of comparing:
//!
//! ```sh
//! UPDATE_GOLDEN=1 cargo test -p kfp-event-router --test kfp_recordings golden
//! ```
//!
//! Nothing here depends on the wall clock: replays run as fast as they can, and the payloads
//! carry only times written in the recordings.

#[path = "support/expected_md.rs"]
mod expected_md;
mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde_json::Value;
use support::router::{PATIENCE, Scratch, toml_path, toml_str};
use support::sink::Sink;

/// The KFP 2.x recordings (task-level semantics apply).
const KFP_V2: [&str; 3] = [
    "kfp-2.4-parallelfor",
    "kfp-2.4-retried-run",
    "kfp-2.17-retry",
];

fn recording(name: &str) -> PathBuf {
    support::root().join(format!("examples/recordings/{name}.jsonl"))
}

fn expected(name: &str) -> expected_md::Expected {
    expected_md::read(&support::root().join(format!("examples/recordings/{name}.EXPECTED.md")))
}

fn golden_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/recordings"
    ))
}

/// One `[[endpoints]]` of a replay; it receives on `/<name>`.
struct Endpoint {
    name: &'static str,
    format: &'static str,
    /// `nodes = ...`; the key is left out when `None` (the default, `tasks`).
    nodes: Option<&'static str>,
}

const fn endpoint(
    name: &'static str,
    format: &'static str,
    nodes: Option<&'static str>,
) -> Endpoint {
    Endpoint {
        name,
        format,
        nodes,
    }
}

/// Which paths report transitions (`source.from`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Paths {
    /// Left out: for a replay, Kubernetes Events only.
    Default,
    /// `both`: Events, plus what only the Workflow lines show (e.g. a *Retry run*).
    Both,
}

/// What each endpoint received, by endpoint name: the bodies, in order.
type Received = HashMap<&'static str, Vec<String>>;

/// Replays `name` through the router library with `endpoints`; returns the bodies each got.
async fn replay(name: &str, from: Paths, endpoints: &[Endpoint]) -> Received {
    let scratch = Scratch::new();
    let sink = Sink::start().await;
    let from_line = match from {
        Paths::Default => String::new(),
        Paths::Both => "from = \"both\"\n".to_owned(),
    };
    let mut text = format!(
        "[source]\nkind = \"replay\"\npath = {}\n{from_line}\n[state]\ndir = {}\n\n[server]\nlisten = \"127.0.0.1:0\"\n",
        toml_path(&recording(name)),
        toml_path(&scratch.state_dir()),
    );
    for e in endpoints {
        text.push_str(&format!(
            "\n[[endpoints]]\nname = {}\nurl = {}\nformat = {}\n",
            toml_str(e.name),
            toml_str(&sink.url(&format!("/{}", e.name))),
            toml_str(e.format),
        ));
        if let Some(nodes) = e.nodes {
            text.push_str(&format!("nodes = {}\n", toml_str(nodes)));
        }
    }
    let path = scratch.write("router.toml", &text);
    let config = kfp_event_router::config::Config::parse(&path, &text).unwrap_or_else(|e| {
        panic!("[{name}] the router rejects this config: {e}\n--- router.toml ---\n{text}")
    });
    let token = tokio_util::sync::CancellationToken::new();
    let summary = tokio::time::timeout(PATIENCE, kfp_event_router::pipeline::run(config, token))
        .await
        .unwrap_or_else(|_| panic!("[{name}] the replay did not finish within {PATIENCE:?}"))
        .unwrap_or_else(|e| panic!("[{name}] the replay failed: {e:#}"));
    assert_eq!(
        summary.dead_lettered, 0,
        "[{name}] deliveries were dead-lettered"
    );
    endpoints
        .iter()
        .map(|e| {
            let bodies = sink
                .received_on(&format!("/{}", e.name))
                .iter()
                .map(|r| {
                    String::from_utf8(r.body.to_vec())
                        .unwrap_or_else(|_| panic!("[{name}/{}] a body is not UTF-8", e.name))
                })
                .collect();
            (e.name, bodies)
        })
        .collect()
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("a body is not JSON ({e}): {body}"))
}

fn str_of<'a>(body: &'a Value, key: &str) -> &'a str {
    body[key].as_str().unwrap_or_default()
}

/// The bodies as lines, numbered, for failure messages.
fn listing(bodies: &[String]) -> String {
    bodies
        .iter()
        .enumerate()
        .map(|(i, b)| format!("  {:>3}: {b}\n", i + 1))
        .collect()
}

/// `(NodeName, EventType)` of each `kfp` body, numbered, for failure messages.
fn kfp_listing(bodies: &[String]) -> String {
    bodies
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let v = json(b);
            format!(
                "  {:>3}: {:<28} {:?}\n",
                i + 1,
                str_of(&v, "EventType"),
                str_of(&v, "NodeName")
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Golden files: every body of the `kfp` and `extended` endpoints, in order, byte for byte.
// ---------------------------------------------------------------------------------------------

/// Compares `bodies` with the golden file of `recording`.`endpoint`, or writes it with UPDATE_GOLDEN=1.
fn check_golden(recording: &str, endpoint: &str, bodies: &[String]) {
    let path = golden_dir().join(format!("{recording}.{endpoint}.txt"));
    let actual: String = bodies.iter().map(|b| format!("{b}\n")).collect();
    if std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(golden_dir()).expect("creating the golden folder");
        std::fs::write(&path, &actual).expect("writing a golden file");
        println!(
            "UPDATE_GOLDEN=1: wrote {} ({} bodies)",
            path.display(),
            bodies.len()
        );
        return;
    }
    let golden = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "[{recording}/{endpoint}] golden file {} unreadable ({e}); once the router does what \
             the recording's EXPECTED.md says, write it with UPDATE_GOLDEN=1 and review it.\n\
             Received ({} bodies):\n{}",
            path.display(),
            bodies.len(),
            listing(bodies)
        )
    });
    if golden == actual {
        return;
    }
    let expected: Vec<&str> = golden.lines().collect();
    let got: Vec<&str> = actual.lines().collect();
    let first = expected
        .iter()
        .zip(&got)
        .position(|(e, g)| e != g)
        .unwrap_or(expected.len().min(got.len()));
    let show = |lines: &[&str]| {
        lines
            .get(first)
            .map_or("(no such line)".to_owned(), |l| (*l).to_owned())
    };
    let mut hint = String::new();
    if let (Some(e), Some(g)) = (expected.get(first), got.get(first))
        && let (Ok(e), Ok(g)) = (
            serde_json::from_str::<Value>(e),
            serde_json::from_str::<Value>(g),
        )
    {
        hint = json_diff(&e, &g, "");
    }
    panic!(
        "[{recording}/{endpoint}] body {} differs from {} ({} golden bodies, {} received; \
         UPDATE_GOLDEN=1 rewrites it)\n  golden:   {}\n  received: {}\n{hint}",
        first + 1,
        path.display(),
        expected.len(),
        got.len(),
        show(&expected),
        show(&got),
    );
}

/// The keys whose values differ between two JSON documents, one per line.
fn json_diff(expected: &Value, got: &Value, at: &str) -> String {
    match (expected, got) {
        (Value::Object(e), Value::Object(g)) => {
            let mut keys: Vec<&String> = e.keys().chain(g.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.iter()
                .map(|k| {
                    json_diff(
                        e.get(*k).unwrap_or(&Value::Null),
                        g.get(*k).unwrap_or(&Value::Null),
                        &format!("{at}.{k}"),
                    )
                })
                .collect()
        }
        _ if expected == got => String::new(),
        _ => format!("  differs at {at}: golden {expected} / received {got}\n"),
    }
}

async fn golden(name: &str) {
    let got = replay(
        name,
        Paths::Default,
        &[
            endpoint("kfp", "kfp", None),
            endpoint("extended", "extended", None),
        ],
    )
    .await;
    // Check (or bless) both before failing, so one run blesses everything.
    let kfp = std::panic::catch_unwind(|| check_golden(name, "kfp", &got["kfp"]));
    check_golden(name, "extended", &got["extended"]);
    if let Err(panic) = kfp {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_kfp_2_4_parallelfor() {
    golden("kfp-2.4-parallelfor").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_kfp_2_4_retried_run() {
    golden("kfp-2.4-retried-run").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_kfp_2_17_retry() {
    golden("kfp-2.17-retry").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_kfp_v1_flat() {
    golden("kfp-v1-flat").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_argo_plain() {
    golden("argo-plain").await;
}

// ---------------------------------------------------------------------------------------------
// 2. KFP 2.x, nodes = "tasks": no plumbing, and exactly the transitions of EXPECTED.md.
// ---------------------------------------------------------------------------------------------

/// Why `node_name` looks like a KFP v2 plumbing node (driver, executor, root DAG, loop
/// iteration, retry attempt), if it does. Checked on the whole name and on its last `.` part.
fn plumbing(node_name: &str) -> Option<&'static str> {
    let attempt = |n: &str| {
        n.strip_suffix(')')
            .and_then(|n| n.rsplit_once('('))
            .is_some_and(|(_, digits)| {
                !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
            })
    };
    let last = node_name.rsplit('.').next().unwrap_or(node_name);
    [node_name, last].into_iter().find_map(|n| {
        if n == "executor" {
            Some("an executor")
        } else if n.ends_with("-driver") {
            Some("a driver")
        } else if n == "root" {
            Some("the root DAG")
        } else if n.starts_with("iteration-") {
            Some("a loop iteration node")
        } else if attempt(n) {
            Some("a retry attempt `(n)`")
        } else {
            None
        }
    })
}

type Multiset = BTreeMap<(String, String), usize>;

fn multiset<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Multiset {
    let mut out = Multiset::new();
    for (node, reason) in pairs {
        *out.entry((node.to_owned(), reason.to_owned())).or_default() += 1;
    }
    out
}

/// What differs between two multisets, one `(NodeName, EventType)` a line.
fn multiset_diff(expected: &Multiset, got: &Multiset) -> String {
    let mut keys: Vec<&(String, String)> = expected.keys().chain(got.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let (e, g) = (
                expected.get(k).copied().unwrap_or(0),
                got.get(k).copied().unwrap_or(0),
            );
            (e != g).then(|| {
                format!(
                    "  ({:?}, {}): expected {e}, received {g}{}\n",
                    k.0,
                    k.1,
                    if g > e { "  <- extra" } else { "  <- missing" }
                )
            })
        })
        .collect()
}

/// The table rows a subscriber gets: every row with a real reason (not `(Omitted)`, which no
/// Event or webhook carries). Rows marked `Workflow (no Event)` (the *Retry run*'s new Running
/// and its reset tasks) are due too, whatever `source.from` says: EXPECTED.md lists them as
/// transitions a subscriber should get.
fn deliverable(rows: &[expected_md::Row]) -> Vec<&expected_md::Row> {
    rows.iter().filter(|r| r.is_deliverable()).collect()
}

async fn kfp_tasks_match_the_table(name: &str, from: Paths) {
    let what = format!("{name}, kfp, nodes = tasks (default), source.from = {from:?}");
    let got = replay(name, from, &[endpoint("kfp", "kfp", None)]).await;
    let bodies = &got["kfp"];
    let parsed: Vec<Value> = bodies.iter().map(|b| json(b)).collect();

    let plumbing_bodies: Vec<String> = parsed
        .iter()
        .zip(bodies)
        .enumerate()
        .filter_map(|(i, (v, b))| {
            plumbing(str_of(v, "NodeName")).map(|why| format!("  {:>3} ({why}): {b}\n", i + 1))
        })
        .collect();
    assert!(
        plumbing_bodies.is_empty(),
        "[{what}] {} of {} webhooks are about plumbing nodes, not tasks:\n{}",
        plumbing_bodies.len(),
        bodies.len(),
        plumbing_bodies.concat()
    );

    let table = expected(name);
    let rows = deliverable(&table.rows);
    let is_node = |reason: &str| reason.starts_with("WorkflowNode");
    let pairs: Vec<(&str, &str)> = parsed
        .iter()
        .map(|v| (str_of(v, "NodeName"), str_of(v, "EventType")))
        .collect();

    let expected_nodes = multiset(
        rows.iter()
            .filter(|r| is_node(&r.reason))
            .map(|r| (r.node_name(), r.reason.as_str())),
    );
    let got_nodes = multiset(pairs.iter().copied().filter(|(_, r)| is_node(r)));
    let expected_runs = multiset(
        rows.iter()
            .filter(|r| !is_node(&r.reason))
            .map(|r| (r.node_name(), r.reason.as_str())),
    );
    let got_runs = multiset(pairs.iter().copied().filter(|(_, r)| !is_node(r)));
    let received = kfp_listing(bodies);
    assert!(
        expected_nodes == got_nodes,
        "[{what}] node events differ from EXPECTED.md (each task transition exactly once, \
         per run attempt):\n{}\nreceived, in order:\n{received}",
        multiset_diff(&expected_nodes, &got_nodes),
    );
    assert!(
        expected_runs == got_runs,
        "[{what}] run events (empty NodeName) differ from EXPECTED.md:\n{}\nreceived, in \
         order:\n{received}",
        multiset_diff(&expected_runs, &got_runs),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_kfp_2_4_parallelfor() {
    kfp_tasks_match_the_table("kfp-2.4-parallelfor", Paths::Default).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_kfp_2_4_retried_run() {
    kfp_tasks_match_the_table("kfp-2.4-retried-run", Paths::Default).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_kfp_2_17_retry() {
    kfp_tasks_match_the_table("kfp-2.17-retry", Paths::Default).await;
}

/// With `source.from = "both"` (Events and Workflow status both report transitions) the same
/// table holds: each transition still exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_kfp_2_4_parallelfor_from_both() {
    kfp_tasks_match_the_table("kfp-2.4-parallelfor", Paths::Both).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_kfp_2_4_retried_run_from_both() {
    kfp_tasks_match_the_table("kfp-2.4-retried-run", Paths::Both).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_kfp_2_17_retry_from_both() {
    kfp_tasks_match_the_table("kfp-2.17-retry", Paths::Both).await;
}

#[test]
fn the_plumbing_patterns() {
    for name in [
        "executor",
        "preprocess-driver",
        "root-driver",
        "root",
        "iteration-item",
        "iteration-iterations(0:0)",
        "train(0)",
        "root.preprocess.executor",
    ] {
        assert!(plumbing(name).is_some(), "{name} is plumbing");
    }
    for name in [
        "",
        "preprocess",
        "for-loop-2",
        "train",
        "baseline",
        "x(0:a)",
    ] {
        assert!(plumbing(name).is_none(), "{name} is not plumbing");
    }
}

#[test]
fn every_expected_md_parses() {
    for name in KFP_V2.iter().chain(&["kfp-v1-flat", "argo-plain"]) {
        let table = expected(name);
        assert!(!table.parameters.is_empty(), "{name}: run parameters");
        assert!(
            table.rows.iter().any(|r| r.is_run()) && table.rows.iter().any(|r| !r.is_run()),
            "{name}: run and task rows"
        );
    }
    let parallelfor = expected("kfp-2.4-parallelfor");
    assert_eq!(parallelfor.rows.len(), 15);
    let train = &parallelfor.rows[5];
    assert_eq!(
        (train.task.as_str(), train.iteration, train.reason.as_str()),
        ("train", Some(2), "WorkflowNodeRunning")
    );
    assert_eq!(train.dag_path, ["root", "for-loop-2"]);
    assert_eq!(parallelfor.parameters["learning_rate"], "0.05");
}

// ---------------------------------------------------------------------------------------------
// 3. KFP v1 and plain Argo: nodes = "all" and the default deliver the same.
// ---------------------------------------------------------------------------------------------

async fn unchanged_by_nodes(name: &str) {
    let got = replay(
        name,
        Paths::Default,
        &[
            endpoint("tasks", "kfp", None),
            endpoint("all", "kfp", Some("all")),
        ],
    )
    .await;
    let (tasks, all) = (&got["tasks"], &got["all"]);
    assert!(
        !tasks.is_empty(),
        "[{name}] nothing delivered to the default endpoint"
    );
    if tasks != all {
        let first = tasks
            .iter()
            .zip(all)
            .position(|(a, b)| a != b)
            .unwrap_or(tasks.len().min(all.len()));
        panic!(
            "[{name}] not a KFP v2 run, so `nodes` must change nothing, but the kfp bodies \
             differ ({} with the default, {} with nodes = \"all\"); first difference at body \
             {}:\n  default:     {}\n  nodes = all: {}",
            tasks.len(),
            all.len(),
            first + 1,
            tasks.get(first).map_or("(none)", String::as_str),
            all.get(first).map_or("(none)", String::as_str),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_all_changes_nothing_for_kfp_v1_flat() {
    unchanged_by_nodes("kfp-v1-flat").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_all_changes_nothing_for_argo_plain() {
    unchanged_by_nodes("argo-plain").await;
}

// ---------------------------------------------------------------------------------------------
// 4. KFP 2.x, nodes = "all": the raw view, drivers included.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_all_is_the_raw_view_for_kfp_2_4_parallelfor() {
    let name = "kfp-2.4-parallelfor";
    let got = replay(
        name,
        Paths::Default,
        &[
            endpoint("tasks", "kfp", Some("tasks")),
            endpoint("all", "kfp", Some("all")),
        ],
    )
    .await;
    let (tasks, all) = (&got["tasks"], &got["all"]);
    assert!(
        all.len() > tasks.len(),
        "[{name}] nodes = \"all\" should receive strictly more webhooks than nodes = \"tasks\": \
         {} vs {}\nall:\n{}tasks:\n{}",
        all.len(),
        tasks.len(),
        kfp_listing(all),
        kfp_listing(tasks)
    );
    assert!(
        all.iter()
            .any(|b| str_of(&json(b), "NodeName").ends_with("-driver")),
        "[{name}] nodes = \"all\" should include driver nodes (NodeName ending in -driver); \
         received:\n{}",
        kfp_listing(all)
    );
}

// ---------------------------------------------------------------------------------------------
// 5. extended: user run parameters and the `Task` object.
// ---------------------------------------------------------------------------------------------

/// A parameter value as text: strings as they are, other JSON values (typed `runtime-config`
/// values such as `20` or `0.05`) as JSON.
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_parameters_and_task_for_kfp_2_4_parallelfor() {
    let name = "kfp-2.4-parallelfor";
    let table = expected(name);
    let got = replay(
        name,
        Paths::Default,
        &[endpoint("extended", "extended", None)],
    )
    .await;
    let bodies = &got["extended"];
    assert!(!bodies.is_empty(), "[{name}/extended] nothing delivered");
    let mut wrong = String::new();
    for (i, body) in bodies.iter().enumerate() {
        let v = json(body);
        let at = format!(
            "  body {:>3} ({} {:?})",
            i + 1,
            str_of(&v, "EventType"),
            str_of(&v, "NodeName")
        );
        let Some(parameters) = v["Parameters"].as_object() else {
            wrong.push_str(&format!(
                "{at}: Parameters is not an object: {}\n",
                v["Parameters"]
            ));
            continue;
        };
        let blobs: Vec<&String> = parameters
            .keys()
            .filter(|k| k.starts_with("components-") || k.starts_with("implementations-"))
            .collect();
        if !blobs.is_empty() {
            wrong.push_str(&format!("{at}: compiler blobs {blobs:?} in Parameters\n"));
            continue;
        }
        let params: BTreeMap<String, String> = parameters
            .iter()
            .map(|(k, v)| (k.clone(), value_text(v)))
            .collect();
        if params != table.parameters {
            wrong.push_str(&format!("{at}: Parameters {params:?}\n"));
        }
    }
    assert!(
        wrong.is_empty(),
        "[{name}/extended] every body's Parameters should be exactly the run parameters of \
         EXPECTED.md, {:?} (values as text; typed JSON values allowed), never compiler blobs; \
         these are not:\n{wrong}",
        table.parameters
    );
    let in_loop: Vec<&String> = bodies
        .iter()
        .filter(|b| {
            let task = &json(b)["Task"];
            task["Iteration"].is_number()
                && task["DagPath"].as_array().is_some_and(|p| !p.is_empty())
        })
        .collect();
    assert!(
        !in_loop.is_empty(),
        "[{name}/extended] no body has Task.Iteration set and Task.DagPath non-empty; \
         received:\n{}",
        listing(bodies)
    );
}

/// Each `extended` body's `Task` against its EXPECTED.md row: run events have no task; node
/// events have `Task.Name` = `NodeName`, and the multiset of (Name, DisplayName, Iteration,
/// DagPath, Cached, EventType) is the table's. The table's DAG paths start with `root`, the
/// pipeline's root DAG; a `DagPath` may or may not list it.
async fn extended_task_matches_the_table(name: &str) {
    let table = expected(name);
    let got = replay(
        name,
        Paths::Default,
        &[endpoint("extended", "extended", None)],
    )
    .await;
    let bodies = &got["extended"];
    let strip_root = |path: Vec<String>| -> Vec<String> {
        match path.first().map(String::as_str) {
            Some("root") => path[1..].to_vec(),
            _ => path,
        }
    };
    // Cached is about the task: true for all its events when a row of it notes a cache hit.
    let cached = |row: &expected_md::Row| {
        table.rows.iter().any(|r| {
            (r.attempt, &r.task, r.iteration) == (row.attempt, &row.task, row.iteration)
                && r.is_cache_hit()
        })
    };
    let mut expected_tasks: Vec<String> = deliverable(&table.rows)
        .into_iter()
        .filter(|r| !r.is_run())
        .map(|r| {
            format!(
                "{} {:?} iteration={:?} path={:?} cached={} {}",
                r.task,
                r.display_name,
                r.iteration,
                strip_root(r.dag_path.clone()),
                cached(r),
                r.reason
            )
        })
        .collect();
    let mut got_tasks = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let v = json(body);
        let at = format!("[{name}/extended] body {}", i + 1);
        let task = &v["Task"];
        let node_name = str_of(&v, "NodeName");
        if node_name.is_empty() {
            assert!(
                task.is_null(),
                "{at}: an event not about a task has Task {task}: {body}"
            );
            continue;
        }
        assert!(task.is_object(), "{at}: no Task object: {body}");
        assert_eq!(
            task["Name"].as_str(),
            Some(node_name),
            "{at}: Task.Name should be the NodeName: {body}"
        );
        let path: Vec<String> = task["DagPath"]
            .as_array()
            .unwrap_or_else(|| panic!("{at}: Task.DagPath is not an array: {body}"))
            .iter()
            .map(value_text)
            .collect();
        got_tasks.push(format!(
            "{} {:?} iteration={:?} path={:?} cached={} {}",
            node_name,
            str_of(task, "DisplayName"),
            task["Iteration"].as_u64(),
            strip_root(path),
            task["Cached"]
                .as_bool()
                .unwrap_or_else(|| panic!("{at}: Task.Cached is not a bool: {body}")),
            str_of(&v, "EventType"),
        ));
    }
    expected_tasks.sort();
    got_tasks.sort();
    if expected_tasks != got_tasks {
        let missing: Vec<&String> = expected_tasks
            .iter()
            .filter(|e| {
                expected_tasks.iter().filter(|x| x == e).count()
                    > got_tasks.iter().filter(|x| x == e).count()
            })
            .collect();
        let extra: Vec<&String> = got_tasks
            .iter()
            .filter(|g| {
                got_tasks.iter().filter(|x| x == g).count()
                    > expected_tasks.iter().filter(|x| x == g).count()
            })
            .collect();
        panic!(
            "[{name}/extended] Task objects differ from EXPECTED.md\nmissing:\n  {}\nextra:\n  {}",
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n  "),
            extra
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n  "),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_task_kfp_2_4_parallelfor() {
    extended_task_matches_the_table("kfp-2.4-parallelfor").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_task_kfp_2_4_retried_run() {
    extended_task_matches_the_table("kfp-2.4-retried-run").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_task_kfp_2_17_retry() {
    extended_task_matches_the_table("kfp-2.17-retry").await;
}
