//! The config through the command line: `validate` diagnostics (`file:line:col: message`),
//! `KFP_EVENT_ROUTER_CONFIG`, hot reload of a running router (plain rewrite, rejected change,
//! Kubernetes ConfigMap `..data` swap, `subscribers_dir`), and secrets kept out of logs.

mod support;

use std::collections::HashMap;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use support::recording::{self, Generated};
use support::router::{
    PATIENCE, RouterProcess, Scratch, closed_port, command, metric, toml_path, toml_str,
};
use support::sink::{Received, Reply, Sink};

fn validate(config: &Path) -> Output {
    command()
        .args(["validate", "--config"])
        .arg(config)
        .output()
        .expect("running validate")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The `[source]` table of a config that only needs to validate.
fn source() -> String {
    format!(
        "[source]\nkind = \"replay\"\npath = {}\n",
        toml_path(&support::quickstart_recording())
    )
}

#[test]
fn validate_points_at_an_unknown_key() {
    let scratch = Scratch::new();
    // Line 4, column 1: `bogus`.
    let path = scratch.write("router.toml", &format!("{}bogus = 1\n", source()));
    let out = validate(&path);
    assert!(!out.status.success());
    let err = stderr(&out);
    let expected = format!("{}:4:1: unknown field `bogus`", path.display());
    assert!(err.starts_with(&expected), "{err}");

    // In an endpoint, line 8 column 1: `retries`.
    let text = format!(
        "{}\n[[endpoints]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/\"\nretries = 3\n",
        source()
    );
    assert_eq!(text.lines().nth(7), Some("retries = 3"));
    let path = scratch.write("endpoint.toml", &text);
    let err = stderr(&validate(&path));
    assert!(
        err.starts_with(&format!("{}:8:1: unknown field `retries`", path.display())),
        "{err}"
    );
}

#[test]
fn validate_reports_every_problem_with_its_place_and_no_secret() {
    let scratch = Scratch::new();
    let text = format!(
        r#"{}
[[endpoints]]
name = "a"
url = "http//hooks.example.com/SECRET-PATH-TOKEN"
signing_secret = {{ env = "KFP_ROUTER_TEST_MISSING" }}
headers = {{ Authorization = {{ env = "KFP_ROUTER_TEST_HEADER" }} }}

[[endpoints]]
name = "a"
url = "ftp://example.com/"
signing_secret = {{ env = "KFP_ROUTER_TEST_BAD_SECRET" }}
"#,
        source()
    );
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[6].starts_with("url = \"http//"));
    assert!(lines[7].starts_with("signing_secret"));
    assert_eq!(lines[11], "name = \"a\"");
    let path = scratch.write("router.toml", &text);
    let out = command()
        .args(["validate", "--config"])
        .arg(&path)
        .env_remove("KFP_ROUTER_TEST_MISSING")
        .env("KFP_ROUTER_TEST_HEADER", "Bearer header-SECRET-VALUE")
        .env(
            "KFP_ROUTER_TEST_BAD_SECRET",
            "whsec_not!base64!SECRET-VALUE",
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    let file = path.display().to_string();
    let problems: Vec<&str> = err.lines().collect();
    assert_eq!(problems.len(), 5, "{err}");
    assert!(
        problems[0].starts_with(&format!("{file}:7:7: endpoints[0].url: invalid URL")),
        "{err}"
    );
    assert!(
        problems[1].starts_with(&format!("{file}:8:18: endpoints[0].signing_secret: "))
            && problems[1].contains("KFP_ROUTER_TEST_MISSING"),
        "{err}"
    );
    assert!(
        problems[2].starts_with(&format!("{file}:12:8: endpoints[1].name: "))
            && problems[2].contains("\"a\""),
        "{err}"
    );
    assert!(
        problems[3].starts_with(&format!("{file}:13:7: endpoints[1].url: invalid URL")),
        "{err}"
    );
    assert!(
        problems[4].starts_with(&format!("{file}:14:18: endpoints[1].signing_secret: ")),
        "{err}"
    );
    for secret in ["SECRET-PATH-TOKEN", "SECRET-VALUE", "not!base64"] {
        assert!(!err.contains(secret), "{secret} leaked: {err}");
    }
    assert!(out.stdout.is_empty());
}

#[test]
fn validate_hints_that_subscribers_dir_is_top_level() {
    let scratch = Scratch::new();
    let text = format!(
        "{}\n[[endpoints]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/\"\n[endpoints.retry]\nmax_attempts = 2\nsubscribers_dir = \"/etc/subscribers\"\n",
        source()
    );
    let path = scratch.write("router.toml", &text);
    let out = validate(&path);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!(
            "{}:10:1: unknown field `subscribers_dir`",
            path.display()
        )),
        "{err}"
    );
    assert!(
        err.contains("`subscribers_dir` is a top-level key"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_env_var_stands_in_for_the_flag() {
    let scratch = Scratch::new();
    let sink = Sink::start().await;
    let text = format!(
        "{}[[endpoints]]\nname = \"a\"\nurl = {}\n",
        scratch.tables(&support::quickstart_recording(), None),
        toml_str(&sink.url("/a"))
    );
    let path = scratch.write("router.toml", &text);
    let out = command()
        .arg("validate")
        .env("KFP_EVENT_ROUTER_CONFIG", &path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&path.display().to_string()) && stdout.contains("ok (1 endpoints)"),
        "{stdout}"
    );

    let bad = scratch.write("bad.toml", "[source]\nkind = \"nope\"\n");
    let out = command()
        .arg("validate")
        .env("KFP_EVENT_ROUTER_CONFIG", &bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).starts_with(&format!("{}:2:", bad.display())),
        "{}",
        stderr(&out)
    );

    let mut run = command();
    run.arg("run").env("KFP_EVENT_ROUTER_CONFIG", &path);
    let mut router = RouterProcess::spawn(run);
    router.expect_success().await;
    assert_eq!(sink.received_on("/a").len(), 25);

    let out = command().arg("validate").output().unwrap();
    assert!(
        !out.status.success(),
        "without --config nor the variable, validate fails"
    );
}

