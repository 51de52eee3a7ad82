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
//! [kfp-event-router]: https://github.com/kfp-event-router/kfp-event-router
#![deny(missing_docs)]

mod action;
mod config;
mod event;
pub mod log;
mod payload;
mod template;

pub use action::Action;
pub use config::Config;
pub use event::{Event, Node, Outcome, PayloadFormat, Task};
pub use payload::Payload;
pub use template::Template;

/// The plugin's allocator in WebAssembly. A plugin allocates on every call (the event's
/// strings as they are copied in, the body it writes), and talc does that faster than the
/// standard library's default there, dlmalloc. The SDK's `talc` feature (on by default)
/// brings it; a plugin that has its own `#[global_allocator]` turns the feature off.
#[cfg(all(
    feature = "talc",
    target_family = "wasm",
    not(target_feature = "atomics")
))]
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

/// Re-exported so that plugins use the same `wit-bindgen` as the SDK.
pub use wit_bindgen;

/// Re-exported for convenience: plugins usually build JSON bodies.
pub use serde_json;

/// A plugin: created once from its configuration, then called for every payload.
///
/// Register the type with [`export_plugin!`].
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
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            ::std::thread_local! {
                static __KFP_PLUGIN_SLOT: $crate::__private::Slot<$plugin> =
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
                    event: $crate::__private::WitEvent,
                    payload: $crate::__private::WitPayload,
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

/// Support code for [`export_plugin!`]; not a public API.
#[doc(hidden)]
pub mod __private {
    use std::cell::RefCell;

    pub use crate::bindings;
    use crate::bindings::exports::kfp::event_router::transform::PayloadFormat as WitFormat;
    use crate::bindings::exports::kfp::event_router::transform::Replacement;
    pub use crate::bindings::exports::kfp::event_router::transform::{
        Action as WitAction, Event as WitEvent, Guest, Payload as WitPayload,
    };
    use crate::{Action, Config, Event, Node, Payload, PayloadFormat, Plugin, Task};

    /// Holds the plugin instance between calls.
    pub struct Slot<P>(RefCell<Option<P>>);

    impl<P: Plugin> Slot<P> {
        /// An empty slot.
        #[allow(clippy::new_without_default)]
        pub const fn new() -> Self {
            Self(RefCell::new(None))
        }

        /// Runs [`Plugin::init`] and keeps the instance.
        pub fn init(&self, config: String) -> Result<(), String> {
            self.0.replace(None);
            let plugin = P::init(Config::new(config))?;
            self.0.replace(Some(plugin));
            Ok(())
        }

        /// Runs [`Plugin::handle`] on the kept instance.
        pub fn handle(&self, event: WitEvent, payload: WitPayload) -> Result<WitAction, String> {
            let slot = self.0.borrow();
            let plugin = slot
                .as_ref()
                .ok_or("plugin is not initialised: `init` must succeed before `handle`")?;
            let event = Event::from(event);
            let payload = Payload {
                body: payload.body,
                content_type: payload.content_type,
            };
            Ok(match plugin.handle(&event, payload)? {
                Action::Pass => WitAction::Pass,
                Action::Drop => WitAction::Drop,
                Action::Replace {
                    body,
                    content_type,
                    headers,
                } => WitAction::Replace(Replacement {
                    body,
                    content_type,
                    headers,
                }),
            })
        }
    }

    impl From<WitEvent> for Event {
        fn from(e: WitEvent) -> Self {
            let text = Option::unwrap_or_default;
            Event {
                id: e.id,
                reason: e.reason,
                event_type: e.event_type,
                message: e.message,
                namespace: e.namespace,
                cluster: text(e.cluster),
                event_uid: e.event_uid,
                event_time: text(e.event_time),
                event_count: e.event_count,
                synthesized: e.synthesized,
                attempt: e.attempt,
                workflow_name: e.workflow_name,
                workflow_uid: text(e.workflow_uid),
                run_id: text(e.run_id),
                run_name: text(e.run_name),
                pipeline_name: text(e.pipeline_name),
                recurring_run_name: text(e.recurring_run_name),
                phase: text(e.phase),
                started_at: text(e.started_at),
                finished_at: text(e.finished_at),
                workflow_message: text(e.workflow_message),
                parameters: e.parameters,
                labels: e.labels,
                node_name: e.node_name,
                node_type: e
                    .node
                    .as_ref()
                    .and_then(|n| n.node_type.clone())
                    .unwrap_or_default(),
                node: e.node.map(|n| Node {
                    id: n.id,
                    name: n.name,
                    full_name: n.full_name,
                    display_name: n.display_name,
                    node_type: n.node_type,
                    phase: n.phase,
                    message: n.message,
                    template_name: n.template_name,
                    started_at: n.started_at,
                    finished_at: n.finished_at,
                }),
                task: e.task.map(|t| Task {
                    name: t.name,
                    display_name: t.display_name,
                    iteration: t.iteration,
                    dag_path: t.dag_path,
                    cached: t.cached,
                    pod_name: t.pod_name,
                    message: t.message,
                }),
                endpoint: e.endpoint,
                format: match e.format {
                    WitFormat::Kfp => PayloadFormat::Kfp,
                    WitFormat::Extended => PayloadFormat::Extended,
                    WitFormat::Cloudevents => PayloadFormat::Cloudevents,
                },
            }
        }
    }
}
