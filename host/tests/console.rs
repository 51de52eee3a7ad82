//! The delivery console, in a real headless Chromium: the router replays the quick start's
//! run to a good endpoint (through a plugin that drops some events), a failing one, and one
//! that keeps retrying; the console shows their states, the run's timeline and the dead
//! letters, and redelivers them once the endpoint is fixed: those matching a filter, one, then
//! the rest. Another test checks that event text is shown as text, that nothing answers
//! without the token, and that no URL or secret reaches a page or a JSON answer.
//!
//! Screenshots of each view are saved under the target folder (`console-screenshots/`); with
//! `KFP_UPDATE_SCREENSHOTS=1` they are also written to `docs/console-<view>.png`, for the
//! README.

mod support;

#[path = "support/browser.rs"]
mod browser;

use std::path::{Path, PathBuf};

use browser::Browser;
use serde_json::Value;
use support::router::{PATIENCE, RouterProcess, Scratch, toml_path, toml_str};
use support::sink::{Reply, Sink};

/// The admin token: it must never show in a page, an answer or the logs.
const TOKEN: &str = "c0nsole-T0KEN-never-shown";

/// The failing endpoint's path: it holds a token, so the URL must never show.
const SECRET_PATH: &str = "/hooks/SECRET-TOKEN-123";

/// The value of a header read from a secret.
const HEADER_SECRET: &str = "hdr-S3CRET-value";

/// The signing secret (`whsec_` + base64).
const SIGNING_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The quick start's run id.
const RUN: &str = "ee1c3f1f-031b-49e9-a7ff-2f7a54c11b95";

/// Everything that must never be shown.
const NEVER: [&str; 5] = [
    TOKEN,
    "SECRET-TOKEN-123",
    HEADER_SECRET,
    "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "127.0.0.1:",
];

/// A config replaying `recording` to three endpoints of `sink`: `good` (through event-filter,
/// which keeps all but the `WorkflowNodeRunning` events), `flaky` (failures; two attempts, then a
/// dead letter) and `held` (failures retried in an hour, which keeps the router running).
fn config(scratch: &Scratch, sink: &Sink, recording: &Path) -> PathBuf {
    let token = scratch.write("admin-token", &format!("{TOKEN}\n"));
    let signing = scratch.write("signing-secret", SIGNING_SECRET);
    let header = scratch.write("header-secret", HEADER_SECRET);
    let plugins = scratch.path("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(
        support::root().join("host/tests/fixtures/event-filter-0.1.0.wasm"),
        plugins.join("event-filter.wasm"),
    )
    .unwrap();
    // A broken file: rejected at load, its error shown in the Plugins view.
    std::fs::write(plugins.join("broken.wasm"), b"not a component").unwrap();
    let tables = scratch.tables(recording, None).replacen(
        "[server]\n",
        &format!(
            "[server]\nadmin_token = {{ file = {} }}\nconsole_history = 100\n",
            toml_path(&token)
        ),
        1,
    );
    let text = format!(
        "{tables}[plugins]\ndir = {plugins}\n\n[plugins.config.event-filter]\n\
         reasons = [\"WorkflowRunning\", \"WorkflowNodeSucceeded\", \"WorkflowNodeFailed\", \
         \"WorkflowFailed\"]\n\n\
         [[endpoints]]\nname = \"good\"\nurl = {good}\nplugins = [\"event-filter\"]\n\
         signing_secret = {{ file = {signing} }}\n\n\
         [[endpoints]]\nname = \"flaky\"\nurl = {flaky}\n\
         reasons = [\"WorkflowFailed\", \"WorkflowNodeFailed\"]\n\
         signing_secret = {{ file = {signing} }}\n\
         headers = {{ \"X-Api-Token\" = {{ file = {header} }} }}\n\
         [endpoints.retry]\nmax_attempts = 2\nschedule = [\"0s\", \"50ms\"]\n\n\
         [[endpoints]]\nname = \"held\"\nurl = {held}\nreasons = [\"WorkflowRunning\"]\n\
         [endpoints.retry]\nschedule = [\"0s\", \"1h\"]\n",
        plugins = toml_path(&plugins),
        good = toml_str(&sink.url("/good")),
        flaky = toml_str(&sink.url(SECRET_PATH)),
        held = toml_str(&sink.url("/held")),
        signing = toml_path(&signing),
        header = toml_path(&header),
    );
    scratch.write("router.toml", &text)
}