/// The node names each workflow received, in arrival order.
fn per_workflow(requests: &[Received]) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for request in requests {
        let payload = request.json();
        out.entry(payload["WorkflowName"].as_str().unwrap().to_owned())
            .or_default()
            .push(payload["NodeName"].as_str().unwrap().to_owned());
    }
    out
}

/// Asserts each workflow's list is a non-empty, proper suffix of its recording order.
fn assert_tail(got: &HashMap<String, Vec<String>>, generated: &Generated) {
    for (wf, all) in &generated.order {
        let tail = got
            .get(wf)
            .unwrap_or_else(|| panic!("{wf}: nothing received"));
        assert!(
            !tail.is_empty() && tail.len() < all.len(),
            "{wf}: {} of {}",
            tail.len(),
            all.len()
        );
        assert_eq!(
            tail.as_slice(),
            &all[all.len() - tail.len()..],
            "{wf}: the events after the change"
        );
    }
}

/// A slow replay (`rate` events/s) of `generated`, so the router runs while the test acts.
fn slow_replay(scratch: &Scratch, generated: &Generated, rate: f64) -> String {
    let path = scratch.path("recording.jsonl");
    generated.recording.write(&path);
    scratch.tables(&path, Some(rate))
}

fn endpoint(name: &str, url: &str) -> String {
    format!(
        "[[endpoints]]\nname = \"{name}\"\nurl = {}\n\n",
        toml_str(url)
    )
}

