//! Rows read but not decoded yet: many rows in one buffer, decoded where they are processed.
//!
//! Splitting a file into rows is sequential; decoding a row (its charset, CSV fields into a
//! record, JSON parsing, HL7 v2 parsing) is not. So the CSV, NDJSON, FHIR NDJSON and HL7 v2
//! file readers and the PostgreSQL reader cut rows into a [`RowBatch`] and the thread that runs
//! the pipeline's steps decodes them there. Decoding then runs on every
//! worker thread, not only the reading one, and a record is allocated and freed on one thread:
//! glibc's allocator charges dearly for memory freed on another thread than the one that
//! allocated it, which had made two worker threads slower than one.

use std::fmt;
use std::sync::Arc;

use super::{SourceError, SourceItem, bounded_raw};
use crate::worker::flat::Cell;
use crate::worker::record::Record;

/// Rows per batch, as many as the worker threads take per hand-off.
pub const ROWS: usize = crate::worker::parallel::BATCH;

/// Bytes after which a batch is full even with fewer rows (long NDJSON lines).
pub const BYTES: usize = 1 << 20;

/// One raw row, as a decoder sees it.
pub struct RawRow<'a> {
    /// The row's bytes: a whole NDJSON line, or a CSV row's fields one after the other.
    pub bytes: &'a [u8],
    /// CSV only: where each field ends within `bytes`.
    pub field_ends: &'a [u32],
}

impl<'a> RawRow<'a> {
    /// CSV field `i` of the row, if it has one.
    pub fn field(&self, i: usize) -> Option<&'a [u8]> {
        self.bytes.get(self.field_range(i)?)
    }

    /// Where CSV field `i` lies within `bytes`.
    pub fn field_range(&self, i: usize) -> Option<std::ops::Range<usize>> {
        let end = *self.field_ends.get(i)? as usize;
        let start = match i.checked_sub(1) {
            Some(p) => *self.field_ends.get(p)? as usize,
            None => 0,
        };
        Some(start..end)
    }

    /// The CSV fields of the row.
    pub fn fields(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut start = 0;
        self.field_ends.iter().map(move |end| {
            let end = *end as usize;
            let field = self.bytes.get(start..end).unwrap_or_default();
            start = end;
            field
        })
    }
}

/// What decoding one row gave.
pub enum Decoded {
    /// A well-formed record.
    Record(Record),
    /// A row that is not a record: why, and its raw text (bounded).
    Malformed {
        /// Why it is malformed.
        reason: String,
        /// The raw text (lossy in its charset).
        raw: String,
    },
}

