//! The reconcilers, one per kind, and the runner that wires them to shared watches.
//!
//! This is the only module that talks to the API server. Each reconciler reads top-down as
//! dereference → validate → build (a pure renderer) → apply (the shared [`apply`] routine) →
//! status.

pub mod access_policy;
pub mod apply;
pub mod cache_index;
pub mod children;
pub mod context;
pub mod data_source;
pub mod error;
pub mod fanout;
pub mod invalid;
pub mod last_run;
pub mod leader;
pub mod metrics;
pub mod pipeline;
pub mod platform;
pub mod runner;
pub mod secret_presence;
pub mod status;
pub mod status_write;
pub mod storage_tier;
pub mod triggers;

pub use context::{Context, Settings};
pub use error::Error;
pub use runner::{Operator, OperatorError};
