//! Write [kfp-event-router] plugins in Rust.
//!
//! A plugin is a WebAssembly component (target `wasm32-wasip2`) that the router
//! runs for every payload it is about to POST to a webhook endpoint. The plugin
//! sees the enriched [`Event`] and the rendered [`Payload`] and answers with an
//! [`Action`]: pass it on unchanged, drop it, or replace it.
//!
//! ```
//! use kfp_event_router_sdk::{Action, Config, Event, Payload, Plugin, log};
//!
//! /// Keeps only warnings, and tags their JSON payloads with the cluster name.
//! struct TagWarnings { cluster: String }
//!
//! #[derive(serde::Deserialize)]
//! struct Settings { cluster: String }
//!
//! impl Plugin for TagWarnings {
//!     fn init(config: Config) -> Result<Self, String> {
//!         let settings: Settings = config.parse()?;
//!         Ok(Self { cluster: settings.cluster })
//!     }
//!     fn handle(&self, event: &Event, payload: Payload) -> Result<Action, String> {
//!         if !event.is_warning() {
//!             return Ok(Action::Drop);
//!         }
//!         log::debug(format!("tagging {}", event.workflow_name));
//!         let mut body = payload.json_value()?;
//!         body["Cluster"] = self.cluster.clone().into();
//!         Action::json(&body)
//!     }
//! }
//!
//! kfp_event_router_sdk::export_plugin!(TagWarnings);
//! # let plugin = TagWarnings::init(Config::new(r#"{"cluster": "eu-1"}"#)).unwrap();
//! # let warning = Event { event_type: "Warning".into(), ..Event::default() };
//! # let payload = Payload::new(r#"{"KfpRunId": "r1"}"#, "application/json");
//! # let action = plugin.handle(&warning, payload).unwrap();
//! # assert_eq!(action.json_body().unwrap()["Cluster"], "eu-1");
//! # assert_eq!(plugin.handle(&Event::default(), Payload::default()), Ok(Action::Drop));
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` from a crate
//! with `crate-type = ["cdylib", "rlib"]`; the `.wasm` file is the component.
//! The same code compiles natively, so plugin logic is unit-tested with a plain
//! `cargo test`: call `init` with [`Config::new`] and `handle` with an [`Event`]
//! and a [`Payload`] you build (there, [`log`] writes to stderr).
//!
//! # Reading only what you use: `LazyPlugin`
//!
//! A [`Plugin`] is given every fact of the event and the whole body, copied
//! into its memory on every call: about what a plugin cost with the 0.2
//! contract. A [`LazyPlugin`] is given a [`LazyEvent`] and a [`LazyPayload`]
//! instead, and each fact (or the body) is copied only when the plugin asks
//! for it. Choose it for a plugin that reads a few facts (a filter), or that
//! can skip parsing a body the router rendered: when
//! [`LazyPayload::rendered`] is true, the body's facts are the event's.
//!
//! ```
//! use kfp_event_router_sdk::{Action, Config, LazyEvent, LazyPayload, LazyPlugin, Outcome};
//!
//! /// Keeps only the failures of runs in some namespaces.
//! struct FailuresIn { namespaces: Vec<String> }
//!
//! #[derive(serde::Deserialize)]
//! struct Settings { namespaces: Vec<String> }
//!
//! impl LazyPlugin for FailuresIn {
//!     fn init(config: Config) -> Result<Self, String> {
//!         let settings: Settings = config.parse()?;
//!         Ok(Self { namespaces: settings.namespaces })
//!     }
//!     fn handle(&self, event: &LazyEvent, _payload: &LazyPayload) -> Result<Action, String> {
//!         // Reads the reason (the phase and type only when it does not tell), then
//!         // the namespace; never the body nor the other facts.
//!         if event.outcome() != Outcome::Failed {
//!             return Ok(Action::Drop);
//!         }
//!         let namespace = event.namespace();
//!         Ok(if self.namespaces.iter().any(|n| *n == namespace) {
//!             Action::Pass
//!         } else {
//!             Action::Drop
//!         })
//!     }
//! }
//!
//! kfp_event_router_sdk::export_lazy_plugin!(FailuresIn);
//! # use kfp_event_router_sdk::{Event, Payload};
//! # let plugin = FailuresIn::init(Config::new(r#"{"namespaces": ["team-a"]}"#)).unwrap();
//! # let failed = Event { reason: "WorkflowFailed".into(), namespace: "team-a".into(), ..Event::default() };
//! # let payload = Payload::default();
//! # let handle = |e: &Event| plugin.handle(&LazyEvent::from(e), &LazyPayload::new(&payload, true));
//! # assert_eq!(handle(&failed), Ok(Action::Pass));
//! # assert_eq!(handle(&Event { namespace: "team-b".into(), ..failed.clone() }), Ok(Action::Drop));
//! # assert_eq!(handle(&Event::default()), Ok(Action::Drop));
//! ```
//!
//! In unit tests, build them from an [`Event`] and a [`Payload`]:
//! `LazyEvent::from(&event)`, `LazyPayload::new(&payload, rendered)`.
//!
//! [kfp-event-router]: https://github.com/kfp-event-router/kfp-event-router
#![deny(missing_docs)]

mod action;
#[cfg(any(
    test,
    all(
        feature = "talc",
        target_family = "wasm",
        not(target_feature = "atomics")
    )
))]
mod alloc;
mod config;
mod event;
mod export;
mod lazy;
pub mod log;
mod payload;
mod template;
mod wit;