/// Turns the raw rows of one file into records (CSV with its header, NDJSON, FHIR NDJSON).
pub trait RowDecoder: Send + Sync {
    /// Decodes one row.
    fn decode(&self, row: RawRow<'_>) -> Decoded;

    /// The column names, when every row is a flat list of fields under them (CSV): such rows
    /// can run through a [`FlatPlan`](crate::worker::flat::FlatPlan) without a record.
    fn columns(&self) -> Option<&[String]> {
        None
    }

    /// Appends the row's fields to `cells` in column order; `false` when the row does not
    /// decode, for [`RowDecoder::decode`] to say why.
    fn cells<'r>(&self, row: RawRow<'r>, cells: &mut Vec<Cell<'r>>) -> bool {
        let _ = (row, cells);
        false
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct RowEnd {
    /// The row's number in its file, as locations show it.
    number: u64,
    bytes: usize,
    fields: usize,
}

/// Up to [`ROWS`] raw rows of one file in one buffer, with the decoder that reads them.
#[derive(Clone)]
pub struct RowBatch {
    decoder: Arc<dyn RowDecoder>,
    /// What a row's location starts with; the row's number follows (`f.csv:record `).
    location: Arc<str>,
    bytes: Vec<u8>,
    field_ends: Vec<u32>,
    rows: Vec<RowEnd>,
}

impl RowBatch {
    /// An empty batch of rows located as `location` followed by their number.
    pub fn new(decoder: Arc<dyn RowDecoder>, location: Arc<str>) -> Self {
        RowBatch {
            decoder,
            location,
            bytes: Vec::with_capacity(64 * 1024),
            field_ends: Vec::new(),
            rows: Vec::with_capacity(ROWS),
        }
    }

    /// Adds a CSV row of `fields`, numbered `number`.
    pub fn push_fields<'f>(&mut self, number: u64, fields: impl Iterator<Item = &'f [u8]>) {
        let start = self.bytes.len();
        for f in fields {
            self.bytes.extend_from_slice(f);
            // A batch is cut at BYTES, so offsets within one row fit in u32 unless a single
            // row is over 4 GiB, which the CSV reader cannot hold anyway.
            self.field_ends
                .push(u32::try_from(self.bytes.len() - start).unwrap_or(u32::MAX));
        }
        self.end_row(number);
    }

    /// Adds an NDJSON line, numbered `number`.
    pub fn push_line(&mut self, number: u64, line: &[u8]) {
        self.bytes.extend_from_slice(line);
        self.end_row(number);
    }

    fn end_row(&mut self, number: u64) {
        self.rows.push(RowEnd {
            number,
            bytes: self.bytes.len(),
            fields: self.field_ends.len(),
        });
    }

    /// Rows in the batch.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Bytes of row data in the batch.
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the batch holds no row.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Whether the batch should be handed on before another row is added.
    pub fn is_full(&self) -> bool {
        self.rows.len() >= ROWS || self.bytes.len() >= BYTES
    }

    /// Puts `prefix` and `: ` before every location (the source's name).
    pub fn prefix_locations(&mut self, prefix: &str) {
        self.location = format!("{prefix}: {}", self.location).into();
    }

    /// Where row `i` came from.
    pub fn location(&self, i: usize) -> String {
        let mut number = itoa::Buffer::new();
        let number = number.format(self.rows.get(i).map_or(0, |r| r.number));
        let mut s = String::with_capacity(self.location.len() + number.len());
        s.push_str(&self.location);
        s.push_str(number);
        s
    }

    /// The decoder of the batch's rows.
    pub fn decoder(&self) -> &dyn RowDecoder {
        &*self.decoder
    }

    /// Row `i` as read, if the batch has it.
    pub fn raw_row(&self, i: usize) -> Option<RawRow<'_>> {
        let end = self.rows.get(i)?;
        let (start, fields_start) = match i.checked_sub(1).and_then(|p| self.rows.get(p)) {
            Some(prev) => (prev.bytes, prev.fields),
            None => (0, 0),
        };
        Some(RawRow {
            bytes: self.bytes.get(start..end.bytes)?,
            field_ends: self.field_ends.get(fields_start..end.fields)?,
        })
    }

    /// Decodes row `i` (an index past the end decodes as an empty, malformed row); the raw
    /// text of a malformed row is bounded.
    pub fn decode(&self, i: usize) -> Decoded {
        let Some(row) = self.raw_row(i) else {
            return Decoded::Malformed {
                reason: format!("no row {i} in the batch"),
                raw: String::new(),
            };
        };
        match self.decoder.decode(row) {
            Decoded::Malformed { reason, raw } => Decoded::Malformed {
                reason,
                raw: bounded_raw(raw),
            },
            record => record,
        }
    }

    /// Row `i` decoded as a source item with its location.
    pub fn item(&self, i: usize) -> SourceItem {
        match self.decode(i) {
            Decoded::Record(record) => SourceItem::Record {
                record,
                location: self.location(i),
            },
            Decoded::Malformed { reason, raw } => SourceItem::Malformed {
                location: self.location(i),
                reason,
                raw,
            },
        }
    }

    /// Every row decoded, in order.
    pub fn items(&self) -> impl Iterator<Item = SourceItem> + '_ {
        (0..self.len()).map(|i| self.item(i))
    }
}

/// What a reader yields.
pub type ReadItem = Result<SourceItem, SourceError>;

/// What a reader holds back while it hands on a batch: the item that interrupted the batch (a
/// malformed item, an error) or the end of the file, so that items stay in file order.
#[derive(Default)]
pub struct AfterBatch(Option<Option<ReadItem>>);

impl AfterBatch {
    /// What was held back, to yield before reading on.
    pub fn take(&mut self) -> Option<Option<ReadItem>> {
        self.0.take()
    }

    /// Yields `batch` when it has rows, holding `interruption` back for the next call;
    /// otherwise yields the interruption itself.
    pub fn hand_on(
        &mut self,
        batch: Option<RowBatch>,
        interruption: Option<ReadItem>,
    ) -> Option<ReadItem> {
        match batch {
            Some(b) if !b.is_empty() => {
                self.0 = Some(interruption);
                Some(Ok(SourceItem::Rows(b)))
            }
            _ => interruption,
        }
    }
}

