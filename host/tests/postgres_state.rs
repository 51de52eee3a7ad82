//! The `postgres` state backend against a real server: the server restarting mid-stream, and
//! a router on another (or a wiped) state folder continuing from the database where a killed
//! one stopped. The scenarios both backends share are in `durability.rs` and `delivery.rs`.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use support::postgres::{Backend, PASSWORD, PgServer};
use support::proxy::Proxy;
use support::recording;
use support::router::{PATIENCE, RouterProcess, Scratch, source_tables, toml_path, toml_str};
use support::sink::{Received, Reply, Sink};

/// Distinct webhook-ids received so far.
fn distinct_ids(sink: &Sink) -> usize {
    sink.received()
        .iter()
        .map(|r| r.header("webhook-id").to_owned())
        .collect::<HashSet<_>>()
        .len()
}

/// Waits until `n` distinct events have been received; panics with the router's logs after
/// [`PATIENCE`].
async fn wait_for_distinct(sink: &Sink, n: usize, router: &RouterProcess) {
    let deadline = Instant::now() + PATIENCE;
    while distinct_ids(sink) < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} distinct events; logs:\n{}",
            distinct_ids(sink),
            router.logs()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Checks that every event arrived, each under one webhook-id with one payload, and returns
/// how many requests were repeats.
fn every_event_once_by_id(received: &[Received], expected: &[String]) -> usize {
    let mut ids_of_event: HashMap<String, HashSet<String>> = HashMap::new();
    let mut bodies_of_id: HashMap<String, HashSet<Vec<u8>>> = HashMap::new();
    for r in received {
        let uid = r.json()["EventUid"].as_str().unwrap().to_owned();
        let id = r.header("webhook-id").to_owned();
        ids_of_event.entry(uid).or_default().insert(id.clone());
        bodies_of_id.entry(id).or_default().insert(r.body.to_vec());
    }
    let expected: HashSet<&String> = expected.iter().collect();
    let arrived: HashSet<&String> = ids_of_event.keys().collect();
    assert_eq!(arrived, expected, "every event arrived, none invented");
    for (uid, ids) in &ids_of_event {
        assert_eq!(
            ids.len(),
            1,
            "{uid}: one webhook-id across routers: {ids:?}"
        );
    }
    for (id, bodies) in &bodies_of_id {
        assert_eq!(bodies.len(), 1, "{id}: a repeat carries the same payload");
    }
    received.len() - expected.len()
}

/// `[state]` and the rest for a replay of `recording` into `sink`, with the state in `dir`
/// and the outbox in PostgreSQL.
fn config(
    scratch: &Scratch,
    backend: &Backend,
    dir: &str,
    recording: &std::path::Path,
    rate: Option<f64>,
    sink: &Sink,
) -> std::path::PathBuf {
    scratch.write(
        &format!("{dir}.toml"),
        &format!(
            "{}[[endpoints]]\nname = \"hook\"\nurl = {}\nformat = \"extended\"\nconcurrency = 4\n",
            backend.tables(source_tables(recording, rate, &scratch.path(dir))),
            toml_str(&sink.url("/hook"))
        ),
    )
}

/// Turns the console on in `config` (an admin token), keeping `keep` deliveries per endpoint
/// (the default when `None`).
fn with_console(scratch: &Scratch, config: &std::path::Path, keep: Option<usize>) {
    let token = scratch.write("admin-token", "history-T0KEN\n");
    let keep = keep.map(|k| format!("console_history = {k}\n"));
    let text = std::fs::read_to_string(config).unwrap().replacen(
        "[server]\n",
        &format!(
            "[server]\nadmin_token = {{ file = {} }}\n{}",
            toml_path(&token),
            keep.unwrap_or_default()
        ),
        1,
    );
    std::fs::write(config, text).unwrap();
}

