//! The plugin runtime, end to end: real components built from `plugins/` and the fixtures in
//! `tests/plugins/`, loaded and run by wasmtime.
//!
//! - `golden`: each bundled plugin (Rust, Python, JavaScript) over a recording (`UPDATE_GOLDEN=1` rewrites
//!   `tests/golden/`);
//! - `sandbox`: hostile plugins (loops, sleeps, clock polls, allocations, two memories, the
//!   total memory budget, traps, huge outputs, files, env, sockets, state across endpoints,
//!   forbidden headers, wrong WIT version, failing init) stop only their own call, as
//!   `on_error` says;
//! - `compat`: 0.1 and 0.2 components still run; plugins get every fact of the event; 0.3
//!   handles end with their call;
//! - `chains`: global then endpoint chains, in order, through a running router;
//! - `languages`: the Python and JavaScript bundled plugins, built with pinned toolchains;
//! - `reload`: hot reload under load, broken files, removals, ConfigMap `..data` swaps;
//! - `cli`: `kfp-event-router plugin test`, `check` and `diff`, and escaped plugin logs;
//! - `profiler`: `plugins.profiler = "perfmap"` names plugin code for Linux `perf`;
//! - `template`: `examples/plugin-template` and `plugin new` projects (Rust, Python, JS) test,
//!   build, and run in the router.

mod support;

#[path = "plugin_tests/chains.rs"]
mod chains;
#[path = "plugin_tests/cli.rs"]
mod cli;
#[path = "plugin_tests/common.rs"]
mod common;
#[path = "plugin_tests/compat.rs"]
mod compat;
#[path = "plugin_tests/golden.rs"]
mod golden;
#[path = "plugin_tests/languages.rs"]
mod languages;
#[path = "plugin_tests/profiler.rs"]
mod profiler;
#[path = "plugin_tests/reload.rs"]
mod reload;
#[path = "plugin_tests/sandbox.rs"]
mod sandbox;
#[path = "plugin_tests/template.rs"]
mod template;
