//! The `deploy/` variants the deploy tests render with `kubectl kustomize`.
//!
//! A variant is either a folder of `deploy/overlays/` as shipped, or a composition written
//! the way `deploy/overlays/example` tells a user to: the example overlay with a different
//! `components:` list and, in its `router.toml`, the keys each listed component's
//! `router-keys.toml` asks for. Compositions cover the base with no component, with each
//! component alone, and with all of them at once (in another namespace).
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};

use crate::tools;

/// The workspace root, canonical.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("the workspace root")
}

pub fn deploy() -> PathBuf {
    root().join("deploy")
}

/// One kustomization to render.
#[derive(Debug)]
pub struct Variant {
    /// `overlays/<name>`, or `example+<components>` for a composition.
    pub name: String,
    pub dir: PathBuf,
    /// The components it lists, directly or through the overlays it builds on.
    pub components: BTreeSet<String>,
    /// Kept alive while the variant is: a composition's folder.
    _temp: Option<tempfile::TempDir>,
}

/// A rendered variant.
#[derive(Debug)]
pub struct Rendered {
    pub variant: Variant,
    pub yaml: String,
    pub objects: Vec<Value>,
}

/// The names of `deploy/components/*`.
pub fn component_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(deploy().join("components"))
        .expect("deploy/components")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.join("kustomization.yaml").is_file())
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A `kustomization.yaml`, parsed.
pub fn kustomization(dir: &Path) -> Value {
    let file = dir.join("kustomization.yaml");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

fn entries<'a>(kustomization: &'a Value, key: &str) -> impl Iterator<Item = &'a str> {
    kustomization[key]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// The components `dir` lists, and those of the overlays (not the base) it builds on.
pub fn components_of(dir: &Path) -> BTreeSet<String> {
    let file = kustomization(dir);
    let components = deploy().join("components");
    let mut found = BTreeSet::new();
    for entry in entries(&file, "components") {
        let path = dir.join(entry).canonicalize().expect(entry);
        assert_eq!(
            path.parent(),
            Some(components.as_path()),
            "{}: component {entry} is not one of deploy/components",
            dir.display()
        );
        found.insert(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    for entry in entries(&file, "resources") {
        let path = dir.join(entry);
        if path.join("kustomization.yaml").is_file()
            && path.canonicalize().unwrap() != deploy().join("base")
        {
            found.extend(components_of(&path));
        }
    }
    found
}

/// What `deploy/components/<name>/router-keys.toml` asks router.toml to hold, if anything.
pub fn router_keys(component: &str) -> Option<toml::Table> {
    let file = deploy()
        .join("components")
        .join(component)
        .join("router-keys.toml");
    let text = std::fs::read_to_string(&file).ok()?;
    Some(toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display())))
}

/// `keys` merged into `into`, table by table.
pub fn merge(into: &mut toml::Table, keys: &toml::Table) {
    for (key, value) in keys {
        match (into.get_mut(key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(keys)) => merge(inner, keys),
            _ => {
                into.insert(key.clone(), value.clone());
            }
        }
    }
}

/// The example overlay's router.toml with the keys of `components`.
pub fn config_for(components: &BTreeSet<String>) -> String {
    let file = deploy().join("overlays/example/router.toml");
    let mut config: toml::Table =
        toml::from_str(&std::fs::read_to_string(&file).unwrap()).expect("example router.toml");
    for component in components {
        if let Some(keys) = router_keys(component) {
            merge(&mut config, &keys);
        }
    }
    toml::to_string(&config).expect("TOML")
}

/// `to` as a path relative to `from` (both absolute): kustomize refuses absolute ones.
fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut path = PathBuf::new();
    for _ in common..from.len() {
        path.push("..");
    }
    for part in &to[common..] {
        path.push(part);
    }
    path
}

/// The example overlay, written to a new folder with `components` listed instead of its own,
/// their router.toml keys, and `namespace` when given.
fn composition(components: &BTreeSet<String>, namespace: Option<&str>) -> Variant {
    let temp = tempfile::tempdir().expect("a temporary folder");
    let dir = temp.path().canonicalize().unwrap();
    let mut file = kustomization(&deploy().join("overlays/example"));
    let to = |path: PathBuf| relative(&dir, &path).to_string_lossy().into_owned();
    file["resources"] = json!([to(deploy().join("base"))]);
    file["components"] = components
        .iter()
        .map(|c| Value::from(to(deploy().join("components").join(c))))
        .collect();
    if let Some(namespace) = namespace {
        file["namespace"] = json!(namespace);
    }
    // JSON is YAML.
    std::fs::write(
        dir.join("kustomization.yaml"),
        serde_json::to_string_pretty(&file).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("router.toml"), config_for(components)).unwrap();
    let list: Vec<&str> = components.iter().map(String::as_str).collect();
    let mut name = format!("example+[{}]", list.join(","));
    if let Some(namespace) = namespace {
        name.push_str(&format!(" in {namespace}"));
    }
    Variant {
        name,
        dir,
        components: components.clone(),
        _temp: Some(temp),
    }
}

