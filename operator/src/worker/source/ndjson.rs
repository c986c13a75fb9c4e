//! NDJSON and FHIR NDJSON files: one JSON object (or one FHIR R4 resource) per line.
//!
//! A line that is not valid JSON, not an object, not valid in the charset, or (FHIR) has no
//! `resourceType` is quarantined with its line number; the file goes on. The reader only
//! splits lines (into [`RowBatch`]es); [`NdjsonRowDecoder`] parses them on the thread that
//! processes them.

use std::io::BufRead;
use std::sync::Arc;

use serde_json::Value;

use super::rows::{
    AfterBatch, Decoded, RawRow, ReadItem, RowBatch, RowDecoder, RowReader, next_batch,
};
use super::{SourceError, SourceItem, bounded_raw};
use crate::api::data_source::Charset;
use crate::worker::charset;
use crate::worker::record::Record;

/// The longest line read whole; longer lines are quarantined without being held in memory.
pub const MAX_LINE: usize = 16 * 1024 * 1024;

/// Reads one NDJSON file as batches of lines.
pub struct NdjsonRecords<R: BufRead> {
    input: R,
    charset: Charset,
    decoder: Arc<NdjsonRowDecoder>,
    label: String,
    /// Where lines are, before their number: `<label>:`.
    location: Arc<str>,
    source_name: String,
    line_no: u64,
    buf: Vec<u8>,
    after_batch: AfterBatch,
    done: bool,
}

/// Parses NDJSON lines (FHIR: objects with a `resourceType`) in one charset.
pub struct NdjsonRowDecoder {
    charset: Charset,
    fhir: bool,
}

impl NdjsonRowDecoder {
    /// A decoder of lines in `charset`; with `fhir`, every object needs a `resourceType`.
    pub fn new(charset: Charset, fhir: bool) -> Self {
        NdjsonRowDecoder { charset, fhir }
    }
}

impl RowDecoder for NdjsonRowDecoder {
    fn decode(&self, row: RawRow<'_>) -> Decoded {
        let line = row.bytes;
        // A record is an object, so a line of other JSON fails as data, not as syntax.
        let why = |e: serde_json::Error| match e.classify() {
            serde_json::error::Category::Data => "line is JSON but not an object".to_string(),
            _ => format!("invalid JSON: {e}"),
        };
        let parsed: Result<Record, String> = match self.charset {
            Charset::Utf8 => serde_json::from_slice(line).map_err(why),
            cs => match charset::decode(line, cs) {
                Some(text) => serde_json::from_str(&text).map_err(why),
                None => Err(format!("line is not valid {}", cs.label())),
            },
        };
        let reason = match parsed {
            Err(reason) => reason,
            Ok(record) => {
                if self.fhir && !record.get("resourceType").is_some_and(Value::is_string) {
                    "FHIR resource has no resourceType".into()
                } else {
                    return Decoded::Record(record);
                }
            }
        };
        Decoded::Malformed {
            reason,
            raw: bounded_raw(charset::lossy(line, self.charset)),
        }
    }
}

impl<R: BufRead> NdjsonRecords<R> {
    /// Reads `input` as NDJSON; with `fhir`, every object must carry a `resourceType`.
    pub fn new(input: R, charset: Charset, fhir: bool, label: String, source_name: String) -> Self {
        NdjsonRecords {
            input,
            charset,
            decoder: Arc::new(NdjsonRowDecoder::new(charset, fhir)),
            location: format!("{label}:").into(),
            label,
            source_name,
            line_no: 0,
            buf: Vec::with_capacity(4096),
            after_batch: AfterBatch::default(),
            done: false,
        }
    }

    fn malformed(&self, reason: String) -> SourceItem {
        SourceItem::Malformed {
            location: format!("{}:{}", self.label, self.line_no),
            reason,
            raw: bounded_raw(charset::lossy(&self.buf, self.charset)),
        }
    }

