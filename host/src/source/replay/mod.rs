//! Replays a recording: a JSON Lines file of Kubernetes objects, in the order they happened.
//!
//! Each line is an object as `kubectl get -o json` prints it (`kind: Event`, `kind: Workflow`,
//! or a `List` of them), or a watch event `{"type": "ADDED|MODIFIED|DELETED", "object": {..}}`
//! as `kubectl get -w -o json` and `kfp-event-router record` write. Workflows update the
//! enrichment cache; Events that are new occurrences become [`SourceItem::Event`]s. A line that
//! cannot be read is logged with its `file:line` and skipped: the rest still flows.
//!
//! The checkpoint says where the last accepted event was, so a replay that was stopped resumes
//! after it rather than from the top: `<n>` once every Event of line `n` was sent, and
//! `<n>:<k>` while the line after `n` is a `List` whose first `k` Events were sent. The accept
//! stage stores a long `List` in several transactions, so a replay stopped between two of them
//! resumes inside the `List`, neither passing over its rest nor sending its start again.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;

use self::line::{Object, parse_line};
use super::occurrence::{Occurrences, REMEMBERED};
use crate::model::argo::is_workflow_event;
use crate::model::item::{Checkpoint, SourceItem};
use crate::model::pace;

mod line;

/// How far a paced replay that fell behind (the pipeline stalled, the timer woke late) may
/// catch up at once: at `rate = 12500`, 125 events. Past that, it resumes at its rate instead
/// of sending everything it missed in one burst.
const PACE_SLACK: Duration = Duration::from_millis(10);

/// A recording to replay.
#[derive(Clone, Debug)]
pub(crate) struct Replay {
    path: PathBuf,
    rate: Option<f64>,
}

/// What a finished replay did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ReplaySummary {
    /// Event occurrences sent on.
    pub(crate) events: u64,
    /// Events already accepted by an earlier run, not sent again.
    pub(crate) resumed_past: u64,
    /// Lines that could not be read.
    pub(crate) skipped_lines: u64,
}

impl Replay {
    /// Replays `path`, at most `rate` events per second when given (evenly spaced; after a
    /// stall, it catches up by at most [`PACE_SLACK`]).
    pub(crate) fn new(path: impl Into<PathBuf>, rate: Option<f64>) -> Self {
        Self {
            path: path.into(),
            rate,
        }
    }

    /// The key this recording's checkpoint is stored under.
    pub(crate) fn checkpoint_key(&self) -> String {
        let path = std::fs::canonicalize(&self.path).unwrap_or_else(|_| self.path.clone());
        format!("replay:{}", path.display())
    }

    /// Sends the recording's items to `out`, skipping the events a stored checkpoint of this
    /// replay (`resume`) says were accepted. Returns when the file ends or `out` is closed.
    pub(crate) async fn run(
        self,
        resume: Option<&str>,
        out: mpsc::Sender<SourceItem>,
    ) -> std::io::Result<ReplaySummary> {
        let file = tokio::fs::File::open(&self.path)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", self.path.display())))?;
        let mut reader = tokio::io::BufReader::with_capacity(1 << 16, file);
        let spacing = self.rate.map(|rate| Duration::from_secs_f64(1.0 / rate));
        let mut next_slot = tokio::time::Instant::now();
        let key = self.checkpoint_key();
        let resume = resume.map(Resume::parse).unwrap_or_default();
        let mut seen = Occurrences::new(REMEMBERED);
        let mut summary = ReplaySummary::default();
        let mut number = 0u64;
        let mut bytes = Vec::new();
        loop {
            bytes.clear();
            if reader.read_until(b'\n', &mut bytes).await? == 0 {
                break;
            }
            number += 1;
            // Logged by position only, never by content.
            let Ok(line) = std::str::from_utf8(&bytes) else {
                tracing::warn!("{}:{number}: line skipped: not UTF-8", self.path.display());
                summary.skipped_lines += 1;
                continue;
            };
            if line.trim().is_empty() {
                continue;
            }
            let objects = match parse_line(line) {
                Ok(objects) => objects,
                Err(e) => {
                    tracing::warn!("{}:{number}: line skipped: {e}", self.path.display());
                    summary.skipped_lines += 1;
                    continue;
                }
            };
            let mut items = Vec::with_capacity(objects.len());
            let mut sent_in_line = 0u64;
            for (deleted, object) in objects {
                items.push(match object {
                    Object::Workflow(wf) if deleted => SourceItem::WorkflowDeleted(wf),
                    Object::Workflow(wf) => SourceItem::WorkflowApplied(wf),
                    Object::Event(event) => {
                        if deleted || !is_workflow_event(&event) || !seen.is_new(&event) {
                            continue;
                        }
                        sent_in_line += 1;
                        if resume.accepted(number, sent_in_line) {
                            summary.resumed_past += 1;
                            continue;
                        }
                        SourceItem::Event {
                            event,
                            checkpoint: None,
                        }
                    }
                });
            }
            let last_event = items
                .iter()
                .rposition(|item| matches!(item, SourceItem::Event { .. }));
            // Events of this line accepted by an earlier run come before the ones sent now.
            let mut position = sent_in_line
                - items
                    .iter()
                    .filter(|item| matches!(item, SourceItem::Event { .. }))
                    .count() as u64;
            for (index, mut item) in items.into_iter().enumerate() {
                if let SourceItem::Event { checkpoint, .. } = &mut item {
                    if let Some(spacing) = spacing {
                        pace::wait_for(pace::take_slot(&mut next_slot, spacing, PACE_SLACK)).await;
                    }
                    summary.events += 1;
                    position += 1;
                    // The line is done with its last Event; before, the checkpoint says how far
                    // into the line (a List) the replay got.
                    let value = match Some(index) == last_event {
                        true => number.to_string(),
                        false => format!("{}:{position}", number - 1),
                    };
                    *checkpoint = Some(Checkpoint {
                        key: key.clone(),
                        value,
                    });
                }
                if out.send(item).await.is_err() {
                    return Ok(summary);
                }
            }
        }
        Ok(summary)
    }
}

