//! `kfp:event-router@0.3.0` (`wit/world.wit`): components built for it are given handles on
//! the event and the payload (the resources of its `types` interface) and read the facts
//! they use; their actions are converted to 0.2 ones at the boundary.

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit/world.wit",
    world: "plugin",
    imports: { default: trappable },
    exports: { default: async },
    with: {
        "kfp:event-router/types.event": crate::payload::plugins::event::EventHandle,
        "kfp:event-router/types.payload": crate::payload::plugins::handles::PayloadHandle,
    },
});

use kfp::event_router::types as v3;

use super::v0_2;

/// A 0.3 action as the 0.2 one it means.
pub(crate) fn action(a: v3::Action) -> v0_2::Action {
    match a {
        v3::Action::Pass => v0_2::Action::Pass,
        v3::Action::Drop => v0_2::Action::Drop,
        v3::Action::Replace(r) => v0_2::Action::Replace(v0_2::Replacement {
            body: r.body,
            content_type: r.content_type,
            headers: r.headers,
        }),
    }
}
