//! Sources: where records come from. Files (CSV, NDJSON, FHIR NDJSON, HL7 v2), PostgreSQL and
//! FHIR REST all yield the same stream of [`SourceItem`]s.
//!
//! A malformed record is an item too ([`SourceItem::Malformed`]), so it is quarantined with its
//! reason and the run goes on; only a source that cannot be read at all is a [`SourceError`].

pub mod channel;
pub mod csv;
pub mod fhir_rest;
pub mod files;
pub mod hl7_file;
pub mod mysql;
pub mod ndjson;
pub mod object_files;
pub mod pg_tls;
pub mod postgres;
pub mod rows;

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::record::Record;
use rows::RowBatch;

/// One item read from a source.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceItem {
    /// A well-formed record.
    Record {
        /// The record.
        record: Record,
        /// Where it came from, e.g. `lis/results/2026-11-27.csv:12`.
        location: String,
    },
    /// Input that could not be read as a record.
    Malformed {
        /// Where it came from.
        location: String,
        /// Why it is malformed.
        reason: String,
        /// The raw input, as text (lossy), bounded in size.
        raw: String,
    },
    /// Rows of one file not decoded yet; each becomes a record or a malformed item where it
    /// is processed (see [`rows`]).
    Rows(RowBatch),
}

impl SourceItem {
    /// This item as records and malformed items, a batch of rows decoded in order.
    pub fn into_items(self) -> Vec<SourceItem> {
        match self {
            SourceItem::Rows(batch) => batch.items().collect(),
            one => vec![one],
        }
    }
}

/// The most raw text kept for one malformed item; the location points at the rest.
pub const MAX_RAW: usize = 4096;

/// Truncates raw text for a quarantine entry at a character boundary.
pub fn bounded_raw(mut raw: String) -> String {
    if raw.len() > MAX_RAW {
        let mut cut = MAX_RAW;
        while !raw.is_char_boundary(cut) {
            cut -= 1;
        }
        raw.truncate(cut);
        raw.push('…');
    }
    raw
}

/// A source that cannot be read at all: the run fails before any output is committed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A file or directory could not be read.
    #[error("source {source_name}: cannot read {path}")]
    Io {
        /// The DataSource.
        source_name: String,
        /// The file or directory.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The source's configuration cannot work (named field, reason).
    #[error("source {source_name}: {message}")]
    Config {
        /// The DataSource.
        source_name: String,
        /// What is wrong.
        message: String,
    },
    /// A database or server failed during the read.
    #[error("source {source_name}: {message}")]
    Remote {
        /// The DataSource.
        source_name: String,
        /// What failed (never credentials).
        message: String,
    },
}

/// A stream of items from one source, with what it has read so far.
pub trait RecordSource: Send {
    /// The next item, `None` at the end, or an error that fails the run.
    fn next_item(&mut self) -> Option<Result<SourceItem, SourceError>>;
    /// Bytes read from the underlying files or connections so far.
    fn bytes_read(&self) -> u64;
    /// The new watermark after the source is exhausted (incremental sources only).
    fn watermark(&self) -> Option<String> {
        None
    }
    /// What was read, for audit events (directory, table, base URL).
    fn describe(&self) -> String;
}

/// A byte counter shared between a reader and its source.
#[derive(Clone, Debug, Default)]
pub struct ByteCounter(Arc<AtomicU64>);

impl ByteCounter {
    /// Bytes counted so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Adds bytes.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}

/// A reader that counts the bytes read through it.
pub struct CountingReader<R> {
    inner: R,
    counter: ByteCounter,
}

impl<R: Read> CountingReader<R> {
    /// Wraps a reader.
    pub fn new(inner: R, counter: ByteCounter) -> Self {
        CountingReader { inner, counter }
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.add(n as u64);
        Ok(n)
    }
}

/// Whether a file name matches a glob of `*` (any run) and `?` (one character).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_like_a_shell() {
        for (p, n, want) in [
            ("*", "a.csv", true),
            ("*.csv", "a.csv", true),
            ("*.csv", "a.csv.bak", false),
            ("lab-??.csv", "lab-01.csv", true),
            ("lab-??.csv", "lab-1.csv", false),
            ("*-*.ndjson", "x-y-z.ndjson", true),
            ("", "", true),
            ("a", "", false),
        ] {
            assert_eq!(glob_match(p, n), want, "{p} vs {n}");
        }
    }

    #[test]
    fn raw_text_is_bounded_at_a_char_boundary() {
        let long = "中".repeat(MAX_RAW);
        let b = bounded_raw(long);
        assert!(b.len() <= MAX_RAW + 3);
        assert!(b.ends_with('…'));
    }
}
