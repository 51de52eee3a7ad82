//! What [`export_plugin!`](crate::export_plugin) and
//! [`export_lazy_plugin!`](crate::export_lazy_plugin) expand to call: the plugin
//! instance kept between calls, and the two ways of handing it the host's event.

use std::cell::RefCell;

use crate::bindings::kfp::event_router::types::{
    Action as WitAction, Event as WitEvent, Payload as WitPayload,
};
use crate::{Config, Event, LazyEvent, LazyPayload, LazyPlugin, Payload, Plugin};

/// A plugin as the exported `transform` interface calls it.
pub trait Export: Sized {
    /// Creates the plugin from its configuration.
    fn init(config: Config) -> Result<Self, String>;

    /// Handles one call with the host's handles.
    fn handle(&self, event: &WitEvent, payload: &WitPayload) -> Result<WitAction, String>;
}

/// A [`Plugin`], given every fact and the body, copied.
pub struct Eager<P>(P);

impl<P: Plugin> Export for Eager<P> {
    fn init(config: Config) -> Result<Self, String> {
        P::init(config).map(Self)
    }

    fn handle(&self, event: &WitEvent, payload: &WitPayload) -> Result<WitAction, String> {
        let event = Event::from(event.facts());
        let payload = Payload::new(payload.body(), payload.content_type());
        self.0.handle(&event, payload).map(WitAction::from)
    }
}

/// A [`LazyPlugin`], given the handles.
pub struct Lazy<P>(P);

impl<P: LazyPlugin> Export for Lazy<P> {
    fn init(config: Config) -> Result<Self, String> {
        P::init(config).map(Self)
    }

    fn handle(&self, event: &WitEvent, payload: &WitPayload) -> Result<WitAction, String> {
        let action = self
            .0
            .handle(&LazyEvent::host(event), &LazyPayload::host(payload))?;
        Ok(action.into())
    }
}

/// Holds the plugin instance between calls.
pub struct Slot<P>(RefCell<Option<P>>);

impl<P: Export> Slot<P> {
    /// An empty slot.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        Self(RefCell::new(None))
    }

    /// Creates the plugin and keeps the instance.
    pub fn init(&self, config: String) -> Result<(), String> {
        self.0.replace(None);
        let plugin = P::init(Config::new(config))?;
        self.0.replace(Some(plugin));
        Ok(())
    }

    /// Calls the kept instance.
    pub fn handle(&self, event: &WitEvent, payload: &WitPayload) -> Result<WitAction, String> {
        let slot = self.0.borrow();
        let plugin = slot
            .as_ref()
            .ok_or("plugin is not initialised: `init` must succeed before `handle`")?;
        plugin.handle(event, payload)
    }
}
