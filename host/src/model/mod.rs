//! The shared types every stage speaks: the bottom layer, which imports no other module.
//!
//! - [`argo`]: what Argo's workflow-controller writes on its Events (annotations, identity);
//! - [`workflow`]: the parts of an Argo `Workflow` the router reads;
//! - [`event`]: the router's event, a Kubernetes Event joined with its Workflow;
//! - [`item`]: what one stage hands the next ([`item::SourceItem`], [`item::Intake`]);
//! - [`request`]: what an endpoint is sent, as the payload stage decided it;
//! - [`secret`]: secret values that never print; [`clock`]: the wall clock; [`pace`]: spacing
//!   items at a rate.

pub(crate) mod argo;
pub(crate) mod clock;
pub mod event;
pub mod item;
pub(crate) mod pace;
pub mod request;
pub(crate) mod secret;
pub mod workflow;
