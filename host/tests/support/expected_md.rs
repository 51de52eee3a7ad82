//! Reads the `<name>.EXPECTED.md` files of `examples/recordings/`: the run parameters table and
//! the transitions table (see `examples/recordings/README.md` for what the columns mean).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

/// One row of the "Transitions" table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// `#`.
    pub number: u32,
    /// `line`: the recording line (`None` for `-`, rows derived from the final Workflow).
    pub line: Option<u32>,
    /// `source`, e.g. `ADDED count 1`, `MODIFIED count 13`, `Workflow (no Event)`.
    pub source: String,
    /// `attempt`: the run attempt (2 after a *Retry run*).
    pub attempt: u32,
    /// `level`: `run` or `task`.
    pub level: String,
    /// `task`: the KFP task name (backticks removed); empty for run rows.
    pub task: String,
    /// `display name`.
    pub display_name: String,
    /// `iteration`: the ParallelFor iteration index, when inside a loop.
    pub iteration: Option<u64>,
    /// `DAG path`, split at `/` (e.g. `["root", "for-loop-2"]`); empty for run rows.
    pub dag_path: Vec<String>,
    /// `reason`: an Event reason (`WorkflowNodeRunning`, `WorkflowFailed`, ...) or a
    /// parenthesised pseudo-reason that no Event carries (`(Omitted)`).
    pub reason: String,
    /// `note`.
    pub note: String,
}

impl Row {
    /// A run-level row (empty NodeName in the `kfp` format).
    pub fn is_run(&self) -> bool {
        self.level == "run"
    }

    /// Whether the reason is a real Event reason, i.e. something a webhook can carry.
    /// `(Omitted)` is not: Argo records no Event for an Omitted node and the router has no
    /// reason for it either.
    pub fn is_deliverable(&self) -> bool {
        !self.reason.starts_with('(')
    }

    /// Whether the row comes from a Kubernetes Event (as opposed to a Workflow line, marked
    /// `(no Event)` in the `source` column): only those can reach a subscriber when the router
    /// reads Events only (`source.from = "events"`, the replay default).
    pub fn has_event(&self) -> bool {
        !self.source.contains("no Event")
    }

    /// What the `kfp` payload's `NodeName` must be: the task name, empty for run rows.
    pub fn node_name(&self) -> &str {
        if self.is_run() { "" } else { &self.task }
    }

    /// The row's note says the task was a cache hit.
    pub fn is_cache_hit(&self) -> bool {
        self.note.contains("cache hit")
    }
}

/// A parsed EXPECTED.md.
#[derive(Clone, Debug)]
pub struct Expected {
    /// The run parameters, name -> value (backticks removed).
    pub parameters: BTreeMap<String, String>,
    /// The transitions, in table order.
    pub rows: Vec<Row>,
}

/// Parses `path`; panics with the file and line on anything unexpected.
pub fn read(path: &Path) -> Expected {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    parse(&text, &path.display().to_string())
}

/// Parses the text of an EXPECTED.md (`what` names it in panics).
pub fn parse(text: &str, what: &str) -> Expected {
    let mut section = String::new();
    let mut header: Option<Vec<String>> = None;
    let mut parameters = BTreeMap::new();
    let mut rows = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let at = || format!("{what}:{}", index + 1);
        if let Some(title) = line.strip_prefix("## ") {
            section = title.trim().to_owned();
            header = None;
            continue;
        }
        if !line.trim_start().starts_with('|') {
            header = None;
            continue;
        }
        let cells = cells(line);
        if cells
            .iter()
            .all(|c| c.chars().all(|ch| matches!(ch, '-' | ':')))
        {
            continue; // the |---|---:| separator
        }
        let Some(columns) = &header else {
            header = Some(cells.iter().map(|c| c.to_lowercase()).collect());
            continue;
        };
        let get = |name: &str| -> String {
            let i = columns
                .iter()
                .position(|c| c == name)
                .unwrap_or_else(|| panic!("{}: no column {name:?} in {columns:?}", at()));
            cells
                .get(i)
                .cloned()
                .unwrap_or_else(|| panic!("{}: row too short: {line}", at()))
        };
        if section.starts_with("Run parameters") {
            parameters.insert(unquote(&get("name")), unquote(&get("value")));
        } else if section.starts_with("Transitions") {
            let number_or = |name: &str| -> Option<u64> {
                let cell = get(name);
                match cell.as_str() {
                    "" | "-" => None,
                    n => Some(
                        n.parse()
                            .unwrap_or_else(|_| panic!("{}: {name} {n:?} is not a number", at())),
                    ),
                }
            };
            let path = unquote(&get("dag path"));
            rows.push(Row {
                number: number_or("#").expect("a row number") as u32,
                line: number_or("line").map(|n| n as u32),
                source: get("source"),
                attempt: number_or("attempt").unwrap_or(1) as u32,
                level: get("level"),
                task: unquote(&get("task")),
                display_name: unquote(&get("display name")),
                iteration: number_or("iteration"),
                dag_path: path
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
                reason: get("reason"),
                note: get("note"),
            });
        }
    }
    assert!(!rows.is_empty(), "{what}: no Transitions table found");
    Expected { parameters, rows }
}

/// The cells of a markdown table line, trimmed.
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim();
    let inner = inner.strip_prefix('|').unwrap_or(inner);
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    inner.split('|').map(|c| c.trim().to_owned()).collect()
}

/// `` `x` `` -> `x`.
fn unquote(cell: &str) -> String {
    cell.trim().trim_matches('`').to_owned()
}
