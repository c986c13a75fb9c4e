//! A spill file: records (with their locations) written to local disk between two passes of a
//! barrier step, so dedupe, the privacy gate and the CSV/Parquet writers stream instead of
//! holding the dataset in memory.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::record::Record;

/// What can go wrong with a spill file.
#[derive(Debug, thiserror::Error)]
pub enum SpillError {
    /// Reading or writing the file failed.
    #[error("spill file {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A line does not parse back (the file was damaged).
    #[error("spill file {} line {line} is damaged", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// The line.
        line: u64,
    },
}

/// Writes records to a spill file.
pub struct SpillWriter {
    path: PathBuf,
    out: BufWriter<File>,
    count: u64,
}

impl SpillWriter {
    /// Creates the file.
    pub fn create(path: &Path) -> Result<Self, SpillError> {
        let file = File::create(path).map_err(|source| SpillError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(SpillWriter {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(256 * 1024, file),
            count: 0,
        })
    }

    /// Appends one record with its location.
    pub fn push(&mut self, record: &Record, location: &str) -> Result<(), SpillError> {
        let io = |source| SpillError::Io {
            path: self.path.clone(),
            source,
        };
        serde_json::to_writer(&mut self.out, &(location, record))
            .map_err(|e| io(std::io::Error::other(e)))?;
        self.out.write_all(b"\n").map_err(io)?;
        self.count += 1;
        Ok(())
    }

    /// Records written so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Flushes and returns a reader over what was written.
    pub fn finish(mut self) -> Result<SpillReader, SpillError> {
        self.out.flush().map_err(|source| SpillError::Io {
            path: self.path.clone(),
            source,
        })?;
        SpillReader::open(&self.path)
    }
}

/// Reads a spill file back, in order.
pub struct SpillReader {
    path: PathBuf,
    input: BufReader<File>,
    line: u64,
    buf: Vec<u8>,
}

impl SpillReader {
    /// Opens a spill file.
    pub fn open(path: &Path) -> Result<Self, SpillError> {
        let file = File::open(path).map_err(|source| SpillError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(SpillReader {
            path: path.to_path_buf(),
            input: BufReader::with_capacity(256 * 1024, file),
            line: 0,
            buf: Vec::new(),
        })
    }

    /// The next record and its location.
    pub fn next_record(&mut self) -> Result<Option<(Record, String)>, SpillError> {
        self.buf.clear();
        let n = self
            .input
            .read_until(b'\n', &mut self.buf)
            .map_err(|source| SpillError::Io {
                path: self.path.clone(),
                source,
            })?;
        if n == 0 {
            return Ok(None);
        }
        self.line += 1;
        let damaged = || SpillError::Damaged {
            path: self.path.clone(),
            line: self.line,
        };
        let (location, record): (String, Record) =
            serde_json::from_slice(&self.buf).map_err(|_| damaged())?;
        Ok(Some((record, location)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_round_trip_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SpillWriter::create(&dir.path().join("s")).unwrap();
        for i in 0..3 {
            w.push(
                &Record::from(json!({"i": i, "t": "王\n"}).as_object().unwrap().clone()),
                &format!("f:{i}"),
            )
            .unwrap();
        }
        assert_eq!(w.count(), 3);
        let mut r = w.finish().unwrap();
        for i in 0..3 {
            let (rec, loc) = r.next_record().unwrap().unwrap();
            assert_eq!(rec["i"], i);
            assert_eq!(loc, format!("f:{i}"));
        }
        assert!(r.next_record().unwrap().is_none());
    }
}
