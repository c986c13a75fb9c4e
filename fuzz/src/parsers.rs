//! Fuzz bodies for the worker's parsers: the HL7 v2 splitter and parser, and the CSV and NDJSON
//! readers. Every input yields records or quarantine entries, never a panic.

use medplat::api::data_source::Charset;
use medplat::worker::hl7_split::MessageSplitter;
use medplat::worker::source::SourceItem;
use medplat::worker::source::csv::CsvRecords;
use medplat::worker::source::ndjson::NdjsonRecords;
use medplat::worker::{charset, hl7};

/// HL7 v2: splitting, decoding, parsing, the record view and the ACK never panic, and an ACK
/// always parses back.
pub fn hl7_parse(data: &[u8]) {
    let cs = if data.first().is_some_and(|b| b & 1 == 1) {
        Charset::Gb18030
    } else {
        Charset::Utf8
    };
    // Cutting messages while reading, through any buffer size, gives what cutting the whole
    // input at once gives.
    let whole = hl7::split_messages(data);
    let chunk = 1 + usize::from(data.get(1).copied().unwrap_or(0) % 16);
    let streamed: Vec<(usize, Vec<u8>)> =
        MessageSplitter::new(std::io::BufReader::with_capacity(chunk, data), usize::MAX)
            .map(|m| m.map(|m| (m.first_segment, m.bytes)))
            .collect::<Result<_, _>>()
            .unwrap_or_default();
    assert_eq!(streamed, whole, "streamed through {chunk}-byte reads");
    for (_, msg) in whole {
        let text = charset::lossy(&msg, cs);
        let parsed = hl7::parse(&text);
        if let Ok(m) = &parsed {
            let _ = m.to_record();
            let _ = m.message_type();
            let ack = hl7::ack(Some(m), hl7::AckCode::Accept, &text, "20260101000000");
            assert!(hl7::parse(&ack).is_ok(), "ACK does not parse: {ack:?}");
        }
        let _ = hl7::unescape(&text, &hl7::Delimiters::default());
    }
}

/// CSV in each charset and delimiter the first byte picks: records carry fields, quarantine
/// entries carry a reason.
pub fn csv_read(data: &[u8]) {
    let (cs, delim) = match data.first().map(|b| b % 4) {
        Some(0) => (Charset::Gb18030, b','),
        Some(1) => (Charset::Gbk, b'|'),
        Some(2) => (Charset::Utf8, b'\t'),
        _ => (Charset::Utf8, b','),
    };
    let items = CsvRecords::new(data, cs, delim, "f.csv".into(), "s".into())
        .flat_map(|item| item.map(SourceItem::into_items).unwrap_or_default());
    for item in items {
        match item {
            SourceItem::Record { record, .. } => assert!(!record.is_empty()),
            SourceItem::Malformed { reason, .. } => assert!(!reason.is_empty()),
            SourceItem::Rows(_) => panic!("a batch of rows inside a batch"),
        }
    }
}

/// NDJSON and FHIR NDJSON: a FHIR record always has its `resourceType`.
pub fn ndjson_read(data: &[u8]) {
    let fhir = data.first().is_some_and(|b| b & 1 == 1);
    let cs = if data.first().is_some_and(|b| b & 2 == 2) {
        Charset::Gb18030
    } else {
        Charset::Utf8
    };
    let items = NdjsonRecords::new(data, cs, fhir, "f.ndjson".into(), "s".into())
        .flat_map(|item| item.map(SourceItem::into_items).unwrap_or_default());
    for item in items {
        if let SourceItem::Record { record, .. } = item {
            assert!(!fhir || record.contains_key("resourceType"));
        }
    }
}