/// Now, in Unix ms.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// PostgreSQL stops (as in a crash) for two seconds while events are being accepted and
/// delivered, then starts again: the router waits for it rather than exiting, every event is
/// delivered, and the console's history is written again; the URL's password is never
/// printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarting_mid_stream_loses_nothing_and_the_router_waits() {
    let server = PgServer::start();
    let backend = Backend::Postgres(server.database().await);
    let scratch = Scratch::new();
    let generated = recording::interleaved(20, 100);
    let path = scratch.path("recording.jsonl");
    generated.recording.write(&path);
    let sink = Sink::start().await;
    sink.always("/hook", Reply::status(200).after(Duration::from_millis(5)));
    // Paced, so that events are still being accepted during the outage.
    let config = config(&scratch, &backend, "state", &path, Some(400.0), &sink);
    with_console(&scratch, &config, None);

    let mut router = backend.start(&config);
    wait_for_distinct(&sink, 300, &router).await;
    server.stop();
    let during_outage = distinct_ids(&sink);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        router.is_running(),
        "the router waits for PostgreSQL; logs:\n{}",
        router.logs()
    );
    server.start_again();
    let restarted_ms = now_ms();
    router.expect_success().await;
    let Backend::Postgres(url) = &backend else {
        unreachable!("a PostgreSQL backend")
    };
    let history = server
        .connect(url)
        .await
        .query_one(
            "SELECT count(*), coalesce(max(time_ms), 0) FROM delivery_history",
            &[],
        )
        .await
        .unwrap();
    let (kept, newest): (i64, i64) = (history.get(0), history.get(1));
    assert_eq!(kept, 200, "the console's history is full");
    assert!(
        newest > restarted_ms,
        "the history's writer connected again after the outage"
    );

    let repeats = every_event_once_by_id(&sink.received(), &generated.event_uids);
    eprintln!(
        "{} events, {repeats} repeated; {during_outage} delivered when PostgreSQL stopped",
        generated.events()
    );
    assert!(
        router.logs().contains("PostgreSQL"),
        "the outage was noticed; logs:\n{}",
        router.logs()
    );
    assert!(!router.logs().contains(PASSWORD), "{}", router.logs());
}

/// A router killed with `kill -9`, then a second on a fresh state folder pointed at the same
/// database, killed too, then a third on the first one's folder, wiped meanwhile: each goes on
/// from the database (its checkpoint, its pending deliveries, the same webhook-ids), and every
/// event is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_on_another_or_a_wiped_state_dir_continues_from_the_database() {
    let backend = Backend::postgres().await;
    let scratch = Scratch::new();
    let generated = recording::interleaved(20, 100);
    let total = generated.events();
    let path = scratch.path("recording.jsonl");
    generated.recording.write(&path);
    let sink = Sink::start().await;
    sink.always("/hook", Reply::status(200).after(Duration::from_millis(5)));
    let first = config(&scratch, &backend, "first", &path, None, &sink);
    let second = config(&scratch, &backend, "second", &path, None, &sink);

    let mut router = backend.start(&first);
    wait_for_distinct(&sink, 300, &router).await;
    router.kill();
    let at_first_kill = distinct_ids(&sink);

    let mut router = backend.start(&second);
    wait_for_distinct(&sink, at_first_kill + 700, &router).await;
    router.kill();
    assert!(
        router
            .logs()
            .contains("resuming the replay after the last accepted event"),
        "the second router resumed from the first one's checkpoint; logs:\n{}",
        router.logs()
    );
    assert!(
        !scratch.path("second/outbox.redb").exists(),
        "the outbox is in PostgreSQL"
    );

    std::fs::remove_dir_all(scratch.path("first")).unwrap();
    let mut router = backend.start(&first);
    router.expect_success().await;

    let repeats = every_event_once_by_id(&sink.received(), &generated.event_uids);
    let stopped = router
        .log_records()
        .into_iter()
        .find(|r| r["fields"]["message"] == "router stopped")
        .expect("the router logs its summary");
    let accepted_last = stopped["fields"]["events"].as_u64().unwrap() as usize;
    assert!(
        accepted_last < total - at_first_kill,
        "the last router accepted {accepted_last} events: it resumed, it did not start over"
    );
    eprintln!("{total} events over three routers, {repeats} repeated");
    assert!(repeats * 20 < total, "{repeats} of {total} repeated");
}

