//! Fuzzes the HL7 v2 parser: splitting, decoding, parsing, the record view and the ACK must
//! never panic, and an ACK must always parse back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use medplat::api::data_source::Charset;
use medplat::worker::{charset, hl7};

fuzz_target!(|data: &[u8]| {
    let cs = if data.first().is_some_and(|b| b & 1 == 1) { Charset::Gb18030 } else { Charset::Utf8 };
    for (_, msg) in hl7::split_messages(data) {
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
});
