//! Fuzzes the CSV reader: every input yields records or quarantine entries, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| medplat_fuzz::csv_read(data));
