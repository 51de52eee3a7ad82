//! Shared parts of the integration tests: a real HTTP sink, the router binary, built plugins.
#![allow(dead_code, missing_docs)]

pub mod kube_api;
pub mod postgres;
pub mod proxy;
pub mod recording;
pub mod router;
pub mod sink;
pub mod world;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The workspace root.
pub fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The router binary cargo built for these tests.
pub fn router_bin() -> &'static str {
    env!("CARGO_BIN_EXE_kfp-event-router")
}

/// The quick start recording.
pub fn quickstart_recording() -> PathBuf {
    root().join("examples/quickstart/kfp-run.jsonl")
}

/// Builds every plugin and fixture (`plugins/build.sh`) once per test process and returns the
/// folder of `.wasm` files. Cargo's own lock makes concurrent test processes safe, and a
/// second build is a no-op.
pub fn built_plugins() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let status = std::process::Command::new("bash")
            .arg(root().join("plugins/build.sh"))
            .current_dir(root())
            .status()
            .expect("running plugins/build.sh");
        assert!(status.success(), "plugins/build.sh failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root().join("target"));
        target.join("plugins")
    })
}
