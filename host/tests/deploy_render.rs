//! Every `deploy/` variant renders to a pod the router can run in, configured once.
//!
//! The variants (`support/deploy.rs`) are the overlays as shipped and the example overlay
//! composed with no component, each component alone, and all of them. For each: one config
//! ConfigMap whose router.toml the router's own `validate` accepts, with the pod's arguments
//! and against the files and variables the pod provides; the image an overlay names; JSON logs;
//! startup, liveness and readiness probes; the restricted Pod Security Standard; and what each
//! listed component promises (and, when not listed, that it is absent).

#[path = "support/deploy.rs"]
mod deploy;
#[path = "support/tools.rs"]
mod tools;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use deploy::{
    Rendered, config_maps, container, mount_path, of_kind, router_toml, selects, statefulset,
    volume,
};
use serde_json::Value;

/// The image the base names, which an overlay's `images:` replaces.
const BASE_IMAGE: &str = "ghcr.io/kfp-event-router/kfp-event-router";

fn rendered() -> &'static [Rendered] {
    let rendered = deploy::rendered();
    let names: Vec<&str> = rendered.iter().map(|r| r.variant.name.as_str()).collect();
    for expected in [
        "overlays/example",
        "overlays/all-namespaces",
        "overlays/postgres-ha",
        "overlays/from-kfp-event-handler",
        "overlays/seed-compat",
        "example+[]",
    ] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    assert_eq!(
        rendered.len(),
        names.len(),
        "every variant is rendered: {names:?}"
    );
    rendered
}

fn str_values(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

#[test]
fn the_base_has_no_configuration_and_each_overlay_generates_its_own_once() {
    let base = deploy::deploy().join("base");
    assert!(
        !base.join("router.toml").exists(),
        "deploy/base is never edited: router.toml lives in the overlay"
    );
    let (_, objects) = deploy::render(&base);
    assert!(
        config_maps(&objects).is_empty(),
        "the base generates no config"
    );
    // No kustomization replaces a config generated elsewhere: each overlay owns one router.toml.
    for dir in ["base", "components", "overlays"] {
        for file in files(&deploy::deploy().join(dir), "kustomization.yaml") {
            let text = std::fs::read_to_string(&file).unwrap();
            assert!(
                !text.contains("behavior: replace") && !text.contains("behavior: merge"),
                "{}: overlays do not override another's config",
                file.display()
            );
        }
    }
    for r in rendered() {
        assert_eq!(
            config_maps(&r.objects).len(),
            1,
            "{}: the config ConfigMap exactly once",
            r.variant.name
        );
        let config = router_toml(&r.objects);
        assert_eq!(
            config["source"]["kind"].as_str(),
            Some("kubernetes"),
            "{}",
            r.variant.name
        );
    }
}

/// The files called `name` under `dir`.
fn files(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files(&path, name));
        } else if path.file_name().is_some_and(|n| n == name) {
            found.push(path);
        }
    }
    found
}

#[test]
fn each_overlay_sets_the_router_toml_keys_of_the_components_it_lists() {
    let mut checked = 0;
    for r in rendered()
        .iter()
        .filter(|r| r.variant.name.starts_with("overlays/"))
    {
        let config = router_toml(&r.objects);
        for component in &r.variant.components {
            if let Some(keys) = deploy::router_keys(component) {
                contains(&config, &keys, &format!("{} ({component})", r.variant.name));
                checked += 1;
            }
        }
    }
    assert!(checked >= 3, "all-namespaces, postgres-ha, the subscribers");
    // And an overlay that does not list all-namespaces keeps to its namespace, which is all
    // its Role allows.
    for r in rendered() {
        if !r.variant.components.contains("all-namespaces") {
            let config = router_toml(&r.objects);
            let namespaces = config["source"].get("namespaces");
            assert!(
                namespaces.is_none_or(|n| n.as_array().is_some_and(Vec::is_empty)),
                "{}: namespaces = [] without the ClusterRole",
                r.variant.name
            );
        }
    }
}

/// Asserts `config` holds every key of `keys` with the same value.
fn contains(config: &toml::Table, keys: &toml::Table, context: &str) {
    for (key, value) in keys {
        match (config.get(key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(keys)) => {
                contains(inner, keys, &format!("{context}.{key}"))
            }
            (found, _) => assert_eq!(found, Some(value), "{context}: {key}"),
        }
    }
}

