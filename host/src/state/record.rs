//! How the outbox stores an event: a compact binary record, written and read field by field.
//! redb keeps it as the value of its `events` table (typed `StoredEvent`, whose name carries
//! the layout's version); PostgreSQL in its `events.event` column (since schema version 4).
//!
//! Layout: the acceptance time (`u64`, little-endian, milliseconds), then the event's fields in
//! the order [`RouterEvent`] declares them. A string or a collection is its length (LEB128)
//! followed by its items; an option is a byte, 0 or 1, followed by the value when 1; a `bool` is
//! one byte; an `i32` or `u32` four bytes, little-endian.
//!
//! The node's and the task's messages are most often the end of the Event's own message (Argo
//! writes `<Phase> node <name>: <node message>`), so such a message is stored once: its option
//! byte is 2, followed by its length alone, and it is read back as that many bytes from the end
//! of the Event's message. Version 1 of the layout had no such byte; its records are records of
//! this version too.
//!
//! Why not serde: the event's serde form is its JSON form, whose fields are left out when empty,
//! and a format without field names cannot read that back. Why not JSON: writing it escaped
//! every string of every event, the largest single cost of accepting one; these records copy
//! strings as they are, and are smaller.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::model::event::{EventFacts, NodeFacts, RouterEvent, TaskFacts, WorkflowFacts};

/// Room a record's buffer starts with: most records fit in it, so that encoding one allocates
/// once.
pub(super) const CAPACITY: usize = 2048;

/// Appends the record of `event`, accepted at `accepted_ms`, to `out`.
pub(super) fn encode(accepted_ms: u64, event: &RouterEvent, out: &mut Vec<u8>) {
    out.extend_from_slice(&accepted_ms.to_le_bytes());
    Out(out).event(event);
}

/// Reads a record [`encode`] wrote: the acceptance time and the event.
pub(super) fn decode(bytes: &[u8]) -> Result<(u64, RouterEvent), Unreadable> {
    let mut input = In(bytes);
    let accepted_ms = input.u64()?;
    let event = input.event()?;
    if !input.0.is_empty() {
        return Err(Unreadable("bytes after the event"));
    }
    Ok((accepted_ms, event))
}

/// The acceptance time alone, without reading the event.
pub(super) fn accepted_ms(bytes: &[u8]) -> Result<u64, Unreadable> {
    In(bytes).u64()
}

/// A record that is not one [`encode`] wrote: what was wrong with it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Unreadable(&'static str);

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stored event unreadable: {}", self.0)
    }
}

/// The option byte of a message stored as the end of the Event's message.
const ENDS_EVENT_MESSAGE: u8 = 2;

/// Writes a record's fields.
struct Out<'a>(&'a mut Vec<u8>);

