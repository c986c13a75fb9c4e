//! kubesim: an in-memory, simulated Kubernetes API server. It is a test double, not a cluster.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod apply;
pub mod builtin;
pub mod cron;
pub mod error;
pub mod fields;
pub mod meta;
pub mod objects;
pub mod patch;
pub mod registry;
pub mod selectors;
pub mod store;
pub mod validation;