/// A stand-in for the pod's filesystem and environment: `router.toml` with every absolute
/// path moved under a temporary folder, where the folders and secret files it names exist, and
/// a value for every variable it names. Returns the config file and the variables.
fn pod_files(
    name: &str,
    config: &toml::Table,
    workload: &Value,
    root: &Path,
) -> (PathBuf, Vec<(String, String)>) {
    let env: BTreeSet<&str> = container(workload)["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["name"].as_str())
        .collect();
    let mounts: Vec<&str> = container(workload)["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["mountPath"].as_str())
        .collect();
    let mut vars = Vec::new();
    let mut config = toml::Value::Table(config.clone());
    relocate(name, &mut config, root, "", &env, &mounts, &mut vars);
    let toml::Value::Table(config) = config else {
        unreachable!()
    };
    for (table, key) in [("state", "dir"), ("plugins", "dir")] {
        if let Some(dir) = config
            .get(table)
            .and_then(|t| t.get(key))
            .and_then(toml::Value::as_str)
        {
            std::fs::create_dir_all(dir).unwrap();
        }
    }
    if let Some(dir) = config.get("subscribers_dir").and_then(toml::Value::as_str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            Path::new(dir).join("teams-notifier"),
            "https://hooks.example.com/a\n",
        )
        .unwrap();
    }
    let file = root.join("etc/kfp-event-router/router.toml");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, toml::to_string(&config).unwrap()).unwrap();
    (file, vars)
}

const SIGNING_KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const POSTGRES_URL: &str = "postgres://router:password@postgres.db:5432/kfp_event_router";

/// Moves absolute paths under `root`, creating the files `{ file = .. }` names (which must be
/// in a mounted folder) and giving each `{ env = .. }` (which the container must set) a value.
fn relocate(
    name: &str,
    value: &mut toml::Value,
    root: &Path,
    key: &str,
    env: &BTreeSet<&str>,
    mounts: &[&str],
    vars: &mut Vec<(String, String)>,
) {
    let content = match key.starts_with("state.") {
        true => POSTGRES_URL,
        false => SIGNING_KEY,
    };
    match value {
        toml::Value::String(text) if text.starts_with('/') => {
            *text = format!("{}{text}", root.display());
        }
        toml::Value::Table(table) if table.len() == 1 && table.contains_key("file") => {
            let path = table["file"].as_str().expect("file = \"..\"").to_owned();
            assert!(
                mounts.iter().any(|m| path.starts_with(&format!("{m}/"))),
                "{name}: {key} = {{ file = {path:?} }} is not in a mounted folder"
            );
            let moved = format!("{}{path}", root.display());
            std::fs::create_dir_all(Path::new(&moved).parent().unwrap()).unwrap();
            std::fs::write(&moved, content).unwrap();
            table.insert("file".into(), moved.into());
        }
        toml::Value::Table(table) if table.len() == 1 && table.contains_key("env") => {
            let var = table["env"].as_str().expect("env = \"..\"");
            assert!(
                env.contains(var),
                "{name}: {key} = {{ env = {var:?} }}, which the container does not set"
            );
            vars.push((var.to_owned(), content.to_owned()));
        }
        toml::Value::Table(table) => {
            for (k, v) in table.iter_mut() {
                let key = match key {
                    "" => k.to_string(),
                    _ => format!("{key}.{k}"),
                };
                relocate(name, v, root, &key, env, mounts, vars);
            }
        }
        toml::Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                relocate(name, v, root, &format!("{key}[{i}]"), env, mounts, vars);
            }
        }
        _ => {}
    }
}

