//! kfp-event-router: routes Kubeflow Pipelines run events to webhooks.
//!
//! Argo's workflow-controller records a Kubernetes Event for every step of a pipeline run. The
//! router moves each one through five stages, one folder each, joined by bounded channels:
//!
//! 1. [`source`] reads Events and Workflows (a recorded replay file, or a cluster);
//! 2. [`enrich`] joins each Event with its Workflow from a cache into a router event;
//! 3. [`accept`] routes it to its endpoints and makes it durable in the outbox ([`state`]);
//! 4. [`payload`] renders each endpoint's format and runs its plugin chain;
//! 5. [`deliver`] POSTs it, signed, retried and ordered per workflow.
//!
//! Beneath them, [`model`] holds the types they hand each other and [`telemetry`] what they
//! report; above them, [`config`] checks the file into each stage's settings and [`pipeline`]
//! wires the stages together. Start reading at [`pipeline`].

mod accept;
pub mod cli;
pub mod config;
mod debounce;
mod deliver;
pub mod enrich;
pub mod model;
pub mod payload;
pub mod pipeline;
mod receive;
mod server;
pub mod source;
mod state;
pub mod telemetry;
