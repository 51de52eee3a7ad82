//! Router throughput against a raw HTTP client, in one run on one machine.
//!
//! `cargo bench -p kfp-event-router --bench throughput` (set `BENCH_EVENTS` to change the
//! recording size, default 200 000) prints, with (a) and (b), and the two runs of (c), measured
//! [`rounds`] times, alternating, and each ratio the median round's:
//! - (a) a raw reqwest client posting 1 KB bodies with 64 in flight to a local sink;
//! - (b) the router replaying a generated recording of the same number of events (~1 KB
//!   `kfp` payloads, 2 000 workflows) to the same sink with no plugins, 64 in flight;
//! - the CPU time per request of (a) (client and sink, this process) and of the sink alone
//!   during (b), so that the raw client's own cost is their difference;
//! - the ratio (b)/(a), the router's CPU time per event (user and system, from `/proc`) and
//!   peak RSS, and its delivery latency (acceptance to 2xx, from its own histogram) in a run
//!   paced at half (b)'s rate, over the whole run and without its first second, next to the
//!   raw client's request latency; then the same run with the router's state folder in memory
//!   (`/dev/shm`), which takes the disk's sync time out of each commit: what is left is the
//!   router's own latency;
//! - (c) the same replay in the `extended` format, without plugins and then through the
//!   bundled chain event-filter -> redact -> teams-card (built by `plugins/build.sh`), the
//!   ratio of the two, and the CPU time per event of each. The chain's runs start with its
//!   plugins compiled, from the cache a first short run fills, as a restarted router finds
//!   them in its state folder; that cold start (compiling them) is timed and printed first;
//! - (f) the replay of (b) on the shared PostgreSQL outbox (a server of its own, set up as the
//!   tests set it up; `BENCH_POSTGRES=0` skips it), and its ratio to (b);
//! - (e) the router without plugins over 1 000 000 events (`BENCH_BIG_EVENTS` changes it, 0
//!   skips it): its rate and peak RSS, beside (b)'s, to show memory flat in the stream's
//!   length.
//!
//! Each router run's resident set and delivered count over time go to
//! `target/bench/throughput-series.csv`; `host/benches/plot.py` draws them as
//! `docs/throughput.svg`. The replay source makes no Kubernetes API calls: 0 per event.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use futures::StreamExt;

/// The tests' shared parts: here, their PostgreSQL server.
#[path = "../tests/support/mod.rs"]
mod support;

const IN_FLIGHT: usize = 64;
const BODY: usize = 1024;