/// A router on PostgreSQL hands what it accepts to its delivery workers in memory, as the
/// embedded outbox does: with an endpoint that keeps up, its workers do not read the events
/// they were just given back from the database (`outbox_read_back_total` stays well under what
/// was delivered), and every event still arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgres_what_a_router_accepts_is_handed_to_its_workers_not_read_back() {
    let backend = Backend::postgres().await;
    let scratch = Scratch::new();
    let generated = recording::interleaved(10, 90);
    let path = scratch.path("recording.jsonl");
    generated.recording.write(&path);
    let sink = Sink::start().await;
    sink.always("/hook", Reply::status(200));
    let config = config(&scratch, &backend, "state", &path, Some(300.0), &sink);

    let mut router = backend.start(&config);
    let delivered = "kfp_event_router_deliveries_total{endpoint=\"hook\",outcome=\"delivered\"}";
    let text = router.wait_for_metric(delivered, 300.0, PATIENCE).await;
    let delivered = support::router::metric(&text, delivered).unwrap();
    let read_back = "kfp_event_router_outbox_read_back_total{endpoint=\"hook\"}";
    let read_back = support::router::metric(&text, read_back).unwrap_or(0.0);
    eprintln!("{delivered} delivered, {read_back} of them read back from the outbox");
    assert!(
        read_back * 2.0 < delivered,
        "most deliveries are handed over in memory: {read_back} of {delivered} read back"
    );
    router.expect_success().await;
    let repeats = every_event_once_by_id(&sink.received(), &generated.event_uids);
    assert_eq!(repeats, 0, "no event twice");
}

/// A CA, and a server certificate for 127.0.0.1 it signed: (CA PEM, certificate PEM, key PEM).
fn database_pki() -> (String, String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "database CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    (ca.pem(), server.pem(), key.serialize_pem())
}

