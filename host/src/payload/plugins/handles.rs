//! The `types` import of the 0.3 contract: the methods of the `event` and `payload` handles
//! a 0.3 component's `handle` call is given. Each reads one fact from the store's resource
//! table, where the call put the [`EventHandle`] and the [`PayloadHandle`], and copies only
//! that into the instance.

use std::collections::BTreeMap;

use wasmtime::component::Resource;

use super::bindings::v0_3::kfp::event_router::types::{
    self as v3, EventFacts, HostEvent, HostPayload,
};
use super::bindings::{Event, Node, PayloadFormat, Task};
use super::current::Current;
use super::event::{EventHandle, Lists};
use super::runtime::HostState;

/// What a 0.3 component's `payload` handle stands for during one call: the payload as it
/// stands, shared with the chain, so that a body rendered for this call is rendered once.
#[derive(Debug)]
pub struct PayloadHandle(Current);

impl PayloadHandle {
    /// The payload as it stands.
    pub(crate) fn new(current: &Current) -> Self {
        Self(current.clone())
    }
}

impl HostState {
    /// `read` applied to the record of the event behind `handle`, without its lists.
    fn fact<T>(
        &mut self,
        handle: &Resource<EventHandle>,
        read: impl FnOnce(&Event<'_>) -> T,
    ) -> wasmtime::Result<T> {
        let event = self.table().get(handle)?.wit();
        Ok(read(&event.record_with(&Lists::default())))
    }

    /// The pairs `get` takes from the workflow's facts; none when it was not found.
    fn pairs(
        &mut self,
        handle: &Resource<EventHandle>,
        get: fn(&crate::model::event::WorkflowFacts) -> &BTreeMap<String, String>,
    ) -> wasmtime::Result<Option<&BTreeMap<String, String>>> {
        Ok(self.table().get(handle)?.workflow().map(get))
    }
}

fn text(value: &str) -> String {
    value.to_owned()
}

fn maybe(value: Option<&str>) -> Option<String> {
    value.map(str::to_owned)
}

fn copied<T: Copy>(value: T) -> T {
    value
}

fn owned_pairs(pairs: Option<&BTreeMap<String, String>>) -> Vec<(String, String)> {
    pairs.map_or_else(Vec::new, |map| {
        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    })
}

/// `HostEvent` methods that each return one field of the event's record, converted by `text`,
/// `maybe` or `copied`.
macro_rules! facts {
    ($($name:ident -> $ty:ty = $convert:ident;)*) => {$(
        fn $name(&mut self, h: Resource<EventHandle>) -> wasmtime::Result<$ty> {
            self.fact(&h, |e| $convert(e.$name))
        }
    )*};
}

impl HostEvent for HostState {
    facts! {
        id -> String = text;
        reason -> String = text;
        event_type -> String = text;
        message -> String = text;
        namespace -> String = text;
        cluster -> Option<String> = maybe;
        event_uid -> String = text;
        event_time -> Option<String> = maybe;
        event_count -> i32 = copied;
        synthesized -> bool = copied;
        attempt -> u32 = copied;
        workflow_name -> String = text;
        workflow_uid -> Option<String> = maybe;
        run_id -> Option<String> = maybe;
        run_name -> Option<String> = maybe;
        pipeline_name -> Option<String> = maybe;
        recurring_run_name -> Option<String> = maybe;
        phase -> Option<String> = maybe;
        started_at -> Option<String> = maybe;
        finished_at -> Option<String> = maybe;
        workflow_message -> Option<String> = maybe;
        node_name -> String = text;
        endpoint -> String = text;
    }

    fn parameters(&mut self, h: Resource<EventHandle>) -> wasmtime::Result<Vec<(String, String)>> {
        Ok(owned_pairs(self.pairs(&h, |w| &w.parameters)?))
    }

    fn parameter_names(&mut self, h: Resource<EventHandle>) -> wasmtime::Result<Vec<String>> {
        let names = self.pairs(&h, |w| &w.parameters)?;
        Ok(names.map_or_else(Vec::new, |map| map.keys().cloned().collect()))
    }

    fn parameter(
        &mut self,
        h: Resource<EventHandle>,
        name: String,
    ) -> wasmtime::Result<Option<String>> {
        Ok(self
            .pairs(&h, |w| &w.parameters)?
            .and_then(|map| map.get(&name).cloned()))
    }

    fn labels(&mut self, h: Resource<EventHandle>) -> wasmtime::Result<Vec<(String, String)>> {
        Ok(owned_pairs(self.pairs(&h, |w| &w.labels)?))
    }

    fn label(&mut self, h: Resource<EventHandle>, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self
            .pairs(&h, |w| &w.labels)?
            .and_then(|map| map.get(&key).cloned()))
    }

