//! kfp-event-router: routes Kubeflow Pipelines run events to webhooks.
//!
//! Argo's workflow-controller records a Kubernetes Event for every step of a pipeline run. The
//! router moves each one through four stages, one module each, joined by bounded channels:
//!
//! 1. [`source`] reads Events and Workflows (a recorded replay file, or a cluster);
//! 2. [`enrich`] joins each Event with its Workflow from a cache into a [`event::RouterEvent`];
//! 3. [`state`] makes the event durable in the on-disk outbox before anything is sent;
//! 4. [`deliver`] renders the endpoint's [`format`], runs the [`plugins`] chain and POSTs it,
//!    signed, retried and ordered per workflow.
//!
//! [`router`] assembles the stages; [`config`] is the user-facing reference of every setting.
//! Start reading at [`router::run`].

pub mod cli;
pub mod config;
pub mod deliver;
pub mod enrich;
pub mod event;
pub mod format;
pub mod plugins;
pub mod receive;
pub mod router;
pub mod server;
pub mod source;
pub mod state;
pub mod telemetry;