pub use action::Action;
pub use config::Config;
pub use event::{Event, Node, Outcome, PayloadFormat, Task};
pub use lazy::{LazyEvent, LazyPayload};
pub use payload::Payload;
pub use template::{Fields, Template};

/// The plugin's allocator in WebAssembly. A plugin allocates on every call (the event's
/// strings as they are copied in, the body it writes), and talc does that faster than the
/// standard library's default there, dlmalloc; freed small blocks are kept for the next call
/// in front of it ([`alloc::Cached`]). The SDK's `talc` feature (on by default) brings it; a
/// plugin that has its own `#[global_allocator]` turns the feature off.
#[cfg(all(
    feature = "talc",
    target_family = "wasm",
    not(target_feature = "atomics")
))]
#[global_allocator]
static ALLOCATOR: alloc::Cached<talc::wasm::WasmDynamicTalc> =
    alloc::Cached::new(talc::wasm::new_wasm_dynamic_allocator());

/// Re-exported so that plugins use the same `wit-bindgen` as the SDK.
pub use wit_bindgen;

/// Re-exported for convenience: plugins usually build JSON bodies.
pub use serde_json;

/// A plugin: created once from its configuration, then called for every payload
/// with every fact of the event and the whole body.
///
/// Register the type with [`export_plugin!`]. See [`LazyPlugin`] for a plugin
/// that reads only some facts.
pub trait Plugin: Sized + 'static {
    /// Creates the plugin from its configuration. Called once per load; an
    /// error rejects the plugin (the host logs it and does not use the plugin).
    fn init(config: Config) -> Result<Self, String>;

    /// Handles one payload about to be sent to the endpoint `event.endpoint`.
    ///
    /// An error fails the call: the host logs and counts it, and this
    /// plugin's `on_error` setting decides the event's fate (`pass`: the chain
    /// goes on with the payload as it was; `drop`: nothing is sent to this
    /// endpoint; `dead-letter`: the event is written to the dead-letter file).
    fn handle(&self, event: &Event, payload: Payload) -> Result<Action, String>;
}

/// A plugin that reads the event's facts and the body on demand, paying only
/// for what it reads (see the [crate docs](crate#reading-only-what-you-use-lazyplugin)).
///
/// Register the type with [`export_lazy_plugin!`].
pub trait LazyPlugin: Sized + 'static {
    /// Creates the plugin from its configuration, as [`Plugin::init`].
    fn init(config: Config) -> Result<Self, String>;

    /// Handles one payload about to be sent to the endpoint `event.endpoint()`;
    /// errors are treated as those of [`Plugin::handle`]. `event` and `payload`
    /// are valid for this call only.
    fn handle(&self, event: &LazyEvent<'_>, payload: &LazyPayload<'_>) -> Result<Action, String>;
}

/// Exports a [`Plugin`] implementation as the component's `transform` interface.
///
/// Use it once per plugin crate, at the crate root:
///
/// ```ignore
/// kfp_event_router_sdk::export_plugin!(MyPlugin);
/// ```
///
/// The instance returned by [`Plugin::init`] is kept for the following
/// [`Plugin::handle`] calls. On non-wasm targets the macro expands to nothing,
/// so the crate still builds and tests natively.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        $crate::__export!($crate::__private::Eager<$plugin>);
    };
}

/// Exports a [`LazyPlugin`] implementation as the component's `transform`
/// interface, as [`export_plugin!`] does for a [`Plugin`]:
///
/// ```ignore
/// kfp_event_router_sdk::export_lazy_plugin!(MyPlugin);
/// ```
#[macro_export]
macro_rules! export_lazy_plugin {
    ($plugin:ty) => {
        $crate::__export!($crate::__private::Lazy<$plugin>);
    };
}

/// What [`export_plugin!`] and [`export_lazy_plugin!`] expand to; not a public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __export {
    ($export:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            ::std::thread_local! {
                static __KFP_PLUGIN_SLOT: $crate::__private::Slot<$export> =
                    const { $crate::__private::Slot::new() };
            }

            struct __KfpEventRouterExport;

            impl $crate::__private::Guest for __KfpEventRouterExport {
                fn init(
                    config: ::std::string::String,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    __KFP_PLUGIN_SLOT.with(|slot| slot.init(config))
                }

                fn handle(
                    event: &$crate::__private::WitEvent,
                    payload: &$crate::__private::WitPayload,
                ) -> ::std::result::Result<$crate::__private::WitAction, ::std::string::String>
                {
                    __KFP_PLUGIN_SLOT.with(|slot| slot.handle(event, payload))
                }
            }

            $crate::__private::bindings::__export_plugin_bindings!(
                __KfpEventRouterExport with_types_in $crate::__private::bindings
            );
        };
    };
}

/// Generated bindings for the `kfp:event-router/plugin` world.
#[doc(hidden)]
pub mod bindings {
    #![allow(missing_docs)]
    wit_bindgen::generate!({
        path: "wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_plugin_bindings",
        default_bindings_module: "kfp_event_router_sdk::bindings",
    });
}

/// Support code for [`export_plugin!`] and [`export_lazy_plugin!`]; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::bindings;
    pub use crate::bindings::exports::kfp::event_router::transform::Guest;
    pub use crate::bindings::kfp::event_router::types::{
        Action as WitAction, Event as WitEvent, Payload as WitPayload,
    };
    pub use crate::export::{Eager, Lazy, Slot};
}
