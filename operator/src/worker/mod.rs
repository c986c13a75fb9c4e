//! The data plane: `medplat worker` runs one Pipeline from its sources through the governance
//! steps into its sink tier, under the compiled policy bundle, with an audit trail.
//!
//! The engine is synchronous and streaming; async sources (PostgreSQL, FHIR REST) feed it
//! through a bounded channel. See `docs/worker.md` for the on-disk layout and the local mode.

pub mod charset;
pub mod crypto;
pub mod dates;
pub mod enforce;
pub mod engine;
pub mod fields;
pub mod flat;
pub mod hl7;
pub mod hl7_split;
pub mod identifiers;
pub mod local;
pub mod manifest;
pub mod mllp;
pub mod parallel;
pub mod record;
pub mod secrets;
pub mod sink;
pub mod source;
pub mod spill;
pub mod steps;
pub mod store;
pub mod summary;
pub mod tag_memo;
