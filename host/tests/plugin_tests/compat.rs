//! Contracts: a component built for `kfp:event-router@0.1.0` (a committed build of the
//! bundled `event-filter`, see `tests/fixtures/README.md`) still loads and filters, and a 0.2
//! plugin gets every fact of the event whatever the endpoint's payload format.

use kfp_event_router::model::event::TaskFacts;
use kfp_event_router::model::request::Verdict;

use crate::common::{config, config_text, endpoint_section, event, plugin_dir, stage};
use crate::support;
use crate::support::router::Scratch;

#[tokio::test]
async fn a_0_1_component_still_loads_and_filters() {
    let scratch = Scratch::new();
    let dir = plugin_dir(&scratch, &[]);
    std::fs::copy(
        support::root().join("host/tests/fixtures/event-filter-0.1.0.wasm"),
        dir.join("legacy-filter.wasm"),
    )
    .unwrap();
    let mut rest = "[plugins.config.legacy-filter]\nreasons = [\"WorkflowFailed\"]\n\n".to_owned();
    rest.push_str(&endpoint_section("alerts", "kfp", &["legacy-filter"]));
    let config = config(&scratch, &config_text(&scratch, &dir, "", &rest));
    let (stage, _) = stage(config).await;
    let status = stage.status();
    assert_eq!(
        status["loaded"][0]["wit"], "kfp:event-router/transform@0.1.0",
        "{status}"
    );
    assert!(matches!(
        stage.process("alerts", &event("WorkflowFailed")).await,
        Verdict::Deliver(_)
    ));
    assert!(matches!(
        stage.process("alerts", &event("WorkflowRunning")).await,
        Verdict::Drop { by } if by == "legacy-filter"
    ));
}

#[tokio::test]
async fn a_0_2_plugin_sees_every_fact_whatever_the_format() {
    let scratch = Scratch::new();
    let dir = plugin_dir(&scratch, &[("echo", "hostile")]);
    let mut rest = "[plugins.config.echo]\nmode = \"echo\"\n\n".to_owned();
    rest.push_str(&endpoint_section("plain", "kfp", &["echo"]));
    let config = config(&scratch, &config_text(&scratch, &dir, "", &rest));
    let (stage, _) = stage(config).await;
    let mut failed = event("WorkflowNodeFailed");
    failed.attempt = 2;
    let workflow = std::sync::Arc::make_mut(failed.workflow.as_mut().unwrap());
    workflow.pipeline_name = Some("train-pipeline".into());
    workflow.parameters = [("epochs".to_owned(), "12".to_owned())].into();
    failed.task = Some(TaskFacts {
        name: "train".into(),
        iteration: Some(3),
        dag_path: vec!["root".into(), "for-loop-2".into()],
        ..TaskFacts::default()
    });
    let Verdict::Deliver(request) = stage.process("plain", &failed).await else {
        panic!("echo must deliver");
    };
    let echoed: serde_json::Value = serde_json::from_slice(&request.payload.body).unwrap();
    let facts = &echoed["event"];
    assert_eq!(facts["id"], "id-WorkflowNodeFailed");
    assert_eq!(facts["attempt"], 2);
    assert_eq!(facts["pipeline_name"], "train-pipeline");
    assert_eq!(facts["parameters"], serde_json::json!([["epochs", "12"]]));
    assert_eq!(facts["task"]["name"], "train");
    assert_eq!(facts["task"]["iteration"], 3);
    assert_eq!(facts["node_name"], "train");
    assert_eq!(facts["run_id"], "run-1");
    assert_eq!(facts["format"], "kfp");
    assert_eq!(facts["endpoint"], "plain");
    // The kfp payload itself has none of these.
    let body: serde_json::Value =
        serde_json::from_str(echoed["payload"]["body"].as_str().unwrap()).unwrap();
    assert!(body.get("PipelineName").is_none());
}

#[test]
fn the_sdk_ships_the_same_wit_as_the_repository() {
    let read = |path: &str| std::fs::read_to_string(support::root().join(path)).unwrap();
    assert_eq!(read("plugin-sdk/wit/world.wit"), read("wit/world.wit"));
}
