//! Durability: the router is killed with SIGKILL (`kill -9`) while thousands of deliveries are
//! pending, twice, and restarted on the same state. Every event must reach the sink at least
//! once; a repeat is only ever a redelivery of the same webhook-id and payload, and repeats are
//! few. Each test runs with both state backends: redb files, and a real PostgreSQL server.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use support::postgres::Backend;
use support::recording;
use support::router::{PATIENCE, Scratch, toml_str};
use support::sink::{Reply, Sink};

/// Distinct webhook-ids received so far.
fn distinct_ids(sink: &Sink) -> usize {
    sink.received()
        .iter()
        .map(|r| r.header("webhook-id").to_owned())
        .collect::<HashSet<_>>()
        .len()
}

/// Waits until `n` distinct events have been received.
async fn wait_for_distinct(sink: &Sink, n: usize) {
    let deadline = Instant::now() + PATIENCE;
    while distinct_ids(sink) < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} distinct events",
            distinct_ids(sink)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_twice_mid_stream_loses_no_event_redb() {
    kill_9_twice_mid_stream_loses_no_event(Backend::Redb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_twice_mid_stream_loses_no_event_postgres() {
    kill_9_twice_mid_stream_loses_no_event(Backend::postgres().await).await;
}

async fn kill_9_twice_mid_stream_loses_no_event(backend: Backend) {
    let scratch = Scratch::new();
    let generated = recording::interleaved(30, 100);
    let total = generated.events();
    let path = scratch.path("recording.jsonl");
    generated.recording.write(&path);
    let sink = Sink::start().await;
    sink.always("/hook", Reply::status(200).after(Duration::from_millis(20)));
    let config = scratch.write(
        "router.toml",
        &format!(
            "{}[[endpoints]]\nname = \"hook\"\nurl = {}\nformat = \"extended\"\nconcurrency = 4\n",
            backend.tables(scratch.tables(&path, None)),
            toml_str(&sink.url("/hook"))
        ),
    );

    // First kill: early in the stream.
    let mut router = backend.start(&config);
    wait_for_distinct(&sink, 300).await;
    assert!(router.is_running());
    router.kill();
    let at_first_kill = distinct_ids(&sink);
    assert!(
        at_first_kill < total,
        "killed with deliveries pending ({at_first_kill} of {total})"
    );

    // Second kill: after the restarted router has delivered for a while (at most 200
    // requests/s go through 4 slots of 20 ms, so this takes over 7 s).
    let mut router = backend.start(&config);
    wait_for_distinct(&sink, at_first_kill + 1500).await;
    assert!(router.is_running());
    router.kill();
    let at_second_kill = distinct_ids(&sink);
    assert!(
        at_second_kill < total,
        "killed with deliveries pending ({at_second_kill} of {total})"
    );
    let before_last_start: HashSet<String> = sink
        .received()
        .iter()
        .map(|r| r.header("webhook-id").to_owned())
        .collect();
    let received_before_last_start = sink.received().len();

    // Third start: runs to the end.
    let mut router = backend.start(&config);
    router.expect_success().await;

    let received = sink.received();
    let mut by_id: HashMap<String, HashSet<Vec<u8>>> = HashMap::new();
    let mut uids = HashSet::new();
    for r in &received {
        by_id
            .entry(r.header("webhook-id").to_owned())
            .or_default()
            .insert(r.body.to_vec());
        uids.insert(r.json()["EventUid"].as_str().unwrap().to_owned());
    }
    let expected: HashSet<String> = generated.event_uids.iter().cloned().collect();
    assert_eq!(uids, expected, "every event arrived, none invented");
    assert_eq!(by_id.len(), total, "one webhook-id per event");
    for (id, bodies) in &by_id {
        assert_eq!(bodies.len(), 1, "{id}: a repeat carries the same payload");
    }

    // The restarted replay resumed from its checkpoint instead of accepting the file again.
    let stopped = router
        .log_records()
        .into_iter()
        .find(|r| r["fields"]["message"] == "router stopped")
        .expect("the router logs its summary");
    let accepted_last = stopped["fields"]["events"].as_u64().unwrap();
    assert!(
        accepted_last as usize <= total - at_first_kill,
        "the last run accepted {accepted_last} events, though {at_first_kill} had been delivered"
    );
    // Delivery progress is made durable as it goes, not only with new events: what the second
    // run delivered well before its kill is not delivered again.
    let repeats_after_last_start = received[received_before_last_start..]
        .iter()
        .filter(|r| before_last_start.contains(r.header("webhook-id")))
        .count();
    let new_in_second_run = at_second_kill - at_first_kill;
    assert!(
        repeats_after_last_start < new_in_second_run,
        "the last run repeated {repeats_after_last_start} deliveries; the second run had made \
         {new_in_second_run} new ones before its kill"
    );
    // Completions are made durable within milliseconds, in groups: only the deliveries of the
    // last moments before each kill (and those in flight) are repeated. A stalled disk sync at
    // the kill widens that moment, hence the margin.
    let repeats = received.len() - total;
    let fraction = repeats as f64 / total as f64;
    eprintln!(
        "{}: {total} events, {} requests: {repeats} delivered twice ({:.2}%); \
         {received_before_last_start} requests before the last start, \
         {repeats_after_last_start} repeated after it",
        backend.name(),
        received.len(),
        fraction * 100.0
    );
    assert!(
        fraction < 0.05,
        "{repeats} of {total} events were delivered twice ({:.2}%)",
        fraction * 100.0
    );
    assert!(!router.logs().contains(support::postgres::PASSWORD));
}

/// A replay line that is one `List` of thousands of Events is accepted in several outbox
/// transactions: a `kill -9` between two of them, then a restart, still delivers every Event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_inside_a_list_line_loses_no_event_redb() {
    kill_9_inside_a_list_line_loses_no_event(Backend::Redb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_inside_a_list_line_loses_no_event_postgres() {
    kill_9_inside_a_list_line_loses_no_event(Backend::postgres().await).await;
}

async fn kill_9_inside_a_list_line_loses_no_event(backend: Backend) {
    let scratch = Scratch::new();
    // The Workflow lines, then one `List` line of all 2,000 Events.
    let generated = recording::interleaved(10, 200);
    let total = generated.events();
    let mut lines = generated.recording.lines.clone();
    let events: Vec<serde_json::Value> = lines
        .split_off(generated.workflows.len())
        .into_iter()
        .map(|line| line["object"].clone())
        .collect();
    let mut list = recording::Recording { lines };
    list.push(serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": events }));
    let path = scratch.path("recording.jsonl");
    list.write(&path);
    let sink = Sink::start().await;
    sink.always("/hook", Reply::status(200));
    // Paced, so that the List is accepted a few events per transaction, over seconds.
    let config = scratch.write(
        "router.toml",
        &format!(
            "{}[[endpoints]]\nname = \"hook\"\nurl = {}\nformat = \"extended\"\nconcurrency = 4\n",
            backend.tables(scratch.tables(&path, Some(400.0))),
            toml_str(&sink.url("/hook"))
        ),
    );

    let mut router = backend.start(&config);
    wait_for_distinct(&sink, 100).await;
    assert!(router.is_running());
    router.kill();
    assert!(
        !router.logs().contains("source finished"),
        "killed while the List was being accepted; logs:\n{}",
        router.logs()
    );
    let at_kill = distinct_ids(&sink);

    let mut router = backend.start(&config);
    router.expect_success().await;

    let uids: HashSet<String> = sink
        .received()
        .iter()
        .map(|r| r.json()["EventUid"].as_str().unwrap().to_owned())
        .collect();
    let expected: HashSet<String> = generated.event_uids.iter().cloned().collect();
    let missing = expected.difference(&uids).count();
    assert_eq!(
        missing, 0,
        "{missing} of {total} events never arrived ({at_kill} had before the kill)"
    );
    assert_eq!(uids, expected, "every event arrived, none invented");
}