/// Where screenshots go: the target folder, and `docs/` when asked.
fn screenshot_paths(view: &str) -> Vec<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| support::root().join("target"));
    let mut paths = vec![target.join(format!("console-screenshots/console-{view}.png"))];
    if std::env::var_os("KFP_UPDATE_SCREENSHOTS").is_some_and(|v| v == "1") {
        paths.push(support::root().join(format!("docs/console-{view}.png")));
    }
    paths
}

async fn screenshot(browser: &mut Browser, view: &str) {
    for path in screenshot_paths(view) {
        browser.screenshot(&path).await;
    }
}

/// Opens the console at `base` and signs in with the token.
async fn sign_in(browser: &mut Browser, base: &str) {
    browser.navigate(&format!("{base}/console")).await;
    browser
        .wait_for("!document.getElementById('login').hidden", PATIENCE)
        .await;
    browser
        .evaluate(&format!(
            "document.getElementById('token').value = {}; \
             document.querySelector('#login button[type=submit]').click(); true",
            serde_json::to_string(TOKEN).unwrap()
        ))
        .await;
}

/// The text of the cell of the endpoints table's row `name`, column `n` (0: the name).
fn endpoint_cell(name: &str, n: usize) -> String {
    format!(
        "(document.querySelector('tr[data-endpoint=\"{name}\"]') || {{cells: []}}).cells[{n}]?.innerText"
    )
}

/// The strings `script` (an expression giving an array of strings) evaluates to.
async fn texts(browser: &mut Browser, script: &str) -> Vec<String> {
    serde_json::from_value(browser.evaluate(script).await).unwrap()
}