/// Replaces `path` atomically, as editors and `kubectl cp` do.
fn replace(path: &Path, text: &str) {
    let name = path.file_name().unwrap().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_router_applies_a_changed_config_and_rejects_a_broken_one() {
    let scratch = Scratch::new();
    let generated = recording::interleaved(2, 100);
    let sink = Sink::start().await;
    let tables = slow_replay(&scratch, &generated, 40.0);
    let one = format!("{tables}{}", endpoint("a", &sink.url("/a")));
    let path = scratch.write("router.toml", &one);
    let mut router = RouterProcess::start(&path);
    sink.wait_for("/a", 10, PATIENCE).await;

    // Add an endpoint: it receives the events accepted from then on.
    replace(&path, &format!("{one}{}", endpoint("b", &sink.url("/b"))));
    sink.wait_for("/b", 5, PATIENCE).await;

    // A broken config is logged and rejected; both endpoints keep receiving.
    replace(&path, &format!("{one}{}", endpoint("c", "not a url")));
    router
        .wait_for_log("config change rejected", PATIENCE)
        .await;
    let (a, b) = (sink.received_on("/a").len(), sink.received_on("/b").len());
    sink.wait_for("/a", a + 5, PATIENCE).await;
    sink.wait_for("/b", b + 5, PATIENCE).await;
    let metrics = router.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "kfp_event_router_config_reloads_total{result=\"applied\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "kfp_event_router_config_reloads_total{result=\"rejected\"}"
        ),
        Some(1.0)
    );

    router.expect_success().await;
    assert_eq!(
        per_workflow(&sink.received_on("/a")),
        generated.order,
        "a got everything, in order"
    );
    assert_tail(&per_workflow(&sink.received_on("/b")), &generated);
    assert!(sink.received_on("/c").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_volume_swap_is_applied() {
    let scratch = Scratch::new();
    let generated = recording::interleaved(2, 100);
    let sink = Sink::start().await;
    let tables = slow_replay(&scratch, &generated, 40.0);
    // The layout the kubelet makes: router.toml -> ..data/router.toml, ..data -> ..<timestamp>.
    let volume = scratch.path("config");
    let version = |name: &str, text: &str| -> PathBuf {
        let dir = volume.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("router.toml"), text).unwrap();
        dir
    };
    let first = version(
        "..2026_11_20_09_14_05.1",
        &format!("{tables}{}", endpoint("hook", &sink.url("/before"))),
    );
    symlink("..2026_11_20_09_14_05.1", volume.join("..data")).unwrap();
    symlink("..data/router.toml", volume.join("router.toml")).unwrap();
    let mut router = RouterProcess::start(&volume.join("router.toml"));
    sink.wait_for("/before", 10, PATIENCE).await;

    // The kubelet's update: a new folder, a new symlink renamed over `..data`, the old removed.
    version(
        "..2026_11_20_09_14_07.2",
        &format!("{tables}{}", endpoint("hook", &sink.url("/after"))),
    );
    symlink("..2026_11_20_09_14_07.2", volume.join("..data_tmp")).unwrap();
    std::fs::rename(volume.join("..data_tmp"), volume.join("..data")).unwrap();
    std::fs::remove_dir_all(first).unwrap();
    sink.wait_for("/after", 5, PATIENCE).await;

    router.expect_success().await;
    // Each event exactly once, to the URL in force when it was sent; in order per workflow.
    let both: Vec<Received> = sink.received();
    assert_eq!(per_workflow(&both), generated.order);
    assert_tail(&per_workflow(&sink.received_on("/after")), &generated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_dir_files_are_kfp_endpoints_and_a_new_file_adds_one() {
    let scratch = Scratch::new();
    let generated = recording::interleaved(2, 100);
    let sink = Sink::start().await;
    let subscribers = scratch.path("subscribers");
    std::fs::create_dir(&subscribers).unwrap();
    std::fs::write(
        subscribers.join("alpha"),
        format!("{}\n", sink.url("/alpha")),
    )
    .unwrap();
    std::fs::write(subscribers.join("beta"), sink.url("/beta")).unwrap();
    std::fs::write(subscribers.join(".hidden"), sink.url("/hidden")).unwrap();
    let text = format!(
        "subscribers_dir = {}\n\n{}",
        toml_path(&subscribers),
        slow_replay(&scratch, &generated, 40.0)
    );
    let path = scratch.write("router.toml", &text);
    let out = validate(&path);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ok (2 endpoints)"),
        "{}",
        stderr(&out)
    );
    let mut router = RouterProcess::start(&path);
    sink.wait_for("/alpha", 5, PATIENCE).await;
    sink.wait_for("/beta", 5, PATIENCE).await;

    replace(
        &subscribers.join("gamma"),
        &format!("{}\n", sink.url("/gamma")),
    );
    sink.wait_for("/gamma", 5, PATIENCE).await;
    router.expect_success().await;

    for name in ["/alpha", "/beta"] {
        let got = sink.received_on(name);
        assert_eq!(per_workflow(&got), generated.order, "{name}");
        for r in &got {
            let body = std::str::from_utf8(&r.body).unwrap();
            let keys: Vec<String> = r.json().as_object().unwrap().keys().cloned().collect();
            assert_eq!(keys.len(), 5, "the kfp payload: {body}");
            assert!(body.starts_with("{\"KfpRunId\":\"run-wf-"), "{body}");
        }
    }
    assert_tail(&per_workflow(&sink.received_on("/gamma")), &generated);
    assert!(
        sink.received_on("/hidden").is_empty(),
        "hidden files are not subscribers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_and_url_tokens_never_reach_the_logs() {
    let scratch = Scratch::new();
    let sink = Sink::start().await;
    sink.always("/hook/SECRET-TOKEN-123", Reply::status(500));
    sink.always(
        "/slow/SECRET-TOKEN-789",
        Reply::status(200).after(Duration::from_secs(2)),
    );
    let refused = closed_port();
    let signing = "whsec_c2lnbmluZy1rZXktU0VDUkVULUtFWS1CWVRFUw==";
    let header = "Bearer header-SECRET-VALUE-42";
    let retry = "[endpoints.retry]\nmax_attempts = 2\nschedule = [\"0s\", \"10ms\"]\n";
    let common = "event_types = [\"WorkflowFailed\", \"WorkflowNodeFailed\"]\nsigning_secret = { env = \"KFP_ROUTER_TEST_SIGNING\" }\nheaders = { Authorization = { env = \"KFP_ROUTER_TEST_AUTH\" }, X-Team = \"ml\" }\n";
    let text = format!(
        "{tables}[[endpoints]]\nname = \"failing\"\nurl = {failing}\n{common}{retry}\n\
         [[endpoints]]\nname = \"refused\"\nurl = {refused}\n{common}{retry}\n\
         [[endpoints]]\nname = \"slow\"\nurl = {slow}\ntimeout = \"100ms\"\n{common}{retry}\n",
        tables = scratch.tables(&support::quickstart_recording(), None),
        failing = toml_str(&sink.url("/hook/SECRET-TOKEN-123")),
        refused = toml_str(&format!(
            "http://{refused}/hook/SECRET-TOKEN-456?token=SECRET-TOKEN-456"
        )),
        slow = toml_str(&sink.url("/slow/SECRET-TOKEN-789")),
    );
    let path = scratch.write("router.toml", &text);
    for format in ["human", "json"] {
        let _ = std::fs::remove_dir_all(scratch.state_dir());
        let mut run = command();
        run.args(["--log-format", format, "run", "--config"])
            .arg(&path)
            .env("RUST_LOG", "debug")
            .env("KFP_ROUTER_TEST_SIGNING", signing)
            .env("KFP_ROUTER_TEST_AUTH", header);
        let mut router = RouterProcess::spawn(run);
        assert_eq!(
            router.exit_code(PATIENCE).await,
            3,
            "dead letters; logs:\n{}",
            router.logs()
        );
        let logs = router.logs();
        assert!(logs.contains("DEBUG"), "{format}: debug logging is on");
        // The failures were logged, by endpoint name...
        for expected in ["delivery failed", "HTTP 500", "failing", "refused", "slow"] {
            assert!(
                logs.contains(expected),
                "{format}: {expected:?} not logged:\n{logs}"
            );
        }
        // ...and nothing secret was.
        for secret in [
            signing,
            &signing[6..],
            header,
            "header-SECRET-VALUE-42",
            "SECRET-TOKEN",
        ] {
            assert!(
                !logs.contains(secret),
                "{format}: {secret:?} leaked into the logs:\n{logs}"
            );
        }
        let letters =
            std::fs::read_to_string(scratch.state_dir().join("dead-letter.jsonl")).unwrap();
        assert_eq!(letters.lines().count(), 9, "3 events x 3 endpoints");
        assert!(
            !letters.contains("SECRET"),
            "{format}: a secret is in the dead letters:\n{letters}"
        );
    }
    // The secrets were in use all the same.
    let sent = sink.received_on("/hook/SECRET-TOKEN-123");
    assert!(!sent.is_empty());
    assert_eq!(sent[0].header("authorization"), header);
    assert_eq!(sent[0].header("x-team"), "ml");
    let key = standardwebhooks::Webhook::new(signing).unwrap();
    key.verify(&sent[0].body, &sent[0].headers).expect("signed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_config_exits_1_under_run_and_validate_alike() {
    let scratch = Scratch::new();
    let path = scratch.write("router.toml", &format!("{}bogus = 1\n", source()));
    let code = validate(&path).status.code();
    assert_eq!(
        code,
        Some(i32::from(kfp_event_router::cli::EXIT_INVALID_CONFIG))
    );
    let mut router = RouterProcess::start(&path);
    assert_eq!(router.exit_code(PATIENCE).await, 1, "{}", router.logs());
    assert!(router.logs().contains("unknown field `bogus`"));
    let missing = scratch.path("missing.toml");
    assert_eq!(validate(&missing).status.code(), Some(1));
}

#[test]
fn validate_offline_accepts_what_only_exists_in_the_pod() {
    let scratch = Scratch::new();
    let text = "[source]\nkind = \"kubernetes\"\n\n[plugins]\ndir = \"/plugins\"\nchain = [\"redact\"]\n\n\
                [[endpoints]]\nname = \"a\"\nurl = \"https://hooks.example.com/kfp\"\n\
                signing_secret = { file = \"/etc/kfp-event-router/secrets/a\" }\n";
    let path = scratch.write("router.toml", text);
    let online = validate(&path);
    assert_eq!(online.status.code(), Some(1));
    assert!(stderr(&online).contains("/etc/kfp-event-router/secrets/a"));
    let offline = command()
        .args(["validate", "--offline", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(offline.status.success(), "{}", stderr(&offline));
    assert!(String::from_utf8_lossy(&offline.stdout).contains("ok (1 endpoints, offline"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_0_even_after_dead_letters() {
    let scratch = Scratch::new();
    let sink = Sink::start().await;
    sink.always("/hook", Reply::status(400));
    let config = scratch.write(
        "router.toml",
        &format!(
            "{}[[endpoints]]\nname = \"hook\"\nurl = {}\n",
            // Slow enough to still be replaying when the signal comes.
            scratch.tables(&support::quickstart_recording(), Some(2.0)),
            toml_str(&sink.url("/hook"))
        ),
    );
    let mut router = RouterProcess::start(&config);
    router
        .wait_for_metric(
            "kfp_event_router_events_dead_lettered_total{endpoint=\"hook\"}",
            1.0,
            PATIENCE,
        )
        .await;
    router.terminate();
    assert_eq!(router.exit_code(PATIENCE).await, 0, "{}", router.logs());
    assert!(
        !scratch.dead_letters().is_empty(),
        "the dead letters are the record"
    );
}
