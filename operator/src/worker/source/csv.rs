//! CSV files with a header row, in UTF-8, GBK or GB18030.
//!
//! Each row becomes a record of strings keyed by the header. A row with the wrong number of
//! fields (often broken quoting) or bytes invalid in the charset is quarantined; the file goes on.
//! The reader only splits rows (into [`RowBatch`]es); [`CsvRowDecoder`] turns them into records
//! on the thread that processes them.

use std::borrow::Cow;
use std::io::Read;
use std::sync::Arc;

use serde_json::Value;

use super::rows::{
    AfterBatch, Decoded, RawRow, ReadItem, RowBatch, RowDecoder, RowReader, next_batch,
};
use super::{SourceError, SourceItem, bounded_raw};
use crate::api::data_source::Charset;
use crate::worker::charset;
use crate::worker::flat::Cell;
use crate::worker::record::Record;

/// Reads one CSV file as batches of rows.
pub struct CsvRecords<R: Read> {
    reader: csv::Reader<R>,
    decoder: Option<Arc<CsvRowDecoder>>,
    charset: Charset,
    label: String,
    /// Where rows are, before their number: `<label>:record `.
    location: Arc<str>,
    source_name: String,
    row: csv::ByteRecord,
    after_batch: AfterBatch,
    done: bool,
}

/// Decodes the rows of one CSV file by its header.
pub struct CsvRowDecoder {
    headers: Vec<String>,
    charset: Charset,
    /// A record with every header name (and null values): a row's record takes its names in
    /// their order, without sorting or comparing them again for every row.
    template: Record,
    /// The column of each of the template's fields, in the template's (sorted) order.
    columns: Vec<usize>,
}

impl CsvRowDecoder {
    /// A decoder for rows under `headers` (unique names) in `charset`.
    pub fn new(headers: Vec<String>, charset: Charset) -> Self {
        let template: Record = headers.iter().map(|h| (h.clone(), Value::Null)).collect();
        let columns = template
            .keys()
            .filter_map(|k| headers.iter().position(|h| h == k))
            .collect();
        CsvRowDecoder {
            headers,
            charset,
            template,
            columns,
        }
    }

    fn raw_text(&self, row: &RawRow<'_>) -> String {
        raw_fields(row.fields(), self.charset)
    }

    /// The quarantine entry of a row with a field that is not valid in the charset: the first
    /// such field in the header's order.
    fn undecodable(&self, row: &RawRow<'_>) -> Decoded {
        let bad = self
            .headers
            .iter()
            .zip(row.fields())
            .position(|(_, bytes)| charset::decode(bytes, self.charset).is_none())
            .unwrap_or(0);
        let name = self.headers.get(bad).map_or("", String::as_str);
        Decoded::Malformed {
            reason: format!(
                "field {} ({name}) is not valid {}",
                bad + 1,
                self.charset.label()
            ),
            raw: self.raw_text(row),
        }
    }
}

fn raw_fields<'a>(fields: impl Iterator<Item = &'a [u8]>, cs: Charset) -> String {
    let fields: Vec<String> = fields.map(|f| charset::lossy(f, cs)).collect();
    bounded_raw(fields.join(","))
}

impl CsvRowDecoder {
    /// The row's text when it is UTF-8 as a whole, checked once instead of field by field.
    fn whole_row<'r>(&self, row: &RawRow<'r>) -> Option<&'r str> {
        match self.charset {
            Charset::Utf8 => std::str::from_utf8(row.bytes).ok(),
            _ => None,
        }
    }

    /// The text of field `column`; `None` when it is not valid in the charset. Fields of a
    /// UTF-8 row must also start and end on character boundaries: bytes split by a delimiter
    /// are not valid text even when their concatenation is.
    fn field_text<'r>(
        &self,
        row: &RawRow<'r>,
        whole_row: Option<&'r str>,
        column: usize,
    ) -> Option<Cow<'r, str>> {
        match whole_row {
            Some(text) => Some(Cow::Borrowed(charset::strip_bom(
                text.get(row.field_range(column)?)?,
            ))),
            None => charset::decode(row.field(column)?, self.charset),
        }
    }

    /// Whether the row has as many fields as the header.
    fn fits(&self, row: &RawRow<'_>) -> bool {
        row.field_ends.len() == self.headers.len()
    }

    fn wrong_width(&self, row: &RawRow<'_>) -> Option<Decoded> {
        (!self.fits(row)).then(|| Decoded::Malformed {
            reason: format!(
                "row has {} fields, the header has {} (broken quoting or delimiter?)",
                row.field_ends.len(),
                self.headers.len()
            ),
            raw: self.raw_text(row),
        })
    }
}