fn main() {
    let events: u64 = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let sink = CountingSink::start().await;
        println!("events: {events}, bodies ~{BODY} B, {IN_FLIGHT} in flight, sink on {}", sink.addr);
        if let Some(rate) = std::env::var("BENCH_PACED_ONLY").ok().and_then(|v| v.parse().ok()) {
            let dir = tempfile::tempdir().unwrap();
            paced(dir.path(), &sink, rate).await;
            return;
        }

        let dir = tempfile::tempdir().unwrap();
        let recording = dir.path().join("recording.jsonl");
        generate(&recording, events, 2_000);
        let rounds = rounds();
        let mut pairs = Vec::new();
        for _ in 0..rounds {
            let (raw_from, raw_cpu) = (sink.bytes(), own_cpu_us());
            let raw = raw_client(&sink, events).await;
            let raw_cpu = (own_cpu_us() - raw_cpu) / events as f64;
            let raw_body = (sink.bytes() - raw_from) / events;
            let (before, bytes_before, sink_cpu) = (sink.count(), sink.bytes(), own_cpu_us());
            let router = in_background(dir.path(), &recording, &sink, Setup::default()).await;
            assert_eq!(sink.count() - before, events, "every event reached the sink");
            let sink_cpu = (own_cpu_us() - sink_cpu) / events as f64;
            let body = (sink.bytes() - bytes_before) / events;
            pairs.push((raw, raw_cpu, raw_body, router, sink_cpu, body));
        }
        let (ratios, (raw, raw_cpu, raw_body, router, sink_cpu, body)) =
            median_by(pairs, |(raw, _, _, router, _, _)| router.rate / raw.rate);
        println!(
            "(a) raw reqwest:  {:>9.0} req/s   latency p50 {:>6.2} ms  p99 {:>6.2} ms   bodies {raw_body} B   CPU {raw_cpu:.0} µs/request (client and sink)",
            raw.rate, raw.p50_ms, raw.p99_ms,
        );
        println!(
            "(b) router:       {:>9.0} ev/s    CPU {:.0} µs/event   peak RSS {:.1} MiB   bodies {body} B   (sink: CPU {sink_cpu:.0} µs/event)",
            router.rate,
            router.cpu_us_per_event,
            router.peak_rss_kib as f64 / 1024.0,
        );
        println!("ratio (b)/(a):    {:.2}{}", router.rate / raw.rate, spread(&ratios));

        let console = Setup {
            console: true,
            ..Setup::default()
        };
        let console = in_background(dir.path(), &recording, &sink, console).await;
        println!(
            "(d) router with the console's history on: {:>9.0} ev/s    peak RSS {:.1} MiB;  ratio (d)/(b): {:.2}",
            console.rate,
            console.peak_rss_kib as f64 / 1024.0,
            console.rate / router.rate
        );

        let plugins = plugin_chain(dir.path());
        let (cold, compiled) = warm_plugin_cache(dir.path(), &sink, &plugins).await;
        println!(
            "(c) cold start with the chain: {cold:.2} s to replay {WARM_UP_EVENTS} events, compiling the 3 plugins; the runs below load them from the cache ({compiled:.1} MiB), as a restarted router does"
        );
        let mut pairs = Vec::new();
        for _ in 0..rounds {
            let extended = Setup {
                plugins: Some(String::new()),
                ..Setup::default()
            };
            let extended = in_background(dir.path(), &recording, &sink, extended).await;
            let chain = Setup {
                plugins: Some(plugins.clone()),
                plugin_cache: Some(dir.path().join(PLUGIN_CACHE)),
                ..Setup::default()
            };
            let chained = in_background(dir.path(), &recording, &sink, chain).await;
            pairs.push((extended, chained));
        }
        let (ratios, (extended, chained)) =
            median_by(pairs, |(extended, chained)| chained.rate / extended.rate);
        println!(
            "(c) `extended`, no plugins: {:>7.0} ev/s, CPU {:.0} µs/event;  with event-filter -> redact -> teams-card: {:.0} ev/s, CPU {:.0} µs/event",
            extended.rate, extended.cpu_us_per_event, chained.rate, chained.cpu_us_per_event
        );
        println!(
            "ratio chain / no plugins: {:.2}{}",
            chained.rate / extended.rate,
            spread(&ratios)
        );
        // Half the measured maximum: the load a router should carry with room to spare. Run
        // before (f), whose PostgreSQL server leaves disk writes behind that would blur it.
        paced(dir.path(), &sink, (router.rate / 2.0).round()).await;
        println!("(raw request latency p50 {:.2} ms)", raw.p50_ms);
        if std::env::var("BENCH_POSTGRES").as_deref() != Ok("0") {
            shared_outbox(dir.path(), &recording, &sink, &router).await;
        }
        let big: u64 = std::env::var("BENCH_BIG_EVENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000);
        let mut runs = vec![(format!("{events} events"), router)];
        if big > 0 {
            let recording = dir.path().join("big.jsonl");
            generate(&recording, big, 2_000);
            let large = in_background(dir.path(), &recording, &sink, Setup::default()).await;
            std::fs::remove_file(&recording).unwrap();
            println!(
                "(e) router, {big} events: {:>9.0} ev/s    CPU {:.0} µs/event   peak RSS {:.1} MiB  (at {events}: {:.1} MiB)",
                large.rate,
                large.cpu_us_per_event,
                large.peak_rss_kib as f64 / 1024.0,
                runs[0].1.peak_rss_kib as f64 / 1024.0,
            );
            runs.push((format!("{big} events"), large));
        }
        println!("Kubernetes API calls per event: 0 (replay source)");
        let series = write_series(&runs);
        println!("series: {} (plot: python3 host/benches/plot.py)", series.display());
    });
}

