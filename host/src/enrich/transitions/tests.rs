use serde_json::json;

use super::*;

fn workflow(phase: &str, nodes: serde_json::Value, message: Option<&str>) -> Workflow {
    serde_json::from_value(json!({
        "metadata": {"name": "wf", "namespace": "ns", "uid": "uid-1"},
        "status": {"phase": phase, "startedAt": "2026-11-20T10:00:00Z",
                   "finishedAt": if phase == "Running" { None } else { Some("2026-11-20T10:05:00Z") },
                   "message": message, "nodes": nodes}
    }))
    .unwrap()
}

fn node(id: &str, name: &str, phase: &str, started: &str) -> (String, serde_json::Value) {
    (
        id.to_owned(),
        json!({"id": id, "name": name, "phase": phase, "type": "Pod", "startedAt": started}),
    )
}

fn nodes(list: &[(String, serde_json::Value)]) -> serde_json::Value {
    serde_json::Value::Object(list.iter().cloned().collect())
}

fn reasons(ts: &[Transition]) -> Vec<String> {
    ts.iter()
        .map(|t| format!("{} {}", t.reason, t.message))
        .collect()
}

#[test]
fn a_run_yields_the_events_argo_records_once_each() {
    let mut t = Transitions::default();
    let a = node("wf-1", "wf.a", "Running", "2026-11-20T10:00:01Z");
    let first = t.observe(
        &workflow("Running", nodes(std::slice::from_ref(&a)), None),
        None,
    );
    assert_eq!(
        reasons(&first),
        [
            "WorkflowRunning Workflow Running",
            "WorkflowNodeRunning Running node wf.a"
        ]
    );

    let again = t.observe(&workflow("Running", nodes(&[a]), None), None);
    assert!(again.is_empty(), "no change, nothing new: {again:?}");

    let a_done = node("wf-1", "wf.a", "Succeeded", "2026-11-20T10:00:01Z");
    let (id, mut b) = node("wf-2", "wf.b", "Failed", "2026-11-20T10:00:02Z");
    b["message"] = json!("Error (exit code 1)");
    let update = t.observe(
        &workflow(
            "Running",
            nodes(&[a_done.clone(), (id.clone(), b.clone())]),
            None,
        ),
        None,
    );
    assert_eq!(
        reasons(&update),
        [
            "WorkflowNodeSucceeded Succeeded node wf.a",
            "WorkflowNodeRunning Running node wf.b",
            "WorkflowNodeFailed Failed node wf.b: Error (exit code 1)",
        ]
    );
    assert_eq!(update[2].severity, "Warning");
    assert_eq!(update[1].node_id.as_deref(), Some("wf-2"));

    let end = t.observe(
        &workflow(
            "Failed",
            nodes(&[a_done, (id, b)]),
            Some("child 'wf-2' failed"),
        ),
        None,
    );
    assert_eq!(reasons(&end), ["WorkflowFailed child 'wf-2' failed"]);
}

#[test]
fn pending_skipped_and_omitted_follow_argo() {
    let mut t = Transitions::default();
    let pending = node("n1", "wf.later", "Pending", "2026-11-20T10:00:01Z");
    let skipped = node("n2", "wf.skipped", "Skipped", "2026-11-20T10:00:01Z");
    let first = t.observe(&workflow("Running", nodes(&[pending, skipped]), None), None);
    assert_eq!(
        reasons(&first),
        ["WorkflowRunning Workflow Running"],
        "new Pending/Skipped nodes have no event"
    );

    let omitted = node("n1", "wf.later", "Omitted", "2026-11-20T10:00:01Z");
    let second = t.observe(&workflow("Running", nodes(&[omitted]), None), None);
    assert_eq!(
        reasons(&second),
        ["WorkflowNodeOmitted Omitted node wf.later"]
    );
}

#[test]
fn a_node_seen_only_completed_gets_its_running_event_first() {
    let mut t = Transitions::default();
    let done = node("n1", "wf.fast", "Succeeded", "2026-11-20T10:00:01Z");
    let ts = t.observe(&workflow("Succeeded", nodes(&[done]), None), None);
    assert_eq!(
        reasons(&ts),
        [
            "WorkflowRunning Workflow Running",
            "WorkflowNodeRunning Running node wf.fast",
            "WorkflowNodeSucceeded Succeeded node wf.fast",
            "WorkflowSucceeded Workflow completed",
        ]
    );
}

#[test]
fn a_real_event_and_the_status_report_a_transition_once() {
    let mut t = Transitions::default();
    assert!(
        t.record("uid-1", None, "WorkflowRunning"),
        "first report is news"
    );
    assert!(t.record("uid-1", Some("wf.a"), "WorkflowNodeRunning"));
    let running = node("n1", "wf.a", "Running", "2026-11-20T10:00:01Z");
    let ts = t.observe(&workflow("Running", nodes(&[running]), None), None);
    assert!(ts.is_empty(), "the Events path reported both: {ts:?}");

    let done = node("n1", "wf.a", "Succeeded", "2026-11-20T10:00:01Z");
    let ts = t.observe(&workflow("Running", nodes(&[done]), None), None);
    assert_eq!(reasons(&ts), ["WorkflowNodeSucceeded Succeeded node wf.a"]);
    assert!(
        !t.record("uid-1", Some("wf.a"), "WorkflowNodeSucceeded"),
        "the late Event is a duplicate"
    );
}

