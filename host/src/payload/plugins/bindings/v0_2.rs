//! `kfp:event-router@0.2.0` (`wit/0.2.0/world.wit`): the values the host works in. Components
//! built for 0.2 are given them as they are; those built for 0.1 and 0.3 get them converted.

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit/0.2.0/world.wit",
    world: "plugin",
    exports: { default: async },
    ownership: Borrowing { duplicate_if_necessary: false },
});

pub use exports::kfp::event_router::transform::{
    Action, Event, Node, Payload, PayloadFormat, Replacement, Task,
};
