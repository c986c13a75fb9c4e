//! Fuzzes the contract: arbitrary YAML and JSON through deserialisation, schema and CEL
//! admission, `medplat check` and the policy engine; nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| medplat_fuzz::contract(data));