/// Shows the view at `hash` and waits until `ready` holds in it.
async fn show(browser: &mut Browser, hash: &str, ready: &str) {
    browser
        .evaluate(&format!(
            "location.hash = {}; true",
            serde_json::to_string(hash).unwrap()
        ))
        .await;
    browser.wait_for(ready, PATIENCE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_endpoints_a_run_and_a_dead_letter_and_redelivers_it() {
    let scratch = Scratch::new();
    let sink = Sink::start().await;
    sink.always(
        SECRET_PATH,
        Reply::status(500).with_header("x-echo", format!("{}{SECRET_PATH}", sink.url(""))),
    );
    sink.always("/held", Reply::status(503));
    let config = config(&scratch, &sink, &support::quickstart_recording());
    let mut router = RouterProcess::start(&config);
    router
        .wait_for_metric(
            "kfp_event_router_deliveries_total{endpoint=\"flaky\",outcome=\"dead_lettered\"}",
            3.0,
            PATIENCE,
        )
        .await;
    let base = format!("http://{}", router.metrics_addr().await);
    let mut browser = Browser::start().await;
    sign_in(&mut browser, &base).await;

    // Endpoints: one healthy, one failing, one retrying.
    browser
        .wait_for(
            &format!("{} === 'failing'", endpoint_cell("flaky", 1)),
            PATIENCE,
        )
        .await;
    browser
        .wait_for(
            &format!("{} === 'retrying'", endpoint_cell("held", 1)),
            PATIENCE,
        )
        .await;
    browser
        .wait_for(
            &format!("{} === 'healthy'", endpoint_cell("good", 1)),
            PATIENCE,
        )
        .await;
    let backlog = browser.evaluate(&endpoint_cell("held", 2)).await;
    assert_eq!(backlog, "1", "held's backlog");
    let last_error = browser.evaluate(&endpoint_cell("flaky", 7)).await;
    assert_eq!(last_error, "5xx");
    screenshot(&mut browser, "endpoints").await;

    // The run's timeline: every transition, what each endpoint got.
    show(
        &mut browser,
        &format!("#run/{RUN}"),
        "document.querySelectorAll('tbody tr[data-webhook-id]').length === 25",
    )
    .await;
    let cells = |endpoint: &str| {
        format!(
            "[...document.querySelectorAll('td[data-endpoint=\"{endpoint}\"]')]\
             .map(td => td.innerText.split('\\n')[0].trim()).filter(t => t)"
        )
    };
    let good = texts(&mut browser, &cells("good")).await;
    assert_eq!(good.len(), 25, "{good:?}");
    let dropped = good.iter().filter(|t| t.starts_with("dropped")).count();
    let delivered = good.iter().filter(|t| t.starts_with("delivered")).count();
    assert_eq!((dropped, delivered), (12, 13), "{good:?}");
    let flaky = texts(&mut browser, &cells("flaky")).await;
    assert_eq!(flaky.len(), 3, "{flaky:?}");
    assert!(
        flaky.iter().all(|t| t.starts_with("dead lettered")),
        "{flaky:?}"
    );
    let dropped_note = browser
        .evaluate("document.querySelector('td[data-endpoint=\"good\"] .muted')?.innerText")
        .await;
    assert_eq!(dropped_note, "dropped by event-filter");
    screenshot(&mut browser, "run").await;

    // A delivery's detail: the headers sent (signature shown, secrets not), each attempt.
    show(
        &mut browser,
        "#deliveries?endpoint=flaky",
        "document.querySelectorAll('tbody tr[data-webhook-id]').length === 3",
    )
    .await;
    screenshot(&mut browser, "deliveries").await;
    browser
        .evaluate("document.querySelector('tbody tr[data-webhook-id] a[href^=\"#delivery/\"]').click(); true")
        .await;
    browser
        .wait_for(
            "document.body.innerText.includes('Request headers sent')",
            PATIENCE,
        )
        .await;
    let detail = browser.evaluate("document.body.innerText").await;
    let detail = detail.as_str().unwrap();
    assert!(detail.contains("webhook-signature: v1,"), "{detail}");
    assert!(detail.contains("x-api-token: <redacted>"), "{detail}");
    assert!(detail.contains("x-echo: <redacted>"), "{detail}");
    assert_eq!(
        browser
            .evaluate("document.querySelectorAll('table')[0].tBodies[0].rows.length")
            .await,
        2,
        "two attempts"
    );
    screenshot(&mut browser, "delivery").await;

    // Plugins: event-filter loaded, its calls and drops.
    show(
        &mut browser,
        "#plugins",
        "document.querySelector('tr[data-plugin=\"event-filter\"]')",
    )
    .await;
    let row = texts(
        &mut browser,
        "[...document.querySelector('tbody tr[data-plugin=\"event-filter\"]').cells].map(c => c.innerText)",
    )
    .await;
    assert!(row[1].ends_with("@0.1.0"), "the WIT version: {row:?}");
    assert_eq!(row[2].len(), 64, "the file's SHA-256: {row:?}");
    assert_eq!(
        (row[4].as_str(), row[5].as_str()),
        ("25", "12"),
        "calls, drops: {row:?}"
    );
    let broken = browser
        .evaluate("document.querySelectorAll('tr[data-plugin=\"broken\"]')[0]?.innerText")
        .await;
    let broken = broken.as_str().unwrap_or_default();
    assert!(broken.contains("rejected"), "{broken}");
    assert!(
        broken.len() > "broken\trejected".len() + 20,
        "the error is shown: {broken}"
    );
    screenshot(&mut browser, "plugins").await;

    // Dead letters: three; fixed, redelivered, they arrive and the endpoint is healthy again.
    show(
        &mut browser,
        "#dead-letters",
        "document.querySelectorAll('button.redeliver').length === 3",
    )
    .await;
    screenshot(&mut browser, "dead-letters").await;
    sink.always(SECRET_PATH, Reply::status(200));
    // Filtered by reason, "Redeliver all matching" takes the one WorkflowFailed letter and
    // leaves the two WorkflowNodeFailed ones.
    show(
        &mut browser,
        "#dead-letters?reason=WorkflowFailed",
        "document.querySelectorAll('button.redeliver').length === 1 \
         && document.getElementById('redeliver-filter')",
    )
    .await;
    browser
        .evaluate("document.getElementById('redeliver-filter').click(); true")
        .await;
    browser
        .wait_for(
            "document.querySelectorAll('button.redeliver').length === 0",
            PATIENCE,
        )
        .await;
    show(
        &mut browser,
        "#dead-letters",
        "document.querySelectorAll('button.redeliver').length === 2",
    )
    .await;
    let reasons = texts(
        &mut browser,
        "[...document.querySelectorAll('tbody tr[data-id]')].map(tr => tr.cells[3].innerText)",
    )
    .await;
    assert_eq!(
        reasons,
        ["WorkflowNodeFailed", "WorkflowNodeFailed"],
        "only the matching letter was redelivered"
    );
    let redelivered = sink.wait_for(SECRET_PATH, 7, PATIENCE).await;
    assert_eq!(
        redelivered.len(),
        7,
        "two attempts each, then the matching one"
    );
    browser
        .evaluate("document.querySelector('button.redeliver').click(); true")
        .await;
    browser
        .wait_for(
            "document.querySelectorAll('button.redeliver').length === 1",
            PATIENCE,
        )
        .await;
    browser
        .evaluate("document.getElementById('redeliver-all').click(); true")
        .await;
    browser
        .wait_for(
            "document.querySelectorAll('button.redeliver').length === 0",
            PATIENCE,
        )
        .await;
    show(
        &mut browser,
        "#endpoints",
        "document.querySelector('tr[data-endpoint=\"flaky\"]')",
    )
    .await;
    browser
        .wait_for(
            &format!("{} === 'healthy'", endpoint_cell("flaky", 1)),
            PATIENCE,
        )
        .await;
    show(
        &mut browser,
        "#deliveries?endpoint=flaky&outcome=delivered",
        "document.querySelectorAll('tbody tr[data-webhook-id]').length === 3",
    )
    .await;
    assert_eq!(
        sink.received_on(SECRET_PATH).len(),
        9,
        "two attempts each, then one"
    );

    drop(browser);
    router.terminate();
    assert_eq!(router.exit_code(PATIENCE).await, 0, "{}", router.logs());
    let logs = router.logs() + &router.stdout();
    for secret in [TOKEN, "SECRET-TOKEN-123", HEADER_SECRET] {
        assert!(!logs.contains(secret), "{secret} is in the logs:\n{logs}");
    }
}

/// The quick start's recording, with `<script>` in its failed nodes' messages.
fn hostile_recording(scratch: &Scratch) -> PathBuf {
    let text = std::fs::read_to_string(support::quickstart_recording()).unwrap();
    let hostile: String = text
        .lines()
        .map(|line| match line.contains("\"reason\":\"WorkflowNodeFailed\"") {
            true => line.replacen(
                "\"message\":\"",
                "\"message\":\"<script>window.pwned = 1<\\/script><img src=x onerror=\\\"window.pwned = 2\\\"> ",
                1,
            ),
            false => line.to_owned(),
        })
        .map(|line| line + "\n")
        .collect();
    assert_ne!(hostile, text, "the recording has WorkflowNodeFailed events");
    scratch.write("hostile.jsonl", &hostile)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_text_is_escaped_and_nothing_shows_without_the_token_or_leaks_a_secret() {
    let scratch = Scratch::new();
    let sink = Sink::start().await;
    sink.always(SECRET_PATH, Reply::status(500));
    sink.always("/held", Reply::status(503));
    let config = config(&scratch, &sink, &hostile_recording(&scratch));
    let mut router = RouterProcess::start(&config);
    router
        .wait_for_metric(
            "kfp_event_router_deliveries_total{endpoint=\"flaky\",outcome=\"dead_lettered\"}",
            3.0,
            PATIENCE,
        )
        .await;
    let base = format!("http://{}", router.metrics_addr().await);
    let http = reqwest::Client::new();

    // Without the token (or with a wrong one): 401 everywhere, and the page holds no data.
    let letters: Value = http
        .get(format!("{base}/admin/dead-letters"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let letter = letters["dead_letters"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let delivery = format!("flaky/msg_{}", "x");
    let routes = [
        "/console".to_owned(),
        "/admin/console/endpoints".to_owned(),
        "/admin/console/deliveries".to_owned(),
        format!("/admin/console/deliveries/{delivery}"),
        "/admin/console/runs".to_owned(),
        format!("/admin/console/runs/{RUN}"),
        "/admin/console/plugins".to_owned(),
        "/admin/dead-letters".to_owned(),
        format!("/admin/dead-letters/{letter}"),
    ];
    for route in &routes {
        for wrong in [None, Some("wrong")] {
            let mut request = http.get(format!("{base}{route}"));
            if let Some(wrong) = wrong {
                request = request.bearer_auth(wrong);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 401, "{route} with {wrong:?}");
            let body = response.text().await.unwrap();
            assert!(
                !body.contains("flaky") && !body.contains(RUN),
                "{route}: {body}"
            );
        }
    }
    let redrive = http
        .post(format!("{base}/admin/dead-letters/redrive"))
        .json(&serde_json::json!({ "all": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(redrive.status(), 401);

    // With it, no answer holds a URL or a secret: every route, every delivery's detail.
    let get = |path: String| {
        let http = http.clone();
        async move {
            let response = http
                .get(path.clone())
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{path}");
            response.text().await.unwrap()
        }
    };
    let mut bodies = Vec::new();
    for route in routes.iter().filter(|r| !r.contains("msg_x")) {
        bodies.push(get(format!("{base}{route}")).await);
    }
    let list: Value =
        serde_json::from_str(&get(format!("{base}/admin/console/deliveries?limit=1000")).await)
            .unwrap();
    let deliveries = list["deliveries"].as_array().unwrap();
    assert!(deliveries.len() >= 20, "{list}");
    for d in deliveries {
        let (endpoint, id) = (
            d["endpoint"].as_str().unwrap(),
            d["webhook_id"].as_str().unwrap(),
        );
        bodies.push(get(format!("{base}/admin/console/deliveries/{endpoint}/{id}")).await);
    }
    for asset in ["/console/app.js", "/console/app.css"] {
        bodies.push(get(format!("{base}{asset}")).await);
    }
    for body in &bodies {
        for secret in NEVER {
            assert!(!body.contains(secret), "{secret} shows in:\n{body}");
        }
    }

    // In the browser, the hostile message is text: no script ran, no element was made.
    let mut browser = Browser::start().await;
    sign_in(&mut browser, &base).await;
    show(
        &mut browser,
        &format!("#run/{RUN}"),
        "document.querySelectorAll('tbody tr[data-webhook-id]').length === 25",
    )
    .await;
    let text = browser
        .evaluate(
            "[...document.querySelectorAll('td.message')].map(td => td.textContent).join('\\n')",
        )
        .await;
    assert!(
        text.as_str()
            .unwrap()
            .contains("<script>window.pwned = 1</script><img src=x"),
        "{text}"
    );
    assert_eq!(
        browser
            .evaluate("document.querySelectorAll('#view script, #view img').length")
            .await,
        0
    );
    assert_eq!(browser.evaluate("typeof window.pwned").await, "undefined");
    let page = browser.evaluate("document.documentElement.outerHTML").await;
    for secret in NEVER {
        assert!(
            !page.as_str().unwrap().contains(secret),
            "{secret} shows in the page"
        );
    }
    drop(browser);
    router.terminate();
    assert_eq!(router.exit_code(PATIENCE).await, 0, "{}", router.logs());
}