/// How many times (a) and (b), and the two runs of (c), are measured, alternating:
/// `BENCH_ROUNDS`, default 3. Each ratio is the median round's, so that one round slowed by
/// a busy host does not make the figure.
fn rounds() -> usize {
    std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1)
}

/// The round whose `ratio` is the median, and every round's ratio, in ascending order.
fn median_by<T>(mut rounds: Vec<T>, ratio: impl Fn(&T) -> f64) -> (Vec<f64>, T) {
    rounds.sort_by(|a, b| ratio(a).total_cmp(&ratio(b)));
    let ratios = rounds.iter().map(&ratio).collect();
    let median = rounds.swap_remove(rounds.len() / 2);
    (ratios, median)
}

/// `ratios` of every round, to print after the median's; nothing for one round.
fn spread(ratios: &[f64]) -> String {
    if ratios.len() < 2 {
        return String::new();
    }
    let all: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    format!("   (median of {} rounds: {})", ratios.len(), all.join(", "))
}

/// (f): the replay of (b) on the shared PostgreSQL outbox, on a server of its own.
async fn shared_outbox(
    dir: &std::path::Path,
    recording: &std::path::Path,
    sink: &CountingSink,
    redb: &RouterRun,
) {
    let server = tokio::task::spawn_blocking(support::postgres::PgServer::start)
        .await
        .unwrap();
    let setup = Setup {
        database: Some(server.database().await),
        ..Setup::default()
    };
    let shared = in_background(dir, recording, sink, setup).await;
    println!(
        "(f) router on the PostgreSQL outbox: {:>9.0} ev/s    CPU {:.0} µs/event   peak RSS {:.1} MiB;  ratio (f)/(b): {:.2}",
        shared.rate,
        shared.cpu_us_per_event,
        shared.peak_rss_kib as f64 / 1024.0,
        shared.rate / redb.rate
    );
}

/// Runs the router paced at `rate` for about 5 s and prints its delivery latency (alone, with
/// `BENCH_PACED_ONLY=<rate>`): with its state folder on the disk, as deployed, then in memory
/// (`/dev/shm`, when there is one), where a commit's sync costs nothing. Every delivery waits
/// for its event's commit, so the first figure is the disk's sync time plus the router's, and
/// the second the router's alone.
async fn paced(dir: &std::path::Path, sink: &CountingSink, rate: f64) {
    let events = ((rate * 5.0) as u64).clamp(1_000, 40_000);
    let recording = dir.join("paced.jsonl");
    generate(&recording, events, 200);
    let paced = || Setup {
        rate: Some(rate),
        ..Setup::default()
    };
    let run = in_background(dir, &recording, sink, paced()).await;
    println!(
        "paced at {rate:.0} ev/s ({events} events): router delivery latency (acceptance to 2xx) {}",
        latency(&run)
    );
    let memory = std::path::Path::new("/dev/shm");
    if memory.is_dir() {
        let in_memory = tempfile::tempdir_in(memory).unwrap();
        let run = in_background(in_memory.path(), &recording, sink, paced()).await;
        println!(
            "  the same with the state folder in /dev/shm, where a commit does not wait for the disk: {}",
            latency(&run)
        );
    }
}

/// A paced run's latency percentiles, over the whole run and without its first second.
fn latency(run: &RouterRun) -> String {
    let (p50, p99) = run.latency_ms.expect("scraped the latency histogram");
    // A run shorter than the warm-up has no steady part.
    let steady = match run.steady_latency_ms {
        Some((p50, p99)) => format!("p50 ~{p50:.2} ms  p99 ~{p99:.2} ms"),
        None => "n/a (the run was shorter)".into(),
    };
    format!("p50 ~{p50:.2} ms  p99 ~{p99:.2} ms; after the first second: {steady}")
}

