//! Hot reload: plugins replaced while events flow, broken and half-written files, removals,
//! and Kubernetes ConfigMap `..data` swaps.
//!
//! Versions of a plugin are told apart by patching `hostile.wasm`: in `tag` mode it sets the
//! header `x-plugin-version: <tag>`, and variant `k` renames that header (a string in its data
//! segment) to `x-plugin-verKKKK`. Same behaviour, different content, visible in every request.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kfp_event_router::model::request::Verdict;
use kfp_event_router::payload::PayloadStage;
use kfp_event_router::telemetry::Metrics;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::common::{built, config, event, metric};
use crate::support::recording::interleaved;
use crate::support::router::{Scratch, toml_path};
use crate::support::sink::{Received, Sink};

const HEADER: &[u8] = b"x-plugin-version";
const PREFIX: &str = "x-plugin-ver";

/// `hostile.wasm` whose tag header is `x-plugin-ver{k:04}`.
fn variant(k: usize) -> Vec<u8> {
    let mut bytes = std::fs::read(built("hostile")).unwrap();
    let at: Vec<usize> = bytes
        .windows(HEADER.len())
        .enumerate()
        .filter(|(_, w)| *w == HEADER)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        at.len(),
        1,
        "hostile.wasm must hold the header name exactly once"
    );
    bytes[at[0]..at[0] + HEADER.len()].copy_from_slice(format!("{PREFIX}{k:04}").as_bytes());
    bytes
}

/// The version and value of the tag headers of a request: exactly one is expected.
fn tags(headers: impl IntoIterator<Item = (String, String)>) -> Vec<(usize, String)> {
    headers
        .into_iter()
        .filter_map(|(name, value)| Some((name.strip_prefix(PREFIX)?.parse().ok()?, value)))
        .collect()
}

fn request_tags(request: &Received) -> Vec<(usize, String)> {
    tags(
        request
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned())),
    )
}