#[test]
fn history_before_since_is_recorded_not_delivered() {
    let mut t = Transitions::default();
    let since: Timestamp = "2026-11-20T10:03:00Z".parse().unwrap();
    let early = node("n1", "wf.early", "Running", "2026-11-20T10:00:01Z");
    let late = node("n2", "wf.late", "Running", "2026-11-20T10:04:00Z");
    let ts = t.observe(
        &workflow("Running", nodes(&[early.clone(), late.clone()]), None),
        Some(since),
    );
    assert_eq!(reasons(&ts), ["WorkflowNodeRunning Running node wf.late"]);

    // Once known, every change is news, whatever its time.
    let mut done = early;
    done.1["phase"] = json!("Succeeded");
    let ts = t.observe(
        &workflow("Running", nodes(&[done, late]), None),
        Some(since),
    );
    assert_eq!(
        reasons(&ts),
        ["WorkflowNodeSucceeded Succeeded node wf.early"]
    );
}

#[test]
fn a_workflow_known_only_from_its_events_keeps_the_cutoff_across_a_restart() {
    let since: Timestamp = "2026-11-20T10:03:00Z".parse().unwrap();
    let early = node("n1", "wf.early", "Running", "2026-11-20T10:00:01Z");
    let late = node("n2", "wf.late", "Running", "2026-11-20T10:04:00Z");
    let status = workflow("Running", nodes(&[early, late]), None);

    let mut before = Transitions::default();
    assert!(before.record("uid-1", Some("wf.late"), "WorkflowNodeRunning"));
    let stored = before.take_changed("uid-1").unwrap();
    assert!(stored.status_unseen);
    let bytes = serde_json::to_vec(&stored).unwrap();
    let mut t =
        Transitions::restore([("uid-1".to_owned(), serde_json::from_slice(&bytes).unwrap())]);
    let ts = t.observe(&status, Some(since));
    assert!(
        ts.is_empty(),
        "history, and a transition its Event reported: {ts:?}"
    );
    let seen = t.take_changed("uid-1").unwrap();
    assert!(!seen.status_unseen);
    assert!(
        !serde_json::to_string(&seen)
            .unwrap()
            .contains("status_unseen"),
        "a state whose status was seen is stored as before"
    );

    // A state stored before the field existed had its status seen: no cutoff.
    let stored = r#"{"phase":"Running","delivered":["WorkflowRunning"],"nodes":{}}"#;
    let mut old =
        Transitions::restore([("uid-1".to_owned(), serde_json::from_str(stored).unwrap())]);
    assert_eq!(
        reasons(&old.observe(&status, Some(since))),
        [
            "WorkflowNodeRunning Running node wf.early",
            "WorkflowNodeRunning Running node wf.late"
        ]
    );
}

#[test]
fn a_deadline_failure_is_reported_as_timed_out_then_failed() {
    let mut t = Transitions::default();
    let (id, mut n) = node("n1", "wf.slow", "Failed", "2026-11-20T10:00:01Z");
    n["message"] = json!("Step exceeded its deadline");
    let ts = t.observe(
        &workflow(
            "Failed",
            nodes(&[(id, n)]),
            Some("Step exceeded its deadline"),
        ),
        None,
    );
    let reasons: Vec<&str> = ts.iter().map(|t| t.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "WorkflowRunning",
            "WorkflowNodeRunning",
            "WorkflowNodeFailed",
            "WorkflowTimedOut",
            "WorkflowFailed"
        ]
    );
}

#[test]
fn loop_items_and_retries_are_separate_nodes() {
    let mut t = Transitions::default();
    let list = [
        node("r", "wf.train", "Running", "2026-11-20T10:00:01Z"),
        node("r-1", "wf.train(0)", "Failed", "2026-11-20T10:00:02Z"),
        node("r-2", "wf.train(1)", "Running", "2026-11-20T10:00:03Z"),
        node("l-a", "wf.loop(0:a)", "Succeeded", "2026-11-20T10:00:04Z"),
    ];
    let ts = t.observe(&workflow("Running", nodes(&list), None), None);
    let ids: Vec<(&str, &str)> = ts
        .iter()
        .filter_map(|t| Some((t.node_id.as_deref()?, t.reason.as_str())))
        .collect();
    assert_eq!(
        ids,
        [
            ("r", "WorkflowNodeRunning"),
            ("r-1", "WorkflowNodeRunning"),
            ("r-1", "WorkflowNodeFailed"),
            ("r-2", "WorkflowNodeRunning"),
            ("l-a", "WorkflowNodeRunning"),
            ("l-a", "WorkflowNodeSucceeded"),
        ]
    );
}
