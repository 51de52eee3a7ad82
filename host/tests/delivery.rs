//! Delivery through the real binary to a real HTTP sink: per-workflow order under
//! concurrency, isolation of a dead endpoint, retries and dead letters (with `/metrics` and
//! the exit code), and Standard Webhooks signatures checked by an independent implementation.
//! The outage and dead-letter tests run with both state backends (redb, PostgreSQL).

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use support::postgres::Backend;
use support::recording::{self, Generated};
use support::router::{PATIENCE, RouterProcess, Scratch, closed_port, metric, toml_str};
use support::sink::{Received, Reply, Sink};

/// The node names each workflow received, in arrival order (`kfp` or `extended` payloads).
fn per_workflow(requests: &[Received]) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for request in requests {
        let payload = request.json();
        let wf = payload["WorkflowName"]
            .as_str()
            .expect("WorkflowName")
            .to_owned();
        out.entry(wf)
            .or_default()
            .push(payload["NodeName"].as_str().expect("NodeName").to_owned());
    }
    out
}

fn write_recording(scratch: &Scratch, generated: &Generated) -> std::path::PathBuf {
    let path = scratch.path("recording.jsonl");
    generated.recording.write(&path);
    path
}

/// Small pseudo-random delays (xorshift), reproducible.
fn delays(n: usize, max_ms: u64) -> Vec<Duration> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            Duration::from_millis(1 + x % max_ms)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_workflow_arrives_in_order_while_workflows_are_sent_concurrently() {
    let scratch = Scratch::new();
    let generated = recording::interleaved(10, 50);
    let path = write_recording(&scratch, &generated);
    let sink = Sink::start().await;
    let delays = delays(generated.events(), 15);
    sink.script(
        "/ordered",
        delays.iter().map(|d| Reply::status(200).after(*d)),
    );
    let config = scratch.write(
        "router.toml",
        &format!(
            "{}[[endpoints]]\nname = \"ordered\"\nurl = {}\nconcurrency = 4\n",
            scratch.tables(&path, None),
            toml_str(&sink.url("/ordered"))
        ),
    );
    let mut router = RouterProcess::start(&config);
    router.expect_success().await;

    let received = sink.received();
    assert_eq!(received.len(), generated.events(), "every event once");
    assert_eq!(
        per_workflow(&received),
        generated.order,
        "per workflow, the recording's order"
    );

    // The sink answered request i after delays[i] (replies are taken in arrival order), so
    // [at, at + delay] is inside the time the request held one of the endpoint's slots.
    let spans: Vec<(std::time::Instant, std::time::Instant, String)> = received
        .iter()
        .zip(&delays)
        .map(|(r, d)| {
            (
                r.at,
                r.at + *d,
                r.json()["WorkflowName"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut max_in_flight = 0;
    let mut cross_workflow_overlap = false;
    for (start, _, wf) in &spans {
        let open: Vec<&String> = spans
            .iter()
            .filter(|(s, e, _)| s <= start && start < e)
            .map(|(_, _, w)| w)
            .collect();
        max_in_flight = max_in_flight.max(open.len());
        cross_workflow_overlap |= open.iter().any(|w| *w != wf);
    }
    assert!(
        cross_workflow_overlap,
        "requests of different workflows were in flight together"
    );
    assert!(
        (2..=4).contains(&max_in_flight),
        "concurrency happened and stayed within the endpoint's limit of 4: {max_in_flight}"
    );
    // Within a workflow, a request is sent only after the previous one was answered.
    let mut last_end: HashMap<&str, std::time::Instant> = HashMap::new();
    for (start, end, wf) in &spans {
        if let Some(previous) = last_end.get(wf.as_str()) {
            assert!(
                start >= previous,
                "{wf}: a request was sent before the previous was answered"
            );
        }
        last_end.insert(wf, *end);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_does_not_hold_up_a_live_one_and_gets_everything_when_back_redb() {
    a_dead_endpoint_does_not_hold_up_a_live_one_and_gets_everything_when_back(Backend::Redb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_does_not_hold_up_a_live_one_and_gets_everything_when_back_postgres() {
    a_dead_endpoint_does_not_hold_up_a_live_one_and_gets_everything_when_back(
        Backend::postgres().await,
    )
    .await;
}

async fn a_dead_endpoint_does_not_hold_up_a_live_one_and_gets_everything_when_back(
    backend: Backend,
) {
    let scratch = Scratch::new();
    let generated = recording::interleaved(5, 20);
    let path = write_recording(&scratch, &generated);
    let live = Sink::start().await;
    let dead = closed_port();
    let config = scratch.write(
        "router.toml",
        &format!(
            r#"{tables}[[endpoints]]
name = "live"
url = {live}

[[endpoints]]
name = "dead"
url = {dead}
[endpoints.retry]
max_attempts = 100000
schedule = ["0s", "100ms"]
"#,
            tables = backend.tables(scratch.tables(&path, None)),
            live = toml_str(&live.url("/live")),
            dead = toml_str(&format!("http://{dead}/dead")),
        ),
    );
    let mut router = backend.start(&config);
    live.wait_for("/live", generated.events(), PATIENCE).await;
    let delivered = "kfp_event_router_events_delivered_total{endpoint=\"live\"}";
    router
        .wait_for_metric(delivered, generated.events() as f64, PATIENCE)
        .await;
    // Meanwhile the dead one keeps failing.
    let series = "kfp_event_router_delivery_retries_total{endpoint=\"dead\"}";
    let text = router.wait_for_metric(series, 10.0, PATIENCE).await;
    assert_eq!(metric(&text, delivered), Some(generated.events() as f64));
    assert_eq!(
        metric(
            &text,
            "kfp_event_router_events_delivered_total{endpoint=\"dead\"}"
        ),
        None
    );
    assert!(
        router.is_running(),
        "the router waits for the dead endpoint"
    );
    assert_eq!(per_workflow(&live.received()), generated.order);

    // The endpoint comes back on the same port: it gets everything, each workflow in order.
    let back = Sink::start_on(dead).await;
    router.expect_success().await;
    let got = back.received_on("/dead");
    assert_eq!(got.len(), generated.events(), "each event exactly once");
    assert_eq!(per_workflow(&got), generated.order);
    assert_eq!(
        live.received().len(),
        generated.events(),
        "the live endpoint got no repeats"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_retried_with_the_same_id_or_dead_lettered_and_counted_redb() {
    failures_are_retried_with_the_same_id_or_dead_lettered_and_counted(Backend::Redb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_retried_with_the_same_id_or_dead_lettered_and_counted_postgres() {
    failures_are_retried_with_the_same_id_or_dead_lettered_and_counted(Backend::postgres().await)
        .await;
}

async fn failures_are_retried_with_the_same_id_or_dead_lettered_and_counted(backend: Backend) {
    let scratch = Scratch::new();
    let sink = Sink::start().await;
    sink.script("/e500", [Reply::status(500)]);
    sink.script("/e503", [Reply::status(503)]);
    sink.script(
        "/e429",
        [Reply::status(429).with_header("retry-after", "1")],
    );
    sink.script("/slow", [Reply::status(200).after(Duration::from_secs(2))]);
    sink.always("/e400", Reply::status(400));
    sink.always("/forever", Reply::status(500));
    sink.always("/holder", Reply::status(503));
    let endpoint = |name: &str, extra: &str, schedule: &str, attempts: u32| {
        format!(
            "[[endpoints]]\nname = \"{name}\"\nurl = {}\nevent_types = [\"WorkflowFailed\"]\n{extra}\n\
             [endpoints.retry]\nmax_attempts = {attempts}\nschedule = {schedule}\n\n",
            toml_str(&sink.url(&format!("/{name}")))
        )
    };
    let quick = r#"["0s", "50ms"]"#;
    let mut text = backend.tables(scratch.tables(&support::quickstart_recording(), None));
    text += &endpoint("e500", "", quick, 5);
    text += &endpoint("e503", "", quick, 5);
    text += &endpoint("e429", "", r#"["0s", "10ms"]"#, 5);
    text += &endpoint("slow", "timeout = \"200ms\"", quick, 5);
    text += &endpoint("e400", "", quick, 5);
    text += &endpoint("forever", "", quick, 3);
    // Keeps the router running (its delivery is pending) until the test lets it through.
    text += &endpoint("holder", "", r#"["0s", "100ms"]"#, 100000);
    let config = scratch.write("router.toml", &text);
    let mut router = backend.start(&config);

    for (path, n) in [
        ("/e500", 2),
        ("/e503", 2),
        ("/e429", 2),
        ("/slow", 2),
        ("/e400", 1),
        ("/forever", 3),
    ] {
        sink.wait_for(path, n, PATIENCE).await;
    }
    let dead =
        |name: &str| format!("kfp_event_router_events_dead_lettered_total{{endpoint=\"{name}\"}}");
    let delivered =
        |name: &str| format!("kfp_event_router_events_delivered_total{{endpoint=\"{name}\"}}");
    router
        .wait_for_metric(&dead("forever"), 1.0, PATIENCE)
        .await;
    let metrics = router.wait_for_metric(&dead("e400"), 1.0, PATIENCE).await;
    assert_eq!(metric(&metrics, &dead("forever")), Some(1.0), "{metrics}");
    assert_eq!(metric(&metrics, &dead("e400")), Some(1.0));
    for name in ["e500", "e503", "e429", "slow"] {
        let text = router
            .wait_for_metric(&delivered(name), 1.0, PATIENCE)
            .await;
        assert_eq!(
            metric(&text, &dead(name)),
            None,
            "{name} was not dead-lettered"
        );
    }
    assert!(
        router.is_running(),
        "the holder endpoint keeps the router running"
    );

    sink.always("/holder", Reply::status(200));
    assert_eq!(
        router.exit_code(PATIENCE).await,
        i32::from(kfp_event_router::cli::EXIT_DEAD_LETTERS),
        "exit code for dead letters; logs:\n{}",
        router.logs()
    );

    // Exact attempt counts, now that nothing can be sent any more.
    let count = |path: &str| sink.received_on(path).len();
    assert_eq!(count("/e500"), 2);
    assert_eq!(count("/e503"), 2);
    assert_eq!(count("/e429"), 2);
    assert_eq!(count("/slow"), 2, "the timed-out attempt was retried once");
    assert_eq!(count("/e400"), 1, "400 is final: not retried");
    assert_eq!(count("/forever"), 3, "max_attempts = 3");

    // One event: every attempt to every endpoint carries its one webhook-id.
    let all = sink.received();
    let ids: HashSet<&str> = all.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(
        ids.len(),
        1,
        "the same webhook-id on every attempt: {ids:?}"
    );
    let id = *ids.iter().next().unwrap();
    assert!(id.starts_with("msg_"));

    let e429 = sink.received_on("/e429");
    let gap = e429[1].at - e429[0].at;
    assert!(
        gap >= Duration::from_millis(995),
        "Retry-After: 1 was honoured, gap {gap:?}"
    );

    let letters = backend.dead_letters(&scratch).await;
    assert_eq!(letters.len(), 2, "{letters:#?}");
    let letter = |name: &str| {
        letters
            .iter()
            .find(|l| l["endpoint"] == name)
            .unwrap_or_else(|| panic!("no dead letter for {name}: {letters:#?}"))
    };
    let e400 = letter("e400");
    assert_eq!(e400["attempts"], 1);
    assert!(
        e400["last_error"].as_str().unwrap().contains("400"),
        "{e400}"
    );
    assert_eq!(e400["webhook_id"], id);
    let payload: serde_json::Value =
        serde_json::from_str(e400["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload["EventType"], "WorkflowFailed");
    let forever = letter("forever");
    assert_eq!(forever["attempts"], 3);
    assert!(
        forever["last_error"].as_str().unwrap().contains("500"),
        "{forever}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_verify_with_the_standardwebhooks_crate() {
    let scratch = Scratch::new();
    let sink = Sink::start().await;
    let b64 = base64::engine::general_purpose::STANDARD;
    let env_secret = format!("whsec_{}", b64.encode(b"0123456789abcdef0123456789abcdef"));
    let file_secret = format!("whsec_{}", b64.encode(b"another key, from a mounted file"));
    let secret_file = scratch.write("signing-secret", &format!("{file_secret}\n"));
    let config = scratch.write(
        "router.toml",
        &format!(
            r#"{tables}[[endpoints]]
name = "from-env"
url = {env_url}
signing_secret = {{ env = "KFP_ROUTER_TEST_SIGNING" }}

[[endpoints]]
name = "from-file"
url = {file_url}
format = "cloudevents"
signing_secret = {{ file = {file} }}

[[endpoints]]
name = "unsigned"
url = {plain_url}
"#,
            tables = scratch.tables(&support::quickstart_recording(), None),
            env_url = toml_str(&sink.url("/env")),
            file_url = toml_str(&sink.url("/file")),
            file = support::router::toml_path(&secret_file),
            plain_url = toml_str(&sink.url("/plain")),
        ),
    );
    let mut command = support::router::run_command(&config);
    command.env("KFP_ROUTER_TEST_SIGNING", &env_secret);
    let mut router = RouterProcess::spawn(command);
    router.expect_success().await;

    let right = standardwebhooks::Webhook::new(&env_secret).unwrap();
    let right_file = standardwebhooks::Webhook::new(&file_secret).unwrap();
    let wrong = standardwebhooks::Webhook::new(&format!(
        "whsec_{}",
        b64.encode(b"not the key, not the key, no no")
    ))
    .unwrap();
    for (path, key, other) in [
        ("/env", &right, &right_file),
        ("/file", &right_file, &right),
    ] {
        let requests = sink.received_on(path);
        assert_eq!(requests.len(), 25, "{path}");
        for r in &requests {
            key.verify(&r.body, &r.headers)
                .unwrap_or_else(|e| panic!("{path}: signature rejected: {e}"));
            assert!(
                wrong.verify(&r.body, &r.headers).is_err(),
                "{path}: a wrong secret must fail"
            );
            assert!(
                other.verify(&r.body, &r.headers).is_err(),
                "{path}: the other endpoint's secret must fail"
            );
            let mut tampered = r.body.to_vec();
            tampered.extend_from_slice(b" ");
            assert!(
                key.verify(&tampered, &r.headers).is_err(),
                "{path}: a changed body must fail"
            );
        }
    }
    for r in sink.received_on("/plain") {
        assert_eq!(r.header("webhook-signature"), "");
        assert!(right.verify(&r.body, &r.headers).is_err());
        assert!(
            r.header("webhook-id").starts_with("msg_"),
            "ids are sent unsigned too"
        );
    }
}

/// A dead letter that cannot be written yet (here: a folder is in the file's place) is written
/// once it can be; only then is the delivery done, its workflow's next event sent, and the run
/// finished as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_that_cannot_be_written_is_retried_then_its_workflow_goes_on() {
    let scratch = Scratch::new();
    let generated = recording::interleaved(1, 2);
    let path = write_recording(&scratch, &generated);
    let blocker = scratch.state_dir().join("dead-letter.jsonl");
    std::fs::create_dir_all(&blocker).unwrap();
    let sink = Sink::start().await;
    sink.script("/hook", [Reply::status(400)]);
    let config = scratch.write(
        "router.toml",
        &format!(
            "{}[[endpoints]]\nname = \"hook\"\nurl = {}\n",
            scratch.tables(&path, None),
            toml_str(&sink.url("/hook"))
        ),
    );
    let mut router = RouterProcess::start(&config);
    router
        .wait_for_log("cannot write the dead letter", PATIENCE)
        .await;
    assert_eq!(
        sink.received_on("/hook").len(),
        1,
        "the workflow's next event waits for the dead letter"
    );
    let unblocked = std::time::Instant::now();
    std::fs::remove_dir(&blocker).unwrap();
    assert_eq!(
        router.exit_code(PATIENCE).await,
        i32::from(kfp_event_router::cli::EXIT_DEAD_LETTERS),
        "exit code for dead letters; logs:\n{}",
        router.logs()
    );

    let received = sink.received_on("/hook");
    assert_eq!(
        per_workflow(&received),
        generated.order,
        "both events, in order"
    );
    assert!(
        received[1].at > unblocked,
        "the next event was sent once the dead letter could be written"
    );
    let letters = scratch.dead_letters();
    assert_eq!(letters.len(), 1, "{letters:#?}");
    assert_eq!(letters[0]["webhook_id"], received[0].header("webhook-id"));
    assert!(
        letters[0]["last_error"].as_str().unwrap().contains("400"),
        "{}",
        letters[0]
    );
}

/// The (workflow, node) of each request answered 2xx, in arrival order.
type Log = Arc<Mutex<Vec<(String, String)>>>;

/// A sink on 127.0.0.1 that answers 503 to every request about workflow `wf-stuck` while
/// `holding`, 200 to the rest, and keeps the (workflow, node) of each 2xx in arrival order.
struct Gate {
    url: String,
    holding: Arc<AtomicBool>,
    delivered: Log,
}

impl Gate {
    async fn start() -> Self {
        let holding = Arc::new(AtomicBool::new(true));
        let delivered = Arc::new(Mutex::new(Vec::new()));
        let state = (Arc::clone(&holding), Arc::clone(&delivered));
        let app = axum::Router::new()
            .fallback(
                |axum::extract::State((holding, delivered)): axum::extract::State<(
                    Arc<AtomicBool>,
                    Log,
                )>,
                 body: axum::body::Bytes| async move {
                    let payload: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    let wf = payload["WorkflowName"].as_str().unwrap().to_owned();
                    if wf == "wf-stuck" && holding.load(Ordering::SeqCst) {
                        return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                    }
                    let node = payload["NodeName"].as_str().unwrap().to_owned();
                    delivered.lock().unwrap().push((wf, node));
                    axum::http::StatusCode::OK
                },
            )
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url,
            holding,
            delivered,
        }
    }

    /// The nodes of `wf` delivered so far, in arrival order.
    fn nodes(&self, wf: &str) -> Vec<String> {
        let delivered = self.delivered.lock().unwrap();
        delivered
            .iter()
            .filter(|(w, _)| w == wf)
            .map(|(_, node)| node.clone())
            .collect()
    }
}

/// A workflow stuck behind a failing delivery, with more deliveries pending than a worker
/// holds in memory (4,096), does not hold up the other workflows of its endpoint: they are
/// delivered while it waits. Once the endpoint takes it, all of it arrives, in order, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_stuck_behind_a_failure_does_not_hold_up_the_others_of_its_endpoint() {
    use recording::{Recording, Wf};
    let (stuck, free) = (Wf::new("wf-stuck"), Wf::new("wf-free"));
    let mut lines = Recording::new();
    lines.push(stuck.object(Some("Running")));
    lines.push(free.object(Some("Running")));
    let nodes = |n: usize| (0..n).map(|j| format!("step-{j:05}")).collect::<Vec<_>>();
    for (wf, count) in [(&stuck, 4_200), (&free, 20)] {
        for node in nodes(count) {
            let uid = format!("{}-{node}", wf.uid);
            lines.watch("ADDED", wf.node_event(&uid, "Running", &node));
        }
    }
    let scratch = Scratch::new();
    let path = scratch.path("recording.jsonl");
    lines.write(&path);
    let gate = Gate::start().await;
    let config = scratch.write(
        "router.toml",
        &format!(
            "{tables}[[endpoints]]\nname = \"hook\"\nurl = {url}\n\
             [endpoints.retry]\nmax_attempts = 100000\nschedule = [\"0s\", \"100ms\"]\n",
            tables = scratch.tables(&path, None),
            url = toml_str(&gate.url),
        ),
    );
    let mut router = Backend::Redb.start(&config);

    let deadline = std::time::Instant::now() + PATIENCE;
    while gate.nodes("wf-free").len() < 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "wf-free got {} of 20 while wf-stuck waits; logs:\n{}",
            gate.nodes("wf-free").len(),
            router.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(gate.nodes("wf-free"), nodes(20));
    assert!(gate.nodes("wf-stuck").is_empty());

    gate.holding.store(false, Ordering::SeqCst);
    router.expect_success().await;
    assert_eq!(gate.nodes("wf-stuck"), nodes(4_200), "in order, each once");
}
