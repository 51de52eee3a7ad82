//! Dead letters can be listed, shown and redriven: from the command line on a stopped
//! router's state (redb and PostgreSQL), and through the admin API of a running router (and
//! the command line's `--admin`). Redriven letters are delivered once each, through the
//! normal worker, with the webhook-id of their first attempts.

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use support::postgres::{Backend, URL_ENV};
use support::router::{PATIENCE, RouterProcess, Scratch, metric, toml_path, toml_str};
use support::sink::{Received, Reply, Sink};

/// The admin token of these tests: it must never show in the router's output.
const TOKEN: &str = "adm1n-T0KEN-never-logged";

/// What `kfp-event-router dead-letters ARGS` did: exit code, stdout, stderr.
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Ran {
    /// The JSON lines of stdout.
    fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// Panics (showing the output) unless the exit code is `code`.
    fn expect(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "exit {}; stdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }
}

/// Runs `kfp-event-router dead-letters ARGS` with the backend's database URL in its
/// environment.
async fn cli(backend: &Backend, args: &[&str]) -> Ran {
    let mut command = support::router::command();
    command.arg("dead-letters").args(args);
    command.env_remove("KFP_EVENT_ROUTER_ADMIN_TOKEN");
    if let Backend::Postgres(url) = backend {
        command.env(URL_ENV, url);
    }
    let output = tokio::process::Command::from(command)
        .output()
        .await
        .expect("running the CLI");
    Ran {
        code: output.status.code().expect("the CLI exited"),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// An `[[endpoints]]` table for `name`, at `/name` of the sink.
fn endpoint(sink: &Sink, name: &str, extra: &str) -> String {
    format!(
        "[[endpoints]]\nname = \"{name}\"\nurl = {}\n{extra}\n",
        toml_str(&sink.url(&format!("/{name}")))
    )
}

/// The webhook-ids of `received`, checking that none came twice.
fn ids_once(received: &[Received]) -> BTreeSet<String> {
    let ids: BTreeSet<String> = received
        .iter()
        .map(|r| r.header("webhook-id").to_owned())
        .collect();
    assert_eq!(ids.len(), received.len(), "an id came twice");
    assert!(ids.iter().all(|id| id.starts_with("msg_")), "{ids:?}");
    ids
}

/// Replays the quick start into an endpoint `bad` that answers 400: every delivery is
/// dead-lettered, and the router exits 3. Returns the webhook-ids sent.
async fn dead_letter_a_run(backend: &Backend, config: &Path, sink: &Sink) -> BTreeSet<String> {
    sink.always("/bad", Reply::status(400));
    let mut router = backend.start(config);
    assert_eq!(router.exit_code(PATIENCE).await, 3, "{}", router.logs());
    let sent = ids_once(&sink.received_on("/bad"));
    assert_eq!(sent.len(), 25, "the quick start's run makes 25 deliveries");
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_redrives_a_stopped_routers_dead_letters_once_with_redb() {
    the_cli_redrives_a_stopped_routers_dead_letters_once(Backend::Redb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_redrives_a_stopped_routers_dead_letters_once_with_postgres() {
    the_cli_redrives_a_stopped_routers_dead_letters_once(Backend::postgres().await).await;
}

async fn the_cli_redrives_a_stopped_routers_dead_letters_once(backend: Backend) {
    let scratch = Scratch::new();
    let sink = Sink::start().await;
    let bad = endpoint(&sink, "bad", "");
    let tables = |recording: &Path| backend.tables(scratch.tables(recording, None));
    let config = scratch.write(
        "router.toml",
        &format!("{}{bad}", tables(&support::quickstart_recording())),
    );
    let sent = dead_letter_a_run(&backend, &config, &sink).await;
    let config_arg = config.display().to_string();
    let with_config = |args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend(["--config".to_owned(), config_arg.clone()]);
        all
    };
    let run = |args: Vec<String>| {
        let backend = &backend;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            cli(backend, &args).await
        }
    };

    // Listed: each dead letter once, with the webhook-id it was sent with.
    let listed = run(with_config(&["list", "--json"])).await.expect(0);
    let letters = listed.json_lines();
    assert_eq!(letters.len(), 25, "{}", listed.stderr);
    let listed_ids: BTreeSet<String> = letters
        .iter()
        .map(|l| l["webhook_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed_ids, sent);
    assert!(letters.iter().all(|l| l["endpoint"] == "bad"));
    assert!(
        letters
            .iter()
            .all(|l| l["last_error"].as_str().unwrap().contains("400"))
    );
    let text = run(with_config(&["list"])).await.expect(0);
    assert_eq!(text.stdout.lines().count(), 25);
    let first = text.stdout.lines().next().unwrap();
    let id = letters[0]["id"].as_str().unwrap();
    assert!(
        first.split('\t').nth(2) == Some(id),
        "the id is the third column: {first}"
    );

    // Filters.
    let failed = letters
        .iter()
        .filter(|l| l["reason"] == "WorkflowFailed")
        .count();
    assert!(failed > 0 && failed < 25, "{failed} WorkflowFailed");
    let count = |args: Vec<String>| {
        let run = &run;
        async move { run(args).await.expect(0).stdout.lines().count() }
    };
    assert_eq!(
        count(with_config(&["list", "--reason", "WorkflowFailed"])).await,
        failed
    );
    assert_eq!(count(with_config(&["list", "--endpoint", "bad"])).await, 25);
    assert_eq!(
        count(with_config(&["list", "--endpoint", "other"])).await,
        0
    );
    assert_eq!(count(with_config(&["list", "--since", "1h"])).await, 25);
    assert_eq!(count(with_config(&["list", "--until", "1h"])).await, 0);
    assert_eq!(
        count(with_config(&["list", "--since", "2000-01-01T00:00:00Z"])).await,
        25
    );
    assert_eq!(count(with_config(&["list", "--error", "400"])).await, 25);
    assert_eq!(
        count(with_config(&["list", "--error", "HTTP 503"])).await,
        0
    );
    assert_eq!(count(with_config(&["list", "--limit", "3"])).await, 3);

    // One, whole.
    let shown = run(with_config(&["show", id])).await.expect(0);
    let letter: Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(letter["id"], id);
    assert_eq!(
        format!("msg_{}", letter["event"]["id"].as_str().unwrap()),
        letters[0]["webhook_id"].as_str().unwrap()
    );
    assert!(letter["payload"].is_string(), "{letter}");
    run(with_config(&["show", "dl_0000000000000000"]))
        .await
        .expect(1);

    // A bare redrive is refused, and redrives nothing.
    let bare = run(with_config(&["redrive"])).await;
    assert_ne!(bare.code, 0);
    assert!(
        bare.stderr.contains("--all") || bare.stderr.contains(" all"),
        "{}",
        bare.stderr
    );
    assert_eq!(count(with_config(&["list"])).await, 25);

    // The endpoint is fixed: redrive one by id, then the rest by filter.
    sink.always("/bad", Reply::status(200));
    let one = run(with_config(&["redrive", id])).await.expect(0);
    assert_eq!(one.stdout.trim(), "redriven 1 (bad: 1)");
    let rest = run(with_config(&["redrive", "--endpoint", "bad"]))
        .await
        .expect(0);
    assert_eq!(rest.stdout.trim(), "redriven 24 (bad: 24)");
    assert_eq!(count(with_config(&["list"])).await, 0);
    let again = run(with_config(&["redrive", "--all"])).await.expect(0);
    assert_eq!(again.stdout.trim(), "redriven 0");

    // A router with nothing new to read delivers them, each once, with its first id.
    let empty = scratch.write("empty.jsonl", "");
    let deliver = scratch.write("deliver.toml", &format!("{}{bad}", tables(&empty)));
    let mut router = backend.start(&deliver);
    assert_eq!(router.exit_code(PATIENCE).await, 0, "{}", router.logs());
    let received = sink.received_on("/bad");
    assert_eq!(received.len(), 50, "25 given up, then 25 redriven");
    assert_eq!(ids_once(&received[25..]), sent);
    assert_eq!(count(with_config(&["list"])).await, 0);
    let again = run(with_config(&["redrive", "--all"])).await.expect(0);
    assert_eq!(again.stdout.trim(), "redriven 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_letter_of_an_endpoint_no_longer_configured_is_refused_the_rest_redriven() {
    let backend = Backend::Redb;
    let scratch = Scratch::new();
    let sink = Sink::start().await;
    let recording = support::quickstart_recording();
    let tables = scratch.tables(&recording, None);
    let config = scratch.write(
        "router.toml",
        &format!(
            "{tables}{}{}",
            endpoint(&sink, "bad", ""),
            endpoint(&sink, "old", "reasons = [\"WorkflowFailed\"]")
        ),
    );
    sink.always("/old", Reply::status(400));
    dead_letter_a_run(&backend, &config, &sink).await;
    // `old` leaves the config.
    let config = scratch.write(
        "router.toml",
        &format!("{tables}{}", endpoint(&sink, "bad", "")),
    );
    let config = config.display().to_string();
    let ran = cli(&backend, &["redrive", "--all", "--config", &config]).await;
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert_eq!(ran.stdout.trim(), "redriven 25 (bad: 25)");
    assert!(
        ran.stderr.contains("endpoint \"old\" is not in the config"),
        "{}",
        ran.stderr
    );
    let left = cli(&backend, &["list", "--json", "--config", &config])
        .await
        .expect(0)
        .json_lines();
    assert!(!left.is_empty() && left.iter().all(|l| l["endpoint"] == "old"));
}

/// `[server]` of `tables` with the admin token read from `token_file`.
fn with_admin_token(tables: String, token_file: &Path) -> String {
    tables.replacen(
        "[server]\n",
        &format!(
            "[server]\nadmin_token = {{ file = {} }}\n",
            toml_path(token_file)
        ),
        1,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_router_redrives_through_its_admin_api() {
    let scratch = Scratch::new();
    let sink = Sink::start().await;
    sink.always("/down", Reply::status(503));
    let token_file = scratch.write("admin-token", &format!("{TOKEN}\n"));
    let tables = with_admin_token(
        scratch.tables(&support::quickstart_recording(), None),
        &token_file,
    );
    let config = scratch.write(
        "router.toml",
        &format!(
            "{tables}{}{}",
            endpoint(&sink, "bad", ""),
            // Keeps the router running (its retries wait an hour).
            endpoint(
                &sink,
                "down",
                "[endpoints.retry]\nschedule = [\"0s\", \"1h\"]\n"
            ),
        ),
    );
    let config_arg = config.display().to_string();
    sink.always("/bad", Reply::status(400));
    let mut router = RouterProcess::start(&config);
    router
        .wait_for_metric(
            "kfp_event_router_deliveries_total{endpoint=\"bad\",outcome=\"dead_lettered\"}",
            25.0,
            PATIENCE,
        )
        .await;
    let sent = ids_once(&sink.received_on("/bad"));
    let admin = format!("http://{}", router.metrics_addr().await);
    let token_arg = token_file.display().to_string();
    let via_admin = |args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend([
            "--admin".to_owned(),
            admin.clone(),
            "--admin-token-file".to_owned(),
            token_arg.clone(),
        ]);
        all
    };
    let run = |args: Vec<String>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&Backend::Redb, &args).await
    };

    // The CLI on the locked state points to --admin; through it, it lists the same letters.
    let locked = run(vec!["list".into(), "--config".into(), config_arg.clone()]).await;
    assert_eq!(locked.code, 2, "{}", locked.stderr);
    assert!(
        locked.stderr.contains("in use") && locked.stderr.contains("--admin"),
        "{}",
        locked.stderr
    );
    let admin_text = run(via_admin(&["list"])).await.expect(0).stdout;
    let admin_json = run(via_admin(&["list", "--json"])).await.expect(0);
    let letters = admin_json.json_lines();
    assert_eq!(letters.len(), 25);
    let listed: BTreeSet<String> = letters
        .iter()
        .map(|l| l["webhook_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, sent);

    // Stopped, the same list comes from the state directly, line for line.
    router.terminate();
    assert_eq!(router.exit_code(PATIENCE).await, 0);
    let direct_text = run(vec!["list".into(), "--config".into(), config_arg.clone()])
        .await
        .expect(0)
        .stdout;
    assert_eq!(direct_text, admin_text);
    let id = letters[0]["id"].as_str().unwrap().to_owned();
    let direct_show = run(vec![
        "show".into(),
        id.clone(),
        "--config".into(),
        config_arg.clone(),
    ])
    .await
    .expect(0)
    .stdout;

    // Running again (the replay resumes after its last event; `down` still waits).
    let mut router = RouterProcess::start(&config);
    let admin = format!("http://{}", router.metrics_addr().await);
    let via_admin = |args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend([
            "--admin".to_owned(),
            admin.clone(),
            "--admin-token-file".to_owned(),
            token_arg.clone(),
        ]);
        all
    };
    let admin_show = run(via_admin(&["show", &id])).await.expect(0).stdout;
    assert_eq!(admin_show, direct_show);
    let http = reqwest::Client::new();
    let list_url = format!("{admin}/admin/dead-letters");

    // No token, a wrong one: 401, asking for a bearer token.
    for request in [
        http.get(&list_url),
        http.get(&list_url).bearer_auth("wrong"),
        http.get(format!("{list_url}/{id}"))
            .bearer_auth(format!("{TOKEN}x")),
        http.post(format!("{list_url}/redrive"))
            .json(&serde_json::json!({"all": true})),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        let challenge = response.headers()["www-authenticate"].to_str().unwrap();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
    }
    // The right one: pages, filters, one letter.
    let get = |url: String| {
        let http = http.clone();
        async move {
            let response = http.get(url).bearer_auth(TOKEN).send().await.unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        }
    };
    let (status, page) = get(list_url.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(page["dead_letters"].as_array().unwrap().len(), 25);
    assert!(page["next"].is_null());
    let (_, first) = get(format!("{list_url}?limit=10")).await;
    assert_eq!(first["dead_letters"].as_array().unwrap().len(), 10);
    let next = first["next"].as_str().unwrap();
    let mut paged: Vec<Value> = first["dead_letters"].as_array().unwrap().clone();
    let mut after = Some(next.to_owned());
    while let Some(cursor) = after {
        let url = reqwest::Url::parse_with_params(
            &list_url,
            [("limit", "10"), ("after", cursor.as_str())],
        )
        .unwrap();
        let (_, page) = get(url.to_string()).await;
        paged.extend(page["dead_letters"].as_array().unwrap().iter().cloned());
        after = page["next"].as_str().map(str::to_owned);
    }
    assert_eq!(&paged, page["dead_letters"].as_array().unwrap());
    let failed = letters
        .iter()
        .filter(|l| l["reason"] == "WorkflowFailed")
        .count();
    let (_, page) = get(format!("{list_url}?reason=WorkflowFailed&endpoint=bad")).await;
    assert_eq!(page["dead_letters"].as_array().unwrap().len(), failed);
    let (status, page) = get(format!("{list_url}?since=yesterday")).await;
    assert_eq!(status, 400, "{page}");
    let (status, letter) = get(format!("{list_url}/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(letter["id"], id.as_str());
    let (status, _) = get(format!("{list_url}/dl_0000000000000000")).await;
    assert_eq!(status, 404);
    let response = http
        .post(format!("{list_url}/redrive"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400, "a bare redrive is refused");

    // Fixed: one by id through the API, the rest through the CLI's --admin.
    sink.always("/bad", Reply::status(200));
    let response = http
        .post(format!("{list_url}/redrive"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"ids": [id]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["redriven"], 1, "{report}");
    let rest = run(via_admin(&["redrive", "--endpoint", "bad"]))
        .await
        .expect(0);
    assert_eq!(rest.stdout.trim(), "redriven 24 (bad: 24)");
    let received = sink.wait_for("/bad", 50, PATIENCE).await;
    assert_eq!(ids_once(&received[25..]), sent);
    router
        .wait_for_metric(
            "kfp_event_router_deliveries_total{endpoint=\"bad\",outcome=\"delivered\"}",
            25.0,
            PATIENCE,
        )
        .await;
    let again = run(via_admin(&["redrive", "--all"])).await.expect(0);
    assert_eq!(again.stdout.trim(), "redriven 0");
    let text = router.metrics().await;
    assert_eq!(
        metric(
            &text,
            "kfp_event_router_dead_letters_redriven_total{endpoint=\"bad\"}"
        ),
        Some(25.0),
        "{text}"
    );
    assert_eq!(sink.received_on("/bad").len(), 50, "each delivered once");

    router.terminate();
    assert_eq!(router.exit_code(PATIENCE).await, 0);
    let logs = router.logs() + &router.stdout();
    assert!(!logs.contains(TOKEN), "the token is in the logs:\n{logs}");
    assert!(logs.contains("dead letters redriven"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_admin_api_does_not_exist() {
    let scratch = Scratch::new();
    let sink = Sink::start().await;
    sink.always("/down", Reply::status(503));
    let config = scratch.write(
        "router.toml",
        &format!(
            "{}{}",
            scratch.tables(&support::quickstart_recording(), None),
            endpoint(
                &sink,
                "down",
                "[endpoints.retry]\nschedule = [\"0s\", \"1h\"]\n"
            ),
        ),
    );
    let mut router = RouterProcess::start(&config);
    router.wait_for_log("the admin API is off", PATIENCE).await;
    let admin = format!("http://{}", router.metrics_addr().await);
    let response = reqwest::Client::new()
        .get(format!("{admin}/admin/dead-letters"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let token_file = scratch.write("admin-token", TOKEN);
    let ran = cli(
        &Backend::Redb,
        &[
            "list",
            "--admin",
            &admin,
            "--admin-token-file",
            &token_file.display().to_string(),
        ],
    )
    .await;
    assert_eq!(ran.code, 2);
    assert!(ran.stderr.contains("no admin API"), "{}", ran.stderr);
    let off = router
        .logs()
        .lines()
        .filter(|l| l.contains("the admin API is off"))
        .count();
    assert_eq!(off, 1, "logged once");
    router.terminate();
    assert_eq!(router.exit_code(PATIENCE).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgres_the_cli_redrives_while_a_router_runs_and_its_workers_deliver() {
    let backend = Backend::postgres().await;
    let scratch = Scratch::new();
    let sink = Sink::start().await;
    sink.always("/bad", Reply::status(400));
    sink.always("/down", Reply::status(503));
    let config = scratch.write(
        "router.toml",
        &format!(
            "{}{}{}",
            backend.tables(scratch.tables(&support::quickstart_recording(), None)),
            endpoint(&sink, "bad", ""),
            endpoint(
                &sink,
                "down",
                "[endpoints.retry]\nschedule = [\"0s\", \"1h\"]\n"
            ),
        ),
    );
    let mut router = backend.start(&config);
    router
        .wait_for_metric(
            "kfp_event_router_deliveries_total{endpoint=\"bad\",outcome=\"dead_lettered\"}",
            25.0,
            PATIENCE,
        )
        .await;
    let sent = ids_once(&sink.received_on("/bad"));
    sink.always("/bad", Reply::status(200));
    // The database is shared: no --admin needed, and the running router's workers are told.
    let config = config.display().to_string();
    let ran = cli(&backend, &["redrive", "--all", "--config", &config])
        .await
        .expect(0);
    assert_eq!(ran.stdout.trim(), "redriven 25 (bad: 25)");
    let received = sink.wait_for("/bad", 50, PATIENCE).await;
    assert_eq!(ids_once(&received[25..]), sent);
    router
        .wait_for_metric(
            "kfp_event_router_deliveries_total{endpoint=\"bad\",outcome=\"delivered\"}",
            25.0,
            PATIENCE,
        )
        .await;
    let again = cli(&backend, &["redrive", "--all", "--config", &config])
        .await
        .expect(0);
    assert_eq!(again.stdout.trim(), "redriven 0");
    assert_eq!(sink.received_on("/bad").len(), 50, "each delivered once");
    router.terminate();
    assert_eq!(router.exit_code(PATIENCE).await, 0);
    let logs = router.logs();
    assert!(!logs.contains(support::postgres::PASSWORD), "{logs}");
}
