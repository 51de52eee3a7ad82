//! The payload a chain run carries from plugin to plugin: the router's own rendering of the
//! event, or what a plugin replaced it with.
//!
//! The rendering is made the first time something reads it: a 0.3 plugin asks for the body,
//! a 0.1 or 0.2 component is called (they are given the body), or the chain ends with it. A
//! chain whose plugin replaces the body without reading it, as card plugins do from the
//! event's facts, never renders the event at all.

use std::sync::{Arc, OnceLock};

use super::event::WitEvent;
use crate::model::event::{NodeView, RouterEvent};
use crate::model::request::Payload;
use crate::payload::format::Format;

/// The payload as it stands between two plugins of a chain.
#[derive(Clone, Debug)]
pub enum Current {
    /// Still the router's own rendering of the event.
    Rendered(Arc<Rendering>),
    /// What a plugin replaced it with.
    Replaced(Payload),
}

impl Current {
    /// The router's rendering of `event`, made when first read.
    pub fn rendering(event: &WitEvent<'_>) -> Self {
        Self::Rendered(Arc::new(event.rendering(OnceLock::new())))
    }

    /// `payload`, which is the router's rendering of `event` when `rendered`.
    pub fn given(event: &WitEvent<'_>, payload: Payload, rendered: bool) -> Self {
        match rendered {
            true => Self::Rendered(Arc::new(event.rendering(OnceLock::from(payload)))),
            false => Self::Replaced(payload),
        }
    }

    /// The payload, rendered now if it was not yet.
    pub(crate) fn payload(&self) -> &Payload {
        match self {
            Self::Rendered(rendering) => rendering.payload(),
            Self::Replaced(payload) => payload,
        }
    }

    /// True while no plugin has replaced the payload.
    pub(crate) fn rendered(&self) -> bool {
        matches!(self, Self::Rendered(_))
    }

    /// The payload, rendered now if it was not yet, without copying it.
    pub(crate) fn into_payload(self) -> Payload {
        match self {
            Self::Rendered(rendering) => match Arc::try_unwrap(rendering) {
                Ok(rendering) => rendering.into_payload(),
                Err(shared) => shared.payload().clone(),
            },
            Self::Replaced(payload) => payload,
        }
    }
}

/// The router's rendering of an event for one endpoint, made when first read.
#[derive(Debug)]
pub struct Rendering {
    event: Arc<RouterEvent>,
    format: Format,
    view: NodeView,
    payload: OnceLock<Payload>,
}

impl Rendering {
    /// `event` rendered in `format` with nodes named as `view` says; `payload` holds the
    /// rendering once made.
    pub(crate) fn new(
        event: Arc<RouterEvent>,
        format: Format,
        view: NodeView,
        payload: OnceLock<Payload>,
    ) -> Self {
        Self {
            event,
            format,
            view,
            payload,
        }
    }

    /// The rendering, made now if it was not yet.
    pub(crate) fn payload(&self) -> &Payload {
        self.payload
            .get_or_init(|| self.format.render_as(&self.event, self.view))
    }

    /// The rendering's content type, known without rendering.
    pub(crate) fn content_type(&self) -> &'static str {
        self.format.content_type()
    }

    fn into_payload(self) -> Payload {
        match self.payload.into_inner() {
            Some(payload) => payload,
            None => self.format.render_as(&self.event, self.view),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::EventFacts;

    fn event() -> Arc<RouterEvent> {
        let facts = EventFacts {
            uid: "ev-uid".into(),
            namespace: "kubeflow".into(),
            reason: "WorkflowFailed".into(),
            message: "the run failed".into(),
            severity: "Warning".into(),
            count: 1,
            workflow_name: "wf-1".into(),
            ..EventFacts::default()
        };
        Arc::new(RouterEvent::bare(
            "3f2c9d3e-0000-5000-8000-000000000001",
            facts,
        ))
    }

    #[test]
    fn a_rendering_nothing_read_is_made_only_when_the_chain_ends_with_it() {
        let event = event();
        for format in [Format::Kfp, Format::Extended, Format::Cloudevents] {
            let wit = WitEvent::new(&event, "ep", format, NodeView::Tasks);
            let current = Current::rendering(&wit);
            let Current::Rendered(rendering) = &current else {
                panic!("a new chain starts from the rendering");
            };
            assert!(rendering.payload.get().is_none(), "rendered before read");
            assert_eq!(rendering.content_type(), format.content_type());
            assert_eq!(
                current.into_payload(),
                format.render_as(&event, NodeView::Tasks)
            );
        }
    }

    #[test]
    fn a_rendering_read_by_one_call_is_the_one_the_next_call_and_the_endpoint_get() {
        let event = event();
        let wit = WitEvent::new(&event, "ep", Format::Extended, NodeView::Tasks);
        let current = Current::rendering(&wit);
        // A handle holds a clone for the length of a call and reads the body through it.
        let lent = current.clone();
        let read = lent.payload().body.as_ptr();
        drop(lent);
        assert_eq!(current.payload().body.as_ptr(), read);
        assert_eq!(current.into_payload().body.as_ptr(), read);
    }

    #[test]
    fn a_given_payload_is_kept_as_it_is() {
        let event = event();
        let wit = WitEvent::new(&event, "ep", Format::Kfp, NodeView::Tasks);
        let payload = Payload {
            body: bytes::Bytes::from_static(b"{\"text\":\"card\"}"),
            content_type: "application/json".into(),
        };
        let rendered = Current::given(&wit, payload.clone(), true);
        assert!(rendered.rendered());
        assert_eq!(rendered.into_payload(), payload);
        let replaced = Current::given(&wit, payload.clone(), false);
        assert!(!replaced.rendered());
        assert_eq!(replaced.into_payload(), payload);
    }
}
