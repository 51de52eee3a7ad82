//! `deploy/` renders, and its RBAC grants exactly what the router uses.
//!
//! Every variant (each overlay of `deploy/overlays`, and the base with each component of
//! `deploy/components` as the example overlay composes them, see `support/deploy.rs`) is
//! rendered with `kubectl kustomize`; the Role and ClusterRole rules of each must grant, per
//! resource, exactly the verbs of [`kfp_event_router::source::kubernetes::API_USAGE`] (which the
//! kube source integration tests check every request against), with `get`/`update` limited to
//! the Lease and ConfigMap names the router uses by default.

#[path = "support/deploy.rs"]
mod deploy;
#[path = "support/tools.rs"]
mod tools;

use std::collections::{BTreeMap, BTreeSet};

use deploy::{container, mount_path, router_toml, statefulset, variant};
use kfp_event_router::source::kubernetes::{API_USAGE, KubernetesSettings, leader::LeaderSettings};
use serde_json::Value;

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
    let rendered = deploy::rendered();
    assert!(rendered.len() >= 10, "the overlays and the compositions");
    for deploy::Rendered {
        variant, objects, ..
    } in rendered
    {
        let name = &variant.name;
        let role = grants(objects, "Role");
        let cluster_role = grants(objects, "ClusterRole");
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
        // The cluster-wide variants read Events and Workflows through a ClusterRole; the
        // others have none.
        if variant.components.contains("all-namespaces") {
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
        } else {
            assert!(cluster_role.is_empty(), "{name}: no ClusterRole");
        }
        // The StatefulSet tells the router its namespace and name, for `namespaces = []` and
        // the Lease holder identity.
        let workload = statefulset(objects);
        let env: BTreeSet<String> = container(workload)["env"]
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
fn the_base_keeps_each_replicas_state_on_a_persistent_volume_claim() {
    // The example overlay lists no state component: the base's StatefulSet as it is.
    let objects = &variant("overlays/example").objects;
    let workload = statefulset(objects);
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
    let dir = router_toml(objects)["state"]["dir"]
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
    let objects = &variant("overlays/postgres-ha").objects;
    let workload = statefulset(objects);
    assert_eq!(workload["spec"]["replicas"], 2);
    assert!(workload["spec"]["volumeClaimTemplates"].is_null());
    let state = router_toml(objects)["state"].clone();
    assert_eq!(state["backend"].as_str(), Some("postgres"));
    let var = state["url"]["env"].as_str().expect("url = { env = .. }");
    let env = container(workload)["env"].as_array().expect("env");
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
