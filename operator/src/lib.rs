//! medplat: a Kubernetes operator for a hospital's governed medical big-data platform.
//!
//! The crate is layered (DESIGN.md §3): [`api`] is the contract, [`policy`] and [`render`] are
//! pure functions over it, [`controller`] is the only place that talks to the API server, and
//! [`worker`] and [`node_agent`] are the data plane and the host scanner.

pub mod api;
pub mod check;
pub mod cli;
pub mod controller;
pub mod error_text;
pub mod install;
pub mod manifests;
pub mod node_agent;
pub mod policy;
pub mod render;
pub mod sandbox;
pub mod webhook;
pub mod worker;