/// Writes `bytes` to `path` whole: a temporary file, then a rename.
fn replace(path: &Path, bytes: &[u8]) {
    let temporary = path.with_extension("wasm.partial");
    std::fs::write(&temporary, bytes).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

/// A folder laid out as Kubernetes mounts a ConfigMap: `name.wasm -> ..data/name.wasm`,
/// `..data -> ..<version>/`. Each [`ConfigMap::swap`] writes a new version folder and
/// switches `..data` to it atomically, then deletes the old one, as the kubelet does.
struct ConfigMap {
    dir: std::path::PathBuf,
    current: Option<String>,
}

impl ConfigMap {
    fn new(dir: &Path, names: &[&str], bytes: &[u8]) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let mut map = Self {
            dir: dir.to_owned(),
            current: None,
        };
        map.swap(0, names, bytes);
        for name in names {
            let file = format!("{name}.wasm");
            std::os::unix::fs::symlink(format!("..data/{file}"), dir.join(&file)).unwrap();
        }
        map
    }

    fn swap(&mut self, version: usize, names: &[&str], bytes: &[u8]) {
        let folder = format!("..2026_11_20_{version:04}");
        std::fs::create_dir(self.dir.join(&folder)).unwrap();
        for name in names {
            std::fs::write(self.dir.join(&folder).join(format!("{name}.wasm")), bytes).unwrap();
        }
        let temporary = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&folder, &temporary).unwrap();
        std::fs::rename(&temporary, self.dir.join("..data")).unwrap();
        if let Some(old) = self.current.replace(folder) {
            std::fs::remove_dir_all(self.dir.join(old)).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_swaps_under_load_deliver_each_event_once_through_one_whole_chain_version() {
    const SWAPS: usize = 20;
    let sink = Sink::start().await;
    let scratch = Scratch::new();
    let names = ["tag-a", "tag-b", "tag-c"];
    let dir = scratch.path("plugins");
    let mut configmap = ConfigMap::new(&dir, &names, &variant(0));
    let generated = interleaved(20, 40);
    let recording = scratch.path("load.jsonl");
    generated.recording.write(&recording);
    let text = format!(
        "{tables}[plugins]\ndir = {dir}\nchain = [\"tag-a\", \"tag-b\"]\n\n\
         [plugins.config.tag-a]\nmode = \"tag\"\ntag = \"a\"\n\
         [plugins.config.tag-b]\nmode = \"tag\"\ntag = \"b\"\n\
         [plugins.config.tag-c]\nmode = \"tag\"\ntag = \"c\"\n\n\
         [[endpoints]]\nname = \"one\"\nurl = {one:?}\n\n\
         [[endpoints]]\nname = \"two\"\nurl = {two:?}\nplugins = [\"tag-c\"]\n",
        // Slow enough that several versions load while it runs, even on a busy machine.
        tables = scratch.tables(&recording, Some(25.0)),
        dir = toml_path(&dir),
        one = sink.url("/one"),
        two = sink.url("/two"),
    );
    let router = tokio::spawn(kfp_event_router::pipeline::run(
        config(&scratch, &text),
        CancellationToken::new(),
    ));
    sink.wait_for("/one", 20, Duration::from_secs(30)).await;
    for version in 1..=SWAPS {
        configmap.swap(version, &names, &variant(version));
        // Swap again once this version serves (or a while passed: the replay may be over), so
        // that a loaded machine still sees several versions serve, however slowly they load.
        for _ in 0..50 {
            let serving = sink
                .received_on("/one")
                .iter()
                .any(|r| request_tags(r).iter().any(|(v, _)| *v == version));
            if serving || router.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    tokio::time::timeout(Duration::from_secs(120), router)
        .await
        .expect("the replay finishes")
        .unwrap()
        .expect("the router runs");

    let events = generated.events();
    for (path, value) in [("/one", "b"), ("/two", "c")] {
        let received = sink.received_on(path);
        let ids: HashSet<&str> = received.iter().map(|r| r.header("webhook-id")).collect();
        assert_eq!(received.len(), events, "{path}: every event exactly once");
        assert_eq!(ids.len(), events, "{path}: every event exactly once");
        let mut last: HashMap<String, usize> = HashMap::new();
        let mut seen = HashSet::new();
        for request in &received {
            // One whole chain version per event: every plugin of it set the same header.
            let tags = request_tags(request);
            assert_eq!(
                tags.len(),
                1,
                "{path}: mixed versions in one chain run: {tags:?}"
            );
            let (version, tag) = &tags[0];
            assert_eq!(tag, value);
            seen.insert(*version);
            // Events of a workflow are processed in order, so their versions never go back.
            let workflow = request.json()["WorkflowName"].as_str().unwrap().to_owned();
            let before = last.insert(workflow.clone(), *version).unwrap_or(0);
            assert!(
                before <= *version,
                "{path}: {workflow} went from version {before} back to {version}"
            );
        }
        assert!(
            seen.len() >= 5,
            "{path}: only versions {seen:?} served while {SWAPS} were swapped in"
        );
    }
}

/// A stage following `dir` (plugin `tagger` in `tag` mode, run by endpoint `ep`), with the
/// sender that keeps its config channel open.
async fn watched_stage(
    scratch: &Scratch,
    dir: &Path,
) -> (
    PayloadStage,
    Arc<Metrics>,
    String,
    watch::Sender<Arc<kfp_event_router::payload::PayloadSettings>>,
) {
    let text = format!(
        "{tables}[plugins]\ndir = {dir}\n\n[plugins.config.tagger]\nmode = \"tag\"\ntag = \"t\"\n\n\
         [[endpoints]]\nname = \"ep\"\nurl = \"http://127.0.0.1:9/\"\nplugins = [\"tagger\"]\n",
        tables = scratch.tables(&crate::support::quickstart_recording(), None),
        dir = toml_path(dir),
    );
    let settings = Arc::new(config(scratch, &text).payload());
    let (updates, receiver) = watch::channel(Arc::clone(&settings));
    let metrics = Arc::new(Metrics::new());
    let stage = PayloadStage::start(settings, Some(receiver), Arc::clone(&metrics), None)
        .await
        .unwrap();
    (stage, metrics, "ep".to_owned(), updates)
}

/// The version that served one call, or `None` when the delivery has to wait.
async fn served(stage: &PayloadStage, endpoint: &str) -> Option<usize> {
    match stage.process(endpoint, &event("WorkflowFailed")).await {
        Verdict::Deliver(request) => {
            let tags = tags(request.headers);
            assert_eq!(tags.len(), 1, "{tags:?}");
            Some(tags[0].0)
        }
        Verdict::Wait { reason } => {
            assert!(
                reason.contains("plugin \"tagger\" is not loaded"),
                "{reason}"
            );
            None
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// Waits until `check` holds, for 20 s at most.
async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn broken_half_written_and_removed_files_are_handled_as_documented() {
    let scratch = Scratch::new();
    let dir = scratch.path("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tagger.wasm");
    std::fs::write(&file, variant(1)).unwrap();
    let (stage, metrics, ep, _updates) = watched_stage(&scratch, &dir).await;
    assert_eq!(served(&stage, &ep).await, Some(1));
    let loads = |result: &str| {
        metric(
            &metrics,
            &format!(
                "kfp_event_router_plugin_loads_total{{plugin=\"tagger\",result=\"{result}\"}}"
            ),
        )
    };
    assert_eq!(loads("loaded"), 1.0);

    // Replaced whole: the new version serves.
    replace(&file, &variant(2));
    eventually("version 2", || async {
        served(&stage, &ep).await == Some(2)
    })
    .await;
    assert_eq!(loads("reloaded"), 1.0);

    // A broken file is rejected; the old version keeps serving.
    std::fs::write(&file, b"\0asm this is not a component").unwrap();
    eventually("the rejection", || async { loads("rejected") == 1.0 }).await;
    assert_eq!(served(&stage, &ep).await, Some(2));

    // A half-written file is rejected too, and loads once it is complete.
    let whole = variant(3);
    std::fs::write(&file, &whole[..whole.len() / 2]).unwrap();
    eventually("the second rejection", || async {
        loads("rejected") == 2.0
    })
    .await;
    assert_eq!(served(&stage, &ep).await, Some(2));
    std::fs::write(&file, &whole).unwrap();
    eventually("version 3", || async {
        served(&stage, &ep).await == Some(3)
    })
    .await;

    // Removed: deliveries that need it wait (neither lost nor sent unfiltered), and it is
    // reported as missing.
    std::fs::remove_file(&file).unwrap();
    eventually("the removal", || async {
        served(&stage, &ep).await.is_none()
    })
    .await;
    assert_eq!(loads("removed"), 1.0);
    assert!(
        metric(
            &metrics,
            "kfp_event_router_plugin_calls_total{plugin=\"tagger\",outcome=\"missing\"}"
        ) >= 1.0
    );
    let status = stage.status();
    assert_eq!(status["missing"][0]["name"], "tagger", "{status}");
    assert_eq!(
        status["missing"][0]["run_by"][0], "endpoint \"ep\"",
        "{status}"
    );

    // Back: it serves again.
    std::fs::write(&file, variant(4)).unwrap();
    eventually("version 4", || async {
        served(&stage, &ep).await == Some(4)
    })
    .await;
    assert_eq!(stage.status()["missing"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_wait_in_the_outbox_while_their_plugin_is_removed() {
    let sink = Sink::start().await;
    let scratch = Scratch::new();
    let dir = scratch.path("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tagger.wasm");
    std::fs::write(&file, variant(1)).unwrap();
    let generated = interleaved(4, 50);
    let recording = scratch.path("load.jsonl");
    generated.recording.write(&recording);
    let text = format!(
        "{tables}[plugins]\ndir = {dir}\n\n[plugins.config.tagger]\nmode = \"tag\"\ntag = \"t\"\n\n\
         [[endpoints]]\nname = \"ep\"\nurl = {url:?}\nplugins = [\"tagger\"]\n",
        tables = scratch.tables(&recording, Some(100.0)),
        dir = toml_path(&dir),
        url = sink.url("/ep"),
    );
    let router = tokio::spawn(kfp_event_router::pipeline::run(
        config(&scratch, &text),
        CancellationToken::new(),
    ));
    sink.wait_for("/ep", 10, Duration::from_secs(30)).await;
    std::fs::remove_file(&file).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stalled = sink.received_on("/ep").len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        sink.received_on("/ep").len(),
        stalled,
        "nothing is sent while the plugin is missing"
    );
    assert!(stalled < generated.events());
    std::fs::write(&file, variant(2)).unwrap();
    tokio::time::timeout(Duration::from_secs(60), router)
        .await
        .expect("the replay finishes once the plugin is back")
        .unwrap()
        .unwrap();
    let received = sink.received_on("/ep");
    let ids: HashSet<&str> = received.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(
        (received.len(), ids.len()),
        (generated.events(), generated.events())
    );
    assert!(
        received.iter().all(|r| request_tags(r).len() == 1),
        "every event went through the plugin"
    );
    assert!(
        received[stalled..]
            .iter()
            .all(|r| request_tags(r)[0].0 == 2)
    );
}

#[tokio::test]
async fn a_changed_plugin_config_reinitialises_the_plugin() {
    let scratch = Scratch::new();
    let dir = scratch.path("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tagger.wasm"), variant(1)).unwrap();
    let (stage, metrics, ep, updates) = watched_stage(&scratch, &dir).await;
    let tag = || async {
        match stage.process(&ep, &event("WorkflowFailed")).await {
            Verdict::Deliver(request) => tags(request.headers).pop().map(|(_, tag)| tag),
            _ => None,
        }
    };
    assert_eq!(tag().await.as_deref(), Some("t"));
    let text = std::fs::read_to_string(scratch.path("router.toml")).unwrap();
    let changed = config(&scratch, &text.replace("tag = \"t\"", "tag = \"u\""));
    updates.send_replace(Arc::new(changed.payload()));
    eventually("the new configuration", || async {
        tag().await.as_deref() == Some("u")
    })
    .await;
    assert_eq!(
        metric(
            &metrics,
            "kfp_event_router_plugin_loads_total{plugin=\"tagger\",result=\"reloaded\"}"
        ),
        1.0
    );
}