/// The router's connections to the server, as (encrypted, count).
async fn router_connections(server: &PgServer) -> Vec<(bool, i64)> {
    let admin = server.connect("postgres").await;
    admin
        .query(
            "SELECT s.ssl, count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.application_name = 'kfp-event-router' GROUP BY s.ssl",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

/// TLS to PostgreSQL is verified: with `sslmode=verify-full` and a server certificate of a
/// private CA, a router without `[state.tls] ca` refuses the server at once, saying why
/// (never printing the URL); given the CA, every one of its connections is encrypted and
/// every event is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_postgres_is_verified_against_the_ca_given() {
    let server = PgServer::start();
    let (ca, cert, key) = database_pki();
    server.enable_tls(&cert, &key).await;
    let url = server
        .database()
        .await
        .replace("sslmode=disable", "sslmode=verify-full");
    let backend = Backend::Postgres(url);
    let scratch = Scratch::new();
    let generated = recording::interleaved(5, 40);
    let path = scratch.path("recording.jsonl");
    generated.recording.write(&path);
    let sink = Sink::start().await;
    sink.always("/hook", Reply::status(200));

    let untrusted = config(&scratch, &backend, "untrusted", &path, None, &sink);
    let mut router = backend.start(&untrusted);
    let code = router.exit_code(PATIENCE).await;
    let logs = router.logs();
    assert_ne!(code, 0, "{logs}");
    assert!(logs.contains("certificate"), "{logs}");
    assert!(logs.contains("[state.tls] ca"), "{logs}");
    assert!(!logs.contains(PASSWORD), "{logs}");
    assert!(sink.received().is_empty());

    let trusted = config(&scratch, &backend, "trusted", &path, Some(100.0), &sink);
    let ca = scratch.write("ca.pem", &ca);
    let mut text = std::fs::read_to_string(&trusted).unwrap();
    text.push_str(&format!(
        "\n[state.tls]\nca = {}\n",
        toml_str(&ca.display().to_string())
    ));
    std::fs::write(&trusted, text).unwrap();
    let mut router = backend.start(&trusted);
    wait_for_distinct(&sink, 50, &router).await;
    let connections = router_connections(&server).await;
    router.expect_success().await;
    assert!(
        !connections.is_empty() && connections.iter().all(|(ssl, _)| *ssl),
        "the router's connections, as (encrypted, count): {connections:?}"
    );
    every_event_once_by_id(&sink.received(), &generated.event_uids);
    assert!(!router.logs().contains(PASSWORD));
}

/// Rows the console's history keeps per endpoint in the next test.
const KEEP: usize = 4;

/// The console's history in PostgreSQL: a delivery's attempts merge into one row (its outcome
/// the last), and each endpoint keeps its `console_history` most recent rows, the older ones
/// deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_history_in_postgres_merges_attempts_and_keeps_the_newest() {
    let backend = Backend::postgres().await;
    let Backend::Postgres(url) = &backend else {
        unreachable!("a PostgreSQL backend")
    };
    let scratch = Scratch::new();
    let sink = Sink::start().await;
    sink.always("/good", Reply::status(200));
    sink.always("/bad", Reply::status(500));
    let tables = backend.tables(scratch.tables(&support::quickstart_recording(), None));
    let config = scratch.write(
        "router.toml",
        &format!(
            "{tables}[[endpoints]]\nname = \"good\"\nurl = {}\nconcurrency = 1\n\n\
             [[endpoints]]\nname = \"bad\"\nurl = {}\nconcurrency = 1\n\
             [endpoints.retry]\nmax_attempts = 2\nschedule = [\"0s\", \"50ms\"]\n",
            toml_str(&sink.url("/good")),
            toml_str(&sink.url("/bad"))
        ),
    );
    with_console(&scratch, &config, Some(KEEP));
    let mut router = backend.start(&config);
    router.wait(PATIENCE).await;
    assert!(
        !scratch.state_dir().join("history.redb").exists(),
        "the history is in PostgreSQL"
    );

    let db = PgServer::shared().connect(url).await;
    let version: i32 = db
        .query_one("SELECT schema_version FROM meta", &[])
        .await
        .unwrap()
        .get(0);
    assert!(version >= 3, "delivery_history came with schema version 3");
    let rows: Vec<(String, String, i64, String)> = db
        .query(
            "SELECT endpoint, webhook_id, time_ms, record FROM delivery_history \
             ORDER BY endpoint, time_ms DESC",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
        .collect();
    let given_up: Vec<String> = db
        .query(
            "SELECT webhook_id FROM dead_letters WHERE endpoint = 'bad' ORDER BY id DESC",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(given_up.len() > KEEP, "{} dead letters", given_up.len());
    let of = |endpoint: &str| -> Vec<(String, serde_json::Value)> {
        rows.iter()
            .filter(|(e, ..)| e == endpoint)
            .map(|(_, id, time_ms, json)| {
                let record: serde_json::Value = serde_json::from_str(json).unwrap();
                assert_eq!(record["time_ms"], *time_ms, "{json}");
                (id.clone(), record)
            })
            .collect()
    };
    let bad = of("bad");
    let kept: Vec<&String> = bad.iter().map(|(id, _)| id).collect();
    let newest: Vec<&String> = given_up.iter().take(KEEP).collect();
    assert_eq!(
        kept, newest,
        "the newest deliveries are kept, the others deleted"
    );
    for (id, record) in &bad {
        assert_eq!(record["outcome"], "dead_lettered", "{id}: {record}");
        assert_eq!(
            record["attempts"].as_array().unwrap().len(),
            2,
            "{id}: both attempts, merged into one record: {record}"
        );
        assert_eq!(record["attempts"][0]["status"], 500, "{record}");
    }
    let good = of("good");
    assert_eq!(good.len(), KEEP, "{rows:?}");
    for (id, record) in &good {
        assert_eq!(record["outcome"], "delivered", "{id}: {record}");
        assert_eq!(record["attempts"].as_array().unwrap().len(), 1, "{record}");
        assert!(record["request"]["headers"].is_array(), "{record}");
    }
}

/// A database that a newer router has opened (a newer schema version) is refused, saying so,
/// rather than used beside it.
/// Events a router of schema version 3 stored as JSON, still pending when a router of version
/// 4 (which stores binary records) opens the database, are delivered by it: an upgrade loses
/// nothing of the backlog. The rows are what version 3 wrote: the event's serde JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_stored_as_json_by_schema_version_3_is_delivered_after_the_upgrade() {
    use kfp_event_router::model::event::{EventFacts, NodeFacts, RouterEvent};

    let backend = Backend::postgres().await;
    let Backend::Postgres(url) = &backend else {
        unreachable!("a PostgreSQL backend")
    };
    let scratch = Scratch::new();
    let generated = recording::interleaved(2, 5);
    let path = scratch.path("recording.jsonl");
    generated.recording.write(&path);
    let sink = Sink::start().await;
    sink.always("/hook", Reply::status(200));
    let config = config(&scratch, &backend, "state", &path, None, &sink);
    // The schema exists and the recording is done: a restart accepts nothing new.
    backend.start(&config).expect_success().await;
    let before = sink.received().len();

    let db = PgServer::shared().connect(url).await;
    let json: Vec<String> = (1..=20).map(|i| format!("json-{i}")).collect();
    for (i, uid) in json.iter().enumerate() {
        let message = format!("Failed node wf-{i}.train: OOMKilled");
        let event = RouterEvent {
            id: format!("id-{uid}"),
            event: EventFacts {
                uid: uid.clone(),
                namespace: "kubeflow".into(),
                reason: "WorkflowNodeFailed".into(),
                message,
                severity: "Warning".into(),
                count: 1,
                time: None,
                workflow_name: format!("wf-{i}"),
                workflow_uid: Some(format!("wf-uid-{i}")),
            },
            node: Some(NodeFacts {
                full_name: format!("wf-{i}.train"),
                name: "train".into(),
                message: Some("OOMKilled".into()),
                ..NodeFacts::default()
            }),
            workflow: None,
            synthesized: false,
            task: None,
            plumbing: false,
            attempt: 1,
            cluster: None,
        };
        let seq: i64 = db
            .query_one(
                "INSERT INTO events (seq, accepted_ms, ordering_key, event) \
                 VALUES (nextval('event_seq'), $1, $2, $3) RETURNING seq",
                &[
                    &now_ms(),
                    &event.ordering_key(),
                    &serde_json::to_vec(&event).unwrap(),
                ],
            )
            .await
            .unwrap()
            .get(0);
        db.execute(
            "INSERT INTO pending (endpoint, seq) VALUES ('hook', $1)",
            &[&seq],
        )
        .await
        .unwrap();
    }
    db.execute("UPDATE meta SET schema_version = 3", &[])
        .await
        .unwrap();

    let mut router = backend.start(&config);
    wait_for_distinct(&sink, before + json.len(), &router).await;
    router.expect_success().await;
    // The replay, finished before, runs again (its events keep their webhook-ids).
    let (stored, replayed): (HashSet<String>, HashSet<String>) = sink.received()[before..]
        .iter()
        .map(|r| r.json()["EventUid"].as_str().unwrap().to_owned())
        .partition(|uid| uid.starts_with("json-"));
    assert_eq!(stored, json.iter().cloned().collect::<HashSet<_>>());
    assert!(replayed.is_subset(&generated.event_uids.iter().cloned().collect()));
    let version: i32 = db
        .query_one("SELECT schema_version FROM meta", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        version, 4,
        "the upgraded router took the database to version 4"
    );
    let left: i64 = db
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "delivered events are released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_a_newer_schema_is_refused() {
    let backend = Backend::postgres().await;
    let Backend::Postgres(url) = &backend else {
        unreachable!("a PostgreSQL backend")
    };
    PgServer::shared()
        .connect(url)
        .await
        .batch_execute(
            "CREATE TABLE meta (id smallint PRIMARY KEY CHECK (id = 1), \
             schema_version integer NOT NULL, last_commit bigint NOT NULL DEFAULT 0); \
             INSERT INTO meta (id, schema_version) VALUES (1, 5)",
        )
        .await
        .unwrap();
    let scratch = Scratch::new();
    let sink = Sink::start().await;
    let recording = support::quickstart_recording();
    let config = config(&scratch, &backend, "state", &recording, None, &sink);
    let mut router = backend.start(&config);
    let code = router.exit_code(PATIENCE).await;
    let logs = router.logs();
    assert_ne!(code, 0, "{logs}");
    assert!(
        logs.contains("schema version 5, newer than this router's 4"),
        "{logs}"
    );
    assert!(sink.received().is_empty());
}

/// The router's connection stalls (a network that drops everything) while its write
/// transaction holds the outbox's lock: the server ends the idle transaction within seconds,
/// so that the lock does not hold up another process's writes until the dead peer is noticed,
/// hours later; once the network is back the router goes on, and every event is delivered once.
/// The router learns of the ended session either as the server's `FATAL` reply to its next
/// statement or as a closed connection, depending on timing: both are tried again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_stalled_mid_transaction_releases_the_outbox_lock_and_loses_nothing() {
    let server = PgServer::shared();
    let url = server.database().await;
    let proxy = Proxy::start(&url).await;
    let run = PacedRun::start(proxy.url.clone()).await;

    // Hold the router's next write: its transaction takes the outbox's lock (the `meta` row)
    // and then waits for `events`.
    let mut admin = server.connect(&url).await;
    let blocker = admin.transaction().await.unwrap();
    blocker
        .batch_execute("LOCK TABLE events IN EXCLUSIVE MODE")
        .await
        .unwrap();
    let observer = server.connect(&url).await;
    wait_for_router_session(&observer, "state = 'active' AND wait_event_type = 'Lock'").await;
    // The network goes; then the router's statement goes through, and its session waits for
    // a next statement that never comes, holding the lock.
    proxy.stall(true);
    blocker.commit().await.unwrap();
    wait_for_router_session(&observer, "state = 'idle in transaction'").await;

    let stalled = Instant::now();
    let mut other = server.connect(&url).await;
    let writer = other.transaction().await.unwrap();
    writer
        .batch_execute("SET LOCAL lock_timeout = '30s'")
        .await
        .unwrap();
    let locked = writer
        .query_one("SELECT last_commit FROM meta WHERE id = 1 FOR UPDATE", &[])
        .await;
    assert!(
        locked.is_ok(),
        "another process still waits for the stalled router's lock: {locked:?}"
    );
    eprintln!(
        "the stalled router's lock was released after {:?}",
        stalled.elapsed()
    );
    writer.rollback().await.unwrap();

    proxy.stall(false);
    let logs = run.finish().await;
    // The server ended the stalled session: the write was tried again on a new one.
    assert!(
        logs.contains("cannot write to PostgreSQL, trying again"),
        "{logs}"
    );
}

