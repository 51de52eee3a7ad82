//! Tests of the dead letters: the file's rotation, listing, filters and redrive.

use super::*;
use crate::model::event::EventFacts;

fn letter_for(event: &RouterEvent) -> DeadLetter<'_> {
    DeadLetter {
        time: "2026-01-01T00:00:00Z".into(),
        endpoint: "hook",
        webhook_id: "msg_1",
        attempts: 3,
        last_error: "HTTP 500",
        payload: Some("{}"),
        event,
    }
}

#[tokio::test]
async fn the_file_is_rotated_at_its_limit_and_four_old_ones_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let letters = DeadLetters::file(path.clone(), 1000);
    let mut written = 0;
    for i in 0..40 {
        let event = RouterEvent::bare(format!("e{i}"), EventFacts::default());
        letters.write(&letter_for(&event)).await.unwrap();
        written += 1;
    }
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
    let mut kept = 0;
    for name in [
        FILE_NAME.to_owned(),
        format!("{FILE_NAME}.1"),
        format!("{FILE_NAME}.2"),
        format!("{FILE_NAME}.3"),
        format!("{FILE_NAME}.4"),
    ] {
        let text = read(&name);
        assert!(
            !text.is_empty() && text.len() <= 1000,
            "{name}: {} bytes",
            text.len()
        );
        for line in text.lines() {
            let letter: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(letter["endpoint"], "hook");
        }
        kept += text.lines().count();
    }
    assert!(!dir.path().join(format!("{FILE_NAME}.5")).exists());
    assert!(kept < written, "the oldest letters were dropped");
    // The newest letter is the last line of the current file.
    let last: serde_json::Value =
        serde_json::from_str(read(FILE_NAME).lines().last().unwrap()).unwrap();
    assert_eq!(last["event"]["id"], "e39");
    // A line of .1 is older than every line of the current file.
    let older: serde_json::Value =
        serde_json::from_str(read(&format!("{FILE_NAME}.1")).lines().last().unwrap()).unwrap();
    let first: serde_json::Value =
        serde_json::from_str(read(FILE_NAME).lines().next().unwrap()).unwrap();
    let n = |v: &serde_json::Value| v["event"]["id"].as_str().unwrap()[1..].parse::<u32>();
    assert!(n(&older).unwrap() < n(&first).unwrap());
}

fn event(id: &str, reason: &str) -> RouterEvent {
    let facts = EventFacts {
        reason: reason.into(),
        workflow_name: "wf".into(),
        ..EventFacts::default()
    };
    RouterEvent::bare(id, facts)
}

/// Writes a letter of `event` for `endpoint`, given up at `time`.
async fn give_up(letters: &DeadLetters, endpoint: &str, event: &RouterEvent, time: &str) {
    let webhook_id = format!("msg_{}", event.id);
    let letter = DeadLetter {
        time: time.into(),
        endpoint,
        webhook_id: &webhook_id,
        attempts: 1,
        last_error: "HTTP 400 Bad Request",
        payload: Some("{}"),
        event,
    };
    letters.write(&letter).await.unwrap();
}

#[test]
fn ids_are_short_stable_and_differ_per_endpoint() {
    let id = letter::letter_id("hook", "msg_1");
    assert_eq!(id, letter::letter_id("hook", "msg_1"));
    assert_ne!(id, letter::letter_id("other", "msg_1"));
    assert_ne!(id, letter::letter_id("hook", "msg_2"));
    assert!(id.starts_with("dl_") && id.len() == 19, "{id}");
}

#[test]
fn since_and_until_read_times_and_durations_ago() {
    use k8s_openapi::jiff::Timestamp;
    let now: Timestamp = "2026-05-01T12:00:00Z".parse().unwrap();
    assert_eq!(
        parse_time("2h", now).unwrap(),
        "2026-05-01T10:00:00Z".parse::<Timestamp>().unwrap()
    );
    assert_eq!(
        parse_time("2026-04-01T00:00:00Z", now).unwrap(),
        "2026-04-01T00:00:00Z".parse::<Timestamp>().unwrap()
    );
    assert!(parse_time("yesterday", now).is_err());
}

