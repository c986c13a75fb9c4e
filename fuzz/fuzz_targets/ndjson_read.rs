//! Fuzzes the NDJSON and FHIR NDJSON reader: records or quarantine entries, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| medplat_fuzz::ndjson_read(data));
