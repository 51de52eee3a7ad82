//! `kfp:event-router@0.1.0` (`wit/0.1.0/world.wit`): components built for it run unchanged;
//! the host converts its 0.2 values to and from this contract's at the boundary.

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit/0.1.0/world.wit",
    world: "plugin",
    exports: { default: async },
    ownership: Borrowing { duplicate_if_necessary: false },
});

use exports::kfp::event_router::transform as v1;

use super::v0_2;

/// The 0.1 event: the 0.2 facts it has, unknown ones empty.
pub(crate) fn event<'a>(e: &v0_2::Event<'a>) -> v1::Event<'a> {
    let text = |value: Option<&'a str>| value.unwrap_or_default();
    v1::Event {
        reason: e.reason,
        event_type: e.event_type,
        message: e.message,
        namespace: e.namespace,
        workflow_name: e.workflow_name,
        run_id: text(e.run_id),
        run_name: text(e.run_name),
        node_name: e.node_name,
        node_type: text(e.node.as_ref().and_then(|n| n.node_type)),
        phase: text(e.phase),
        event_time: text(e.event_time),
        labels: e.labels,
        endpoint: e.endpoint,
        synthesized: e.synthesized,
    }
}

/// The 0.1 payload.
pub(crate) fn payload<'a>(p: &v0_2::Payload<'a>) -> v1::Payload<'a> {
    v1::Payload {
        body: p.body,
        content_type: p.content_type,
    }
}

/// A 0.1 action as the 0.2 one it means.
pub(crate) fn action(a: v1::Action) -> v0_2::Action {
    match a {
        v1::Action::Pass => v0_2::Action::Pass,
        v1::Action::Drop => v0_2::Action::Drop,
        v1::Action::Replace(r) => v0_2::Action::Replace(v0_2::Replacement {
            body: r.body,
            content_type: r.content_type,
            headers: r.headers,
        }),
    }
}