#[test]
fn the_router_accepts_every_variants_config_with_the_pods_arguments_and_mounts() {
    for r in rendered() {
        let name = &r.variant.name;
        let workload = statefulset(&r.objects);
        let config = router_toml(&r.objects);

        // The folders router.toml names are the pod's mounts, and the server listens on the
        // port the probes and the Service use.
        let state_dir = config["state"]["dir"].as_str().expect("state.dir");
        assert_eq!(mount_path(workload, "state"), Some(state_dir), "{name}");
        let plugins_dir = config["plugins"]["dir"].as_str().expect("plugins.dir");
        assert_eq!(mount_path(workload, "plugins"), Some(plugins_dir), "{name}");
        if let Some(dir) = config.get("subscribers_dir") {
            assert_eq!(
                mount_path(workload, "subscribers"),
                dir.as_str(),
                "{name}: the subscriber ConfigMap is mounted where subscribers_dir points"
            );
        }
        let listen = config["server"]["listen"].as_str().expect("server.listen");
        let port = container(workload)["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == "metrics")
            .expect("the metrics port")["containerPort"]
            .clone();
        assert_eq!(
            listen,
            format!("0.0.0.0:{port}"),
            "{name}: reachable by the kubelet and Prometheus"
        );

        // `--config` is router.toml in the config ConfigMap's mount.
        let args = str_values(&container(workload)["args"]);
        let at = args
            .iter()
            .position(|a| *a == "--config")
            .expect("--config");
        let path = Path::new(args[at + 1]);
        assert_eq!(path.file_name().unwrap(), "router.toml", "{name}");
        let mount = path.parent().unwrap().to_str().unwrap();
        let config_volume = container(workload)["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == mount)
            .unwrap_or_else(|| panic!("{name}: nothing mounted at {mount}"))["name"]
            .as_str()
            .unwrap();
        assert_eq!(
            volume(workload, config_volume).unwrap()["configMap"]["name"],
            "kfp-event-router-config",
            "{name}"
        );

        // The router's own check, with the pod's arguments (`run` becomes `validate`).
        let root = tempfile::tempdir().unwrap();
        let (file, vars) = pod_files(name, &config, workload, root.path());
        let args: Vec<String> = args
            .iter()
            .enumerate()
            .map(|(i, a)| match (i, *a) {
                (i, _) if i == at + 1 => file.display().to_string(),
                (_, "run") => "validate".to_owned(),
                (_, a) => a.to_owned(),
            })
            .collect();
        assert!(args.contains(&"validate".to_owned()), "{name}: {args:?}");
        let output = tools::output_within(
            Command::new(env!("CARGO_BIN_EXE_kfp-event-router"))
                .args(&args)
                .env_remove("KFP_EVENT_ROUTER_CONFIG")
                .envs(vars),
            Duration::from_secs(60),
        );
        assert!(
            output.status.success(),
            "{name}: kfp-event-router {args:?}:\n{}{}\nrouter.toml:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(&file).unwrap()
        );
        assert!(
            String::from_utf8_lossy(&output.stdout).contains(": ok ("),
            "{name}: {}",
            String::from_utf8_lossy(&output.stdout)
        );
    }
}

#[test]
fn the_user_overlay_replaces_the_image_with_its_own_pinned_by_digest() {
    let example = deploy::kustomization(&deploy::deploy().join("overlays/example"));
    let image = &example["images"][0];
    assert_eq!(
        image["name"], BASE_IMAGE,
        "the override names the base's image"
    );
    let new_name = image["newName"].as_str().expect("newName");
    let digest = image["digest"].as_str().expect("pinned by digest");
    assert!(
        digest.starts_with("sha256:") && digest.len() == 7 + 64,
        "{digest}"
    );
    for r in rendered() {
        let name = &r.variant.name;
        let image = container(statefulset(&r.objects))["image"]
            .as_str()
            .expect("image");
        // The compositions are the example overlay, with its `images:`.
        if name == "overlays/example" || name.starts_with("example+") {
            assert_eq!(image, format!("{new_name}@{digest}"), "{name}");
            assert!(
                !r.yaml.contains(BASE_IMAGE),
                "{name}: the base's image is gone"
            );
        } else {
            assert!(
                image.starts_with(&format!("{BASE_IMAGE}:")),
                "{name}: {image}"
            );
        }
    }
}

#[test]
fn every_pod_logs_json_and_has_startup_liveness_and_readiness_probes() {
    for r in rendered() {
        let name = &r.variant.name;
        let router = container(statefulset(&r.objects));
        let args = str_values(&router["args"]);
        let at = args.iter().position(|a| *a == "--log-format");
        assert_eq!(
            at.map(|i| args[i + 1]),
            Some("json"),
            "{name}: JSON logs: {args:?}"
        );
        for (probe, path) in [
            ("startupProbe", "/healthz"),
            ("livenessProbe", "/healthz"),
            ("readinessProbe", "/readyz"),
        ] {
            let probe_value = &router[probe];
            assert_eq!(probe_value["httpGet"]["path"], path, "{name}: {probe}");
            assert_eq!(probe_value["httpGet"]["port"], "metrics", "{name}: {probe}");
        }
        // Plugins compile before the health server starts: the startup probe leaves minutes,
        // where liveness alone would restart a slow first start in seconds.
        let startup = &router["startupProbe"];
        let budget = startup["periodSeconds"].as_u64().unwrap_or(10)
            * startup["failureThreshold"].as_u64().unwrap_or(3);
        assert!(budget >= 120, "{name}: {budget}s to start");
    }
}

#[test]
fn every_pod_meets_the_restricted_pod_security_standard() {
    for r in rendered() {
        let name = &r.variant.name;
        let workload = statefulset(&r.objects);
        let spec = &workload["spec"]["template"]["spec"];
        for host in ["hostNetwork", "hostPID", "hostIPC"] {
            assert_ne!(spec[host], true, "{name}: {host}");
        }
        assert_eq!(spec["securityContext"]["runAsNonRoot"], true, "{name}");
        assert_eq!(
            spec["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
            "{name}"
        );
        let allowed = [
            "configMap",
            "secret",
            "emptyDir",
            "projected",
            "downwardAPI",
            "persistentVolumeClaim",
            "csi",
            "ephemeral",
            "image",
        ];
        for v in spec["volumes"].as_array().expect("volumes") {
            let kinds: Vec<&String> = v
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| *k != "name")
                .collect();
            assert!(
                kinds.iter().all(|k| allowed.contains(&k.as_str())),
                "{name}: volume {kinds:?}"
            );
        }
        for c in spec["containers"].as_array().expect("containers") {
            let sc = &c["securityContext"];
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
            assert_eq!(sc["runAsNonRoot"], true, "{name}");
            assert_ne!(sc["privileged"], true, "{name}");
            assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{name}");
            assert_eq!(str_values(&sc["capabilities"]["drop"]), ["ALL"], "{name}");
            assert!(
                sc["capabilities"]["add"].is_null(),
                "{name}: no capability added"
            );
            assert!(
                c["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .all(|p| p["hostPort"].is_null()),
                "{name}: no hostPort"
            );
        }
    }
}

#[test]
fn each_component_is_there_exactly_when_listed_and_does_what_it_says() {
    for r in rendered() {
        let name = &r.variant.name;
        let on = |c: &str| r.variant.components.contains(c);
        let objects = &r.objects;
        let workload = statefulset(objects);
        let pod_labels = &workload["spec"]["template"]["metadata"]["labels"];
        let namespace = workload["metadata"]["namespace"]
            .as_str()
            .expect("namespace");
        for o in objects {
            let kind = o["kind"].as_str().unwrap();
            let cluster_wide = kind.starts_with("Cluster");
            assert_eq!(
                o["metadata"]["namespace"].as_str(),
                (!cluster_wide).then_some(namespace),
                "{name}: {kind} in the router's namespace"
            );
        }

        // all-namespaces: the binding names the ServiceAccount in its namespace.
        let bindings = of_kind(objects, "ClusterRoleBinding");
        assert_eq!(bindings.len(), usize::from(on("all-namespaces")), "{name}");
        for binding in bindings {
            assert_eq!(
                binding["subjects"][0]["namespace"].as_str(),
                Some(namespace),
                "{name}: the ClusterRoleBinding's subject is the router's ServiceAccount"
            );
        }

        // postgres-ha: no claims, the state folder an emptyDir, the URL from the Secret.
        let claims = &workload["spec"]["volumeClaimTemplates"];
        let state = volume(workload, "state");
        match on("postgres-ha") {
            true => {
                assert!(claims.is_null(), "{name}");
                assert!(
                    state.expect("state volume")["emptyDir"].is_object(),
                    "{name}"
                );
            }
            false => {
                assert_eq!(claims[0]["metadata"]["name"], "state", "{name}");
                assert!(state.is_none(), "{name}");
            }
        }
        let postgres = router_toml(objects)["state"].get("backend").cloned();
        assert_eq!(
            postgres.as_ref().and_then(toml::Value::as_str) == Some("postgres"),
            on("postgres-ha"),
            "{name}: the backend goes with the component"
        );

        // kfp-event-handler-subscribers: the Go handler's ConfigMap, required.
        let subscribers = volume(workload, "subscribers");
        assert_eq!(
            subscribers.is_some(),
            on("kfp-event-handler-subscribers"),
            "{name}"
        );
        if let Some(v) = subscribers {
            assert_eq!(v["configMap"]["name"], "kfp-event-handler-config", "{name}");
            assert_ne!(v["configMap"]["optional"], true, "{name}");
        }

        // pdb: one replica kept through voluntary disruptions, of the two there are.
        let budgets = of_kind(objects, "PodDisruptionBudget");
        assert_eq!(budgets.len(), usize::from(on("pdb")), "{name}");
        for pdb in budgets {
            assert_eq!(pdb["spec"]["minAvailable"], 1, "{name}");
            assert!(selects(&pdb["spec"]["selector"], pod_labels), "{name}");
            assert!(workload["spec"]["replicas"].as_u64() >= Some(2), "{name}");
        }

        // servicemonitor: scrapes the Service's metrics port, which is the container's.
        let monitors = of_kind(objects, "ServiceMonitor");
        assert_eq!(monitors.len(), usize::from(on("servicemonitor")), "{name}");
        for monitor in monitors {
            let service = of_kind(objects, "Service")
                .into_iter()
                .find(|s| selects(&monitor["spec"]["selector"], &s["metadata"]["labels"]))
                .unwrap_or_else(|| panic!("{name}: the ServiceMonitor selects the Service"));
            let port = monitor["spec"]["endpoints"][0]["port"].as_str().unwrap();
            let service_port = service["spec"]["ports"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == port)
                .unwrap_or_else(|| panic!("{name}: the Service has port {port}"));
            assert_eq!(service_port["targetPort"], "metrics", "{name}");
            assert_eq!(
                monitor["spec"]["endpoints"][0]["path"], "/metrics",
                "{name}"
            );
            assert!(selects(
                &serde_json::json!({"matchLabels": service["spec"]["selector"]}),
                pod_labels
            ));
        }

        // networkpolicy: ingress on the metrics port only; egress to DNS, the API server,
        // HTTPS, and PostgreSQL exactly when the state is there.
        let policies: Vec<&Value> = of_kind(objects, "NetworkPolicy")
            .into_iter()
            .filter(|p| selects(&p["spec"]["podSelector"], pod_labels))
            .collect();
        assert_eq!(!policies.is_empty(), on("networkpolicy"), "{name}");
        if on("networkpolicy") {
            let rules = |direction: &str| -> Vec<(String, String)> {
                policies
                    .iter()
                    .flat_map(|p| p["spec"][direction].as_array().cloned().unwrap_or_default())
                    .flat_map(|rule| rule["ports"].as_array().cloned().unwrap_or_default())
                    .map(|p| {
                        (
                            p["port"].to_string().replace('"', ""),
                            p["protocol"].as_str().unwrap_or("TCP").to_owned(),
                        )
                    })
                    .collect()
            };
            let ingress = rules("ingress");
            assert_eq!(
                ingress,
                [("metrics".to_owned(), "TCP".to_owned())],
                "{name}"
            );
            let egress = rules("egress");
            for (port, protocol) in [
                ("53", "UDP"),
                ("53", "TCP"),
                ("443", "TCP"),
                ("6443", "TCP"),
            ] {
                assert!(
                    egress.contains(&(port.to_owned(), protocol.to_owned())),
                    "{name}: egress {port}/{protocol}"
                );
            }
            assert_eq!(
                egress.contains(&("5432".to_owned(), "TCP".to_owned())),
                on("postgres-ha"),
                "{name}: PostgreSQL egress exactly with its state there"
            );
            for policy in &policies {
                let types = str_values(&policy["spec"]["policyTypes"]);
                assert!(types.contains(&"Egress"), "{name}");
            }
            assert!(
                policies
                    .iter()
                    .any(|p| str_values(&p["spec"]["policyTypes"]).contains(&"Ingress")),
                "{name}: ingress is restricted"
            );
        }
    }
}

#[test]
fn seed_compat_is_the_from_kfp_event_handler_overlay_under_its_old_name() {
    let old = deploy::variant("overlays/seed-compat");
    let new = deploy::variant("overlays/from-kfp-event-handler");
    assert_eq!(old.yaml, new.yaml);
    assert_eq!(
        deploy::kustomization(&old.variant.dir)["resources"],
        serde_json::json!(["../from-kfp-event-handler"])
    );
}
