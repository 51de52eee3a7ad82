//! Contracts: components built for `kfp:event-router@0.1.0` and `@0.2.0` (committed builds of
//! the bundled `event-filter`, see `tests/fixtures/README.md`) still load and filter; a plugin
//! gets every fact of the event whatever the endpoint's payload format; a 0.3 plugin is told
//! whether the payload is still the router's rendering; and the handles a 0.3 call lends end
//! with the call.

use std::sync::Arc;

use kfp_event_router::model::event::TaskFacts;
use kfp_event_router::model::request::Verdict;

use crate::common::{config, config_text, endpoint_section, event, plugin_dir, stage};
use crate::support;
use crate::support::router::Scratch;

#[tokio::test]
async fn a_0_1_component_still_loads_and_filters() {
    older_component_still_loads_and_filters("0.1.0").await;
}

#[tokio::test]
async fn a_0_2_component_still_loads_and_filters() {
    older_component_still_loads_and_filters("0.2.0").await;
}

async fn older_component_still_loads_and_filters(version: &str) {
    let scratch = Scratch::new();
    let dir = plugin_dir(&scratch, &[]);
    std::fs::copy(
        support::root().join(format!("host/tests/fixtures/event-filter-{version}.wasm")),
        dir.join("legacy-filter.wasm"),
    )
    .unwrap();
    let mut rest = "[plugins.config.legacy-filter]\nreasons = [\"WorkflowFailed\"]\n\n".to_owned();
    rest.push_str(&endpoint_section("alerts", "kfp", &["legacy-filter"]));
    let config = config(&scratch, &config_text(&scratch, &dir, "", &rest));
    let (stage, _) = stage(config).await;
    let status = stage.status();
    assert_eq!(
        status["loaded"][0]["wit"],
        format!("kfp:event-router/transform@{version}"),
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
async fn an_sdk_plugin_sees_every_fact_whatever_the_format() {
    let scratch = Scratch::new();
    let dir = plugin_dir(&scratch, &[("echo", "hostile")]);
    let mut rest = "[plugins.config.echo]\nmode = \"echo\"\n\n".to_owned();
    rest.push_str(&endpoint_section("plain", "kfp", &["echo"]));
    let config = config(&scratch, &config_text(&scratch, &dir, "", &rest));
    let (stage, _) = stage(config).await;
    let mut failed = Arc::unwrap_or_clone(event("WorkflowNodeFailed"));
    failed.attempt = 2;
    let workflow = Arc::make_mut(failed.workflow.as_mut().unwrap());
    workflow.pipeline_name = Some("train-pipeline".into());
    workflow.parameters = [("epochs".to_owned(), "12".to_owned())].into();
    failed.task = Some(TaskFacts {
        name: "train".into(),
        iteration: Some(3),
        dag_path: vec!["root".into(), "for-loop-2".into()],
        ..TaskFacts::default()
    });
    let Verdict::Deliver(request) = stage.process("plain", &Arc::new(failed)).await else {
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

/// The card's facts, as (title, value) pairs.
fn card_facts(request: &kfp_event_router::model::request::Request) -> Vec<(String, String)> {
    let card: serde_json::Value = serde_json::from_slice(&request.payload.body).unwrap();
    let body = card["attachments"][0]["content"]["body"]
        .as_array()
        .unwrap();
    let facts = body
        .iter()
        .find(|element| element["type"] == "FactSet")
        .expect("the card has facts");
    facts["facts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let text = |key: &str| f[key].as_str().unwrap().to_owned();
            (text("title"), text("value"))
        })
        .collect()
}

#[tokio::test]
async fn a_0_3_plugin_reads_the_event_for_a_rendered_payload_and_the_body_for_a_replaced_one() {
    let scratch = Scratch::new();
    let dir = plugin_dir(
        &scratch,
        &[("teams-card", "teams-card"), ("redact", "redact")],
    );
    let mut rest = "[plugins.config.redact]\ndrop = [\"PipelineName\"]\n\n".to_owned();
    rest.push_str(&endpoint_section("card", "extended", &["teams-card"]));
    rest.push_str(&endpoint_section(
        "redacted",
        "extended",
        &["redact", "teams-card"],
    ));
    let config = config(&scratch, &config_text(&scratch, &dir, "", &rest));
    let (stage, _) = stage(config).await;
    assert_eq!(
        stage.status()["loaded"][0]["wit"],
        "kfp:event-router/transform@0.3.0",
        "{}",
        stage.status()
    );
    let mut failed = Arc::unwrap_or_clone(event("WorkflowFailed"));
    Arc::make_mut(failed.workflow.as_mut().unwrap()).pipeline_name = Some("train-pipeline".into());
    let failed = Arc::new(failed);

    // The router's own rendering: the card takes the pipeline from the event.
    let Verdict::Deliver(card) = stage.process("card", &failed).await else {
        panic!("teams-card must deliver");
    };
    let pipeline = ("Pipeline".to_owned(), "train-pipeline".to_owned());
    assert!(
        card_facts(&card).contains(&pipeline),
        "{:?}",
        card_facts(&card)
    );

    // Once redact has replaced the body, the card shows what the body says: no pipeline.
    let Verdict::Deliver(redacted) = stage.process("redacted", &failed).await else {
        panic!("redact then teams-card must deliver");
    };
    let facts = card_facts(&redacted);
    assert!(
        facts.iter().all(|(title, _)| title != "Pipeline"),
        "{facts:?}"
    );
    assert!(
        facts.contains(&("Run ID".to_owned(), "run-1".to_owned())),
        "{facts:?}"
    );
}

#[tokio::test]
async fn a_pooled_0_3_instance_serves_more_calls_than_its_store_holds_handles() {
    let scratch = Scratch::new();
    let dir = plugin_dir(&scratch, &[("teams-card", "teams-card")]);
    let rest = endpoint_section("card", "extended", &["teams-card"]);
    let config = config(&scratch, &config_text(&scratch, &dir, "", &rest));
    let (stage, _) = stage(config).await;
    let failed = event("WorkflowFailed");
    // Each call lends two handles; a store holds 1,000 at once. Were they left behind, the
    // pooled instance would trap near call 500 and the event would go on without its card.
    for call in 0..1_200 {
        let Verdict::Deliver(card) = stage.process("card", &failed).await else {
            panic!("call {call}: teams-card must deliver");
        };
        let body = String::from_utf8_lossy(&card.payload.body);
        assert!(
            body.contains("AdaptiveCard"),
            "call {call} got no card: {body}"
        );
    }
}

#[test]
fn the_sdk_ships_the_same_wit_as_the_repository() {
    let read = |path: &str| std::fs::read_to_string(support::root().join(path)).unwrap();
    assert_eq!(read("plugin-sdk/wit/world.wit"), read("wit/world.wit"));
}