#[tokio::test]
async fn letters_are_listed_filtered_paged_and_redriven_once() {
    let dir = tempfile::tempdir().unwrap();
    let letters = DeadLetters::file(dir.path().join(FILE_NAME), ROTATE_AT);
    let outbox = crate::state::Outbox::open_redb(&dir.path().join("outbox.redb")).unwrap();
    let (a, b, c) = (
        event("a", "WorkflowFailed"),
        event("b", "WorkflowNodeFailed"),
        event("c", "WorkflowFailed"),
    );
    give_up(&letters, "hook", &a, "2026-05-01T10:00:00Z").await;
    give_up(&letters, "hook", &b, "2026-05-01T11:00:00Z").await;
    give_up(&letters, "gone", &c, "2026-05-01T12:00:00Z").await;

    let all = letters.list(&Filter::default(), None, None).await.unwrap();
    assert_eq!(all.dead_letters.len(), 3);
    assert_eq!(all.next, None);
    let failed = Filter {
        reason: Some("WorkflowFailed".into()),
        ..Filter::default()
    };
    let page = letters.list(&failed, None, None).await.unwrap();
    let ids: Vec<&str> = page
        .dead_letters
        .iter()
        .map(|s| s.webhook_id.as_str())
        .collect();
    assert_eq!(ids, ["msg_a", "msg_c"]);
    let later = Filter {
        since: Some("2026-05-01T10:30:00Z".parse().unwrap()),
        until: Some("2026-05-01T11:30:00Z".parse().unwrap()),
        ..Filter::default()
    };
    assert_eq!(
        letters.list(&later, None, None).await.unwrap().dead_letters[0].webhook_id,
        "msg_b"
    );
    // Pages of one.
    let first = letters
        .list(&Filter::default(), None, Some(1))
        .await
        .unwrap();
    let second = letters
        .list(&Filter::default(), first.next.as_deref(), Some(2))
        .await
        .unwrap();
    assert_eq!(first.dead_letters[0].webhook_id, "msg_a");
    assert_eq!(
        second
            .dead_letters
            .iter()
            .map(|s| s.webhook_id.as_str())
            .collect::<Vec<_>>(),
        ["msg_b", "msg_c"]
    );
    assert_eq!(second.next, None);

    // Redrive what failed: `gone` is not configured, so its letter stays.
    let selection = Selection::Matching(failed.clone());
    let report = letters
        .redrive(&outbox, &selection, |e| e == "hook")
        .await
        .unwrap();
    assert_eq!(report.redriven, 1);
    assert_eq!(report.by_endpoint["hook"], 1);
    assert_eq!(report.refused.len(), 1);
    assert_eq!(report.refused[0].endpoint, "gone");
    let pending = outbox.pending("hook", 0, 10).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].event.id, "a");
    assert!(outbox.pending("gone", 0, 10).unwrap().is_empty());
    let left = letters.list(&Filter::default(), None, None).await.unwrap();
    assert_eq!(
        left.dead_letters
            .iter()
            .map(|s| s.webhook_id.as_str())
            .collect::<Vec<_>>(),
        ["msg_b", "msg_c"]
    );
    // A second redrive finds nothing more to do.
    let again = letters
        .redrive(&outbox, &selection, |e| e == "hook")
        .await
        .unwrap();
    assert_eq!(again.redriven, 0);
    assert_eq!(outbox.pending("hook", 0, 10).unwrap().len(), 1);

    // By id, and an id that names nothing.
    let b_id = left.dead_letters[0].id.clone();
    assert_eq!(letters.get(&b_id).await.unwrap().unwrap().event.id, "b");
    let by_id = Selection::Ids(vec![b_id.clone(), "dl_0000000000000000".into()]);
    let report = letters.redrive(&outbox, &by_id, |_| true).await.unwrap();
    assert_eq!(report.redriven, 1);
    assert_eq!(report.not_found, ["dl_0000000000000000"]);
    assert!(letters.get(&b_id).await.unwrap().is_none());
    outbox.close().await.unwrap();
}