/// A reader of one file's rows, batched by [`next_batch`].
pub trait RowReader {
    /// Reads one row into `batch` (or skips a line, adding nothing); or returns what
    /// interrupts the rows: a malformed item or an error, yielded after the rows before it, or
    /// `None` at the end of the file.
    fn read_row(&mut self, batch: &mut Option<RowBatch>) -> Result<(), Option<ReadItem>>;
    /// Where the reader keeps what it holds back while a batch is handed on.
    fn after_batch(&mut self) -> &mut AfterBatch;
}

/// The next item of a batching reader: a full batch, the last rows before an interruption,
/// or the interruption.
pub fn next_batch(reader: &mut impl RowReader) -> Option<ReadItem> {
    if let Some(after) = reader.after_batch().take() {
        return after;
    }
    let mut batch = None;
    loop {
        if let Err(interruption) = reader.read_row(&mut batch) {
            return reader.after_batch().hand_on(batch, interruption);
        }
        if batch.as_ref().is_some_and(RowBatch::is_full) {
            return batch.map(|b| Ok(SourceItem::Rows(b)));
        }
    }
}

impl fmt::Debug for RowBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Rows are patient data: their count and where they came from, never their bytes.
        f.debug_struct("RowBatch")
            .field("location", &self.location)
            .field("rows", &self.rows.len())
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl PartialEq for RowBatch {
    fn eq(&self, other: &Self) -> bool {
        self.location == other.location
            && self.bytes == other.bytes
            && self.field_ends == other.field_ends
            && self.rows == other.rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fields joined by `|`; a row starting with `!` is malformed.
    struct Pipes;

    impl RowDecoder for Pipes {
        fn decode(&self, row: RawRow<'_>) -> Decoded {
            let text: Vec<String> = row
                .fields()
                .map(|f| String::from_utf8_lossy(f).into_owned())
                .collect();
            let joined = if text.is_empty() {
                String::from_utf8_lossy(row.bytes).into_owned()
            } else {
                text.join("|")
            };
            if joined.starts_with('!') {
                return Decoded::Malformed {
                    reason: "bang".into(),
                    raw: joined,
                };
            }
            let mut r = Record::new();
            r.insert("v", joined.into());
            Decoded::Record(r)
        }
    }

    #[test]
    fn rows_keep_their_fields_numbers_and_order() {
        let mut b = RowBatch::new(Arc::new(Pipes), "f.csv:record ".into());
        b.push_fields(1, [&b"a"[..], b"", b"c"].into_iter());
        b.push_fields(3, [&b"!x"[..]].into_iter());
        b.push_line(4, b"line");
        b.prefix_locations("lis");
        assert_eq!(b.len(), 3);
        let row = RawRow {
            bytes: b"abc",
            field_ends: &[1, 1, 3],
        };
        assert_eq!(
            (row.field(0), row.field(1), row.field(2), row.field(3)),
            (Some(&b"a"[..]), Some(&b""[..]), Some(&b"bc"[..]), None)
        );
        let items: Vec<SourceItem> = b.items().collect();
        let SourceItem::Record { record, location } = &items[0] else {
            panic!("{items:?}")
        };
        assert_eq!(record["v"], "a||c");
        assert_eq!(location, "lis: f.csv:record 1");
        assert!(
            matches!(&items[1], SourceItem::Malformed { location, reason, .. }
                if location == "lis: f.csv:record 3" && reason == "bang")
        );
        let SourceItem::Record { record, .. } = &items[2] else {
            panic!()
        };
        assert_eq!(record["v"], "line");
        assert!(matches!(b.decode(9), Decoded::Malformed { .. }));
    }

    #[test]
    fn a_batch_is_full_at_its_row_or_byte_bound() {
        let mut b = RowBatch::new(Arc::new(Pipes), "x:".into());
        for i in 0..ROWS as u64 {
            assert!(!b.is_full());
            b.push_line(i, b"{}");
        }
        assert!(b.is_full());
        let mut b = RowBatch::new(Arc::new(Pipes), "x:".into());
        b.push_line(1, &vec![b'x'; BYTES]);
        assert!(b.is_full());
        assert!(!format!("{b:?}").contains("xxx"), "no row bytes in Debug");
    }
}