    fn node(&mut self, h: Resource<EventHandle>) -> wasmtime::Result<Option<v3::Node>> {
        self.fact(&h, |e| e.node.as_ref().map(node))
    }

    fn task(&mut self, h: Resource<EventHandle>) -> wasmtime::Result<Option<v3::Task>> {
        let handle = self.table().get(&h)?;
        let dag_path: Vec<&str> = handle.dag_path().iter().map(String::as_str).collect();
        let lists = Lists::with_dag_path(dag_path);
        let event = handle.wit();
        Ok(event.record_with(&lists).task.as_ref().map(task))
    }

    fn format(&mut self, h: Resource<EventHandle>) -> wasmtime::Result<v3::PayloadFormat> {
        self.fact(&h, |e| format(e.format))
    }

    fn facts(&mut self, h: Resource<EventHandle>) -> wasmtime::Result<EventFacts> {
        let handle = self.table().get(&h)?;
        Ok(facts(&handle.wit().record()))
    }

    fn drop(&mut self, h: Resource<EventHandle>) -> wasmtime::Result<()> {
        // The component is only lent the handle; the call that put it there removes it.
        let _ = h;
        Ok(())
    }
}

impl HostPayload for HostState {
    fn body(&mut self, h: Resource<PayloadHandle>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.table().get(&h)?.0.payload().body.to_vec())
    }

    fn body_length(&mut self, h: Resource<PayloadHandle>) -> wasmtime::Result<u64> {
        Ok(self.table().get(&h)?.0.payload().body.len() as u64)
    }

    fn content_type(&mut self, h: Resource<PayloadHandle>) -> wasmtime::Result<String> {
        Ok(match &self.table().get(&h)?.0 {
            Current::Rendered(rendering) => rendering.content_type().to_owned(),
            Current::Replaced(payload) => payload.content_type.clone(),
        })
    }

    fn rendered(&mut self, h: Resource<PayloadHandle>) -> wasmtime::Result<bool> {
        Ok(self.table().get(&h)?.0.rendered())
    }

    fn drop(&mut self, h: Resource<PayloadHandle>) -> wasmtime::Result<()> {
        let _ = h;
        Ok(())
    }
}

impl v3::Host for HostState {}

/// Every fact of a 0.2 record, owned, as 0.3's `event.facts` returns them.
fn facts(e: &Event<'_>) -> EventFacts {
    EventFacts {
        id: text(e.id),
        reason: text(e.reason),
        event_type: text(e.event_type),
        message: text(e.message),
        namespace: text(e.namespace),
        cluster: maybe(e.cluster),
        event_uid: text(e.event_uid),
        event_time: maybe(e.event_time),
        event_count: e.event_count,
        synthesized: e.synthesized,
        attempt: e.attempt,
        workflow_name: text(e.workflow_name),
        workflow_uid: maybe(e.workflow_uid),
        run_id: maybe(e.run_id),
        run_name: maybe(e.run_name),
        pipeline_name: maybe(e.pipeline_name),
        recurring_run_name: maybe(e.recurring_run_name),
        phase: maybe(e.phase),
        started_at: maybe(e.started_at),
        finished_at: maybe(e.finished_at),
        workflow_message: maybe(e.workflow_message),
        parameters: pairs_of(e.parameters),
        labels: pairs_of(e.labels),
        node_name: text(e.node_name),
        node: e.node.as_ref().map(node),
        task: e.task.as_ref().map(task),
        endpoint: text(e.endpoint),
        format: format(e.format),
    }
}

fn pairs_of(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (text(k), text(v))).collect()
}

fn node(n: &Node<'_>) -> v3::Node {
    v3::Node {
        id: maybe(n.id),
        name: text(n.name),
        full_name: text(n.full_name),
        display_name: maybe(n.display_name),
        node_type: maybe(n.node_type),
        phase: maybe(n.phase),
        message: maybe(n.message),
        template_name: maybe(n.template_name),
        started_at: maybe(n.started_at),
        finished_at: maybe(n.finished_at),
    }
}

fn task(t: &Task<'_>) -> v3::Task {
    v3::Task {
        name: text(t.name),
        display_name: maybe(t.display_name),
        iteration: t.iteration,
        dag_path: t.dag_path.iter().map(|s| text(s)).collect(),
        cached: t.cached,
        pod_name: maybe(t.pod_name),
        message: maybe(t.message),
    }
}

fn format(f: PayloadFormat) -> v3::PayloadFormat {
    match f {
        PayloadFormat::Kfp => v3::PayloadFormat::Kfp,
        PayloadFormat::Extended => v3::PayloadFormat::Extended,
        PayloadFormat::Cloudevents => v3::PayloadFormat::Cloudevents,
    }
}
