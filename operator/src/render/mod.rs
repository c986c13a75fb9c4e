//! Desired children of each kind: pure functions from the API types to Kubernetes objects.

pub mod platform;
