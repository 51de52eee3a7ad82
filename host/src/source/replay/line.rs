//! Reads a line of a recording into its objects.
//!
//! A line is read in one pass: [`Recorded`] takes the fields of an Event, of a Workflow, of a
//! `List` and of a watch event side by side, so that the object's `kind`, wherever it comes in
//! the object, decides what it was read as without reading the text again. A line that pass
//! refuses (bad JSON, a field of the wrong type, a kind other than Event and Workflow shaped
//! unlike both, a `null` where one of them wants an object) is read again the careful way:
//! outline first, then the object as its kind. That reading decides what the line holds and,
//! for a bad line, says what is wrong with it. So the one pass only ever saves time: what it
//! accepts, the careful reading gives the same.

use std::borrow::Cow;

use k8s_openapi::api::core::v1::{Event, EventSeries, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::model::workflow::{Workflow, WorkflowSpec, WorkflowStatus};

/// One object of a recording line.
pub(super) enum Object {
    Event(Box<Event>),
    Workflow(Box<Workflow>),
}

/// Reads one line into its objects, each with whether it was deleted. Kinds other than Event
/// and Workflow are passed over.
pub(super) fn parse_line(line: &str) -> Result<Vec<(bool, Object)>, String> {
    let mut objects = Vec::new();
    if let Ok(recorded) = serde_json::from_str::<Recorded>(line)
        && recorded.into_objects(&mut objects).is_some()
    {
        return Ok(objects);
    }
    objects.clear();
    parse_carefully(line, &mut objects)?;
    Ok(objects)
}

/// An object of a recording, or a watch event, with the fields of every shape a line can
/// have. The fields of an Event and of a Workflow have their types there, so that what is read
/// here is what reading the object as its kind reads.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Recorded<'a> {
    #[serde(borrow)]
    kind: Option<Cow<'a, str>>,
    /// A `null` is refused, as an Event refuses it.
    #[serde(default, deserialize_with = "present")]
    api_version: Option<&'a str>,
    /// A watch event's type (`ADDED`, `DELETED`...), or an Event's (`Normal`, `Warning`).
    #[serde(rename = "type")]
    type_: Option<String>,
    /// A watch event's object.
    #[serde(borrow)]
    object: Option<Box<Recorded<'a>>>,
    /// A `List`'s objects.
    #[serde(borrow)]
    items: Option<Vec<Recorded<'a>>>,
    /// A `null` is refused, as a Workflow refuses it.
    #[serde(default, deserialize_with = "present")]
    metadata: Option<ObjectMeta>,

    action: Option<String>,
    count: Option<i32>,
    event_time: Option<MicroTime>,
    first_timestamp: Option<Time>,
    involved_object: Option<ObjectReference>,
    last_timestamp: Option<Time>,
    message: Option<String>,
    reason: Option<String>,
    related: Option<ObjectReference>,
    reporting_component: Option<String>,
    reporting_instance: Option<String>,
    series: Option<EventSeries>,
    source: Option<EventSource>,

    /// A `null` is refused, as a Workflow refuses it.
    #[serde(default, deserialize_with = "present")]
    spec: Option<WorkflowSpec>,
    status: Option<WorkflowStatus>,
}

/// Reads a field that, when given, must not be `null`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

impl Recorded<'_> {
    /// Adds this line's objects to `out`; `None` when the careful reading must decide.
    fn into_objects(mut self, out: &mut Vec<(bool, Object)>) -> Option<()> {
        let deleted = self.type_.as_deref() == Some("DELETED");
        match (self.type_.is_some(), self.object.take()) {
            (true, Some(object)) => object.collect(deleted, out),
            _ => self.collect(false, out),
        }
    }

    /// Adds this object, the items of a `List` included, to `out`.
    fn collect(self, deleted: bool, out: &mut Vec<(bool, Object)>) -> Option<()> {
        match self.kind.as_deref()? {
            "Event" if self.api_version.is_none_or(|v| v == "v1") => {
                let event = Event {
                    action: self.action,
                    count: self.count,
                    event_time: self.event_time,
                    first_timestamp: self.first_timestamp,
                    involved_object: self.involved_object.unwrap_or_default(),
                    last_timestamp: self.last_timestamp,
                    message: self.message,
                    metadata: self.metadata.unwrap_or_default(),
                    reason: self.reason,
                    related: self.related,
                    reporting_component: self.reporting_component,
                    reporting_instance: self.reporting_instance,
                    series: self.series,
                    source: self.source,
                    type_: self.type_,
                };
                out.push((deleted, Object::Event(Box::new(event))));
            }
            "Workflow" => {
                let workflow = Workflow {
                    metadata: self.metadata.unwrap_or_default(),
                    spec: self.spec.unwrap_or_default(),
                    status: self.status,
                };
                out.push((deleted, Object::Workflow(Box::new(workflow))));
            }
            kind if kind.ends_with("List") => {
                for item in self.items.unwrap_or_default() {
                    item.collect(deleted, out)?;
                }
            }
            "" | "Event" => return None,
            _ => {}
        }
        Some(())
    }
}

