//! The event and payload of a [`LazyPlugin`](crate::LazyPlugin), read on demand.

mod event;
mod payload;

pub use event::LazyEvent;
pub use payload::LazyPayload;
