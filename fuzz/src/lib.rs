//! The bodies of medplat's fuzz targets, kept out of `fuzz_targets/` so that the workspace's
//! test suite can replay the corpora through the very same code on stable Rust
//! (`tests/fuzz_replay.rs` includes these modules by path).

pub mod contract;
pub mod parsers;

pub use contract::contract;
pub use parsers::{csv_read, hl7_parse, ndjson_read};