/// Reads `line` the careful way into `out`: its outline, then each object as its kind.
fn parse_carefully(line: &str, out: &mut Vec<(bool, Object)>) -> Result<(), String> {
    let outline: Outline = serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    match (&outline.watch_type, outline.object) {
        (Some(kind), Some(object)) => collect_carefully(object.get(), None, kind == "DELETED", out),
        _ => collect_carefully(line, Some(outline), false, out),
    }
}

/// What a line or an object says of itself: a watch event's `type` and `object`, an object's
/// `kind`, a `List`'s `items`.
#[derive(Deserialize)]
struct Outline<'a> {
    #[serde(rename = "type", borrow)]
    watch_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    object: Option<&'a RawValue>,
    #[serde(borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    items: Option<Vec<&'a RawValue>>,
}

/// Adds the Events and Workflows of the object `json` (whose outline is `outline` when already
/// read) to `out`, the items of a `List` included.
fn collect_carefully(
    json: &str,
    outline: Option<Outline<'_>>,
    deleted: bool,
    out: &mut Vec<(bool, Object)>,
) -> Result<(), String> {
    let outline = match outline {
        Some(outline) => outline,
        None => serde_json::from_str(json).map_err(|e| format!("invalid JSON: {e}"))?,
    };
    match outline.kind.as_deref().unwrap_or_default() {
        "Event" => {
            let event = serde_json::from_str(json).map_err(|e| format!("invalid Event: {e}"))?;
            out.push((deleted, Object::Event(Box::new(event))));
        }
        "Workflow" => {
            let wf = serde_json::from_str(json).map_err(|e| format!("invalid Workflow: {e}"))?;
            out.push((deleted, Object::Workflow(Box::new(wf))));
        }
        kind if kind.ends_with("List") => {
            for item in outline.items.unwrap_or_default() {
                collect_carefully(item.get(), None, deleted, out)?;
            }
        }
        "" => return Err("the object has no `kind`".into()),
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use std::path::Path;

    use super::*;

    /// A recorded Argo Event about workflow `wf`, with uid `uid`.
    pub(in crate::source::replay) fn event_line(uid: &str) -> String {
        serde_json::json!({
            "kind": "Event",
            "apiVersion": "v1",
            "metadata": {"name": format!("wf.{uid}"), "namespace": "kubeflow", "uid": uid},
            "involvedObject": {"kind": "Workflow", "name": "wf", "namespace": "kubeflow"},
            "reason": "WorkflowRunning",
            "message": "Workflow Running",
            "count": 1,
            "source": {"component": "workflow-controller"},
            "reportingComponent": "workflow-controller",
            "type": "Normal"
        })
        .to_string()
    }

    /// Each object of `line` as (deleted, kind, name).
    fn shapes(line: &str) -> Result<Vec<(bool, &'static str, String)>, String> {
        Ok(parse_line(line)?
            .into_iter()
            .map(|(deleted, object)| match object {
                Object::Event(e) => (deleted, "Event", e.metadata.uid.unwrap_or_default()),
                Object::Workflow(w) => (deleted, "Workflow", w.metadata.name.unwrap_or_default()),
            })
            .collect())
    }

    #[test]
    fn every_line_shape_is_read_into_its_objects() {
        let event = event_line("e1");
        let workflow = r#"{"kind":"Workflow","metadata":{"name":"wf","namespace":"kubeflow"}}"#;
        let shape = |deleted, kind, name: &str| (deleted, kind, name.to_owned());
        // An Event has a `type` (`Normal`) but no `object`: it is read as itself.
        assert_eq!(shapes(&event), Ok(vec![shape(false, "Event", "e1")]));
        let watched = format!(r#"{{"type":"DELETED","object":{workflow}}}"#);
        assert_eq!(shapes(&watched), Ok(vec![shape(true, "Workflow", "wf")]));
        // A `List` inside a watch event, with an escaped `kind` and a kind passed over.
        let escaped = event.replacen(r#""kind":"Event""#, r#""kind":"Ev\u0065nt""#, 1);
        let list = format!(
            r#"{{"type":"MODIFIED","object":{{"kind":"EventList","items":[{escaped},{workflow},{{"kind":"Pod"}}]}}}}"#
        );
        assert_eq!(
            shapes(&list),
            Ok(vec![
                shape(false, "Event", "e1"),
                shape(false, "Workflow", "wf")
            ])
        );
        assert!(shapes("{").unwrap_err().starts_with("invalid JSON"));
        assert_eq!(shapes(r#"{"a":1}"#), Err("the object has no `kind`".into()));
        let bad = event.replace(r#""count":1"#, r#""count":"many""#);
        assert!(shapes(&bad).unwrap_err().starts_with("invalid Event"));
    }

    /// What `line` holds as JSON, read in one pass; `None` when that pass leaves it to the
    /// careful reading.
    fn in_one_pass(line: &str) -> Option<Vec<serde_json::Value>> {
        let mut objects = Vec::new();
        serde_json::from_str::<Recorded>(line)
            .ok()?
            .into_objects(&mut objects)?;
        Some(as_json(objects))
    }

    /// What `line` holds as JSON, read carefully.
    fn carefully(line: &str) -> Result<Vec<serde_json::Value>, String> {
        let mut objects = Vec::new();
        parse_carefully(line, &mut objects)?;
        Ok(as_json(objects))
    }

    fn as_json(objects: Vec<(bool, Object)>) -> Vec<serde_json::Value> {
        objects
            .into_iter()
            .map(|(deleted, object)| match object {
                Object::Event(e) => serde_json::json!([deleted, "Event", *e]),
                Object::Workflow(w) => serde_json::json!([deleted, "Workflow", *w]),
            })
            .collect()
    }

    #[test]
    fn the_one_pass_reads_every_line_of_the_recordings_as_the_careful_reading_does() {
        let dirs = ["examples/recordings", "examples/quickstart"];
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut lines = 0;
        for dir in dirs {
            for file in std::fs::read_dir(root.join(dir)).unwrap() {
                let path = file.unwrap().path();
                if path.extension().is_none_or(|e| e != "jsonl") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                for (n, line) in text
                    .lines()
                    .enumerate()
                    .filter(|(_, l)| !l.trim().is_empty())
                {
                    let careful = carefully(line);
                    assert!(careful.is_ok(), "{}:{}: {careful:?}", path.display(), n + 1);
                    let fast = in_one_pass(line);
                    assert_eq!(
                        fast.as_ref(),
                        careful.as_ref().ok(),
                        "{}:{}",
                        path.display(),
                        n + 1
                    );
                    lines += 1;
                }
            }
        }
        assert!(lines > 100, "only {lines} recorded lines found");
    }

    #[test]
    fn what_the_one_pass_refuses_the_careful_reading_decides() {
        let event = serde_json::from_str::<serde_json::Value>(&event_line("e1")).unwrap();
        let with = |key: &str, value: serde_json::Value| {
            let mut event = event.clone();
            event[key] = value;
            event.to_string()
        };
        let workflow = r#"{"kind":"Workflow","metadata":{"name":"wf"},"spec":null}"#;
        // Each is left to the careful reading, which reads the line or says what is wrong.
        let left: [(String, Result<usize, &str>); 7] = [
            (
                with("apiVersion", "events.k8s.io/v1".into()),
                Err("invalid Event"),
            ),
            (
                with("apiVersion", serde_json::Value::Null),
                Err("invalid Event"),
            ),
            (with("count", "many".into()), Err("invalid Event")),
            (with("metadata", serde_json::Value::Null), Ok(1)),
            (workflow.to_owned(), Err("invalid Workflow")),
            (
                r#"{"kind":"List","items":[{"kind":"Pod","status":{"phase":1}}]}"#.into(),
                Ok(0),
            ),
            (
                r#"{"metadata":{"name":"x"}}"#.into(),
                Err("the object has no `kind`"),
            ),
        ];
        for (line, expected) in left {
            assert_eq!(in_one_pass(&line), None, "{line}");
            match (carefully(&line), expected) {
                (Ok(objects), Ok(n)) => assert_eq!(objects.len(), n, "{line}"),
                (Err(e), Err(start)) => assert!(e.starts_with(start), "{line}: {e}"),
                (got, _) => panic!("{line}: {got:?}"),
            }
        }
        // A `null` an Event allows, a kind passed over, a watch event: read in one pass.
        let taken = [
            with("eventTime", serde_json::Value::Null),
            r#"{"kind":"Pod","metadata":{"name":"p"}}"#.to_owned(),
            format!(r#"{{"type":"DELETED","object":{}}}"#, event_line("e2")),
        ];
        for line in taken {
            assert_eq!(
                in_one_pass(&line).as_ref(),
                carefully(&line).as_ref().ok(),
                "{line}"
            );
            assert!(in_one_pass(&line).is_some(), "{line}");
        }
    }
}
