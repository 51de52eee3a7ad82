//! One instance of a plugin, whichever contract it was built for: the host calls it with 0.2
//! values, converted to 0.1 ones at the boundary for components built for 0.1, and lent as
//! handles to components built for 0.3.

use wasmtime::Store;
use wasmtime::component::{InstancePre, Resource};

use super::bindings::{Action, Contract, Payload, v0_1, v0_2, v0_3};
use super::current::Current;
use super::event::WitEvent;
use super::handles::PayloadHandle;
use super::runtime::HostState;

/// A component linked once, ready to be instantiated, with the bindings of its contract.
#[derive(Clone)]
pub(crate) enum Pre {
    /// Built for 0.1.
    V0_1(v0_1::PluginPre<HostState>),
    /// Built for 0.2.
    V0_2(v0_2::PluginPre<HostState>),
    /// Built for 0.3.
    V0_3(v0_3::PluginPre<HostState>),
}

impl Pre {
    /// Binds `pre` as `contract` says; fails when the component's exports do not match it.
    pub(crate) fn new(contract: Contract, pre: InstancePre<HostState>) -> wasmtime::Result<Self> {
        Ok(match contract {
            Contract::V0_1 => Self::V0_1(v0_1::PluginPre::new(pre)?),
            Contract::V0_2 => Self::V0_2(v0_2::PluginPre::new(pre)?),
            Contract::V0_3 => Self::V0_3(v0_3::PluginPre::new(pre)?),
        })
    }

    /// A new instance in `store`; its `init` is not called yet.
    pub(crate) async fn instantiate(
        &self,
        mut store: Store<HostState>,
    ) -> Result<Instance, (wasmtime::Error, Store<HostState>)> {
        let bound = match self {
            Self::V0_1(pre) => pre.instantiate_async(&mut store).await.map(Bound::V0_1),
            Self::V0_2(pre) => pre.instantiate_async(&mut store).await.map(Bound::V0_2),
            Self::V0_3(pre) => pre.instantiate_async(&mut store).await.map(Bound::V0_3),
        };
        match bound {
            Ok(bound) => Ok(Instance { store, bound }),
            Err(e) => Err((e, store)),
        }
    }
}

/// The bindings of an instance.
enum Bound {
    V0_1(v0_1::Plugin),
    V0_2(v0_2::Plugin),
    V0_3(v0_3::Plugin),
}

/// An instance and its store.
pub(crate) struct Instance {
    /// The store: the instance's memory, limits and host state.
    pub(crate) store: Store<HostState>,
    bound: Bound,
}

/// What one call is given: the event, and the payload as it stands.
pub(crate) struct Input<'a, 'e> {
    /// The event as prepared for the endpoint.
    pub(crate) event: &'a WitEvent<'e>,
    /// The payload as it stands: the router's rendering until a plugin replaced it.
    pub(crate) payload: &'a Current,
}

impl Instance {
    /// Calls `init`.
    pub(crate) async fn init(&mut self, config: &str) -> wasmtime::Result<Result<(), String>> {
        match &self.bound {
            Bound::V0_1(p) => {
                p.kfp_event_router_transform()
                    .call_init(&mut self.store, config)
                    .await
            }
            Bound::V0_2(p) => {
                p.kfp_event_router_transform()
                    .call_init(&mut self.store, config)
                    .await
            }
            Bound::V0_3(p) => {
                p.kfp_event_router_transform()
                    .call_init(&mut self.store, config)
                    .await
            }
        }
    }

    /// Calls `handle`.
    pub(crate) async fn handle(
        &mut self,
        input: &Input<'_, '_>,
    ) -> wasmtime::Result<Result<Action, String>> {
        // 0.1 and 0.2 components are given the body, so it is rendered for them.
        let given = || {
            let payload = input.payload.payload();
            Payload {
                body: &payload.body,
                content_type: &payload.content_type,
            }
        };
        match &self.bound {
            Bound::V0_1(p) => {
                let event = input.event.record();
                let result = p
                    .kfp_event_router_transform()
                    .call_handle(
                        &mut self.store,
                        v0_1::event(&event),
                        v0_1::payload(&given()),
                    )
                    .await?;
                Ok(result.map(v0_1::action))
            }
            Bound::V0_2(p) => {
                p.kfp_event_router_transform()
                    .call_handle(&mut self.store, input.event.record(), given())
                    .await
            }
            Bound::V0_3(p) => {
                let table = self.store.data_mut().table();
                let event = table.push(input.event.handle())?;
                let payload = table.push(PayloadHandle::new(input.payload))?;
                // Lent as borrows: the component's handles end with the call, and nothing is
                // left in the store's handle tables (an owned handle lent would stay there).
                let result = p
                    .kfp_event_router_transform()
                    .call_handle(
                        &mut self.store,
                        Resource::new_borrow(event.rep()),
                        Resource::new_borrow(payload.rep()),
                    )
                    .await;
                let table = self.store.data_mut().table();
                table.delete(event)?;
                table.delete(payload)?;
                Ok(result?.map(v0_3::action))
            }
        }
    }
}