impl Out<'_> {
    // Every struct is taken apart field by field: a field added to it and not here does not
    // compile.
    fn event(&mut self, event: &RouterEvent) {
        let RouterEvent {
            id,
            event,
            node,
            workflow,
            synthesized,
            task,
            plumbing,
            attempt,
            cluster,
        } = event;
        self.str(id);
        self.facts(event);
        let message = &event.message;
        self.option(node.as_ref(), |out, node| out.node(node, message));
        self.option(workflow.as_deref(), Self::workflow);
        self.bool(*synthesized);
        self.option(task.as_ref(), |out, task| out.task(task, message));
        self.bool(*plumbing);
        self.u32(*attempt);
        self.option_str(cluster);
    }

    fn facts(&mut self, facts: &EventFacts) {
        let EventFacts {
            uid,
            namespace,
            reason,
            message,
            severity,
            count,
            time,
            workflow_name,
            workflow_uid,
        } = facts;
        self.str(uid);
        self.str(namespace);
        self.str(reason);
        self.str(message);
        self.str(severity);
        self.0.extend_from_slice(&count.to_le_bytes());
        self.option_str(time);
        self.str(workflow_name);
        self.option_str(workflow_uid);
    }

    fn node(&mut self, node: &NodeFacts, event_message: &str) {
        let NodeFacts {
            id,
            full_name,
            name,
            display_name,
            node_type,
            phase,
            message,
            template_name,
            started_at,
            finished_at,
        } = node;
        self.option_str(id);
        self.str(full_name);
        self.str(name);
        for value in [display_name, node_type, phase] {
            self.option_str(value);
        }
        self.message(message, event_message);
        for value in [template_name, started_at, finished_at] {
            self.option_str(value);
        }
    }

    fn workflow(&mut self, workflow: &WorkflowFacts) {
        let WorkflowFacts {
            name,
            namespace,
            uid,
            labels,
            annotations,
            phase,
            started_at,
            finished_at,
            message,
            parameters,
            run_name,
            pipeline_name,
            recurring_run_name,
        } = workflow;
        self.str(name);
        self.str(namespace);
        self.str(uid);
        self.map(labels);
        self.map(annotations);
        for value in [phase, started_at, finished_at, message] {
            self.option_str(value);
        }
        self.map(parameters);
        for value in [run_name, pipeline_name, recurring_run_name] {
            self.option_str(value);
        }
    }

    fn task(&mut self, task: &TaskFacts, event_message: &str) {
        let TaskFacts {
            name,
            display_name,
            iteration,
            dag_path,
            cached,
            pod_name,
            message,
        } = task;
        self.str(name);
        self.option_str(display_name);
        self.option(iteration.as_ref(), |out, i| out.u32(*i));
        self.len(dag_path.len());
        for segment in dag_path {
            self.str(segment);
        }
        self.bool(*cached);
        self.option_str(pod_name);
        self.message(message, event_message);
    }

    /// A node's or task's message: as the end of the Event's message when it is that.
    fn message(&mut self, message: &Option<String>, event_message: &str) {
        match message {
            Some(m) if event_message.ends_with(m.as_str()) => {
                self.0.push(ENDS_EVENT_MESSAGE);
                self.len(m.len());
            }
            other => self.option_str(other),
        }
    }

    fn len(&mut self, mut n: usize) {
        while n >= 0x80 {
            self.0.push(n as u8 | 0x80);
            n >>= 7;
        }
        self.0.push(n as u8);
    }

    fn str(&mut self, s: &str) {
        self.len(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }

    fn option<T>(&mut self, value: Option<&T>, write: impl FnOnce(&mut Self, &T)) {
        self.bool(value.is_some());
        if let Some(value) = value {
            write(self, value);
        }
    }

    fn option_str(&mut self, value: &Option<String>) {
        self.option(value.as_ref(), |out, s| out.str(s));
    }

    fn map(&mut self, map: &BTreeMap<String, String>) {
        self.len(map.len());
        for (key, value) in map {
            self.str(key);
            self.str(value);
        }
    }

    fn bool(&mut self, b: bool) {
        self.0.push(u8::from(b));
    }

    fn u32(&mut self, n: u32) {
        self.0.extend_from_slice(&n.to_le_bytes());
    }
}

/// Reads a record's fields, in the order [`Out`] wrote them.
struct In<'a>(&'a [u8]);

type Read<T> = Result<T, Unreadable>;

impl<'a> In<'a> {
    fn event(&mut self) -> Read<RouterEvent> {
        let id = self.string()?;
        let event = self.facts()?;
        let message = event.message.as_str();
        Ok(RouterEvent {
            id,
            node: self.option(|input| input.node(message))?,
            workflow: self.option(Self::workflow)?.map(Arc::new),
            synthesized: self.bool()?,
            task: self.option(|input| input.task(message))?,
            plumbing: self.bool()?,
            attempt: self.u32()?,
            cluster: self.option_string()?,
            event,
        })
    }

    fn facts(&mut self) -> Read<EventFacts> {
        Ok(EventFacts {
            uid: self.string()?,
            namespace: self.string()?,
            reason: self.string()?,
            message: self.string()?,
            severity: self.string()?,
            count: i32::from_le_bytes(self.array()?),
            time: self.option_string()?,
            workflow_name: self.string()?,
            workflow_uid: self.option_string()?,
        })
    }

    fn node(&mut self, event_message: &str) -> Read<NodeFacts> {
        Ok(NodeFacts {
            id: self.option_string()?,
            full_name: self.string()?,
            name: self.string()?,
            display_name: self.option_string()?,
            node_type: self.option_string()?,
            phase: self.option_string()?,
            message: self.message(event_message)?,
            template_name: self.option_string()?,
            started_at: self.option_string()?,
            finished_at: self.option_string()?,
        })
    }

    fn workflow(&mut self) -> Read<WorkflowFacts> {
        Ok(WorkflowFacts {
            name: self.string()?,
            namespace: self.string()?,
            uid: self.string()?,
            labels: self.map()?,
            annotations: self.map()?,
            phase: self.option_string()?,
            started_at: self.option_string()?,
            finished_at: self.option_string()?,
            message: self.option_string()?,
            parameters: self.map()?,
            run_name: self.option_string()?,
            pipeline_name: self.option_string()?,
            recurring_run_name: self.option_string()?,
        })
    }

    fn task(&mut self, event_message: &str) -> Read<TaskFacts> {
        Ok(TaskFacts {
            name: self.string()?,
            display_name: self.option_string()?,
            iteration: self.option(Self::u32)?,
            dag_path: {
                let n = self.len()?;
                (0..n).map(|_| self.string()).collect::<Read<_>>()?
            },
            cached: self.bool()?,
            pod_name: self.option_string()?,
            message: self.message(event_message)?,
        })
    }

