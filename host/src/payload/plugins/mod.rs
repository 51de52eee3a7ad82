//! WebAssembly plugins, run by wasmtime.
//!
//! - [`runtime`]: one engine (epoch interruption for time budgets, wasmtime's compilation
//!   cache), one linker, the sandboxed per-store state; [`limits`]: memory per instance and
//!   in all; [`log`]: the `host.log` import;
//! - [`bindings`]: the WIT contracts (0.3; 0.2 and 0.1 for components built for them);
//!   [`event`]: the event as a plugin sees it, whole or as a handle; [`handles`]: the methods
//!   of 0.3's event and payload handles;
//! - [`plugin`]: one loaded plugin and its instance pools; [`instance`]: one instance;
//!   [`meters`]: its call metrics, looked up once;
//! - [`registry`]: loads `plugins.dir` and hot-reloads it; [`chain`] runs plugins in order,
//!   [`headers`] says which headers they may not set;
//! - [`health`]: plugins that keep failing, for `/readyz`; [`settings`]: limits and policy.

pub mod bindings;
pub mod cache;
pub mod chain;
pub mod current;
pub mod event;
pub(crate) mod handles;
pub mod headers;
pub mod health;
pub(crate) mod instance;
pub(crate) mod limits;
pub(crate) mod log;
pub(crate) mod meters;
pub mod plugin;
pub(crate) mod registry;
pub mod runtime;
pub mod settings;
