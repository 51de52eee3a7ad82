//! Chains through a running router: the global chain then the endpoint's own, in order; a
//! drop stops delivery to that endpoint only; `on_error = "dead-letter"` writes dead letters.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::common::{config, plugin_dir, replay_to_end};
use crate::support;
use crate::support::router::{Scratch, toml_path};
use crate::support::sink::Sink;

#[tokio::test]
async fn global_then_endpoint_chains_run_in_order_and_a_drop_stops_only_its_endpoint() {
    let sink = Sink::start().await;
    let scratch = Scratch::new();
    let dir = plugin_dir(
        &scratch,
        &[
            ("event-filter", "event-filter"),
            ("redact", "redact"),
            ("echo", "hostile"),
            ("teams-card", "teams-card"),
            ("nothing", "event-filter"),
            ("trap", "hostile"),
        ],
    );
    let endpoint = |name: &str, format: &str, plugins: &str| {
        format!(
            "[[endpoints]]\nname = {name:?}\nurl = {:?}\nformat = {format:?}\nplugins = {plugins}\n\n",
            sink.url(&format!("/{name}"))
        )
    };
    let text = format!(
        "{tables}[plugins]\ndir = {dir}\nchain = [\"event-filter\"]\n\n\
         [plugins.config.event-filter]\nreasons = [\"WorkflowFailed\", \"WorkflowSucceeded\", \"WorkflowNodeSucceeded\"]\n\
         [plugins.config.redact]\nmask = [\"Message\"]\n\
         [plugins.config.echo]\nmode = \"echo\"\n\
         [plugins.config.nothing]\nreasons = [\"NoSuchReason\"]\n\
         [plugins.config.trap]\nmode = \"trap\"\n\
         [plugins.settings.trap]\non_error = \"dead-letter\"\n\n{}{}{}{}{}",
        endpoint("plain", "kfp", "[]"),
        endpoint("ordered", "kfp", "[\"redact\", \"echo\"]"),
        endpoint("teams", "extended", "[\"teams-card\"]"),
        endpoint("nothing", "kfp", "[\"nothing\"]"),
        endpoint("letters", "kfp", "[\"trap\"]"),
        tables = scratch.tables(&support::quickstart_recording(), None),
        dir = toml_path(&dir),
    );
    let config = config(&scratch, &text);
    let summary = tokio::time::timeout(
        Duration::from_secs(60),
        kfp_event_router::pipeline::run(config, CancellationToken::new()),
    )
    .await
    .expect("the replay finishes")
    .expect("the router runs");

    // The global filter ran first, for every endpoint.
    let plain = sink.received_on("/plain");
    assert!(!plain.is_empty());
    let reasons: Vec<String> = plain
        .iter()
        .map(|r| r.json()["EventType"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        reasons.iter().all(|r| [
            "WorkflowFailed",
            "WorkflowSucceeded",
            "WorkflowNodeSucceeded"
        ]
        .contains(&r.as_str())),
        "{reasons:?}"
    );
    // Then the endpoint's chain, in order: echo saw the payload as redact left it.
    let ordered = sink.received_on("/ordered");
    assert_eq!(ordered.len(), plain.len());
    for request in &ordered {
        let echoed = request.json();
        let seen: serde_json::Value =
            serde_json::from_str(echoed["payload"]["body"].as_str().unwrap()).unwrap();
        assert_eq!(seen["Message"], "***", "{echoed}");
        assert!(reasons.contains(&echoed["reason"].as_str().unwrap().to_owned()));
    }
    let teams = sink.received_on("/teams");
    assert_eq!(teams.len(), plain.len());
    assert!(teams.iter().all(|r| r.json()["type"] == "message"));
    // A drop stops only its own endpoint.
    assert!(sink.received_on("/nothing").is_empty());
    // A failing plugin with on_error = "dead-letter" writes dead letters, one per event.
    assert!(sink.received_on("/letters").is_empty());
    let letters = scratch.dead_letters();
    assert_eq!(letters.len(), plain.len());
    assert_eq!(summary.dead_lettered, plain.len() as u64);
    assert_eq!(letters[0]["endpoint"], "letters");
    let error = letters[0]["last_error"].as_str().unwrap();
    assert!(
        error.starts_with("plugin trap failed: trapped: wasm `unreachable`"),
        "{error}"
    );
}

#[tokio::test]
async fn plugins_see_the_cluster_the_router_names() {
    let sink = Sink::start().await;
    let scratch = Scratch::new();
    let dir = plugin_dir(&scratch, &[("github-dispatch", "github-dispatch")]);
    let text = format!(
        "{tables}[router]\ncluster = \"prod-eu\"\n\n[plugins]\ndir = {dir}\n\n\
         [plugins.config.github-dispatch]\nevent_type = \"{{cluster}}-{{reason_kebab}}\"\n\n\
         [[endpoints]]\nname = \"github\"\nurl = {url:?}\nplugins = [\"github-dispatch\"]\n",
        tables = scratch.tables(&support::quickstart_recording(), None),
        dir = toml_path(&dir),
        url = sink.url("/github"),
    );
    replay_to_end(&scratch, &text).await;
    let received = sink.received_on("/github");
    assert_eq!(received.len(), 25);
    for request in received {
        let event_type = request.json()["event_type"].as_str().unwrap().to_owned();
        assert!(event_type.starts_with("prod-eu-workflow-"), "{event_type}");
    }
}
