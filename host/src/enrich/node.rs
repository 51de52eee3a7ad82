//! Which node (step) an Event is about.
//!
//! Argo (v3.4+) puts the node's full name, id and type in annotations on node Events; those
//! come first. Without them (older controllers, and the aggregated
//! `(combined from similar events): ...` Events, which carry no annotations) the message is
//! parsed: `<Phase> node <full name>[: <node message>]`. Node names may contain `:`, `.` and
//! spaces inside loop brackets (`step(0:a.b)`), so both the message and the name are split only
//! outside brackets.

use k8s_openapi::api::core::v1::Event;

use crate::model::argo::{
    COMBINED_PREFIX, NODE_ID, NODE_NAME, NODE_START_TIME, NODE_TYPE, annotation,
};

/// What an Event says about its node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct NodeRef {
    /// The node's full name, e.g. `wf-abc.train`.
    pub(crate) full_name: String,
    /// The node id, when annotated.
    pub(crate) id: Option<String>,
    /// The node type, when annotated.
    pub(crate) node_type: Option<String>,
    /// When the node started (RFC 3339), when annotated.
    pub(crate) start_time: Option<String>,
    /// The node message after the name in the Event message, e.g. `Error (exit code 1)`.
    pub(crate) message: Option<String>,
}

/// The node an Event is about, or `None` for a workflow-level Event.
pub(crate) fn node_ref(event: &Event) -> Option<NodeRef> {
    let annotation = |key: &str| annotation(event, key).map(str::to_owned);
    let parsed = event.message.as_deref().and_then(parse_message);
    let full_name = annotation(NODE_NAME).or_else(|| parsed.as_ref().map(|p| p.0.to_owned()))?;
    Some(NodeRef {
        full_name,
        id: annotation(NODE_ID),
        node_type: annotation(NODE_TYPE),
        start_time: annotation(NODE_START_TIME).map(|v| rfc3339_from_unix_nanos(&v).unwrap_or(v)),
        message: parsed.and_then(|p| p.1).map(str::to_owned),
    })
}

/// Argo writes `node-start-time` as Unix nanoseconds; the router's times are RFC 3339, as in
/// the Workflow status.
fn rfc3339_from_unix_nanos(text: &str) -> Option<String> {
    let nanos: i128 = text.trim().parse().ok()?;
    k8s_openapi::jiff::Timestamp::from_nanosecond(nanos)
        .ok()
        .map(|t| t.to_string())
}

/// Splits `<Phase> node <full name>[: <node message>]` into the name and the message.
pub(crate) fn parse_message(message: &str) -> Option<(&str, Option<&str>)> {
    let message = message.strip_prefix(COMBINED_PREFIX).unwrap_or(message);
    let (phase, rest) = message.split_once(' ')?;
    if phase.is_empty() || !phase.chars().all(char::is_alphabetic) {
        return None;
    }
    let rest = rest.strip_prefix("node ")?;
    match find_outside_brackets(rest, ": ") {
        Some(i) => Some((&rest[..i], Some(&rest[i + 2..]))),
        None => Some((rest.trim_end(), None)),
    }
    .filter(|(name, _)| !name.is_empty())
}

/// The step name subscribers know: the last `.`-separated segment of the full name, or empty
/// for the root node (whose full name is the workflow's name).
pub(crate) fn short_name<'a>(full_name: &'a str, workflow_name: &str) -> &'a str {
    if full_name == workflow_name {
        return "";
    }
    match rfind_outside_brackets(full_name, '.') {
        Some(i) => &full_name[i + 1..],
        None => full_name,
    }
}

/// Byte offset of the first `needle` not inside `()`, `[]` or `{}`.
fn find_outside_brackets(text: &str, needle: &str) -> Option<usize> {
    let mut depth = 0i32;
    for (i, c) in text.char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            _ if depth == 0 && text[i..].starts_with(needle) => return Some(i),
            _ => {}
        }
    }
    None
}

/// Byte offset of the last `needle` not inside brackets.
fn rfind_outside_brackets(text: &str, needle: char) -> Option<usize> {
    let mut depth = 0i32;
    let mut found = None;
    for (i, c) in text.char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            c if depth == 0 && c == needle => found = Some(i),
            _ => {}
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_node_name_and_message() {
        assert_eq!(
            parse_message("Succeeded node tacos-vs-burritos-vw8g9.dataprocessing"),
            Some(("tacos-vs-burritos-vw8g9.dataprocessing", None))
        );
        assert_eq!(
            parse_message("Failed node wf.train: Error (exit code 1)"),
            Some(("wf.train", Some("Error (exit code 1)")))
        );
    }

    #[test]
    fn parses_rolled_up_messages() {
        assert_eq!(
            parse_message("(combined from similar events): Succeeded node wf.for-loop-2(1:b)"),
            Some(("wf.for-loop-2(1:b)", None))
        );
    }

    #[test]
    fn brackets_protect_colons_and_dots_in_loop_items() {
        let message = r#"Failed node wf.loop(0:{"a": "x.y"}): Error (exit code 2)"#;
        let (name, rest) = parse_message(message).unwrap();
        assert_eq!(name, r#"wf.loop(0:{"a": "x.y"})"#);
        assert_eq!(rest, Some("Error (exit code 2)"));
        assert_eq!(short_name(name, "wf"), r#"loop(0:{"a": "x.y"})"#);
    }

    #[test]
    fn workflow_messages_are_not_node_messages() {
        assert_eq!(parse_message("Workflow Running"), None);
        assert_eq!(parse_message("child 'wf-123' failed"), None);
        assert_eq!(parse_message("Workflow completed"), None);
    }

    #[test]
    fn short_name_is_the_last_segment_and_empty_for_the_root() {
        assert_eq!(short_name("wf.dag.train", "wf"), "train");
        assert_eq!(short_name("wf[0].step-a", "wf"), "step-a");
        assert_eq!(short_name("wf", "wf"), "");
    }
}
