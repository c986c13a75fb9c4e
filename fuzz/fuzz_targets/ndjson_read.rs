//! Fuzzes the NDJSON and FHIR NDJSON reader: records or quarantine entries, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use medplat::api::data_source::Charset;
use medplat::worker::source::SourceItem;
use medplat::worker::source::ndjson::NdjsonRecords;

fuzz_target!(|data: &[u8]| {
    let fhir = data.first().is_some_and(|b| b & 1 == 1);
    let cs = if data.first().is_some_and(|b| b & 2 == 2) { Charset::Gb18030 } else { Charset::Utf8 };
    for item in NdjsonRecords::new(data, cs, fhir, "f.ndjson".into(), "s".into()) {
        if let Ok(SourceItem::Record { record, .. }) = item {
            assert!(!fhir || record.contains_key("resourceType"));
        }
    }
});
