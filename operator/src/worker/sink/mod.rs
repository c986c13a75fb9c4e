//! Output writers: NDJSON, CSV and Parquet part files in a local staging directory, with the
//! record count, size and SHA-256 of each, for the run manifest.
//!
//! Output is deterministic: same records in, same bytes out (no timestamps in data files; map
//! keys are ordered). CSV and Parquet need the column set before the first row, so they spill
//! the records once and write on the second pass; memory stays flat.

pub mod columns;
pub mod early_sync;
pub mod parquet_out;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use self::columns::ColumnSet;
use self::early_sync::SyncingFile;
use super::record::Record;
use super::spill::{SpillError, SpillReader, SpillWriter};
use crate::api::pipeline::SinkFormat;

/// One data file written by a run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WrittenFile {
    /// The path relative to the dataset, e.g. `part-00000.parquet`.
    pub path: String,
    /// Records in the file.
    pub records: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the content, lower-case hex.
    pub sha256: String,
}

/// What can go wrong writing output.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A file could not be written.
    #[error("cannot write {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The spill between passes failed.
    #[error(transparent)]
    Spill(#[from] SpillError),
    /// The Parquet encoder refused the data.
    #[error("cannot encode {} as Parquet: {message}", path.display())]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The encoder's message.
        message: String,
    },
}