/// Every folder of `deploy/overlays`, then the compositions.
pub fn variants() -> Vec<Variant> {
    let mut overlays: Vec<PathBuf> = std::fs::read_dir(deploy().join("overlays"))
        .expect("deploy/overlays")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.join("kustomization.yaml").is_file())
        .collect();
    overlays.sort();
    let mut found: Vec<Variant> = overlays
        .into_iter()
        .map(|dir| Variant {
            name: format!("overlays/{}", dir.file_name().unwrap().to_string_lossy()),
            components: components_of(&dir),
            dir,
            _temp: None,
        })
        .collect();
    let all: BTreeSet<String> = component_names().into_iter().collect();
    found.push(composition(&BTreeSet::new(), None));
    for component in &all {
        found.push(composition(&BTreeSet::from([component.clone()]), None));
    }
    found.push(composition(&all, Some("team-a")));
    found
}

/// `kubectl kustomize <dir>`: the YAML, and its documents parsed.
pub fn render(dir: &Path) -> (String, Vec<Value>) {
    let output = tools::output_within(
        Command::new(tools::kubectl()).arg("kustomize").arg(dir),
        Duration::from_secs(60),
    );
    assert!(
        output.status.success(),
        "kubectl kustomize {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("UTF-8 YAML");
    let objects = serde_saphyr::from_multiple::<Value>(&text).expect("kustomize renders YAML");
    (text, objects)
}

/// Every variant, rendered once per test process.
pub fn rendered() -> &'static [Rendered] {
    static RENDERED: OnceLock<Vec<Rendered>> = OnceLock::new();
    RENDERED.get_or_init(|| {
        variants()
            .into_iter()
            .map(|variant| {
                let (yaml, objects) = render(&variant.dir);
                Rendered {
                    variant,
                    yaml,
                    objects,
                }
            })
            .collect()
    })
}

/// The rendered variant called `name`.
pub fn variant(name: &str) -> &'static Rendered {
    rendered()
        .iter()
        .find(|r| r.variant.name == name)
        .unwrap_or_else(|| panic!("no variant {name}"))
}

/// The objects of `kind`.
pub fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// The router's StatefulSet among rendered objects.
pub fn statefulset(objects: &[Value]) -> &Value {
    objects
        .iter()
        .find(|o| o["kind"] == "StatefulSet" && o["metadata"]["name"] == "kfp-event-router")
        .expect("the StatefulSet")
}

/// The router's container.
pub fn container(workload: &Value) -> &Value {
    let containers = workload["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    containers
        .iter()
        .find(|c| c["name"] == "router")
        .expect("the router container")
}

/// The config ConfigMaps among rendered objects.
pub fn config_maps(objects: &[Value]) -> Vec<&Value> {
    objects
        .iter()
        .filter(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == "kfp-event-router-config")
        .collect()
}

/// The text of `router.toml` in the one config ConfigMap.
pub fn router_toml_text(objects: &[Value]) -> &str {
    let maps = config_maps(objects);
    assert_eq!(maps.len(), 1, "one config ConfigMap");
    maps[0]["data"]["router.toml"]
        .as_str()
        .expect("router.toml")
}

/// The `router.toml` of the rendered config ConfigMap, parsed.
pub fn router_toml(objects: &[Value]) -> toml::Table {
    toml::from_str(router_toml_text(objects)).expect("router.toml is TOML")
}

/// The container's mount path of volume `name`.
pub fn mount_path<'a>(workload: &'a Value, name: &str) -> Option<&'a str> {
    container(workload)["volumeMounts"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == name)?["mountPath"]
        .as_str()
}

/// The pod volume called `name`.
pub fn volume<'a>(workload: &'a Value, name: &str) -> Option<&'a Value> {
    workload["spec"]["template"]["spec"]["volumes"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == name)
}

/// Whether `labels` satisfy a `matchLabels`/`matchExpressions` selector.
pub fn selects(selector: &Value, labels: &Value) -> bool {
    let label = |key: &str| labels[key].as_str();
    let by_label = selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(key, value)| label(key) == value.as_str());
    let by_expression = selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|e| {
            let key = e["key"].as_str().unwrap_or_default();
            let values: Vec<&str> = e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            match e["operator"].as_str() {
                Some("In") => label(key).is_some_and(|v| values.contains(&v)),
                Some("NotIn") => label(key).is_none_or(|v| !values.contains(&v)),
                Some("Exists") => label(key).is_some(),
                Some("DoesNotExist") => label(key).is_none(),
                other => panic!("operator {other:?}"),
            }
        });
    by_label && by_expression
}
