//! The rules on the final Workflow of each recording in `examples/recordings` (see its
//! README for where each shape comes from).

use super::*;

/// The last Workflow line of recording `name` that has nodes.
fn last_workflow(name: &str) -> Workflow {
    let path = format!(
        "{}/../examples/recordings/{name}.jsonl",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|line| line.get("object").cloned().unwrap_or(line))
        .filter(|object| object["kind"] == "Workflow")
        .filter_map(|object| serde_json::from_value::<Workflow>(object).ok())
        .rfind(|wf| wf.status.as_ref().is_some_and(|s| !s.nodes.is_empty()))
        .expect("a Workflow with nodes")
}

/// Every node's task, as `(short name of the node, task key)`, sorted; plumbing left out.
fn tasks(workflow: &Workflow) -> Vec<(String, String)> {
    let map = TaskMap::of(workflow);
    let wf = workflow.metadata.name.clone().unwrap();
    let mut out: Vec<(String, String)> = workflow
        .status
        .as_ref()
        .unwrap()
        .nodes
        .values()
        .filter_map(|n| match map.role(Some(&n.id), &n.name)? {
            Role::Task(t) => Some((n.name[wf.len()..].to_owned(), t.key())),
            Role::Plumbing => None,
        })
        .collect();
    out.sort();
    out
}

#[test]
fn kfp_2_4_nodes_map_to_their_tasks_and_the_rest_is_plumbing() {
    let wf = last_workflow("kfp-2.4-parallelfor");
    assert!(is_kfp_v2(&wf));
    let found = tasks(&wf);
    let keys: Vec<&str> = found.iter().map(|(_, k)| k.as_str()).collect();
    for expected in [
        "root/preprocess",
        "root/baseline",
        "root/for-loop-2",
        "root/for-loop-2/train[0]",
        "root/for-loop-2/train[1]",
        "root/for-loop-2/train[2]",
        "root/report",
    ] {
        assert!(
            keys.contains(&expected),
            "{expected} missing from {found:#?}"
        );
    }
    for (node, key) in &found {
        assert!(
            !node.ends_with("-driver") && !node.ends_with(".root") && !node.is_empty(),
            "{node} is plumbing, not {key}"
        );
    }
    // The executor Pod reports for its task (it carries the failure message).
    assert!(found.contains(&(".root.baseline.executor".into(), "root/baseline".into())));
}

#[test]
fn kfp_2_17_retry_nodes_and_attempts_are_one_task() {
    let wf = last_workflow("kfp-2.17-retry");
    let found = tasks(&wf);
    let trains: Vec<&(String, String)> = found
        .iter()
        .filter(|(_, k)| k == "root/for-loop-2/train[1]")
        .collect();
    assert!(
        trains.iter().any(|(n, _)| n.ends_with(".train"))
            && trains.iter().any(|(n, _)| n.ends_with(".train(0)")),
        "the Retry node and its attempt: {trains:#?}"
    );
    assert!(
        found.iter().all(|(n, _)| !n.contains("-driver")),
        "{found:#?}"
    );
}

#[test]
fn display_names_iterations_and_the_cache_come_from_the_run() {
    let wf = last_workflow("kfp-2.4-parallelfor");
    let map = TaskMap::of(&wf);
    let node = |suffix: &str| {
        let name = format!("{}{suffix}", wf.metadata.name.as_deref().unwrap());
        match map.role(None, &name) {
            Some(Role::Task(t)) => t.clone(),
            other => panic!("{suffix}: {other:?}"),
        }
    };
    assert_eq!(
        node(".root.baseline").display_name.as_deref(),
        Some("Baseline model")
    );
    let train = node(".root.for-loop-2.iteration-iterations(2:2).iteration-item.train");
    assert_eq!(
        (train.iteration, train.dag_path.clone()),
        (Some(2), vec!["root".to_owned(), "for-loop-2".to_owned()])
    );
    let executor = wf
        .status
        .as_ref()
        .unwrap()
        .nodes
        .values()
        .find(|n| {
            n.name
                .ends_with("iteration-iterations(2:2).iteration-item.train.executor")
        })
        .unwrap();
    let hash = executor.id.rsplit('-').next().unwrap();
    assert_eq!(
        train.pod_name,
        Some(format!("churn-training-x7k2p-system-container-impl-{hash}")),
        "the executor Pod, named as Argo names it"
    );
    let cached = last_workflow("kfp-2.17-retry");
    let map = TaskMap::of(&cached);
    let preprocess = format!(
        "{}(0).root(0).preprocess",
        cached.metadata.name.as_deref().unwrap()
    );
    assert!(
        matches!(map.role(None, &preprocess), Some(Role::Task(t)) if t.cached),
        "the cache served preprocess"
    );
}

#[test]
fn the_run_parameters_are_the_runtime_config_not_the_compiler_blobs() {
    let wf = last_workflow("kfp-2.4-parallelfor");
    let parameters = run_parameters(&wf).unwrap();
    let names: Vec<&str> = parameters.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["dataset_uri", "epochs", "learning_rate"]);
    assert!(parameters.contains(&("epochs".into(), "20".into())));
    let retried = last_workflow("kfp-2.17-retry");
    assert!(run_parameters(&retried).is_some_and(|p| !p.is_empty()));
}

#[test]
fn kfp_v1_and_plain_argo_runs_have_no_plumbing() {
    for name in ["kfp-v1-flat", "argo-plain"] {
        let wf = last_workflow(name);
        assert!(!is_kfp_v2(&wf), "{name}");
        assert!(TaskMap::of(&wf).is_empty(), "{name}");
    }
}

#[test]
fn attempt_suffixes_and_iterations_parse() {
    assert_eq!(strip_attempt("train(0)"), "train");
    assert_eq!(strip_attempt("wf(12)"), "wf");
    assert_eq!(
        strip_attempt("iteration-iterations(0:0)"),
        "iteration-iterations(0:0)"
    );
    assert_eq!(
        strip_attempt("iteration-iterations(0:0)(1)"),
        "iteration-iterations(0:0)"
    );
    assert_eq!(iteration_index("iteration-iterations(3:3)"), Some(3));
    assert_eq!(iteration_index("for-loop-2-iterations(1:1)"), Some(1));
    assert_eq!(iteration_index("train"), None);
}
