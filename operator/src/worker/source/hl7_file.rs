//! HL7 v2 message files: one or many messages per file (separated by blank lines or MLLP
//! framing), read one message at a time and batched; [`Hl7RowDecoder`] decodes each from the
//! source's charset and parses it into a record on the thread that processes it.

use std::io::BufRead;
use std::sync::Arc;

use super::rows::{
    AfterBatch, Decoded, RawRow, ReadItem, RowBatch, RowDecoder, RowReader, next_batch,
};
use super::{SourceError, SourceItem, bounded_raw};
use crate::api::data_source::Charset;
use crate::worker::hl7_split::MessageSplitter;
use crate::worker::{charset, hl7};

/// The longest message read whole; a longer one is quarantined, its neighbours are not.
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// Decodes and parses HL7 v2 messages in one charset.
pub struct Hl7RowDecoder {
    charset: Charset,
}

impl RowDecoder for Hl7RowDecoder {
    fn decode(&self, row: RawRow<'_>) -> Decoded {
        let cs = self.charset;
        let Some(text) = charset::decode(row.bytes, cs) else {
            return Decoded::Malformed {
                reason: format!("message is not valid {}", cs.label()),
                raw: charset::lossy(row.bytes, cs),
            };
        };
        match hl7::parse(&text) {
            Ok(m) => Decoded::Record(m.to_record()),
            Err(e) => Decoded::Malformed {
                reason: format!("HL7 v2: {e}"),
                raw: text.replace('\r', "\n"),
            },
        }
    }
}

/// Reads one HL7 v2 file as batches of messages.
pub struct Hl7Records<R> {
    messages: MessageSplitter<R>,
    decoder: Arc<Hl7RowDecoder>,
    /// Where messages are, before the number of their first segment: `<label>:segment `.
    location: Arc<str>,
    label: String,
    source_name: String,
    charset: Charset,
    after_batch: AfterBatch,
}

impl<R: BufRead> Hl7Records<R> {
    /// Reads `input` (one file, labelled `label` in locations) as HL7 v2 messages.
    pub fn new(input: R, charset: Charset, label: String, source_name: String) -> Self {
        Hl7Records {
            messages: MessageSplitter::new(input, MAX_MESSAGE),
            decoder: Arc::new(Hl7RowDecoder { charset }),
            location: format!("{label}:segment ").into(),
            label,
            source_name,
            charset,
            after_batch: AfterBatch::default(),
        }
    }
}

impl<R: BufRead> RowReader for Hl7Records<R> {
    fn read_row(&mut self, batch: &mut Option<RowBatch>) -> Result<(), Option<ReadItem>> {
        match self.messages.next() {
            None => Err(None),
            Some(Err(source)) => Err(Some(Err(SourceError::Io {
                source_name: self.source_name.clone(),
                path: self.label.clone(),
                source,
            }))),
            Some(Ok(m)) if m.cut => Err(Some(Ok(SourceItem::Malformed {
                location: format!("{}{}", self.location, m.first_segment),
                reason: format!("message longer than {MAX_MESSAGE} bytes"),
                raw: bounded_raw(charset::lossy(&m.bytes, self.charset)),
            }))),
            Some(Ok(m)) => {
                batch
                    .get_or_insert_with(|| {
                        RowBatch::new(self.decoder.clone(), self.location.clone())
                    })
                    .push_line(m.first_segment as u64, &m.bytes);
                Ok(())
            }
        }
    }

    fn after_batch(&mut self) -> &mut AfterBatch {
        &mut self.after_batch
    }
}

impl<R: BufRead> Iterator for Hl7Records<R> {
    type Item = ReadItem;

    fn next(&mut self) -> Option<ReadItem> {
        next_batch(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8], cs: Charset) -> Vec<SourceItem> {
        Hl7Records::new(bytes, cs, "inbox/a.hl7".into(), "adt".into())
            .flat_map(|r| r.unwrap().into_items())
            .collect()
    }

    #[test]
    fn good_and_bad_messages_in_one_gb18030_file() {
        let text = "MSH|^~\\&|HIS|H|||20261128||ADT^A01|1|P|2.5\rPID|1||P1||王^五\r\rMSH|^~\\&|HIS|H|||20261128||ADT^A01|2|P|2.5\rP\r";
        let mut bytes = charset::encode(text, Charset::Gb18030).into_owned();
        bytes.extend_from_slice(b"\nMSH|^~\\&|\x81\x20|\r");
        let items = read(&bytes, Charset::Gb18030);
        assert_eq!(items.len(), 3);
        let SourceItem::Record { record, location } = &items[0] else {
            panic!()
        };
        assert_eq!(record["PID"]["5"]["1"], "王");
        assert_eq!(location, "inbox/a.hl7:segment 1");
        assert!(
            matches!(&items[1], SourceItem::Malformed { reason, location, .. }
                if reason.contains("truncated") && location == "inbox/a.hl7:segment 3")
        );
        assert!(
            matches!(&items[2], SourceItem::Malformed { reason, .. } if reason.contains("GB18030"))
        );
    }

    #[test]
    fn a_batch_file_streams_in_batches_with_every_message_in_order() {
        let n = 2 * super::super::rows::ROWS + 5;
        let text: String = (1..=n)
            .map(|i| format!("MSH|^~\\&|LIS|H|||20261128||ORU^R01|{i}|P|2.5\rOBX|1|NM|GLU||{i}\r"))
            .collect();
        let batches: Vec<_> =
            Hl7Records::new(text.as_bytes(), Charset::Utf8, "b".into(), "s".into())
                .map(Result::unwrap)
                .collect();
        assert!(batches.len() >= 3, "{} batches", batches.len());
        let items: Vec<SourceItem> = batches
            .into_iter()
            .flat_map(SourceItem::into_items)
            .collect();
        assert_eq!(items.len(), n);
        for (i, item) in items.iter().enumerate() {
            let SourceItem::Record { record, location } = item else {
                panic!("{item:?}")
            };
            assert_eq!(record["MSH"]["10"], (i + 1).to_string());
            assert_eq!(location, &format!("b:segment {}", 2 * i + 1));
        }
    }
}
