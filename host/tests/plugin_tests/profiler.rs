//! `plugins.profiler = "perfmap"`: the plugins' compiled functions, by name, in the perf map
//! of the process that runs them (`/tmp/perf-<pid>.map`), for the router and `plugin test`.

use std::path::PathBuf;
use std::process::Command;

use crate::common::{built, plugin_dir, replay_to_end};
use crate::support;
use crate::support::router::{Scratch, toml_path};
use crate::support::sink::Sink;

/// The perf map of process `pid`.
fn perf_map(pid: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/perf-{pid}.map"))
}

/// Lines of a perf map (`<address> <size> <name>`) that name a function of `teams-card`'s
/// own code, which its kept name section names.
fn teams_card_functions(map: &str) -> usize {
    map.lines()
        .filter(|line| {
            line.split(' ')
                .nth(2)
                .is_some_and(|name| name.contains("teams_card"))
        })
        .count()
}

#[tokio::test]
async fn the_router_writes_plugin_functions_to_the_perf_map() {
    let map = perf_map(std::process::id());
    // A file left by an earlier process of the same pid would prove nothing.
    let _ = std::fs::remove_file(&map);
    let sink = Sink::start().await;
    let scratch = Scratch::new();
    let dir = plugin_dir(&scratch, &[("teams-card", "teams-card")]);
    let text = format!(
        "{tables}[plugins]\ndir = {dir}\nprofiler = \"perfmap\"\n\n\
         [[endpoints]]\nname = \"teams\"\nurl = {url:?}\nformat = \"extended\"\nplugins = [\"teams-card\"]\n",
        tables = scratch.tables(&support::quickstart_recording(), None),
        dir = toml_path(&dir),
        url = sink.url("/teams"),
    );
    replay_to_end(&scratch, &text).await;
    let received = sink.received_on("/teams");
    assert_eq!(received.len(), 25, "profiling changes nothing delivered");
    assert_eq!(received[0].json()["type"], "message");
    let written = std::fs::read_to_string(&map).expect("the perf map is written");
    let _ = std::fs::remove_file(&map);
    assert!(teams_card_functions(&written) > 10, "{written:.2000}");
}

#[test]
fn plugin_test_writes_plugin_functions_to_the_perf_map() {
    let scratch = Scratch::new();
    let router = scratch.write("router.toml", "[plugins]\nprofiler = \"perfmap\"\n");
    let recording = support::quickstart_recording();
    let run = |config: &std::path::Path| {
        let child = Command::new(support::router_bin())
            .args(["plugin", "test"])
            .arg(built("teams-card"))
            .arg("--events")
            .arg(&recording)
            .arg("--config")
            .arg(config)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let status = child.wait_with_output().unwrap().status;
        assert!(status.success());
        let map = std::fs::read_to_string(perf_map(pid)).ok();
        let _ = std::fs::remove_file(perf_map(pid));
        map
    };
    let map = run(&router).expect("the perf map is written");
    assert!(teams_card_functions(&map) > 10, "{map:.2000}");
    // Without the key, nothing is written.
    let plain = scratch.write("plain.toml", "[plugins]\n");
    assert_eq!(run(&plain), None);
}
