//! `kfp-event-router record`: writes a namespace's live Workflows and workflow-controller Events
//! as a recording that the `replay` source reads, so a real run can be replayed locally
//! through any config.
//!
//! The file is JSON Lines of watch events, `{"type": "ADDED|MODIFIED|DELETED", "object": {..}}`:
//! first the Workflows and Events that exist (as `ADDED`, Events oldest first), then every
//! change as it happens, until SIGINT/SIGTERM or `--duration`. Workflows are written whole
//! (not just the fields the router reads), so a recording stays useful as the router grows.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::Resource as _;
use k8s_openapi::api::core::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, TypeMeta};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::EVENT_SELECTOR;
use super::client;
use super::position::Position;
use crate::model::argo::is_workflow_event;

/// What to record.
#[derive(Clone, Debug)]
pub(crate) struct RecordOptions {
    /// The namespace; the router's own (`POD_NAMESPACE`, else the kubeconfig's) when `None`.
    pub(crate) namespace: Option<String>,
    /// The file to write (`-` for standard output).
    pub(crate) output: PathBuf,
    /// Stop after this long; run until `stop` otherwise.
    pub(crate) duration: Option<Duration>,
}

/// What a recording holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RecordSummary {
    /// Workflow lines written.
    pub(crate) workflows: u64,
    /// Event lines written.
    pub(crate) events: u64,
}

/// Why recording failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RecordError {
    /// No client.
    #[error(transparent)]
    Client(#[from] client::ClientError),
    /// Listing failed (a missing CRD, missing RBAC, an unreachable server).
    #[error("cannot list {what} in namespace {namespace}: {source}")]
    List {
        /// Workflows or Events.
        what: &'static str,
        /// The namespace.
        namespace: String,
        /// The watcher's error.
        source: watcher::Error,
    },
    /// The output could not be written.
    #[error("{}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The Argo Workflow resource, read whole.
fn workflow_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Workflow"),
        "workflows",
    )
}

/// Lines written, and the last version of each object, so a relist repeats nothing.
struct Recorder {
    out: Box<dyn Write + Send>,
    path: PathBuf,
    written: HashMap<String, String>,
    summary: RecordSummary,
}

impl Recorder {
    /// Writes one watch event, unless this version of the object was written already.
    fn write(&mut self, kind: &str, deleted: bool, object: Value) -> Result<(), RecordError> {
        let meta = &object["metadata"];
        let uid = meta["uid"].as_str().unwrap_or_default().to_owned();
        let version = meta["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let kind_of_change = match (deleted, self.written.get(&uid)) {
            (true, _) => "DELETED",
            (false, Some(seen)) if *seen == version => return Ok(()),
            (false, Some(_)) => "MODIFIED",
            (false, None) => "ADDED",
        };
        match deleted {
            true => self.written.remove(&uid),
            false => self.written.insert(uid, version),
        };
        let line = json!({ "type": kind_of_change, "object": object });
        writeln!(self.out, "{line}")
            .and_then(|()| self.out.flush())
            .map_err(|source| RecordError::Write {
                path: self.path.clone(),
                source,
            })?;
        match kind {
            "Workflow" => self.summary.workflows += 1,
            _ => self.summary.events += 1,
        }
        Ok(())
    }

    fn workflow(&mut self, deleted: bool, mut wf: DynamicObject) -> Result<(), RecordError> {
        wf.types = Some(TypeMeta {
            api_version: "argoproj.io/v1alpha1".into(),
            kind: "Workflow".into(),
        });
        wf.managed_fields_mut().clear();
        let value = serde_json::to_value(&wf).expect("objects serialise");
        self.write("Workflow", deleted, value)
    }

    fn event(&mut self, deleted: bool, event: Event) -> Result<(), RecordError> {
        if !is_workflow_event(&event) {
            return Ok(());
        }
        let mut value = serde_json::to_value(&event).expect("objects serialise");
        value["apiVersion"] = json!(Event::API_VERSION);
        value["kind"] = json!(Event::KIND);
        self.write("Event", deleted, value)
    }
}

/// Records until `stop` (or `options.duration`); returns what was written.
pub(crate) async fn record(
    options: RecordOptions,
    stop: CancellationToken,
) -> Result<RecordSummary, RecordError> {
    let connection = client::connect(None).await?;
    let namespace = options.namespace.clone().unwrap_or(connection.namespace);
    let out: Box<dyn Write + Send> = match options.output.to_str() {
        Some("-") => Box::new(std::io::stdout()),
        _ => Box::new(std::io::BufWriter::new(
            std::fs::File::create(&options.output).map_err(|source| RecordError::Write {
                path: options.output.clone(),
                source,
            })?,
        )),
    };
    let mut recorder = Recorder {
        out,
        path: options.output.clone(),
        written: HashMap::new(),
        summary: RecordSummary::default(),
    };
    let workflows: Api<DynamicObject> =
        Api::namespaced_with(connection.client.clone(), &namespace, &workflow_resource());
    let events: Api<Event> = Api::namespaced(connection.client, &namespace);
    let mut workflows = watcher(workflows, watcher::Config::default()).boxed();
    let mut events = watcher(events, watcher::Config::default().fields(EVENT_SELECTOR)).boxed();

    // What exists: Workflows first, then Events oldest first.
    let list_error = |what, source| RecordError::List {
        what,
        namespace: namespace.clone(),
        source,
    };
    while let Some(step) = workflows.next().await {
        match step.map_err(|e| list_error("Workflows", e))? {
            watcher::Event::InitApply(wf) | watcher::Event::Apply(wf) => {
                recorder.workflow(false, wf)?
            }
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    let mut existing = Vec::new();
    while let Some(step) = events.next().await {
        match step.map_err(|e| list_error("Events", e))? {
            watcher::Event::InitApply(event) | watcher::Event::Apply(event) => existing.push(event),
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    existing.sort_by(|a, b| Position::of(a).cmp_to(&Position::of(b)));
    for event in existing {
        recorder.event(false, event)?;
    }
    tracing::info!(
        %namespace,
        workflows = recorder.summary.workflows,
        events = recorder.summary.events,
        "recorded what exists; now recording changes (Ctrl-C to stop)"
    );

    // Then every change, until told to stop.
    let mut workflows = std::pin::pin!(workflows.default_backoff());
    let mut events = std::pin::pin!(events.default_backoff());
    let deadline = async {
        match options.duration {
            Some(duration) => tokio::time::sleep(duration).await,
            None => std::future::pending().await,
        }
    };
    let mut deadline = std::pin::pin!(deadline);
    loop {
        tokio::select! {
            Some(step) = workflows.next() => match step {
                Ok(watcher::Event::Apply(wf) | watcher::Event::InitApply(wf)) => recorder.workflow(false, wf)?,
                Ok(watcher::Event::Delete(wf)) => recorder.workflow(true, wf)?,
                Ok(_) => {}
                Err(e) => tracing::warn!("watching Workflows: {e}; retrying"),
            },
            Some(step) = events.next() => match step {
                Ok(watcher::Event::Apply(event) | watcher::Event::InitApply(event)) => recorder.event(false, event)?,
                Ok(watcher::Event::Delete(_)) => {}
                Ok(_) => {}
                Err(e) => tracing::warn!("watching Events: {e}; retrying"),
            },
            () = &mut deadline => break,
            () = stop.cancelled() => break,
        }
    }
    recorder.out.flush().map_err(|source| RecordError::Write {
        path: recorder.path.clone(),
        source,
    })?;
    Ok(recorder.summary)
}
