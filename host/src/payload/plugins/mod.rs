//! WebAssembly plugins, run by wasmtime.
//!
//! - [`runtime`]: one engine (epoch interruption for CPU budgets, wasmtime's compilation
//!   cache), one linker, the sandboxed per-store state;
//! - [`plugin`]: one loaded plugin, its WIT version check and its pool of instances;
//! - [`registry`]: loads `plugins.dir` and hot-reloads it; [`chain`] runs plugins in order;
//! - [`health`]: plugins that keep failing, for `/readyz`; [`settings`]: limits and policy.

pub mod bindings;
pub mod cache;
pub mod chain;
pub mod health;
pub mod plugin;
pub(crate) mod registry;
pub mod runtime;
pub mod settings;