/// A writer that hashes and counts what passes through it.
pub struct HashingWriter<W: Write> {
    inner: W,
    digest: ring::digest::Context,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps a writer.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            digest: ring::digest::Context::new(&ring::digest::SHA256),
            bytes: 0,
        }
    }

    /// Bytes written and the SHA-256 in hex.
    pub fn finish(self) -> (W, u64, String) {
        let sum = super::crypto::hex(self.digest.finish().as_ref());
        (self.inner, self.bytes, sum)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digest.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the output records of a run.
pub trait OutputWriter {
    /// Writes one record.
    fn write(&mut self, record: &Record) -> Result<(), SinkError>;
    /// Finishes, flushes and syncs every file; returns them in order.
    fn finish(self: Box<Self>) -> Result<Vec<WrittenFile>, SinkError>;
    /// The NDJSON writer behind this one, which also takes lines serialised elsewhere (by the
    /// engine's parallel workers); `None` for formats that need the records themselves.
    fn as_lines(&mut self) -> Option<&mut NdjsonWriter> {
        None
    }
}

/// The file name of part `n` in a format.
pub fn part_name(n: u32, format: SinkFormat) -> String {
    let ext = match format {
        SinkFormat::Ndjson => "ndjson",
        SinkFormat::Csv => "csv",
        SinkFormat::Parquet => "parquet",
    };
    format!("part-{n:05}.{ext}")
}

/// Opens a writer for `format` that puts part `first_part` into `dir` (relative names are
/// prefixed with `prefix`, e.g. `_quarantine/`).
pub fn open(
    format: SinkFormat,
    dir: &Path,
    prefix: &str,
    first_part: u32,
) -> Box<dyn OutputWriter> {
    let name = format!("{prefix}{}", part_name(first_part, format));
    match format {
        SinkFormat::Ndjson => Box::new(NdjsonWriter::new(dir.join(&name), name)),
        SinkFormat::Csv | SinkFormat::Parquet => Box::new(TwoPassWriter {
            format,
            path: dir.join(&name),
            name,
            spill_path: dir.join(format!(".{first_part}.spill")),
            spill: None,
            columns: ColumnSet::default(),
        }),
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> SinkError + '_ {
    move |source| SinkError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `path` (and its directory), to be synced in the background as it grows.
fn create(path: &Path) -> Result<SyncingFile, SinkError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    File::create(path)
        .map(SyncingFile::new)
        .map_err(io_err(path))
}

fn seal(
    out: BufWriter<HashingWriter<SyncingFile>>,
    path: &Path,
    name: &str,
    records: u64,
) -> Result<WrittenFile, SinkError> {
    let hashing = out.into_inner().map_err(|e| io_err(path)(e.into_error()))?;
    let (file, bytes, sha256) = hashing.finish();
    file.sync_all().map_err(io_err(path))?;
    Ok(WrittenFile {
        path: name.to_string(),
        records,
        bytes,
        sha256,
    })
}

/// NDJSON: one compact JSON object per line, keys in order.
pub struct NdjsonWriter {
    path: PathBuf,
    name: String,
    out: Option<BufWriter<HashingWriter<SyncingFile>>>,
    records: u64,
    /// One record's line, serialised here and then written in one piece.
    line: Vec<u8>,
}

impl NdjsonWriter {
    /// A writer that creates `path` on the first record.
    pub fn new(path: PathBuf, name: String) -> Self {
        NdjsonWriter {
            path,
            name,
            out: None,
            records: 0,
            line: Vec::new(),
        }
    }

    /// The open file, created on first use.
    fn out(&mut self) -> Result<&mut BufWriter<HashingWriter<SyncingFile>>, SinkError> {
        let out = match self.out.take() {
            Some(out) => out,
            None => BufWriter::with_capacity(256 * 1024, HashingWriter::new(create(&self.path)?)),
        };
        Ok(self.out.insert(out))
    }

    /// Writes any serialisable value as one line (quarantine entries).
    pub fn write_value<T: Serialize>(&mut self, value: &T) -> Result<(), SinkError> {
        let out = self.out()?;
        let written = serde_json::to_writer(&mut *out, value)
            .map_err(std::io::Error::other)
            .and_then(|()| out.write_all(b"\n"));
        written.map_err(io_err(&self.path))?;
        self.records += 1;
        Ok(())
    }

    /// Writes lines already serialised the way [`NdjsonWriter::write_value`] would (each one
    /// compact JSON ending in a newline); `lines` is how many there are.
    pub fn write_lines(&mut self, bytes: &[u8], lines: u64) -> Result<(), SinkError> {
        if lines == 0 {
            return Ok(());
        }
        let out = self.out()?;
        // A worker's batch of lines is already one large buffer: past the buffered bytes it
        // goes to the file directly instead of being copied into the buffer first (a copy of
        // every output byte). Flushing a file (and so the buffer's writer) syncs nothing.
        let written = if bytes.len() >= out.capacity() / 2 {
            out.flush().and_then(|()| out.get_mut().write_all(bytes))
        } else {
            out.write_all(bytes)
        };
        written.map_err(io_err(&self.path))?;
        self.records += lines;
        Ok(())
    }

    /// Finishes the file, if one was started.
    pub fn finish_file(self) -> Result<Option<WrittenFile>, SinkError> {
        match self.out {
            None => Ok(None),
            Some(out) => seal(out, &self.path, &self.name, self.records).map(Some),
        }
    }
}

impl OutputWriter for NdjsonWriter {
    fn write(&mut self, record: &Record) -> Result<(), SinkError> {
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        record.write_json(&mut line);
        line.push(b'\n');
        let written = self.write_lines(&line, 1);
        self.line = line;
        written
    }

    fn finish(self: Box<Self>) -> Result<Vec<WrittenFile>, SinkError> {
        Ok((*self).finish_file()?.into_iter().collect())
    }

    fn as_lines(&mut self) -> Option<&mut NdjsonWriter> {
        Some(self)
    }
}

/// CSV and Parquet: spill, learn the columns, then write.
struct TwoPassWriter {
    format: SinkFormat,
    path: PathBuf,
    name: String,
    spill_path: PathBuf,
    spill: Option<SpillWriter>,
    columns: ColumnSet,
}

impl OutputWriter for TwoPassWriter {
    fn write(&mut self, record: &Record) -> Result<(), SinkError> {
        if self.spill.is_none() {
            if let Some(parent) = self.spill_path.parent() {
                std::fs::create_dir_all(parent).map_err(io_err(parent))?;
            }
            self.spill = Some(SpillWriter::create(&self.spill_path)?);
        }
        self.columns.observe(record);
        if let Some(s) = self.spill.as_mut() {
            s.push(record, "")?;
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<Vec<WrittenFile>, SinkError> {
        let Some(spill) = self.spill else {
            return Ok(Vec::new());
        };
        let records = spill.count();
        let reader = spill.finish()?;
        let file = match self.format {
            SinkFormat::Csv => write_csv(reader, &self.columns, &self.path, &self.name, records)?,
            _ => {
                parquet_out::write_parquet(reader, &self.columns, &self.path, &self.name, records)?
            }
        };
        std::fs::remove_file(&self.spill_path).map_err(io_err(&self.spill_path))?;
        Ok(vec![file])
    }
}

/// A value as a CSV cell: text as is, other scalars printed, lists and objects as JSON.
pub fn csv_cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn write_csv(
    mut reader: SpillReader,
    columns: &ColumnSet,
    path: &Path,
    name: &str,
    records: u64,
) -> Result<WrittenFile, SinkError> {
    let file = create(path)?;
    let mut w = csv::Writer::from_writer(BufWriter::with_capacity(
        256 * 1024,
        HashingWriter::new(file),
    ));
    let csv_err = |e: csv::Error| io_err(path)(std::io::Error::other(e));
    w.write_record(columns.names()).map_err(csv_err)?;
    let mut row: Vec<String> = Vec::with_capacity(columns.len());
    while let Some((rec, _)) = reader.next_record()? {
        row.clear();
        row.extend(columns.names().iter().map(|c| csv_cell(rec.get(c))));
        w.write_record(&row).map_err(csv_err)?;
    }
    let out = w
        .into_inner()
        .map_err(|e| io_err(path)(std::io::Error::other(e.to_string())))?;
    seal(out, path, name, records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn write_all(format: SinkFormat, rows: &[Value]) -> (tempfile::TempDir, Vec<WrittenFile>) {
        let dir = tempfile::tempdir().unwrap();
        let mut w = open(format, dir.path(), "", 0);
        for r in rows {
            w.write(&Record::from(r.as_object().unwrap().clone()))
                .unwrap();
        }
        let files = w.finish().unwrap();
        (dir, files)
    }

    #[test]
    fn ndjson_and_csv_are_deterministic_and_checksummed() {
        let rows = vec![
            json!({"b": "王,五", "a": 1}),
            json!({"a": 2, "c": {"x": true}}),
        ];
        let (d1, f1) = write_all(SinkFormat::Ndjson, &rows);
        let (_d2, f2) = write_all(SinkFormat::Ndjson, &rows);
        assert_eq!(f1, f2);
        assert_eq!(f1[0].records, 2);
        let text = std::fs::read_to_string(d1.path().join("part-00000.ndjson")).unwrap();
        assert_eq!(
            text,
            "{\"a\":1,\"b\":\"王,五\"}\n{\"a\":2,\"c\":{\"x\":true}}\n"
        );
        let digest = super::super::crypto::hex(
            ring::digest::digest(&ring::digest::SHA256, text.as_bytes()).as_ref(),
        );
        assert_eq!(f1[0].sha256, digest);

        let (d3, f3) = write_all(SinkFormat::Csv, &rows);
        let csv = std::fs::read_to_string(d3.path().join("part-00000.csv")).unwrap();
        assert_eq!(csv, "a,b,c\n1,\"王,五\",\n2,,\"{\"\"x\"\":true}\"\n");
        assert_eq!(f3[0].bytes, csv.len() as u64);
        assert!(!d3.path().join(".0.spill").exists());
    }

    #[test]
    fn large_batches_of_lines_bypass_the_buffer_in_order_and_checksummed() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = NdjsonWriter::new(dir.path().join("p.ndjson"), "p.ndjson".into());
        let line = |i: usize| format!("{{\"n\":{i}}}\n");
        let mut expected = String::new();
        let mut lines = 0;
        // Small, large (written past the buffer), small, and large again.
        for (start, count) in [(0, 3), (3, 30_000), (30_003, 2), (30_005, 40_000)] {
            let batch: String = (start..start + count).map(line).collect();
            w.write_lines(batch.as_bytes(), count as u64).unwrap();
            expected.push_str(&batch);
            lines += count as u64;
        }
        let file = w.finish_file().unwrap().unwrap();
        let text = std::fs::read_to_string(dir.path().join("p.ndjson")).unwrap();
        assert!(text == expected, "lines out of order or lost");
        assert_eq!((file.records, file.bytes), (lines, expected.len() as u64));
        let digest = super::super::crypto::hex(
            ring::digest::digest(&ring::digest::SHA256, text.as_bytes()).as_ref(),
        );
        assert_eq!(file.sha256, digest);
    }

    #[test]
    fn no_records_means_no_file() {
        for f in [SinkFormat::Ndjson, SinkFormat::Csv, SinkFormat::Parquet] {
            let (_d, files) = write_all(f, &[]);
            assert!(files.is_empty());
        }
    }
}