/// A router on the database at `url` replaying 600 events at 100 a second, so that events are
/// still being accepted while a test meddles with the database; started once 50 arrived.
struct PacedRun {
    _scratch: Scratch,
    generated: recording::Generated,
    sink: Sink,
    router: RouterProcess,
}

impl PacedRun {
    async fn start(url: String) -> Self {
        let backend = Backend::Postgres(url);
        let scratch = Scratch::new();
        let generated = recording::interleaved(20, 30);
        let path = scratch.path("recording.jsonl");
        generated.recording.write(&path);
        let sink = Sink::start().await;
        let config = config(&scratch, &backend, "state", &path, Some(100.0), &sink);
        let router = backend.start(&config);
        wait_for_distinct(&sink, 50, &router).await;
        Self {
            _scratch: scratch,
            generated,
            sink,
            router,
        }
    }

    /// Waits for the router to finish, checks that every event arrived once and that the
    /// URL's password was never printed; returns the router's logs.
    async fn finish(mut self) -> String {
        self.router.expect_success().await;
        let repeats = every_event_once_by_id(&self.sink.received(), &self.generated.event_uids);
        eprintln!("{} events, {repeats} repeated", self.generated.events());
        let logs = self.router.logs();
        assert!(!logs.contains(PASSWORD), "{logs}");
        logs
    }
}

