//! An endpoint removed from the config keeps its undelivered events for
//! `state.removed_endpoint_grace`: removed and restored by reloads within it, it gets every
//! one, in order; when the grace period ends they are dropped with a warning naming the
//! endpoint and the count; a restart while it is removed keeps the clock.
//!
//! Each test replays a recording to endpoints `a` (up) and `b` (down, so everything waits for
//! it), then edits the config file as an operator would.

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::recording::{self, Generated};
use support::router::{PATIENCE, RouterProcess, Scratch, metric, toml_path, toml_str};
use support::sink::{Received, Reply, Sink};

/// The backlog gauge of endpoint `b`.
const BACKLOG_B: &str = "kfp_event_router_removed_endpoint_backlog{endpoint=\"b\"}";

/// One test's recording, sink and config file.
struct Setup {
    scratch: Scratch,
    generated: Generated,
    sink: Sink,
    grace: &'static str,
}

impl Setup {
    /// 100 events of two workflows, `b` down, a grace period of `grace`.
    async fn new(grace: &'static str) -> Self {
        let scratch = Scratch::new();
        let generated = recording::interleaved(2, 50);
        generated.recording.write(&scratch.path("recording.jsonl"));
        let sink = Sink::start().await;
        sink.always("/b", Reply::status(503));
        Self {
            scratch,
            generated,
            sink,
            grace,
        }
    }

    /// Writes `router.toml` (atomically, as editors and `kubectl cp` do) with endpoint `a`,
    /// and `b` too when `with_b`; returns its path.
    fn write_config(&self, with_b: bool) -> PathBuf {
        let mut text = format!(
            "[source]\nkind = \"replay\"\npath = {}\n\n[state]\ndir = {}\nremoved_endpoint_grace = \"{}\"\n\n\
             [server]\nlisten = \"127.0.0.1:0\"\n\n",
            toml_path(&self.scratch.path("recording.jsonl")),
            toml_path(&self.scratch.state_dir()),
            self.grace,
        );
        let endpoints: &[&str] = if with_b { &["a", "b"] } else { &["a"] };
        for name in endpoints {
            text.push_str(&format!(
                "[[endpoints]]\nname = \"{name}\"\nurl = {}\nformat = \"extended\"\n\n",
                toml_str(&self.sink.url(&format!("/{name}")))
            ));
        }
        let path = self.scratch.path("router.toml");
        let tmp = self.scratch.path(".router.toml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        path
    }

    /// Starts the router with both endpoints and waits until `a` has every event, so that `b`
    /// has all of them waiting.
    async fn start_with_a_backlog_for_b(&self) -> RouterProcess {
        let router = RouterProcess::start(&self.write_config(true));
        self.sink
            .wait_for("/a", self.generated.events(), PATIENCE)
            .await;
        self.sink.wait_for("/b", 1, PATIENCE).await;
        router
    }
}

/// The node names each workflow received, in arrival order.
fn per_workflow<'a>(
    requests: impl IntoIterator<Item = &'a Received>,
) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for request in requests {
        let payload = request.json();
        out.entry(payload["WorkflowName"].as_str().unwrap().to_owned())
            .or_default()
            .push(payload["NodeName"].as_str().unwrap().to_owned());
    }
    out
}

/// The log record whose message contains `needle`; panics after [`PATIENCE`].
async fn wait_for_record(router: &mut RouterProcess, needle: &str) -> Value {
    router.wait_for_log(needle, PATIENCE).await;
    router
        .log_records()
        .into_iter()
        .find(|r| {
            r["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(needle))
        })
        .expect("the line is a JSON record")
}

/// Waits until `removed` plus `after` has passed.
async fn sleep_until(removed: Instant, after: Duration) {
    tokio::time::sleep((removed + after).saturating_duration_since(Instant::now())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_removed_then_restored_within_its_grace_period_gets_every_event_in_order() {
    let setup = Setup::new("1h").await;
    let mut router = setup.start_with_a_backlog_for_b().await;

    // A half-edited config drops `b`: its worker stops, its backlog stays.
    setup.write_config(false);
    let kept = wait_for_record(&mut router, "keeping its").await;
    assert_eq!(kept["fields"]["endpoint"], "b", "{kept}");
    assert_eq!(kept["fields"]["pending"], 100, "{kept}");
    let metrics = router.metrics().await;
    assert_eq!(metric(&metrics, BACKLOG_B), Some(100.0), "{metrics}");

    // The edit is finished: `b` is back (and up), and resumes where it was.
    let back = Instant::now();
    setup.sink.always("/b", Reply::status(200));
    setup.write_config(true);
    router.expect_success().await;
    let after: Vec<Received> = setup
        .sink
        .received_on("/b")
        .into_iter()
        .filter(|r| r.at >= back)
        .collect();
    assert_eq!(
        per_workflow(&after),
        setup.generated.order,
        "b got every event once, in order"
    );
    assert!(
        router
            .logs()
            .contains("configured again within its grace period"),
        "{}",
        router.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_grace_period_ends_the_backlog_is_dropped_with_a_warning() {
    let setup = Setup::new("1s").await;
    let mut router = setup.start_with_a_backlog_for_b().await;
    setup.write_config(false);
    let dropped = wait_for_record(&mut router, "undelivered events for it dropped").await;
    assert_eq!(dropped["level"], "WARN", "{dropped}");
    assert_eq!(dropped["fields"]["endpoint"], "b", "{dropped}");
    assert_eq!(dropped["fields"]["dropped"], 100, "{dropped}");
    // Nothing waits any more: the replay's router is done.
    router.expect_success().await;
    let logs = router.logs();
    assert!(
        !logs.contains(&setup.sink.url("/b")),
        "no endpoint URL in the logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_while_an_endpoint_is_removed_keeps_the_clock() {
    let setup = Setup::new("6s").await;
    let mut router = setup.start_with_a_backlog_for_b().await;
    setup.write_config(false);
    wait_for_record(&mut router, "keeping its").await;
    let removed = Instant::now();
    router.terminate();
    router.expect_success().await;

    // A restart within the grace period, `b` still missing: the backlog is still kept.
    sleep_until(removed, Duration::from_millis(1500)).await;
    let mut router = RouterProcess::start(&setup.write_config(false));
    let kept = wait_for_record(&mut router, "keeping its").await;
    assert_eq!(kept["fields"]["pending"], 100, "{kept}");
    let metrics = router.metrics().await;
    assert_eq!(metric(&metrics, BACKLOG_B), Some(100.0), "{metrics}");
    router.terminate();
    router.expect_success().await;

    // After the grace period counted from the removal (not from the restart), `b` comes back
    // up: too late, its backlog is dropped rather than sent.
    sleep_until(removed, Duration::from_millis(6500)).await;
    let restarted = Instant::now();
    setup.sink.always("/b", Reply::status(200));
    let mut router = RouterProcess::start(&setup.write_config(true));
    let dropped = wait_for_record(&mut router, "undelivered events for it dropped").await;
    assert_eq!(dropped["fields"]["dropped"], 100, "{dropped}");
    router.expect_success().await;
    let sent = setup
        .sink
        .received_on("/b")
        .into_iter()
        .filter(|r| r.at >= restarted)
        .count();
    assert_eq!(sent, 0, "nothing of the old backlog sent");
}