/// Writes each run's samples as CSV (`run,seconds,rss_mib,delivered`) under `target/bench`.
fn write_series(runs: &[(String, RouterRun)]) -> std::path::PathBuf {
    let folder = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench"));
    std::fs::create_dir_all(folder).unwrap();
    let path = folder.join("throughput-series.csv");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    writeln!(out, "run,seconds,rss_mib,delivered").unwrap();
    for (name, run) in runs {
        for sample in &run.samples {
            writeln!(
                out,
                "{name},{:.3},{:.1},{}",
                sample.seconds,
                sample.rss_kib as f64 / 1024.0,
                sample.delivered
            )
            .unwrap();
        }
    }
    out.flush().unwrap();
    path
}

/// A sink that answers 200 at once and counts requests and body bytes.
struct CountingSink {
    addr: SocketAddr,
    count: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
}

impl CountingSink {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let count = Arc::new(AtomicU64::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        let app = Router::new()
            .fallback(
                |State((count, bytes)): State<(Arc<AtomicU64>, Arc<AtomicU64>)>,
                 body: axum::body::Bytes| async move {
                    count.fetch_add(1, Ordering::Relaxed);
                    bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                    "ok"
                },
            )
            .with_state((Arc::clone(&count), Arc::clone(&bytes)));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, count, bytes }
    }

    fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Body bytes received so far.
    fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

