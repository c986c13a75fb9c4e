//! HL7 v2 message files: one or many messages per file (separated by blank lines or MLLP
//! framing), each decoded from the source's charset and parsed into a record.

use super::{SourceItem, bounded_raw};
use crate::api::data_source::Charset;
use crate::worker::{charset, hl7};

/// Reads every message of one file's bytes as items (records or malformed entries).
pub fn read_messages(bytes: &[u8], cs: Charset, label: &str) -> Vec<SourceItem> {
    hl7::split_messages(bytes)
        .into_iter()
        .map(|(segment_no, msg)| {
            let location = format!("{label}:segment {segment_no}");
            let Some(text) = charset::decode(&msg, cs) else {
                return SourceItem::Malformed {
                    location,
                    reason: format!("message is not valid {}", cs.label()),
                    raw: bounded_raw(charset::lossy(&msg, cs)),
                };
            };
            match hl7::parse(&text) {
                Ok(m) => SourceItem::Record {
                    record: m.to_record(),
                    location,
                },
                Err(e) => SourceItem::Malformed {
                    location,
                    reason: format!("HL7 v2: {e}"),
                    raw: bounded_raw(text.replace('\r', "\n")),
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_and_bad_messages_in_one_gb18030_file() {
        let text = "MSH|^~\\&|HIS|H|||20261128||ADT^A01|1|P|2.5\rPID|1||P1||王^五\r\rMSH|^~\\&|HIS|H|||20261128||ADT^A01|2|P|2.5\rP\r";
        let mut bytes = charset::encode(text, Charset::Gb18030).into_owned();
        bytes.extend_from_slice(b"\nMSH|^~\\&|\x81\x20|\r");
        let items = read_messages(&bytes, Charset::Gb18030, "inbox/a.hl7");
        assert_eq!(items.len(), 3);
        let SourceItem::Record { record, .. } = &items[0] else {
            panic!()
        };
        assert_eq!(record["PID"]["5"]["1"], "王");
        assert!(
            matches!(&items[1], SourceItem::Malformed { reason, .. } if reason.contains("truncated"))
        );
        assert!(
            matches!(&items[2], SourceItem::Malformed { reason, .. } if reason.contains("GB18030"))
        );
    }
}
