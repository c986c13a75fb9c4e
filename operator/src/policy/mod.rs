//! Classification and compliance rules: pure functions over the API types, no I/O.

pub mod hardening;
