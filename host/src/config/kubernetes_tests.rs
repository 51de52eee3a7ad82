//! The `[source]` keys of kind `kubernetes`, as `Config::parse` checks them.

use std::path::Path;
use std::time::Duration;

use crate::config::Config;
use crate::source::SourceSettings;
use crate::source::kubernetes::leader::LeaderSettings;
use crate::source::kubernetes::{KubernetesSettings, Namespaces};

fn parse(source: &str) -> Result<KubernetesSettings, String> {
    let text = format!("[source]\nkind = \"kubernetes\"\n{source}\n");
    match Config::parse(Path::new("router.toml"), &text) {
        Ok(config) => match config.source {
            SourceSettings::Kubernetes(settings) => Ok(settings),
            other => panic!("not a kubernetes source: {other:?}"),
        },
        Err(e) => Err(e.to_string()),
    }
}

#[test]
fn defaults_watch_the_own_namespace_with_a_lease_and_a_configmap() {
    let settings = parse("").unwrap();
    assert_eq!(settings, KubernetesSettings::default());
    assert_eq!(settings.namespaces, Namespaces::Own);
    assert_eq!(settings.history, None);
    assert_eq!(
        settings.checkpoint_configmap.as_deref(),
        Some("kfp-event-router-state")
    );
    assert_eq!(settings.leader_election, Some(LeaderSettings::default()));
}

#[test]
fn every_key_parses() {
    let settings = parse(
        "namespaces = [\"team-a\", \"team-b\"]\nhistory = \"1h\"\ncheckpoint_configmap = \"state\"\n\
         checkpoint_interval = \"2s\"\nworkflow_wait = \"1s\"\n\n[source.leader_election]\n\
         lease_name = \"my-lease\"\nlease_duration = \"30s\"\nidentity = \"me\"",
    )
    .unwrap();
    assert_eq!(
        settings.namespaces,
        Namespaces::Listed(vec!["team-a".into(), "team-b".into()])
    );
    assert_eq!(settings.history, Some(Duration::from_secs(3600)));
    assert_eq!(settings.checkpoint_configmap.as_deref(), Some("state"));
    assert_eq!(settings.checkpoint_interval, Duration::from_secs(2));
    assert_eq!(settings.workflow_wait, Duration::from_secs(1));
    let leader = settings.leader_election.unwrap();
    assert_eq!(
        (
            leader.lease_name.as_str(),
            leader.lease_duration,
            leader.identity.as_deref()
        ),
        ("my-lease", Duration::from_secs(30), Some("me"))
    );
    assert_eq!(
        parse("namespaces = [\"*\"]").unwrap().namespaces,
        Namespaces::All
    );
    assert_eq!(parse("history = \"none\"").unwrap().history, None);
    assert_eq!(
        parse("checkpoint_configmap = \"\"")
            .unwrap()
            .checkpoint_configmap,
        None
    );
    assert_eq!(
        parse("[source.leader_election]\nenabled = false")
            .unwrap()
            .leader_election,
        None
    );
}

#[test]
fn mistakes_are_errors_at_their_place() {
    let cases = [
        (
            "namespaces = [\"Team_A\"]",
            "router.toml:3:14: source.namespaces: \"Team_A\" is not a namespace name",
        ),
        ("namespaces = [\"*\", \"a\"]", "must be the only entry"),
        ("namespaces = [\"a\", \"a\"]", "\"a\" is listed twice"),
        (
            "history = \"soon\"",
            "router.toml:3:11: source.history: \"soon\" is neither \"none\" nor a window",
        ),
        (
            "path = \"x.jsonl\"",
            "source.path: only for kind = \"replay\"",
        ),
        (
            "[source.leader_election]\nlease_duration = \"10ms\"",
            "lease_duration: must be at least 1s",
        ),
        (
            "[source.leader_election]\nlease_name = \"Not A Name\"",
            "is not a Lease name",
        ),
        ("checkpoint_configmap = \"a/b\"", "is not a ConfigMap name"),
        ("namespace = [\"a\"]", "unknown field `namespace`"),
    ];
    for (keys, expected) in cases {
        let error = parse(keys).expect_err(keys);
        assert!(error.contains(expected), "{keys}: {error}");
    }
}

#[test]
fn kubernetes_keys_are_refused_for_a_replay() {
    let text = "[source]\nkind = \"replay\"\npath = \"Cargo.toml\"\nnamespaces = [\"a\"]\n";
    let error = Config::parse(Path::new("router.toml"), text)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("source.namespaces: only for kind = \"kubernetes\""),
        "{error}"
    );
}
