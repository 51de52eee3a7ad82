//! Plugin projects as authors use them: `examples/plugin-template` and what `plugin new`
//! writes in each language test, build to components, and run in the router.

use std::path::PathBuf;
use std::process::Command;

use crate::support;

/// The target folder of the Rust plugin projects built here. They are workspaces of their
/// own, as copies of them would be, but have the same dependencies: one folder builds those
/// once for both tests (cargo's lock on it makes the second wait, then reuse them).
fn projects_target() -> PathBuf {
    support::built_plugins().parent().unwrap().join("template")
}

#[test]
fn the_template_tests_natively_builds_and_runs_in_the_router() {
    let template = support::root().join("examples/plugin-template");
    // Installs the wasm32-wasip2 target, among other things.
    let target = projects_target();
    let cargo = |args: &[&str]| {
        let status = Command::new(env!("CARGO"))
            .args(args)
            .arg("--locked")
            .current_dir(&template)
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .expect("running cargo");
        assert!(status.success(), "cargo {args:?} failed in the template");
    };
    cargo(&["test", "--quiet"]);
    cargo(&["build", "--quiet", "--release", "--target", "wasm32-wasip2"]);
    let wasm: PathBuf = target.join("wasm32-wasip2/release/my_plugin.wasm");

    let scratch = support::router::Scratch::new();
    let config = scratch.write(
        "add-field.toml",
        "name = \"Cluster\"\nvalue = \"prod-eu\"\n",
    );
    let output = Command::new(support::router_bin())
        .args(["plugin", "test"])
        .arg(&wasm)
        .arg("--events")
        .arg(support::quickstart_recording())
        .arg("--config")
        .arg(&config)
        .env_remove("RUST_LOG")
        .output()
        .expect("running plugin test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout.matches(r#""Cluster":"prod-eu""#).count(),
        25,
        "{stdout}"
    );
}

#[test]
fn plugin_new_projects_build_and_pass_their_tests_in_each_language() {
    let built = support::built_plugins(); // installs the pinned Python and JavaScript toolchains
    let tools = built.parent().unwrap().join("tools");
    let scratch = support::router::Scratch::new();
    for lang in ["rust", "python", "js"] {
        let name = format!("add-field-{lang}");
        let dir = scratch.path(&name);
        let status = Command::new(support::router_bin())
            .args(["plugin", "new", &name, "--lang", lang, "--dir"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(status.success(), "plugin new --lang {lang}");
        let mut build = Command::new("bash");
        build.arg(dir.join("build.sh"));
        match lang {
            "rust" => {
                // The SDK by version, as published; here, the crate of this repository.
                let sdk = support::root().join("plugin-sdk");
                std::fs::create_dir_all(dir.join(".cargo")).unwrap();
                std::fs::write(
                    dir.join(".cargo/config.toml"),
                    format!(
                        "[patch.crates-io]\nkfp-event-router-sdk = {{ path = {:?} }}\n",
                        sdk.display().to_string()
                    ),
                )
                .unwrap();
                build.env("CARGO_TARGET_DIR", projects_target());
                let tested = Command::new(env!("CARGO"))
                    .args(["test", "--quiet"])
                    .current_dir(&dir)
                    .env("CARGO_TARGET_DIR", projects_target())
                    .status()
                    .unwrap();
                assert!(tested.success(), "cargo test in the rust project");
            }
            "python" => {
                build.env("COMPONENTIZE_PY", tools.join("python/bin/componentize-py"));
            }
            _ => {
                build.env(
                    "COMPONENTIZE_JS",
                    tools.join("node/node_modules/.bin/componentize-js"),
                );
            }
        }
        assert!(build.status().unwrap().success(), "build.sh --lang {lang}");
        let output = Command::new("bash")
            .arg(dir.join("test.sh"))
            .env("KFP_EVENT_ROUTER", support::router_bin())
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("ok: all 25 events got the field"),
            "{lang}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
