//! The plugin runtime, end to end: real components built from `plugins/` and the fixtures in
//! `tests/plugins/`, loaded and run by wasmtime.
//!
//! - `golden`: each bundled plugin over the quick start recording (`UPDATE_GOLDEN=1` rewrites
//!   `tests/golden/`);
//! - `sandbox`: hostile plugins (loops, allocations, traps, huge outputs, files, env, sockets,
//!   wrong WIT version, failing init) stop only their own call, as `on_error` says;
//! - `chains`: global then endpoint chains, in order, through a running router;
//! - `reload`: hot reload under load, broken files, removals, ConfigMap `..data` swaps;
//! - `cli`: `kfp-event-router plugin test`;
//! - `template`: `examples/plugin-template` tests natively, builds, and runs in the router.

mod support;

#[path = "plugin_tests/chains.rs"]
mod chains;
#[path = "plugin_tests/cli.rs"]
mod cli;
#[path = "plugin_tests/common.rs"]
mod common;
#[path = "plugin_tests/golden.rs"]
mod golden;
#[path = "plugin_tests/reload.rs"]
mod reload;
#[path = "plugin_tests/sandbox.rs"]
mod sandbox;
#[path = "plugin_tests/template.rs"]
mod template;
