//! `/metrics` answers "how is endpoint X doing": how deliveries ended, each attempt's result
//! class and timing, with the older per-outcome counters still there for existing dashboards;
//! and how long the outbox takes to commit, the floor under every delivery's latency.

mod support;

use support::postgres::Backend;
use support::router::{PATIENCE, Scratch, metric, toml_str};
use support::sink::{Reply, Sink};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_attempts_and_backlog_per_endpoint_with_redb() {
    deliveries_attempts_and_backlog_per_endpoint(Backend::Redb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_attempts_and_backlog_per_endpoint_with_postgres() {
    deliveries_attempts_and_backlog_per_endpoint(Backend::postgres().await).await;
}

async fn deliveries_attempts_and_backlog_per_endpoint(backend: Backend) {
    let scratch = Scratch::new();
    let sink = Sink::start().await;
    sink.always("/ok", Reply::status(200));
    sink.always("/bad", Reply::status(400));
    sink.always("/down", Reply::status(503));
    let endpoint = |name: &str, extra: &str| {
        format!(
            "[[endpoints]]\nname = \"{name}\"\nurl = {}\n{extra}",
            toml_str(&sink.url(&format!("/{name}")))
        )
    };
    let config = scratch.write(
        "router.toml",
        &format!(
            "{}{}{}{}",
            backend.tables(scratch.tables(&support::quickstart_recording(), None)),
            endpoint("ok", ""),
            endpoint("bad", ""),
            // Keeps the router running (its retries wait an hour) while it is scraped.
            endpoint("down", "[endpoints.retry]\nschedule = [\"0s\", \"1h\"]\n"),
        ),
    );
    let mut router = backend.start(&config);
    // The run's events go to each endpoint in order: `down` holds its first one for an hour.
    for series in [
        "kfp_event_router_deliveries_total{endpoint=\"ok\",outcome=\"delivered\"}",
        "kfp_event_router_deliveries_total{endpoint=\"bad\",outcome=\"dead_lettered\"}",
    ] {
        router.wait_for_metric(series, 25.0, PATIENCE).await;
    }
    router
        .wait_for_metric(
            "kfp_event_router_delivery_attempts_total{endpoint=\"down\",result=\"5xx\"}",
            1.0,
            PATIENCE,
        )
        .await;
    // The backlog is read at most every few seconds, so one reading can predate the last
    // completions for `ok`: wait for a reading where `down` holds all 25 and `ok` none.
    let ok_pending = "kfp_event_router_outbox_pending{endpoint=\"ok\"}";
    let down_pending = "kfp_event_router_outbox_pending{endpoint=\"down\"}";
    let text = router
        .wait_for_scrape("25 pending for down, none for ok", PATIENCE, |text| {
            metric(text, down_pending) == Some(25.0)
                && metric(text, ok_pending).is_none_or(|v| v == 0.0)
        })
        .await;
    let value =
        |series: &str| metric(&text, series).unwrap_or_else(|| panic!("{series} in\n{text}"));
    assert_eq!(
        value("kfp_event_router_deliveries_total{endpoint=\"ok\",outcome=\"delivered\"}"),
        25.0
    );
    assert_eq!(
        value("kfp_event_router_events_delivered_total{endpoint=\"ok\"}"),
        25.0,
        "the older name"
    );
    assert_eq!(
        value("kfp_event_router_delivery_attempts_total{endpoint=\"ok\",result=\"2xx\"}"),
        25.0
    );
    assert_eq!(
        value("kfp_event_router_delivery_attempts_total{endpoint=\"bad\",result=\"4xx\"}"),
        25.0
    );
    assert_eq!(
        value("kfp_event_router_deliveries_total{endpoint=\"bad\",outcome=\"dead_lettered\"}"),
        value("kfp_event_router_events_dead_lettered_total{endpoint=\"bad\"}")
    );
    assert_eq!(
        value("kfp_event_router_delivery_attempt_duration_seconds_count{endpoint=\"ok\"}"),
        25.0
    );
    assert_eq!(
        value("kfp_event_router_delivery_latency_seconds_bucket{le=\"129600.0\",endpoint=\"ok\"}"),
        25.0,
        "latency buckets reach the retry horizon"
    );
    assert!(
        text.contains("kfp_event_router_build_info{version=\""),
        "{text}"
    );
    // At least the transaction that accepted the run's events; each commit lands in a bucket.
    let commits = value("kfp_event_router_outbox_commit_duration_seconds_count");
    assert!(commits >= 1.0, "{commits} commits timed");
    assert_eq!(
        value("kfp_event_router_outbox_commit_duration_seconds_bucket{le=\"+Inf\"}"),
        commits
    );
    let age = value("kfp_event_router_outbox_oldest_pending_age_seconds{endpoint=\"down\"}");
    assert!(
        age > 0.0 && age < 600.0,
        "the oldest waits since the run began: {age}"
    );
    router.terminate();
    assert_eq!(router.exit_code(PATIENCE).await, 0);
}
