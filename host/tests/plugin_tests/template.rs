//! `examples/plugin-template`, as a plugin author uses it: its native unit test passes, it
//! builds to a component, and the router runs that component.

use std::path::PathBuf;
use std::process::Command;

use crate::support;

#[test]
fn the_template_tests_natively_builds_and_runs_in_the_router() {
    let template = support::root().join("examples/plugin-template");
    // Its own target folder: the template is a workspace of its own, as a copy of it would be.
    let target = support::root().join("target/template");
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
    support::built_plugins(); // installs the wasm32-wasip2 target, among other things
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
