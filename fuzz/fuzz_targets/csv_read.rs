//! Fuzzes the CSV reader: every input yields records or quarantine entries, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use medplat::api::data_source::Charset;
use medplat::worker::source::SourceItem;
use medplat::worker::source::csv::CsvRecords;

fuzz_target!(|data: &[u8]| {
    let (cs, delim) = match data.first().map(|b| b % 4) {
        Some(0) => (Charset::Gb18030, b','),
        Some(1) => (Charset::Gbk, b'|'),
        Some(2) => (Charset::Utf8, b'\t'),
        _ => (Charset::Utf8, b','),
    };
    for item in CsvRecords::new(data, cs, delim, "f.csv".into(), "s".into()) {
        match item {
            Ok(SourceItem::Record { record, .. }) => assert!(!record.is_empty()),
            Ok(SourceItem::Malformed { reason, .. }) => assert!(!reason.is_empty()),
            Err(_) => {}
        }
    }
});