impl RowDecoder for CsvRowDecoder {
    fn decode(&self, row: RawRow<'_>) -> Decoded {
        if let Some(malformed) = self.wrong_width(&row) {
            return malformed;
        }
        let whole_row = self.whole_row(&row);
        let record = self.template.with_values(|i| {
            let text = self.field_text(&row, whole_row, *self.columns.get(i)?)?;
            Some(Value::String(text.into_owned()))
        });
        match record {
            Some(record) => Decoded::Record(record),
            None => self.undecodable(&row),
        }
    }

    fn columns(&self) -> Option<&[String]> {
        Some(&self.headers)
    }

    fn cells<'r>(&self, row: RawRow<'r>, cells: &mut Vec<Cell<'r>>) -> bool {
        if !self.fits(&row) {
            return false;
        }
        let whole_row = self.whole_row(&row);
        for column in 0..self.headers.len() {
            match self.field_text(&row, whole_row, column) {
                Some(Cow::Borrowed(text)) => cells.push(Cell::Text(text)),
                Some(Cow::Owned(text)) => cells.push(Cell::Value(Value::String(text))),
                None => return false,
            }
        }
        true
    }
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
            decoder: None,
            charset,
            location: format!("{label}:record ").into(),
            label,
            source_name,
            row: csv::ByteRecord::new(),
            after_batch: AfterBatch::default(),
            done: false,
        }
    }

    fn raw_row(&self) -> String {
        raw_fields(self.row.iter(), self.charset)
    }

    /// The row's record number: the header is record 0, the first data row record 1 (blank
    /// lines and line breaks inside quotes do not count).
    fn line(&self) -> u64 {
        self.row.position().map(|p| p.record()).unwrap_or(0)
    }

    fn header(&mut self) -> Result<CsvRowDecoder, SourceItem> {
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
        Ok(CsvRowDecoder::new(names, self.charset))
    }

    fn malformed_file(&mut self, reason: String) -> SourceItem {
        self.done = true;
        SourceItem::Malformed {
            location: format!("{}{}", self.location, self.line()),
            reason: format!("{reason}; the whole file was skipped"),
            raw: self.raw_row(),
        }
    }

    /// What ends the file: `None` at its end, an I/O error, or unreadable CSV quarantined.
    fn end(&mut self, error: Option<csv::Error>) -> Option<Result<SourceItem, SourceError>> {
        self.done = true;
        Some(match error?.into_kind() {
            csv::ErrorKind::Io(source) => Err(SourceError::Io {
                source_name: self.source_name.clone(),
                path: self.label.clone(),
                source,
            }),
            other => Ok(SourceItem::Malformed {
                location: self.label.clone(),
                reason: format!("unreadable CSV: {other:?}; the rest of the file was skipped"),
                raw: String::new(),
            }),
        })
    }
}

impl<R: Read> RowReader for CsvRecords<R> {
    fn read_row(&mut self, batch: &mut Option<RowBatch>) -> Result<(), Option<ReadItem>> {
        if self.done {
            return Err(None);
        }
        match self.reader.read_byte_record(&mut self.row) {
            Ok(true) => {}
            Ok(false) => return Err(self.end(None)),
            Err(e) => return Err(self.end(Some(e))),
        }
        // A blank line is not a record.
        if self.row.len() == 1 && self.row[0].is_empty() {
            return Ok(());
        }
        let Some(decoder) = &self.decoder else {
            let decoder = self.header().map_err(|item| Some(Ok(item)))?;
            self.decoder = Some(Arc::new(decoder));
            return Ok(());
        };
        let number = self.line();
        batch
            .get_or_insert_with(|| RowBatch::new(decoder.clone(), self.location.clone()))
            .push_fields(number, self.row.iter());
        Ok(())
    }

