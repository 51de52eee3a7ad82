//! `kfp-event-router plugin diff`: runs two versions of a plugin over the same recording and
//! shows, per event, where they decide differently (pass, drop, replace or fail) or render
//! differently (content type, headers, and the body: JSON bodies path by path).

use std::io::Write;
use std::path::PathBuf;

use serde_json::Value;

use super::plugin_load::{self, PluginSetup, text};
use crate::model::event::NodeView;
use crate::payload::format::Format;
use crate::payload::plugins::bindings::Action;
use crate::payload::plugins::event::WitEvent;
use crate::payload::plugins::plugin::CallError;

/// What to compare.
#[derive(Clone, Debug)]
pub struct DiffOptions {
    /// The version running now.
    pub old: PathBuf,
    /// The version to compare it with.
    pub new: PathBuf,
    /// The recording.
    pub events: PathBuf,
    /// The configuration, as for `plugin test`: each version gets the one of its file's
    /// name, the new one that of the old one's name when its own has none.
    pub config: Option<PathBuf>,
    /// The format the payload is rendered in before the plugins see it.
    pub format: Format,
    /// The endpoint name the plugins are told about.
    pub endpoint: String,
}

/// How the two versions compared.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiffSummary {
    /// Events run through both.
    pub events: u64,
    /// Events both handled the same way.
    pub same: u64,
    /// Events the two decided differently about.
    pub decided: u64,
    /// Events both replaced, with different outputs.
    pub rendered: u64,
}

/// Runs both versions over the recording, writing where they differ to `out`.
pub async fn run(
    options: DiffOptions,
    out: &mut (impl Write + Send),
) -> anyhow::Result<DiffSummary> {
    let name = plugin_load::plugin_name(&options.old)?;
    let new_name = plugin_load::plugin_name(&options.new)?;
    let config = options.config.as_deref();
    let old_setup = PluginSetup::read(config, &name)?;
    let new_setup = PluginSetup::read_first(config, &[&new_name, &name])?;
    let old = plugin_load::load_or_fail(&options.old, &name, &old_setup).await?;
    let new = plugin_load::load_or_fail(&options.new, &name, &new_setup).await?;
    writeln!(
        out,
        "old {} (version {}, {}) vs new {} (version {}, {})",
        options.old.display(),
        old.version(),
        old.wit(),
        options.new.display(),
        new.version(),
        new.wit()
    )?;
    let mut summary = DiffSummary::default();
    for event in plugin_load::recording(&options.events).await? {
        summary.events += 1;
        let payload = options.format.render(&event);
        let event = std::sync::Arc::new(event);
        let wit = WitEvent::new(&event, &options.endpoint, options.format, NodeView::Tasks);
        let before = old.call(&wit, &payload, true).await;
        let after = new.call(&wit, &payload, true).await;
        let lines = compare(&before, &after);
        if lines.is_empty() {
            summary.same += 1;
            continue;
        }
        match (&before, &after) {
            (Ok(Action::Replace(_)), Ok(Action::Replace(_))) => summary.rendered += 1,
            _ => summary.decided += 1,
        }
        writeln!(
            out,
            "--- event {}: {} {}/{} {}",
            summary.events,
            event.event.reason,
            event.event.namespace,
            event.event.workflow_name,
            event.node_name()
        )?;
        for line in lines {
            writeln!(out, "{line}")?;
        }
    }
    writeln!(
        out,
        "--- {} events: {} the same, {} decided differently, {} rendered differently",
        summary.events, summary.same, summary.decided, summary.rendered
    )?;
    Ok(summary)
}

/// Where two outcomes differ, one line each; empty when they are the same.
fn compare(old: &Result<Action, CallError>, new: &Result<Action, CallError>) -> Vec<String> {
    match (old, new) {
        (Ok(Action::Replace(a)), Ok(Action::Replace(b))) => {
            let mut lines = Vec::new();
            if a.content_type != b.content_type {
                lines.push(format!(
                    "  content type: {} → {}",
                    a.content_type, b.content_type
                ));
            }
            if a.headers != b.headers {
                lines.push(format!("  headers: {:?} → {:?}", a.headers, b.headers));
            }
            if a.body != b.body {
                match (
                    serde_json::from_slice::<Value>(&a.body),
                    serde_json::from_slice::<Value>(&b.body),
                ) {
                    (Ok(x), Ok(y)) if x != y => json_diff("", &x, &y, &mut lines),
                    (Ok(_), Ok(_)) => lines.push("  body: same JSON, other bytes".to_owned()),
                    _ => lines.push(format!("  body: {} → {}", text(&a.body), text(&b.body))),
                }
            }
            lines
        }
        _ => {
            let (a, b) = (outcome(old), outcome(new));
            match a == b {
                true => Vec::new(),
                false => vec![format!("  decides: {a} → {b}")],
            }
        }
    }
}

/// An outcome in a word (and the error of a failure).
fn outcome(result: &Result<Action, CallError>) -> String {
    match result {
        Ok(Action::Pass) => "pass".to_owned(),
        Ok(Action::Drop) => "drop".to_owned(),
        Ok(Action::Replace(_)) => "replace".to_owned(),
        Err(e) => format!("failed ({e})"),
    }
}

/// The JSON paths (RFC 6901 pointers) where `a` and `b` differ: `~` changed, `-` only in
/// `a`, `+` only in `b`.
fn json_diff(path: &str, a: &Value, b: &Value, lines: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (key, value) in x {
                let at = format!("{path}/{}", key.replace('~', "~0").replace('/', "~1"));
                match y.get(key) {
                    Some(other) => json_diff(&at, value, other, lines),
                    None => lines.push(format!("  - {at}: {value}")),
                }
            }
            for (key, value) in y.iter().filter(|(k, _)| !x.contains_key(*k)) {
                let at = format!("{path}/{}", key.replace('~', "~0").replace('/', "~1"));
                lines.push(format!("  + {at}: {value}"));
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (value, other)) in x.iter().zip(y).enumerate() {
                json_diff(&format!("{path}/{i}"), value, other, lines);
            }
        }
        _ if a != b => lines.push(format!(
            "  ~ {}: {a} → {b}",
            if path.is_empty() { "/" } else { path }
        )),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_bodies_differ_path_by_path() {
        let mut lines = Vec::new();
        json_diff(
            "",
            &json!({"a": 1, "b": {"c": [1, 2]}, "gone": true}),
            &json!({"a": 1, "b": {"c": [1, 3]}, "new/key": "x"}),
            &mut lines,
        );
        assert_eq!(
            lines,
            [
                "  ~ /b/c/1: 2 → 3",
                "  - /gone: true",
                "  + /new~1key: \"x\""
            ]
        );
    }

    #[test]
    fn decisions_are_compared_before_outputs() {
        let pass = Ok(Action::Pass);
        let drop = Ok(Action::Drop);
        assert!(compare(&pass, &pass).is_empty());
        assert_eq!(compare(&pass, &drop), ["  decides: pass → drop"]);
    }
}