struct Raw {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn raw_client(sink: &CountingSink, n: u64) -> Raw {
    let client = reqwest::Client::new();
    let url = format!("http://{}/raw", sink.addr);
    let body = bytes::Bytes::from(vec![b'x'; BODY]);
    let started = Instant::now();
    let mut latencies: Vec<f64> = futures::stream::iter(0..n)
        .map(|_| {
            let (client, url, body) = (client.clone(), url.clone(), body.clone());
            async move {
                let t = Instant::now();
                let response = client
                    .post(url)
                    .body(body)
                    .send()
                    .await
                    .expect("sink answers");
                assert!(response.status().is_success());
                response.bytes().await.unwrap();
                t.elapsed().as_secs_f64() * 1000.0
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    Raw {
        rate,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
    }
}

/// Writes `events` workflow-controller Events over `workflows` Workflows, interleaved, with
/// messages padded so each `kfp` payload is about 1 KB. Uids are UUIDs, as the API server
/// assigns them.
fn generate(path: &std::path::Path, events: u64, workflows: u64) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for w in 0..workflows {
        let wf = serde_json::json!({"kind": "Workflow", "apiVersion": "argoproj.io/v1alpha1",
            "metadata": {"name": format!("bench-{w}"), "namespace": "kubeflow", "uid": uid(0, w),
                         "labels": {"pipeline/runid": format!("run-{w}")}},
            "status": {"phase": "Running"}});
        writeln!(out, "{wf}").unwrap();
    }
    let padding = "x".repeat(BODY - 161);
    for i in 0..events {
        let w = i % workflows;
        let event = serde_json::json!({"type": "ADDED", "object": {"kind": "Event", "apiVersion": "v1",
            "metadata": {"name": format!("bench-{w}.{i}"), "namespace": "kubeflow", "uid": uid(1, i)},
            "involvedObject": {"kind": "Workflow", "name": format!("bench-{w}"), "namespace": "kubeflow", "uid": uid(0, w)},
            "reason": "WorkflowNodeSucceeded", "type": "Normal", "count": 1,
            // Argo's node message: "<phase> node <full node name>: <node message>".
            "message": format!("Succeeded node bench-{w}.step-{i}: {padding}"),
            "source": {"component": "workflow-controller"}}});
        writeln!(out, "{event}").unwrap();
    }
    out.flush().unwrap();
}

/// A version 4 UUID, distinct for each `(kind, n)`.
fn uid(kind: u32, n: u64) -> String {
    format!("{kind:08x}-0000-4000-8000-{n:012x}")
}

/// Runs [`run_router`] off the async threads, which serve the sink meanwhile.
async fn in_background(
    dir: &std::path::Path,
    recording: &std::path::Path,
    sink: &CountingSink,
    setup: Setup,
) -> RouterRun {
    let (dir, recording, url) = (
        dir.to_owned(),
        recording.to_owned(),
        format!("http://{}/router", sink.addr),
    );
    let sink = Arc::clone(&sink.count);
    tokio::task::spawn_blocking(move || run_router(&dir, &recording, &url, &setup, &sink))
        .await
        .unwrap()
}

/// Builds the bundled plugins, puts the chain event-filter -> redact -> teams-card in a folder
/// of its own, and returns the `[plugins]` tables for it, set so that every event passes.
fn plugin_chain(dir: &std::path::Path) -> String {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let built = Command::new("bash")
        .arg(format!("{root}/plugins/build.sh"))
        .current_dir(root)
        .stdout(Stdio::null())
        .status()
        .expect("running plugins/build.sh");
    assert!(built.success(), "plugins/build.sh failed");
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    for name in ["event-filter", "redact", "teams-card"] {
        let file = format!("{name}.wasm");
        std::fs::copy(format!("{root}/target/plugins/{file}"), plugins.join(&file)).unwrap();
    }
    format!(
        "[plugins]\ndir = {plugins:?}\nchain = [\"event-filter\", \"redact\", \"teams-card\"]\n\
         [plugins.config.event-filter]\nreasons = [\"WorkflowNodeSucceeded\"]\n\
         [plugins.config.redact]\nmask_parameters = [\"p\"]\n\n"
    )
}

/// Where the router keeps compiled plugins, inside its state folder; the bench keeps a warm
/// copy under the same name in its own folder.
const PLUGIN_CACHE: &str = "plugin-cache";

/// Events of the run that compiles the chain's plugins into a cold cache.
const WARM_UP_EVENTS: u64 = 200;

/// Runs the router with the chain `plugins` over a short recording, starting from an empty
/// plugin cache, and keeps the cache it leaves in `dir` for the measured runs: a router
/// compiles a plugin once, and restarts on its state folder load it compiled (the throughput
/// of the chain is not the one-off compile). Returns that run's time in seconds, and the
/// size of the cache in MiB.
async fn warm_plugin_cache(
    dir: &std::path::Path,
    sink: &CountingSink,
    plugins: &str,
) -> (f64, f64) {
    let recording = dir.join("warm-up.jsonl");
    generate(&recording, WARM_UP_EVENTS, 10);
    let setup = Setup {
        plugins: Some(plugins.to_owned()),
        keep_plugin_cache: true,
        ..Setup::default()
    };
    let started = Instant::now();
    in_background(dir, &recording, sink, setup).await;
    let cold = started.elapsed().as_secs_f64();
    let bytes = folder_bytes(&dir.join(PLUGIN_CACHE));
    assert!(
        bytes > 0,
        "the warm-up run left compiled plugins in its cache"
    );
    (cold, bytes as f64 / (1024.0 * 1024.0))
}

/// Copies the files of folder `from` into `to`, sub-folders included.
fn copy_folder(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_folder(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The bytes of the files in folder `path`, sub-folders included; 0 when it does not exist.
fn folder_bytes(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .map(|e| e.unwrap())
        .map(|e| match e.file_type().unwrap().is_dir() {
            true => folder_bytes(&e.path()),
            false => e.metadata().unwrap().len(),
        })
        .sum()
}

/// How to run the router once, besides its recording and endpoint.
#[derive(Default)]
struct Setup {
    /// Its source's `rate`, to pace it.
    rate: Option<f64>,
    /// `[plugins]` tables; `Some` (even empty) means the `extended` format.
    plugins: Option<String>,
    /// With the console and its history on.
    console: bool,
    /// A PostgreSQL database's URL: the shared outbox instead of redb.
    database: Option<String>,
    /// Compiled plugins to start with: a folder copied into the state folder's plugin cache.
    plugin_cache: Option<std::path::PathBuf>,
    /// Keep the plugin cache the run leaves, as `<dir>/plugin-cache`.
    keep_plugin_cache: bool,
}

struct RouterRun {
    rate: f64,
    /// CPU time the router used per event delivered, user and system, in microseconds.
    cpu_us_per_event: f64,
    peak_rss_kib: u64,
    /// p50 and p99 delivery latency over the whole run, in a paced run.
    latency_ms: Option<(f64, f64)>,
    /// The same without the first [`WARM_UP`], while connections open and queues first fill.
    steady_latency_ms: Option<(f64, f64)>,
    samples: Vec<Sample>,
}

/// The start of a paced run that its steady-state latency leaves out.
const WARM_UP: Duration = Duration::from_secs(1);

/// The router's resident set and the sink's count at one moment of a run.
struct Sample {
    seconds: f64,
    rss_kib: u64,
    delivered: u64,
}

/// Runs the router binary over `recording` until it exits, watching its memory and metrics.
fn run_router(
    dir: &std::path::Path,
    recording: &std::path::Path,
    url: &str,
    setup: &Setup,
    sink: &AtomicU64,
) -> RouterRun {
    let Setup {
        rate,
        ref plugins,
        console,
        ref database,
        ref plugin_cache,
        keep_plugin_cache,
    } = *setup;
    let counted_before = sink.load(Ordering::Relaxed);
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let state = tempfile::tempdir_in(dir).unwrap();
    if let Some(compiled) = plugin_cache {
        copy_folder(compiled, &state.path().join(PLUGIN_CACHE));
    }
    let config = dir.join("router.toml");
    let rate_line = rate.map(|r| format!("rate = {r}\n")).unwrap_or_default();
    // An admin token turns the console on, and with it the delivery history.
    let console_line = match console {
        true => "admin_token = { env = \"KFP_BENCH_ADMIN_TOKEN\" }\n",
        false => "",
    };
    let backend_lines = match database {
        Some(_) => "backend = \"postgres\"\nurl = { env = \"KFP_BENCH_DATABASE_URL\" }\n",
        None => "",
    };
    std::fs::write(
        &config,
        format!(
            "[source]\nkind = \"replay\"\npath = {recording:?}\n{rate_line}\n[state]\ndir = {:?}\n{backend_lines}\n[server]\nlisten = \"127.0.0.1:{metrics_port}\"\n{console_line}\n\
             {}[[endpoints]]\nname = \"sink\"\nurl = \"{url}\"\nconcurrency = {IN_FLIGHT}\nformat = \"{}\"\n",
            state.path(),
            plugins.as_deref().unwrap_or_default(),
            // `Some` plugins (even none) means the `extended` format, which plugins read.
            if plugins.is_some() { "extended" } else { "kfp" },
        ),
    )
    .unwrap();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kfp-event-router"))
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .env("KFP_BENCH_ADMIN_TOKEN", "bench-token")
        .env(
            "KFP_BENCH_DATABASE_URL",
            database.as_deref().unwrap_or_default(),
        )
        .stdout(Stdio::null())
        .spawn()
        .expect("starting the router");
    let mut peak_rss_kib = 0;
    let mut cpu_ticks = 0;
    let (mut latency, mut at_warm_up) = (None, None);
    let mut last_scrape = Instant::now();
    let mut samples = Vec::new();
    loop {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", child.id())) {
            let field = |name: &str| -> Option<u64> {
                let value = status.lines().find_map(|l| l.strip_prefix(name))?;
                value.trim().trim_end_matches(" kB").trim().parse().ok()
            };
            peak_rss_kib = peak_rss_kib.max(field("VmHWM:").unwrap_or(0));
            if let Some(rss_kib) = field("VmRSS:") {
                samples.push(Sample {
                    seconds: started.elapsed().as_secs_f64(),
                    rss_kib,
                    delivered: sink.load(Ordering::Relaxed) - counted_before,
                });
            }
        }
        cpu_ticks = cpu_ticks_of(child.id()).unwrap_or(cpu_ticks);
        if rate.is_some() && last_scrape.elapsed() > Duration::from_millis(200) {
            if let Some(buckets) = latency_buckets(metrics_port) {
                if at_warm_up.is_none() && started.elapsed() >= WARM_UP {
                    at_warm_up = Some(buckets.clone());
                }
                latency = Some(buckets);
            }
            last_scrape = Instant::now();
        }
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "router exited with {status}");
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = started.elapsed().as_secs_f64();
    if keep_plugin_cache {
        copy_folder(&state.path().join(PLUGIN_CACHE), &dir.join(PLUGIN_CACHE));
    }
    // Each event is one request (every run's filter keeps them all), so the sink counts them.
    let delivered = sink.load(Ordering::Relaxed) - counted_before;
    RouterRun {
        rate: delivered as f64 / elapsed,
        cpu_us_per_event: cpu_ticks as f64 * 1e6 / CLOCK_TICKS_PER_SECOND / delivered as f64,
        peak_rss_kib,
        latency_ms: latency.as_deref().and_then(quantiles),
        steady_latency_ms: latency
            .zip(at_warm_up)
            .and_then(|(end, start)| quantiles(&since(&end, &start))),
        samples,
    }
}

/// The unit of `/proc/<pid>/stat`'s times (`USER_HZ`, 100 on Linux).
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// CPU time process `pid` has used so far (user and system), in clock ticks: read every 20
/// ms while it runs, so that the last reading misses at most that much.
fn cpu_ticks_of(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses: state is the first, utime
    // the 12th and stime the 13th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// CPU time this process (the sink, and the raw client while it runs) has used so far, user
/// and system, in microseconds.
fn own_cpu_us() -> f64 {
    cpu_ticks_of(std::process::id()).unwrap_or(0) as f64 * 1e6 / CLOCK_TICKS_PER_SECOND
}

/// The cumulative buckets of `kfp_event_router_delivery_latency_seconds`: (upper bound, count).
fn latency_buckets(port: u16) -> Option<Vec<(f64, f64)>> {
    let text = fetch_metrics(port)?;
    let mut buckets: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| l.starts_with("kfp_event_router_delivery_latency_seconds_bucket"))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let count: f64 = l.rsplit(' ').next()?.parse().ok()?;
            Some((le, count))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    Some(buckets)
}

/// The deliveries counted in `end`'s buckets and not yet in `start`'s.
fn since(end: &[(f64, f64)], start: &[(f64, f64)]) -> Vec<(f64, f64)> {
    end.iter()
        .zip(start)
        .map(|(&(le, total), &(_, before))| (le, total - before))
        .collect()
}

/// p50 and p99 of cumulative `buckets`, interpolated within a bucket, in milliseconds.
fn quantiles(buckets: &[(f64, f64)]) -> Option<(f64, f64)> {
    let total = buckets.last()?.1;
    if total == 0.0 {
        return None;
    }
    let quantile = |q: f64| {
        let target = total * q;
        let mut lower = (0.0, 0.0);
        for &(le, count) in buckets {
            if count >= target {
                let upper = if le.is_finite() { le } else { lower.0 };
                let span = (count - lower.1).max(1.0);
                return (lower.0 + (upper - lower.0) * (target - lower.1) / span) * 1000.0;
            }
            lower = (le, count);
        }
        lower.0 * 1000.0
    };
    Some((quantile(0.5), quantile(0.99)))
}

/// Fetches the router's metrics text with a plain blocking request.
fn fetch_metrics(port: u16) -> Option<String> {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text)
}
