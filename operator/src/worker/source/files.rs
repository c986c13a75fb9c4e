//! The `files` connector (and the landed messages of an `hl7v2` listener): every file matching
//! the pattern in one directory of a volume tier (or, through [`FileOpener`], under one prefix
//! of an object store), read in name order so runs are deterministic.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::csv::CsvRecords;
use super::hl7_file::Hl7Records;
use super::ndjson::NdjsonRecords;
use super::{ByteCounter, CountingReader, RecordSource, SourceError, SourceItem, glob_match};
use crate::api::data_source::{Charset, FileFormat};

/// The items of one file.
pub type ItemIter = Box<dyn Iterator<Item = Result<SourceItem, SourceError>> + Send>;

/// Where a files source's files come from: a directory, or an object-store prefix.
pub trait FileOpener: Send {
    /// One file: a path, an object name.
    type File: Send;
    /// Opens `file` as items, counting the bytes read into `counter`.
    fn open(&self, file: &Self::File, counter: &ByteCounter) -> Result<ItemIter, SourceError>;
}

/// The files of one source, read one after another in name order so runs are deterministic.
pub struct FileSequence<O: FileOpener> {
    opener: O,
    label: String,
    files: std::vec::IntoIter<O::File>,
    current: Option<ItemIter>,
    counter: ByteCounter,
}

impl<O: FileOpener> FileSequence<O> {
    /// Reads `files` (already in order) through `opener`; `label` describes them in audits.
    pub fn new(opener: O, label: &str, files: Vec<O::File>) -> Self {
        FileSequence {
            opener,
            label: label.trim_end_matches('/').to_string(),
            files: files.into_iter(),
            current: None,
            counter: ByteCounter::default(),
        }
    }
}

impl<O: FileOpener> RecordSource for FileSequence<O> {
    fn next_item(&mut self) -> Option<Result<SourceItem, SourceError>> {
        loop {
            if let Some(cur) = self.current.as_mut() {
                match cur.next() {
                    Some(item) => return Some(item),
                    None => self.current = None,
                }
            }
            let file = self.files.next()?;
            match self.opener.open(&file, &self.counter) {
                Ok(it) => self.current = Some(it),
                Err(e) => return Some(Err(e)),
            }
        }
    }

    fn bytes_read(&self) -> u64 {
        self.counter.get()
    }

    fn describe(&self) -> String {
        self.label.clone()
    }
}

/// The files of one directory of a volume tier.
pub type FileSource = FileSequence<Directory>;

/// Opens files of one directory.
pub struct Directory {
    source_name: String,
    label: String,
    layout: FileLayout,
}

impl FileSequence<Directory> {
    /// Opens the directory `dir` (shown as `label` in locations) and lists the files matching
    /// `pattern`, read as `layout` says. A missing directory is an error: the run fails before
    /// any output.
    pub fn open(
        source_name: &str,
        dir: &Path,
        label: &str,
        pattern: &str,
        layout: FileLayout,
    ) -> Result<FileSource, SourceError> {
        let io_err = |source| SourceError::Io {
            source_name: source_name.to_string(),
            path: dir.display().to_string(),
            source,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io_err)? {
            let entry = entry.map_err(io_err)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            // Hidden files are in-flight writes (the MLLP listener lands via a temp name).
            if name.starts_with('.') || !glob_match(pattern, name) {
                continue;
            }
            if entry.file_type().map_err(io_err)?.is_file() {
                files.push(entry.path());
            }
        }
        files.sort();
        let opener = Directory {
            source_name: source_name.to_string(),
            label: label.trim_end_matches('/').to_string(),
            layout,
        };
        Ok(FileSequence::new(opener, label, files))
    }
}

impl FileOpener for Directory {
    type File = PathBuf;

    fn open(&self, path: &PathBuf, counter: &ByteCounter) -> Result<ItemIter, SourceError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let file = File::open(path).map_err(|source| SourceError::Io {
            source_name: self.source_name.clone(),
            path: path.display().to_string(),
            source,
        })?;
        Ok(self.layout.items(
            CountingReader::new(file, counter.clone()),
            format!("{}/{name}", self.label),
            self.source_name.clone(),
        ))
    }
}

/// How the files of a `files` connector are laid out: format, charset and CSV delimiter.
#[derive(Clone, Copy, Debug)]
pub struct FileLayout {
    /// The file format.
    pub format: FileFormat,
    /// The charset of the text.
    pub charset: Charset,
    /// The CSV delimiter.
    pub delimiter: u8,
}

impl FileLayout {
    /// The layout of a connector; a delimiter that is not one ASCII character is refused.
    pub fn new(
        source_name: &str,
        format: FileFormat,
        charset: Charset,
        delimiter: Option<&str>,
    ) -> Result<Self, SourceError> {
        let delimiter = match delimiter {
            None => b',',
            Some(d) if d.len() == 1 => d.as_bytes()[0],
            Some(d) => {
                return Err(SourceError::Config {
                    source_name: source_name.to_string(),
                    message: format!("CSV delimiter {d:?} must be one ASCII character"),
                });
            }
        };
        Ok(FileLayout {
            format,
            charset,
            delimiter,
        })
    }

    /// The items of one file read from `input`, labelled `label` in locations.
    pub fn items(
        &self,
        input: impl Read + Send + 'static,
        label: String,
        source_name: String,
    ) -> ItemIter {
        let input = BufReader::with_capacity(256 * 1024, input);
        match self.format {
            FileFormat::Csv => Box::new(CsvRecords::new(
                input,
                self.charset,
                self.delimiter,
                label,
                source_name,
            )),
            FileFormat::Ndjson | FileFormat::FhirNdjson => Box::new(NdjsonRecords::new(
                input,
                self.charset,
                self.format == FileFormat::FhirNdjson,
                label,
                source_name,
            )),
            FileFormat::Hl7v2 => Box::new(Hl7Records::new(input, self.charset, label, source_name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_matching_files_in_name_order_and_skips_hidden_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.ndjson"), "{\"n\":2}\n").unwrap();
        std::fs::write(dir.path().join("a.ndjson"), "{\"n\":1}\n").unwrap();
        std::fs::write(dir.path().join(".c.ndjson"), "{\"n\":3}\n").unwrap();
        std::fs::write(dir.path().join("d.txt"), "x").unwrap();
        let mut src = FileSource::open(
            "s",
            dir.path(),
            "t/p",
            "*.ndjson",
            FileLayout::new("s", FileFormat::Ndjson, Charset::Utf8, None).unwrap(),
        )
        .unwrap();
        let mut seen = Vec::new();
        while let Some(item) = src.next_item() {
            for item in item.unwrap().into_items() {
                match item {
                    SourceItem::Record { record, location } => {
                        seen.push((record["n"].clone(), location))
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
        assert_eq!(
            seen,
            vec![
                (1.into(), "t/p/a.ndjson:1".to_string()),
                (2.into(), "t/p/b.ndjson:1".to_string())
            ]
        );
        assert_eq!(src.bytes_read(), 16);
    }

    #[test]
    fn a_missing_directory_fails_before_reading() {
        let err = FileSource::open(
            "lis",
            Path::new("/nonexistent/x"),
            "t/x",
            "*",
            FileLayout::new("lis", FileFormat::Csv, Charset::Utf8, None).unwrap(),
        )
        .err()
        .unwrap();
        assert!(
            err.to_string()
                .contains("source lis: cannot read /nonexistent/x"),
            "{err}"
        );
    }
}
