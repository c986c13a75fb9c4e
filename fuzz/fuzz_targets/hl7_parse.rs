//! Fuzzes the HL7 v2 parser: splitting, decoding, parsing, the record view and the ACK must
//! never panic, and an ACK must always parse back (body in `src/parsers.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| medplat_fuzz::hl7_parse(data));
