//! `kfp:event-router@0.1.0` (`wit/0.1.0/world.wit`): components built for it run unchanged;
//! the host converts its 0.2 values to and from this contract's at the boundary.

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit/0.1.0/world.wit",
    world: "plugin",
    exports: { default: async },
});

use exports::kfp::event_router::transform as v1;

use super::v0_2;

/// The 0.1 event: the 0.2 facts it has, unknown ones empty.
pub(crate) fn event(e: &v0_2::Event) -> v1::Event {
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    v1::Event {
        reason: e.reason.clone(),
        event_type: e.event_type.clone(),
        message: e.message.clone(),
        namespace: e.namespace.clone(),
        workflow_name: e.workflow_name.clone(),
        run_id: text(&e.run_id),
        run_name: text(&e.run_name),
        node_name: e.node_name.clone(),
        node_type: e
            .node
            .as_ref()
            .and_then(|n| n.node_type.clone())
            .unwrap_or_default(),
        phase: text(&e.phase),
        event_time: text(&e.event_time),
        labels: e.labels.clone(),
        endpoint: e.endpoint.clone(),
        synthesized: e.synthesized,
    }
}

/// The 0.1 payload.
pub(crate) fn payload(p: &v0_2::Payload) -> v1::Payload {
    v1::Payload {
        body: p.body.clone(),
        content_type: p.content_type.clone(),
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
