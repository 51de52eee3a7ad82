//! The router's imports point one way: down the layers, never from one stage into another.
//!
//! Reads every `crate::` and `super::` path in `host/src` (comments aside) and fails, naming
//! the file and the import, when a module imports one of its own layer or of a layer above it.
//! The layers, bottom first, are [`LAYERS`]; the module map at the top of `pipeline/mod.rs`
//! must name every module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom first. A module may import the modules of the layers below its own, and
/// nothing of its own layer or above: so the stages never import one another, and no import
/// cycle can pass between modules.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "shared types and reporting",
        &["model", "telemetry", "debounce"],
    ),
    ("durable state", &["state"]),
    (
        "stages",
        &["source", "enrich", "accept", "payload", "deliver"],
    ),
    ("configuration and operator surface", &["config", "server"]),
    ("assembly and tools", &["pipeline", "receive"]),
    ("command line", &["cli"]),
    ("crate root", &["lib", "main"]),
];

/// One import of another top-level module.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Import {
    file: String,
    line: usize,
    from: String,
    to: String,
    text: String,
}

#[test]
fn imports_point_down_the_layers_only() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = read_tree(&src);
    let modules: BTreeSet<String> = files.keys().map(|f| top_module(f)).collect();
    let found: usize = files
        .iter()
        .map(|(file, text)| imports(file, text, &modules).len())
        .sum();
    assert!(
        found > 100,
        "only {found} imports between modules found: the scanner is broken"
    );
    let problems = check(&files, &modules);
    assert!(
        problems.is_empty(),
        "imports that break the layering ({}):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn the_module_map_names_every_module() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let map = std::fs::read_to_string(src.join("pipeline/mod.rs")).unwrap();
    let diagram: String = map
        .lines()
        .skip_while(|l| !l.contains("```text"))
        .skip(1)
        .take_while(|l| !l.contains("```"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        !diagram.is_empty(),
        "pipeline/mod.rs has no ```text module map"
    );
    let modules: BTreeSet<String> = read_tree(&src).keys().map(|f| top_module(f)).collect();
    for module in modules
        .iter()
        .filter(|m| !matches!(m.as_str(), "lib" | "main"))
    {
        let folder = src.join(module).is_dir();
        let shown = if folder {
            format!("{module}/")
        } else {
            module.clone()
        };
        assert!(
            diagram.contains(&shown),
            "the module map in pipeline/mod.rs does not show `{shown}`:\n{diagram}"
        );
    }
}

#[test]
fn a_stage_importing_a_stage_is_caught() {
    let files = BTreeMap::from([
        (
            "deliver/worker.rs".to_owned(),
            "use crate::payload::PayloadStage;\n".to_owned(),
        ),
        (
            "payload/mod.rs".to_owned(),
            "// use crate::deliver;\n".to_owned(),
        ),
    ]);
    let problems = check(&files, &modules(&["deliver", "payload"]));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0]
            .starts_with("host/src/deliver/worker.rs:1: stage `deliver` imports stage `payload`"),
        "{}",
        problems[0]
    );
}

#[test]
fn an_import_back_up_and_a_cycle_are_caught() {
    let files = BTreeMap::from([
        (
            "config/mod.rs".to_owned(),
            "use crate::source::kubernetes::KubernetesSettings;\n".to_owned(),
        ),
        (
            "source/kubernetes/mod.rs".to_owned(),
            "fn f() {\n    let c = super::super::config::Config::default();\n}\n".to_owned(),
        ),
    ]);
    let problems = check(&files, &modules(&["config", "source"]));
    assert!(
        problems.iter().any(|p| p.starts_with(
            "host/src/source/kubernetes/mod.rs:2: `source` (stages) imports `config` (configuration and operator surface), a layer above"
        )),
        "{problems:#?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("import cycle: config -> source -> config")),
        "{problems:#?}"
    );
}

#[test]
fn a_module_in_no_layer_is_caught() {
    let files = BTreeMap::from([("router.rs".to_owned(), "use crate::model::X;\n".to_owned())]);
    let problems = check(&files, &modules(&["router", "model"]));
    assert!(
        problems
            .iter()
            .any(|p| p.contains("`router` is in no layer")),
        "{problems:#?}"
    );
}

