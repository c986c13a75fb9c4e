//! Classification and compliance rules as pure functions: no I/O, no API server.
//!
//! [`pipeline::evaluate_pipeline`] is the one decision the controller, `medplat check`, the
//! admission webhook and the worker all share.

pub mod grants;
pub mod hardening;
pub mod lowering;
pub mod pipeline;
pub mod placement;
pub mod violation;

pub use grants::NamedPolicy;
pub use pipeline::{PipelineContext, PipelineDecision, evaluate_pipeline, source_level};
pub use violation::{Enforcement, Violation, ViolationReason};
