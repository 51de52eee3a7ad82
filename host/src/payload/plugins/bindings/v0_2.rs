//! `kfp:event-router@0.2.0` (`wit/world.wit`): the contract the host works in.

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit/world.wit",
    world: "plugin",
    exports: { default: async },
    ownership: Borrowing { duplicate_if_necessary: false },
});

pub use exports::kfp::event_router::transform::{
    Action, Event, Node, Payload, PayloadFormat, Replacement, Task,
};
