use std::sync::Arc;

use super::*;

/// A record of `endpoint` for event `n`, with one attempt.
fn record(endpoint: &str, n: u32, outcome: Outcome) -> Record {
    Record {
        endpoint: endpoint.into(),
        webhook_id: format!("msg_{n}"),
        time_ms: u64::from(n),
        event_time: None,
        run_id: Some("run-1".into()),
        workflow: "wf".into(),
        task: None,
        reason: "WorkflowRunning".into(),
        message: String::new(),
        outcome,
        note: None,
        attempts: vec![Attempt {
            at_ms: u64::from(n),
            millis: 3,
            status: Some(500),
            class: "5xx".into(),
            error: None,
        }],
        request: None,
        response: None,
    }
}

/// A redb outbox and its history, keeping `keep` records per endpoint, in a new folder.
fn open_keeping(keep: usize) -> (tempfile::TempDir, Outbox, History) {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open_redb(&dir.path().join("outbox.redb")).unwrap();
    let history = History::open(dir.path(), &outbox, keep, Arc::new(Metrics::new())).unwrap();
    (dir, outbox, history)
}

fn ids(records: &[Record], endpoint: &str) -> Vec<String> {
    records
        .iter()
        .filter(|r| r.endpoint == endpoint)
        .map(|r| r.webhook_id.clone())
        .collect()
}

#[tokio::test]
async fn keeps_the_newest_per_endpoint_and_survives_a_reopen() {
    let (dir, outbox, history) = open_keeping(3);
    for n in 1..=5 {
        history.append(record("a", n, Outcome::Delivered));
    }
    history.append(record("b", 9, Outcome::Delivered));
    // A later change of msg_4 moves it to the front and adds its attempt.
    history.append(record("a", 4, Outcome::DeadLettered));
    history.flush().await;
    let all = history.all().await.unwrap();
    assert_eq!(ids(&all, "a"), ["msg_4", "msg_5", "msg_3"]);
    assert_eq!(ids(&all, "b"), ["msg_9"]);
    let four = &all[0];
    assert_eq!(four.outcome, Outcome::DeadLettered);
    assert_eq!(four.attempts.len(), 2);
    drop(history);

    // The writer lets go of the file once its senders are gone.
    let reopened = loop {
        match History::open(dir.path(), &outbox, 3, Arc::new(Metrics::new())) {
            Ok(history) => break history,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    };
    assert_eq!(reopened.all().await.unwrap(), all);
}

#[tokio::test]
async fn without_a_history_nothing_is_kept() {
    let history = History::default();
    assert!(!history.is_on());
    history.append(record("a", 1, Outcome::Delivered));
    history.flush().await;
    assert!(history.all().await.unwrap().is_empty());
}

#[test]
fn a_full_queue_drops_and_counts_what_overflows() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    // No writer takes from the queue: it fills up.
    let (writes, _queue) = std::sync::mpsc::sync_channel(QUEUE);
    let history = History {
        inner: Some(Arc::new(Inner {
            backend: Backend::Redb(store::Store::open(&dir.path().join(FILE_NAME)).unwrap()),
            writes,
            metrics: Arc::clone(&metrics),
        })),
    };
    for n in 0..QUEUE as u32 {
        history.append(record("a", n, Outcome::Delivered));
    }
    assert_eq!(
        metrics.console_history_dropped.get(),
        0,
        "the queue holds {QUEUE}"
    );
    for n in 0..3 {
        history.append(record("a", n, Outcome::Delivered));
    }
    assert_eq!(metrics.console_history_dropped.get(), 3);
}

#[tokio::test]
async fn a_batch_past_keep_trims_the_older_records_it_changed() {
    let (_dir, _outbox, history) = open_keeping(3);
    for n in 1..=3 {
        history.append(record("a", n, Outcome::Delivered));
    }
    history.flush().await;
    // msg_2 changes again, then three newer deliveries push it out, with msg_1 and msg_3.
    for n in [2, 4, 5, 6] {
        history.append(record("a", n, Outcome::Delivered));
    }
    history.flush().await;
    let all = history.all().await.unwrap();
    assert_eq!(ids(&all, "a"), ["msg_6", "msg_5", "msg_4"]);
}

#[tokio::test]
async fn what_is_written_is_on_disk_within_a_second_without_a_flush() {
    let (dir, _outbox, history) = open_keeping(3);
    history.append(record("a", 1, Outcome::Delivered));
    // A copy of the file is what a router killed at that moment would leave: the commits made
    // durable, and none since.
    let copies = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let mut seen = Vec::new();
    for attempt in 0.. {
        let copy = copies.path().join(format!("{attempt}.redb"));
        std::fs::copy(dir.path().join(FILE_NAME), &copy).unwrap();
        seen = store::Store::open(&copy).unwrap().all().unwrap();
        if !seen.is_empty() || started.elapsed() > std::time::Duration::from_secs(10) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(ids(&seen, "a"), ["msg_1"]);
    drop(history);
}