    /// Reads one line into `buf`, stopping at MAX_LINE. Returns bytes consumed and whether the
    /// line was cut.
    fn read_line(&mut self) -> std::io::Result<(usize, bool)> {
        self.buf.clear();
        let mut consumed = 0;
        loop {
            let available = self.input.fill_buf()?;
            if available.is_empty() {
                return Ok((consumed, false));
            }
            let (take, found) = match memchr_newline(available) {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            let room = MAX_LINE.saturating_sub(self.buf.len());
            self.buf.extend_from_slice(&available[..take.min(room)]);
            self.input.consume(take);
            consumed += take;
            if found {
                return Ok((consumed, false));
            }
            if self.buf.len() >= MAX_LINE {
                // Skip the rest of the over-long line.
                loop {
                    let available = self.input.fill_buf()?;
                    if available.is_empty() {
                        return Ok((consumed, true));
                    }
                    match memchr_newline(available) {
                        Some(i) => {
                            self.input.consume(i + 1);
                            return Ok((consumed + i + 1, true));
                        }
                        None => {
                            let n = available.len();
                            self.input.consume(n);
                            consumed += n;
                        }
                    }
                }
            }
        }
    }
}

fn memchr_newline(b: &[u8]) -> Option<usize> {
    b.iter().position(|c| *c == b'\n')
}

impl<R: BufRead> NdjsonRecords<R> {
    /// The next line to batch, or what ends the batch: `Err(None)` at the end of the file,
    /// `Err(Some(item))` for an over-long line or a read error.
    fn next_line(&mut self) -> Result<(), Option<ReadItem>> {
        loop {
            if self.done {
                return Err(None);
            }
            let (n, cut) = match self.read_line() {
                Ok(r) => r,
                Err(source) => {
                    self.done = true;
                    return Err(Some(Err(SourceError::Io {
                        source_name: self.source_name.clone(),
                        path: self.label.clone(),
                        source,
                    })));
                }
            };
            if n == 0 {
                self.done = true;
                return Err(None);
            }
            self.line_no += 1;
            if cut {
                return Err(Some(Ok(
                    self.malformed(format!("line longer than {MAX_LINE} bytes"))
                )));
            }
            if !trim_line(&self.buf).iter().all(u8::is_ascii_whitespace) {
                return Ok(());
            }
        }
    }
}

impl<R: BufRead> RowReader for NdjsonRecords<R> {
    fn read_row(&mut self, batch: &mut Option<RowBatch>) -> Result<(), Option<ReadItem>> {
        self.next_line()?;
        batch
            .get_or_insert_with(|| RowBatch::new(self.decoder.clone(), self.location.clone()))
            .push_line(self.line_no, trim_line(&self.buf));
        Ok(())
    }

    fn after_batch(&mut self) -> &mut AfterBatch {
        &mut self.after_batch
    }
}

impl<R: BufRead> Iterator for NdjsonRecords<R> {
    type Item = ReadItem;

    fn next(&mut self) -> Option<ReadItem> {
        next_batch(self)
    }
}

fn trim_line(b: &[u8]) -> &[u8] {
    let b = b.strip_suffix(b"\n").unwrap_or(b);
    let b = b.strip_suffix(b"\r").unwrap_or(b);
    b.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8], cs: Charset, fhir: bool) -> Vec<SourceItem> {
        NdjsonRecords::new(bytes, cs, fhir, "f.ndjson".into(), "s".into())
            .flat_map(|r| r.unwrap().into_items())
            .collect()
    }

    #[test]
    fn reads_objects_and_quarantines_everything_else() {
        let input = b"{\"a\":1}\r\n\n{bad\n[1]\n{\"b\":\"\xff\"}\n{\"c\":3}";
        let items = read(input, Charset::Utf8, false);
        assert_eq!(items.len(), 5);
        assert!(
            matches!(&items[0], SourceItem::Record { location, .. } if location == "f.ndjson:1")
        );
        assert!(
            matches!(&items[1], SourceItem::Malformed { location, reason, .. } if location == "f.ndjson:3" && reason.starts_with("invalid JSON"))
        );
        assert!(
            matches!(&items[2], SourceItem::Malformed { reason, .. } if reason.contains("not an object"))
        );
        assert!(matches!(&items[3], SourceItem::Malformed { .. }));
        assert!(
            matches!(&items[4], SourceItem::Record { location, .. } if location == "f.ndjson:6")
        );
    }

    #[test]
    fn fhir_resources_need_a_resource_type_and_gb18030_decodes() {
        let text =
            "{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"王\"}]}\n{\"id\":\"x\"}\n";
        let bytes = charset::encode(text, Charset::Gb18030);
        let items = read(&bytes, Charset::Gb18030, true);
        let SourceItem::Record { record, .. } = &items[0] else {
            panic!()
        };
        assert_eq!(record["name"][0]["family"], "王");
        assert!(
            matches!(&items[1], SourceItem::Malformed { reason, .. } if reason.contains("resourceType"))
        );
    }
}