fn modules(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

/// Every problem with the imports of `files` (path under `src` -> text).
fn check(files: &BTreeMap<String, String>, modules: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    for module in modules {
        if layer(module).is_none() {
            problems.push(format!(
                "`{module}` is in no layer: add it to LAYERS in host/tests/layering.rs"
            ));
        }
    }
    let imports: Vec<Import> = files
        .iter()
        .flat_map(|(file, text)| imports(file, text, modules))
        .collect();
    for import in &imports {
        let (Some((from_rank, from_layer)), Some((to_rank, to_layer))) =
            (layer(&import.from), layer(&import.to))
        else {
            continue;
        };
        let place = format!("host/src/{}:{}", import.file, import.line);
        if from_rank == to_rank && from_layer == "stages" {
            problems.push(format!(
                "{place}: stage `{}` imports stage `{}` (`{}`): hand it over through a model type in the assembler",
                import.from, import.to, import.text
            ));
        } else if from_rank == to_rank {
            problems.push(format!(
                "{place}: `{}` imports `{}` of its own layer ({from_layer}) (`{}`)",
                import.from, import.to, import.text
            ));
        } else if from_rank < to_rank {
            problems.push(format!(
                "{place}: `{}` ({from_layer}) imports `{}` ({to_layer}), a layer above (`{}`)",
                import.from, import.to, import.text
            ));
        }
    }
    problems.extend(cycles(&imports));
    problems
}

/// The rank and name of `module`'s layer.
fn layer(module: &str) -> Option<(usize, &'static str)> {
    LAYERS
        .iter()
        .enumerate()
        .find(|(_, (_, members))| members.contains(&module))
        .map(|(rank, (name, _))| (rank, *name))
}

/// Import cycles between top-level modules, each once, with a file that closes each step.
fn cycles(imports: &[Import]) -> Vec<String> {
    let mut graph: BTreeMap<&str, BTreeMap<&str, &Import>> = BTreeMap::new();
    for import in imports {
        graph
            .entry(&import.from)
            .or_default()
            .entry(&import.to)
            .or_insert(import);
    }
    let mut found = BTreeSet::new();
    let mut problems = Vec::new();
    for start in graph.keys().copied() {
        let mut path = vec![start];
        walk(&graph, start, &mut path, &mut found, &mut problems);
    }
    problems
}

fn walk<'a>(
    graph: &BTreeMap<&'a str, BTreeMap<&'a str, &'a Import>>,
    start: &'a str,
    path: &mut Vec<&'a str>,
    found: &mut BTreeSet<Vec<&'a str>>,
    problems: &mut Vec<String>,
) {
    let last = *path.last().expect("never empty");
    for (&next, _) in graph.get(last).into_iter().flatten() {
        if next == start {
            let mut key = path.clone();
            key.sort_unstable();
            if found.insert(key) {
                let steps: Vec<String> = path
                    .iter()
                    .zip(path.iter().skip(1).chain([&start]))
                    .map(|(a, b)| {
                        let i = graph[a][b];
                        format!("host/src/{}:{} `{}`", i.file, i.line, i.text)
                    })
                    .collect();
                problems.push(format!(
                    "import cycle: {} -> {start}, through {}",
                    path.join(" -> "),
                    steps.join("; ")
                ));
            }
        } else if next > start && !path.contains(&next) {
            path.push(next);
            walk(graph, start, path, found, problems);
            path.pop();
        }
    }
}

/// Every `.rs` file under `src`, by path relative to it.
fn read_tree(src: &Path) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    let mut folders = vec![src.to_owned()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path: PathBuf = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path
                    .strip_prefix(src)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                files.insert(relative, std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    files
}

/// The top-level module a file belongs to: `deliver/worker.rs` -> `deliver`.
fn top_module(file: &str) -> String {
    let first = file.split('/').next().unwrap_or(file);
    first.trim_end_matches(".rs").to_owned()
}

/// The module path of a file: `source/kubernetes/mod.rs` -> `[source, kubernetes]`.
fn module_path(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_owned)
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The imports of other top-level modules in one file, from its code (comments left out).
fn imports(file: &str, text: &str, modules: &BTreeSet<String>) -> Vec<Import> {
    let from = top_module(file);
    let here = module_path(file);
    let mut out = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        for target in targets(code, &here) {
            if target != from && modules.contains(&target) {
                out.push(Import {
                    file: file.to_owned(),
                    line: number + 1,
                    from: from.clone(),
                    to: target,
                    text: code.trim().to_owned(),
                });
            }
        }
    }
    out
}

/// The top-level modules that `crate::` and `super::` paths in `code` lead to, from the module
/// at `here`.
fn targets(code: &str, here: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    let words: Vec<&str> = code
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':' || c == '{' || c == ','))
        .collect();
    for word in words {
        let mut rest = word;
        while let Some(i) = rest.find("crate::").or_else(|| rest.find("super::")) {
            let tail = &rest[i..];
            let (start, mut path): (usize, Vec<String>) = if tail.starts_with("crate::") {
                (7, Vec::new())
            } else {
                (0, here.to_vec())
            };
            let mut segments = tail[start..].split("::");
            let mut tail_len = start;
            let mut next: Option<String> = None;
            for segment in segments.by_ref() {
                tail_len += segment.len() + 2;
                if segment == "super" {
                    path.pop();
                    continue;
                }
                next = Some(segment.to_owned());
                break;
            }
            let top = match path.first() {
                Some(top) => vec![top.clone()],
                None => match next.as_deref() {
                    Some(group) if group.starts_with('{') => group
                        .trim_start_matches('{')
                        .split(',')
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty())
                        .collect(),
                    Some(name) => vec![name.to_owned()],
                    None => Vec::new(),
                },
            };
            found.extend(top.into_iter().map(|t| {
                t.trim_matches(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .to_owned()
            }));
            rest = &tail[tail_len.min(tail.len())..];
        }
    }
    found
}
