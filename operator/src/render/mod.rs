//! The desired children of each kind: pure functions from a resource (and what it references)
//! to the objects medplat applies. No I/O; tested from inline YAML.

pub mod access_policy;
pub mod common;
pub mod data_source;
pub mod network;
pub mod pipeline;
pub mod platform;
pub mod pod_security;
pub mod settings;
pub mod tier_claim;

pub use common::{Child, Owner, RenderError};