/// Where a replay resumes: after line `done`, and past the first `partial` Events of the line
/// after it. Stored as `<done>` or `<done>:<partial>`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Resume {
    done: u64,
    partial: u64,
}

impl Resume {
    /// Reads a stored checkpoint; one that cannot be read resumes from the top.
    fn parse(text: &str) -> Self {
        let (done, partial) = text.split_once(':').unwrap_or((text, "0"));
        match (done.parse(), partial.parse()) {
            (Ok(done), Ok(partial)) => Self { done, partial },
            _ => {
                tracing::warn!("replay checkpoint unreadable, replaying from the top");
                Self::default()
            }
        }
    }

    /// Whether the `nth` Event (1-based) of line `line` was accepted by an earlier run.
    fn accepted(self, line: u64, nth: u64) -> bool {
        line <= self.done || (line == self.done + 1 && nth <= self.partial)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::line::tests::event_line;
    use super::*;

    #[tokio::test]
    async fn an_invalid_utf8_line_is_skipped_and_the_rest_flows() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let workflow = r#"{"kind":"Workflow","metadata":{"name":"wf","namespace":"kubeflow"}}"#;
        writeln!(file, "{workflow}").unwrap();
        writeln!(file, "{}", event_line("e1")).unwrap();
        file.write_all(b"{\"kind\":\"Event\",\"message\":\"\xff\xfe\xc3\"}\n")
            .unwrap();
        writeln!(file, "{}", event_line("e2")).unwrap();
        file.flush().unwrap();

        let (tx, mut rx) = mpsc::channel(16);
        let summary = Replay::new(file.path(), None).run(None, tx).await.unwrap();
        let mut events = Vec::new();
        while let Some(item) = rx.recv().await {
            if let SourceItem::Event { event, checkpoint } = item {
                events.push((event.metadata.uid.unwrap(), checkpoint.unwrap().value));
            }
        }
        assert_eq!(
            events,
            [
                ("e1".to_owned(), "2".to_owned()),
                ("e2".to_owned(), "4".to_owned())
            ]
        );
        assert_eq!(summary.skipped_lines, 1);
        assert_eq!(summary.events, 2);
    }

    /// The Events of a `List` carry the line before until the last one, so a replay stopped
    /// inside the List sends all of it again.
    #[tokio::test]
    async fn a_list_line_is_resumed_inside_from_how_far_its_events_were_accepted() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let workflow = r#"{"kind":"Workflow","metadata":{"name":"wf","namespace":"kubeflow"}}"#;
        writeln!(file, "{workflow}").unwrap();
        let items: Vec<serde_json::Value> = ["e1", "e2", "e3"]
            .iter()
            .map(|uid| serde_json::from_str(&event_line(uid)).unwrap())
            .collect();
        writeln!(
            file,
            "{}",
            serde_json::json!({"kind": "List", "items": items})
        )
        .unwrap();
        file.flush().unwrap();

        let expected: [(Option<&str>, &[&str]); 4] = [
            (None, &["1:1", "1:2", "2"]),
            (Some("1"), &["1:1", "1:2", "2"]),
            (Some("1:2"), &["2"]),
            (Some("2"), &[]),
        ];
        for (resume, checkpoints_then) in expected {
            let (tx, mut rx) = mpsc::channel(16);
            Replay::new(file.path(), None)
                .run(resume, tx)
                .await
                .unwrap();
            let mut checkpoints = Vec::new();
            while let Some(item) = rx.recv().await {
                if let SourceItem::Event { checkpoint, .. } = item {
                    checkpoints.push(checkpoint.unwrap().value);
                }
            }
            assert_eq!(checkpoints, checkpoints_then, "resuming after {resume:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_paced_replay_held_up_resumes_at_its_rate_not_in_one_burst() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        for n in 0..400 {
            writeln!(file, "{}", event_line(&format!("e{n}"))).unwrap();
        }
        file.flush().unwrap();
        let (tx, mut rx) = mpsc::channel(1);
        let replay = tokio::spawn(Replay::new(file.path(), Some(1000.0)).run(None, tx));
        let start = tokio::time::Instant::now();
        for _ in 0..50 {
            rx.recv().await.unwrap();
        }
        assert!(
            start.elapsed() >= Duration::from_millis(48),
            "paced at 1 ms"
        );

        // Downstream holds the replay up for 200 ms: 200 slots go by.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let resumed = tokio::time::Instant::now();
        let mut at_once: u64 = 0;
        while rx.recv().await.is_some() && tokio::time::Instant::now() == resumed {
            at_once += 1;
        }
        // The one in the channel, the one being sent, then 10 ms of slack and the slot due.
        assert!(at_once <= 13, "{at_once} events at once after the stall");
        // The loop above ended on the first event of a later instant: it counts with the rest.
        let mut rest: u64 = 1;
        while rx.recv().await.is_some() {
            rest += 1;
        }
        let after = resumed.elapsed();
        assert_eq!(50 + at_once + rest, 400);
        assert!(
            after >= Duration::from_millis(rest - 12),
            "{rest} events in {after:?}: back at 1 ms each"
        );
        assert_eq!(replay.await.unwrap().unwrap().events, 400);
    }
}