    fn take(&mut self, n: usize) -> Read<&'a [u8]> {
        if n > self.0.len() {
            return Err(Unreadable("cut short"));
        }
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Read<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("N bytes taken"))
    }

    fn u64(&mut self) -> Read<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Read<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn bool(&mut self) -> Read<bool> {
        match self.take(1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Unreadable("a flag neither 0 nor 1")),
        }
    }

    /// A length; never more than the bytes left, so that a damaged one cannot make a reader
    /// allocate without bound (every item takes at least one byte).
    fn len(&mut self) -> Read<usize> {
        let n = self.leb128()?;
        if n <= self.0.len() {
            Ok(n)
        } else {
            Err(Unreadable("cut short"))
        }
    }

    fn leb128(&mut self) -> Read<usize> {
        let mut n = 0usize;
        for shift in (0..64).step_by(7) {
            let byte = self.take(1)?[0];
            n |= usize::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(n);
            }
        }
        Err(Unreadable("a length too long"))
    }

    fn string(&mut self) -> Read<String> {
        let n = self.len()?;
        let bytes = self.take(n)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| Unreadable("a string that is not UTF-8"))
    }

    fn option<T>(&mut self, read: impl FnOnce(&mut Self) -> Read<T>) -> Read<Option<T>> {
        Ok(if self.bool()? {
            Some(read(self)?)
        } else {
            None
        })
    }

    fn option_string(&mut self) -> Read<Option<String>> {
        self.option(Self::string)
    }

    /// What [`Out::message`] wrote.
    fn message(&mut self, event_message: &str) -> Read<Option<String>> {
        if self.0.first() != Some(&ENDS_EVENT_MESSAGE) {
            return self.option_string();
        }
        self.take(1)?;
        let n = self.leb128()?;
        event_message
            .len()
            .checked_sub(n)
            .and_then(|start| event_message.get(start..))
            .map(|end| Some(end.to_owned()))
            .ok_or(Unreadable(
                "a message longer than the Event's, or cut inside a character",
            ))
    }

    fn map(&mut self) -> Read<BTreeMap<String, String>> {
        let n = self.len()?;
        (0..n)
            .map(|_| Ok((self.string()?, self.string()?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event with every field set, none to its default, and strings JSON would escape.
    fn full() -> RouterEvent {
        let map = |prefix: &str| -> BTreeMap<String, String> {
            (0..3)
                .map(|i| (format!("{prefix}/{i}"), format!("\"{prefix}\"\n\t{i} ✓")))
                .collect()
        };
        RouterEvent {
            id: "id-1".into(),
            event: EventFacts {
                uid: "ev".into(),
                namespace: "kubeflow".into(),
                reason: "WorkflowNodeFailed".into(),
                message: "x".repeat(300),
                severity: "Warning".into(),
                count: -3,
                time: Some("2026-12-02T00:00:00Z".into()),
                workflow_name: "wf".into(),
                workflow_uid: Some("wf-uid".into()),
            },
            node: Some(NodeFacts {
                id: Some("wf-1".into()),
                full_name: "wf.train".into(),
                name: "train".into(),
                display_name: Some("train".into()),
                node_type: Some("Pod".into()),
                phase: Some("Failed".into()),
                message: Some("Error (exit code 1)".into()),
                template_name: Some("system-container-executor".into()),
                started_at: Some("a".into()),
                finished_at: Some("b".into()),
            }),
            workflow: Some(
                WorkflowFacts {
                    name: "wf".into(),
                    namespace: "kubeflow".into(),
                    uid: "wf-uid".into(),
                    labels: map("label"),
                    annotations: map("annotation"),
                    phase: Some("Running".into()),
                    started_at: Some("c".into()),
                    finished_at: Some("d".into()),
                    message: Some("m".into()),
                    parameters: map("parameter"),
                    run_name: Some("run".into()),
                    pipeline_name: Some("pipeline".into()),
                    recurring_run_name: Some("nightly".into()),
                }
                .into(),
            ),
            synthesized: true,
            task: Some(TaskFacts {
                name: "train".into(),
                display_name: Some("Train".into()),
                iteration: Some(7),
                dag_path: vec!["root".into(), "for-loop-2".into()],
                cached: true,
                pod_name: Some("pod".into()),
                message: Some("oom".into()),
            }),
            plumbing: true,
            attempt: 2,
            cluster: Some("east".into()),
        }
    }

    #[test]
    fn every_field_reads_back_as_written() {
        for event in [full(), RouterEvent::bare("bare", EventFacts::default())] {
            let mut bytes = Vec::new();
            encode(1_764_633_600_123, &event, &mut bytes);
            assert_eq!(decode(&bytes), Ok((1_764_633_600_123, event)));
            assert_eq!(accepted_ms(&bytes), Ok(1_764_633_600_123));
        }
    }

    #[test]
    fn a_record_is_smaller_than_the_events_json() {
        let event = full();
        let mut bytes = Vec::new();
        encode(0, &event, &mut bytes);
        let json = serde_json::to_vec(&event).unwrap().len();
        assert!(
            bytes.len() < json * 3 / 4,
            "{} vs {json} bytes",
            bytes.len()
        );
    }

    #[test]
    fn a_damaged_record_is_an_error_not_a_panic_nor_an_allocation() {
        let mut bytes = Vec::new();
        encode(5, &full(), &mut bytes);
        // Every cut, and a few bytes after the end.
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode(&longer), Err(Unreadable("bytes after the event")));
        // A length of 2^63 right after the time: refused before anything is allocated.
        let mut huge = 5u64.to_le_bytes().to_vec();
        huge.extend_from_slice(&[0xff; 9]);
        huge.push(0x01);
        assert_eq!(decode(&huge), Err(Unreadable("cut short")));
        // A flag that is not 0 or 1: `node` follows the event's facts.
        let mut bad_flag = bytes.clone();
        bad_flag[node_flag_at(&bytes)] = 2;
        assert_eq!(decode(&bad_flag), Err(Unreadable("a flag neither 0 nor 1")));
        // Invalid UTF-8 in the id.
        let mut bad_text = bytes;
        bad_text[9] = 0xff;
        assert_eq!(
            decode(&bad_text),
            Err(Unreadable("a string that is not UTF-8"))
        );
    }

    /// [`full`], with the node's and the task's messages what Argo's Event message ends with.
    fn with_messages_at_the_end(node_message: &str, task_message: &str) -> RouterEvent {
        let mut event = full();
        event.event.message = format!("Failed node wf.train: {node_message}");
        event.node.as_mut().unwrap().message = Some(node_message.into());
        event.task.as_mut().unwrap().message = Some(task_message.into());
        event
    }

    #[test]
    fn a_message_that_ends_the_events_is_stored_once() {
        let long = "é".repeat(400);
        let event = with_messages_at_the_end(&long, &long[400..]);
        let mut bytes = Vec::new();
        encode(7, &event, &mut bytes);
        assert_eq!(decode(&bytes), Ok((7, event.clone())));
        // The same event with the messages written out costs them twice.
        let mut apart = event.clone();
        apart.event.message.push('.');
        let mut written_out = Vec::new();
        encode(7, &apart, &mut written_out);
        assert!(
            bytes.len() + long.len() + long.len() / 2 <= written_out.len(),
            "{} vs {} bytes",
            bytes.len(),
            written_out.len()
        );
        // Empty, and the whole message, are ends too.
        for (node, task) in [("", ""), ("Failed node wf.train: x", "x")] {
            let mut event = with_messages_at_the_end("x", task);
            event.node.as_mut().unwrap().message = Some(node.into());
            let mut bytes = Vec::new();
            encode(7, &event, &mut bytes);
            assert_eq!(decode(&bytes), Ok((7, event)));
        }
    }

    #[test]
    fn an_end_longer_than_the_message_or_inside_a_character_is_an_error() {
        let event = with_messages_at_the_end("ü", "");
        let mut bytes = Vec::new();
        encode(7, &event, &mut bytes);
        let at = node_message_at(&bytes);
        assert_eq!(&bytes[at..at + 2], &[ENDS_EVENT_MESSAGE, 2]);
        for (n, what) in [(1, "inside a character"), (100, "longer than the message")] {
            let mut bad = bytes.clone();
            bad[at + 1] = n;
            assert_eq!(
                decode(&bad),
                Err(Unreadable(
                    "a message longer than the Event's, or cut inside a character"
                )),
                "{what}"
            );
        }
    }

    /// Where the node's message is in a record of [`with_messages_at_the_end`].
    fn node_message_at(bytes: &[u8]) -> usize {
        let mut input = In(&bytes[8..]);
        input.string().unwrap();
        let facts = input.facts().unwrap();
        input.bool().unwrap();
        input.option_string().unwrap();
        input.string().unwrap();
        input.string().unwrap();
        for _ in 0..3 {
            input.option_string().unwrap();
        }
        let at = bytes.len() - input.0.len();
        assert_eq!(
            input.message(&facts.message).unwrap().as_deref(),
            Some("ü"),
            "the node's message is at {at}"
        );
        at
    }

    /// Where the flag of `node` is in a record of [`full`]: after the time and the facts.
    fn node_flag_at(bytes: &[u8]) -> usize {
        let mut input = In(&bytes[8..]);
        input.string().unwrap();
        input.facts().unwrap();
        bytes.len() - input.0.len()
    }
}
