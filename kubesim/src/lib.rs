//! kubesim: an in-memory, simulated Kubernetes API server. It is a test double, not a cluster.
//!
//! Start one in-process with [`Sim::builder`], get a `kube::Client` with [`Sim::client`], and
//! point `kubectl` at it with [`Sim::write_kubeconfig`]. The [`validation`] module works without
//! a server: it admits custom resources against their CRD as the API server would.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod apply;
pub mod builtin;
pub mod controllers;
pub mod convert;
pub mod cron;
pub mod error;
pub mod faults;
pub mod fields;
pub mod http;
pub mod kubelet;
pub mod meta;
pub mod objects;
pub mod patch;
pub mod protobuf;
pub mod registry;
pub mod request_log;
pub mod selectors;
pub mod server;
pub mod sim;
pub mod store;
pub mod validation;
pub mod webhooks;

pub use faults::Faults;
pub use kubelet::{NodeSpec, PodFate, PodOutcome, Taint};
pub use request_log::RequestRecord;
pub use sim::{Sim, SimBuilder, SimError};