/// Waits until a session of the router meets `condition` (on `pg_stat_activity`).
async fn wait_for_router_session(client: &tokio_postgres::Client, condition: &str) {
    let query = format!(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE application_name = 'kfp-event-router' AND {condition}"
    );
    let deadline = Instant::now() + PATIENCE;
    loop {
        let found: i64 = client.query_one(&query, &[]).await.unwrap().get(0);
        if found > 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no router session meets {condition}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A database that bounds lock waits (`lock_timeout`, often set per role on shared servers):
/// while another process holds the outbox's lock longer than that, the router's writes are
/// cut short by the server and tried again, and every event is delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_wait_the_server_cuts_short_is_tried_again() {
    let server = PgServer::shared();
    let url = server.database().await;
    let run = PacedRun::start(format!("{url}&options=-c%20lock_timeout%3D100ms")).await;

    let mut admin = server.connect(&url).await;
    let holder = admin.transaction().await.unwrap();
    holder
        .query_one("SELECT last_commit FROM meta WHERE id = 1 FOR UPDATE", &[])
        .await
        .unwrap();
    let observer = server.connect(&url).await;
    // The router's writes wait, are cut short, and wait again.
    wait_for_router_session(&observer, "state = 'active' AND wait_event_type = 'Lock'").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    holder.commit().await.unwrap();

    let logs = run.finish().await;
    assert!(
        logs.contains("lock timeout"),
        "the server cut a wait short: {logs}"
    );
}

/// The server turns read-only for a while, as a primary does while a failover demotes it:
/// the router's writes are refused, it waits and tries again on new sessions (which, behind a
/// failover's address, reach the new primary), and once writes are taken again every event
/// is delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_read_only_for_a_while_is_waited_for() {
    let server = PgServer::start();
    let url = server.database().await;
    let mut run = PacedRun::start(url.clone()).await;

    let admin = server.connect(&url).await;
    admin
        .batch_execute("SET default_transaction_read_only = off")
        .await
        .unwrap();
    // For every session whose setting is the server's: the router's, and its new ones.
    let read_only = |on: bool| {
        let admin = &admin;
        async move {
            let set = format!("ALTER SYSTEM SET default_transaction_read_only = {on}");
            admin.batch_execute(&set).await.unwrap();
            admin
                .batch_execute("SELECT pg_reload_conf()")
                .await
                .unwrap();
        }
    };
    read_only(true).await;
    let refused = Instant::now() + PATIENCE;
    while !run.router.logs().contains("read-only transaction") {
        assert!(Instant::now() < refused, "{}", run.router.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "{} delivered when writes were refused",
        distinct_ids(&run.sink)
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(run.router.is_running(), "{}", run.router.logs());
    read_only(false).await;
    run.finish().await;
}

/// The database refuses one event for good (a trigger raises an error, as a constraint or a
/// privilege taken away would): the router stops with the error, and the replay's stored
/// position is before the refused event, so that a restart tries it again rather than skipping
/// it; once the database takes it, a restart delivers every event. No later batch may commit
/// once one has failed: it would move the position past the refused event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accept_the_database_refuses_stops_the_router_before_its_position() {
    let backend = Backend::postgres().await;
    let Backend::Postgres(url) = &backend else {
        unreachable!("a PostgreSQL backend")
    };
    let scratch = Scratch::new();
    let sink = Sink::start().await;
    sink.always("/hook", Reply::status(200));
    // A first run creates the tables, for the trigger to go on.
    let first = config(
        &scratch,
        &backend,
        "first",
        &support::quickstart_recording(),
        None,
        &sink,
    );
    backend.start(&first).expect_success().await;

    let generated = recording::interleaved(20, 100);
    let path = scratch.path("recording.jsonl");
    generated.recording.write(&path);
    let refused = &generated.event_uids[1500];
    let client = PgServer::shared().connect(url).await;
    client
        .batch_execute(&format!(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
               IF position(convert_to('{refused}', 'UTF8') in NEW.event) > 0 THEN \
                 RAISE EXCEPTION 'refused by the test'; \
               END IF; \
               RETURN NEW; \
             END $$; \
             CREATE TRIGGER refuse BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION refuse()"
        ))
        .await
        .unwrap();
    let config = config(&scratch, &backend, "state", &path, None, &sink);
    let mut router = backend.start(&config);
    let code = router.exit_code(PATIENCE).await;
    let logs = router.logs();
    assert_ne!(code, 0, "{logs}");
    assert!(logs.contains("refused by the test"), "{logs}");

    // The 1-based line of the refused event, and the lines the stored position says are done.
    let text = std::fs::read_to_string(&path).unwrap();
    let refused_line = 1 + text
        .lines()
        .position(|l| l.contains(refused.as_str()))
        .unwrap();
    let key = format!("replay:{}", path.canonicalize().unwrap().display());
    let position: String = client
        .query_opt("SELECT value FROM checkpoints WHERE key = $1", &[&key])
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("the replay's position is stored; logs:\n{logs}"))
        .get(0);
    let done: usize = position.split(':').next().unwrap().parse().unwrap();
    assert!(
        done > 0 && done < refused_line,
        "earlier batches are stored, the refused event's line is not done: position {position}, \
         the event is on line {refused_line}"
    );

    client
        .batch_execute("DROP TRIGGER refuse ON events")
        .await
        .unwrap();
    backend.start(&config).expect_success().await;
    let received = sink.received();
    let ours: Vec<Received> = received
        .into_iter()
        .filter(|r| {
            r.json()["EventUid"]
                .as_str()
                .is_some_and(|u| u.starts_with("uid-wf-"))
        })
        .collect();
    every_event_once_by_id(&ours, &generated.event_uids);
}
