//! CSV files with a header row, in UTF-8, GBK or GB18030.
//!
//! Each row becomes a record of strings keyed by the header. A row with the wrong number of
//! fields (often broken quoting) or bytes invalid in the charset is quarantined; the file goes on.

use std::io::Read;

use serde_json::Value;

use super::{SourceError, SourceItem, bounded_raw};
use crate::api::data_source::Charset;
use crate::worker::charset;
use crate::worker::record::Record;

/// Reads one CSV file as records.
pub struct CsvRecords<R: Read> {
    reader: csv::Reader<R>,
    headers: Option<Vec<String>>,
    charset: Charset,
    label: String,
    source_name: String,
    row: csv::ByteRecord,
    done: bool,
}

impl<R: Read> CsvRecords<R> {
    /// Reads `input` (the raw bytes of one file, labelled `label` in locations) as CSV.
    pub fn new(
        input: R,
        charset: Charset,
        delimiter: u8,
        label: String,
        source_name: String,
    ) -> Self {
        let reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(delimiter)
            .from_reader(input);
        CsvRecords {
            reader,
            headers: None,
            charset,
            label,
            source_name,
            row: csv::ByteRecord::new(),
            done: false,
        }
    }

    fn raw_row(&self) -> String {
        let fields: Vec<String> = self
            .row
            .iter()
            .map(|f| charset::lossy(f, self.charset))
            .collect();
        bounded_raw(fields.join(","))
    }

    fn read_row(&mut self) -> Result<bool, csv::Error> {
        self.reader.read_byte_record(&mut self.row)
    }

    /// The row's record number: the header is record 0, the first data row record 1 (blank
    /// lines and line breaks inside quotes do not count).
    fn line(&self) -> u64 {
        self.row.position().map(|p| p.record()).unwrap_or(0)
    }

    fn header(&mut self) -> Result<Option<Vec<String>>, SourceItem> {
        let mut names = Vec::with_capacity(self.row.len());
        for (i, f) in self.row.iter().enumerate() {
            let Some(name) = charset::decode(f, self.charset) else {
                return Err(self.malformed_file(format!(
                    "header column {} is not valid {}",
                    i + 1,
                    self.charset.label()
                )));
            };
            let name = name.trim().trim_start_matches('\u{feff}').to_string();
            if name.is_empty() || names.contains(&name) {
                return Err(self.malformed_file(format!(
                    "header column {} is empty or repeated ({name:?})",
                    i + 1
                )));
            }
            names.push(name);
        }
        Ok(Some(names))
    }

    fn malformed_file(&mut self, reason: String) -> SourceItem {
        self.done = true;
        SourceItem::Malformed {
            location: format!("{}:record {}", self.label, self.line()),
            reason: format!("{reason}; the whole file was skipped"),
            raw: self.raw_row(),
        }
    }

    fn record(&self, headers: &[String]) -> SourceItem {
        let mut number = itoa::Buffer::new();
        let number = number.format(self.line());
        let mut location = String::with_capacity(self.label.len() + 8 + number.len());
        location.push_str(&self.label);
        location.push_str(":record ");
        location.push_str(number);
        if self.row.len() != headers.len() {
            return SourceItem::Malformed {
                location,
                reason: format!(
                    "row has {} fields, the header has {} (broken quoting or delimiter?)",
                    self.row.len(),
                    headers.len()
                ),
                raw: self.raw_row(),
            };
        }
        let mut fields = Vec::with_capacity(headers.len());
        for (i, (name, bytes)) in headers.iter().zip(self.row.iter()).enumerate() {
            match charset::decode(bytes, self.charset) {
                Some(text) => fields.push((name.clone(), Value::String(text.into_owned()))),
                None => {
                    return SourceItem::Malformed {
                        location,
                        reason: format!(
                            "field {} ({name}) is not valid {}",
                            i + 1,
                            self.charset.label()
                        ),
                        raw: self.raw_row(),
                    };
                }
            }
        }
        // Built in one go from the collected fields (sorted, then laid out once) rather than
        // by one search-and-insert per field; header names are unique.
        let record: Record = fields.into_iter().collect();
        SourceItem::Record { record, location }
    }
}

impl<R: Read> Iterator for CsvRecords<R> {
    type Item = Result<SourceItem, SourceError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            match self.read_row() {
                Ok(false) => {
                    self.done = true;
                    return None;
                }
                Ok(true) => {}
                Err(e) => {
                    self.done = true;
                    return Some(match e.into_kind() {
                        csv::ErrorKind::Io(source) => Err(SourceError::Io {
                            source_name: self.source_name.clone(),
                            path: self.label.clone(),
                            source,
                        }),
                        other => Ok(SourceItem::Malformed {
                            location: self.label.clone(),
                            reason: format!(
                                "unreadable CSV: {other:?}; the rest of the file was skipped"
                            ),
                            raw: String::new(),
                        }),
                    });
                }
            }
            // A blank line is not a record.
            if self.row.len() == 1 && self.row[0].is_empty() {
                continue;
            }
            match &self.headers {
                None => match self.header() {
                    Ok(h) => {
                        self.headers = h;
                        continue;
                    }
                    Err(item) => return Some(Ok(item)),
                },
                Some(h) => return Some(Ok(self.record(h))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8], cs: Charset) -> Vec<SourceItem> {
        CsvRecords::new(bytes, cs, b',', "f.csv".into(), "s".into())
            .map(|r| r.unwrap())
            .collect()
    }

    #[test]
    fn reads_gb18030_rows_keyed_by_header() {
        let text = "patient_id,patient_name,result\r\nP1,王小明,5.6\r\n\r\nP2,\"李,四\",7\r\n";
        let bytes = charset::encode(text, Charset::Gb18030);
        let items = read(&bytes, Charset::Gb18030);
        assert_eq!(items.len(), 2);
        let SourceItem::Record { record, location } = &items[1] else {
            panic!("{items:?}")
        };
        assert_eq!(record["patient_name"], "李,四");
        assert_eq!(location, "f.csv:record 2");
    }

    #[test]
    fn bad_rows_are_quarantined_and_the_file_goes_on() {
        let mut bytes = b"a,b\n1,2\n3\n\"4,5\n".to_vec();
        bytes.extend_from_slice(b"");
        let items = read(&bytes, Charset::Utf8);
        assert!(matches!(&items[0], SourceItem::Record { .. }));
        let SourceItem::Malformed {
            reason, location, ..
        } = &items[1]
        else {
            panic!()
        };
        assert!(reason.contains("1 fields"), "{reason}");
        assert_eq!(location, "f.csv:record 2");
        assert!(
            matches!(&items[2], SourceItem::Malformed { .. }),
            "unclosed quote"
        );

        let items = read(b"a,b\n1,\xff\n2,3\n", Charset::Utf8);
        let SourceItem::Malformed { reason, .. } = &items[0] else {
            panic!()
        };
        assert!(
            reason.contains("field 2 (b) is not valid UTF-8"),
            "{reason}"
        );
        assert!(matches!(&items[1], SourceItem::Record { .. }));
    }

    #[test]
    fn a_broken_header_skips_the_file_with_a_reason() {
        let items = read(b"a,a\n1,2\n", Charset::Utf8);
        assert_eq!(items.len(), 1);
        let SourceItem::Malformed { reason, .. } = &items[0] else {
            panic!()
        };
        assert!(reason.contains("repeated"), "{reason}");
    }
}