    fn after_batch(&mut self) -> &mut AfterBatch {
        &mut self.after_batch
    }
}

impl<R: Read> Iterator for CsvRecords<R> {
    type Item = ReadItem;

    fn next(&mut self) -> Option<ReadItem> {
        next_batch(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8], cs: Charset) -> Vec<SourceItem> {
        CsvRecords::new(bytes, cs, b',', "f.csv".into(), "s".into())
            .flat_map(|r| r.unwrap().into_items())
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

        // Records lay fields out by name; the reason still names the first bad column.
        let items = read(b"z,a\n\xff,\xfe\n", Charset::Utf8);
        let SourceItem::Malformed { reason, .. } = &items[0] else {
            panic!()
        };
        assert!(reason.contains("field 1 (z)"), "{reason}");

        // A character cut in two by a delimiter: the row's bytes without the delimiter are
        // valid UTF-8 ("中" is E4 B8 AD), but neither field is.
        let items = read(b"x,y\n\xe4,\xb8\xad\n", Charset::Utf8);
        let SourceItem::Malformed { reason, .. } = &items[0] else {
            panic!("{:?}", items.len())
        };
        assert!(
            reason.contains("field 1 (x) is not valid UTF-8"),
            "{reason}"
        );
        // A byte order mark is dropped from a field as before.
        let items = read(b"x,y\n\xef\xbb\xbf1,2\n", Charset::Utf8);
        let SourceItem::Record { record, .. } = &items[0] else {
            panic!()
        };
        assert_eq!(record["x"], "1");
    }

    /// A file that breaks (an I/O error) after `good` bytes.
    struct Breaks<'a> {
        good: &'a [u8],
    }

    impl Read for Breaks<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.good.is_empty() {
                return Err(std::io::Error::other("disk gone"));
            }
            let n = buf.len().min(self.good.len()).min(100);
            buf[..n].copy_from_slice(&self.good[..n]);
            self.good = &self.good[n..];
            Ok(n)
        }
    }

    #[test]
    fn rows_span_batches_in_order_and_a_failure_comes_after_the_rows_before_it() {
        let n = 2 * super::super::rows::ROWS + 77;
        let mut text = String::from("id,v\n");
        for i in 1..=n {
            if i == 700 {
                text.push_str("oops\n");
            } else {
                text.push_str(&format!("{i},x\n"));
            }
        }
        let read = || {
            CsvRecords::new(
                Breaks {
                    good: text.as_bytes(),
                },
                Charset::Utf8,
                b',',
                "f.csv".into(),
                "s".into(),
            )
            .collect::<Vec<_>>()
        };
        let batches = read();
        assert!(batches.len() >= 4, "several batches, then the error");
        let Some(Err(SourceError::Io { .. })) = batches.last() else {
            panic!("the I/O error comes last: {:?}", batches.last())
        };
        let items: Vec<SourceItem> = batches
            .into_iter()
            .filter_map(Result::ok)
            .flat_map(SourceItem::into_items)
            .collect();
        assert_eq!(items.len(), n);
        for (i, item) in items.iter().enumerate() {
            let want = format!("f.csv:record {}", i + 1);
            match item {
                SourceItem::Record { record, location } => {
                    assert_eq!(location, &want);
                    assert_eq!(record["id"], (i + 1).to_string());
                }
                SourceItem::Malformed { location, .. } => {
                    assert_eq!((location.as_str(), i + 1), (want.as_str(), 700))
                }
                SourceItem::Rows(_) => panic!("nested batch"),
            }
        }
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
