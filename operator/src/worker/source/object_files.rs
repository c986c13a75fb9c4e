//! The `files` connector on an object-store tier: every object matching the pattern directly
//! under one prefix, in name order, each streamed through the same readers as a volume's files.

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use super::files::{FileLayout, FileOpener, FileSequence, ItemIter};
use super::{ByteCounter, CountingReader, SourceError, glob_match};
use crate::worker::store::object_error_text;

/// The objects under one prefix of an object store, read as files.
pub type ObjectFileSource = FileSequence<ObjectPrefix>;

/// Opens objects of one object store.
pub struct ObjectPrefix {
    source_name: String,
    label: String,
    layout: FileLayout,
    store: Arc<dyn ObjectStore>,
    runtime: tokio::runtime::Handle,
}

impl FileSequence<ObjectPrefix> {
    /// Lists the objects directly under `prefix` (shown as `label` in locations) whose names
    /// match `pattern`; names starting with `.` are in-flight uploads and are skipped. A
    /// prefix with no objects reads as no files, as an empty directory does.
    pub fn open(
        source_name: &str,
        store: Arc<dyn ObjectStore>,
        runtime: tokio::runtime::Handle,
        prefix: &str,
        label: &str,
        pattern: &str,
        layout: FileLayout,
    ) -> Result<ObjectFileSource, SourceError> {
        let prefix = ObjectPath::from(prefix.trim_matches('/'));
        let listed = runtime
            .block_on(store.list_with_delimiter(Some(&prefix)))
            .map_err(|e| SourceError::Remote {
                source_name: source_name.to_string(),
                message: format!("cannot list {label}: {}", object_error_text(&e)),
            })?;
        let mut objects: Vec<ObjectPath> = listed
            .objects
            .into_iter()
            .map(|o| o.location)
            .filter(|p| {
                p.filename()
                    .is_some_and(|n| !n.starts_with('.') && glob_match(pattern, n))
            })
            .collect();
        objects.sort();
        let opener = ObjectPrefix {
            source_name: source_name.to_string(),
            label: label.trim_end_matches('/').to_string(),
            layout,
            store,
            runtime,
        };
        Ok(FileSequence::new(opener, label, objects))
    }
}

impl FileOpener for ObjectPrefix {
    type File = ObjectPath;

    fn open(&self, path: &ObjectPath, counter: &ByteCounter) -> Result<ItemIter, SourceError> {
        let got = self
            .runtime
            .block_on(self.store.get(path))
            .map_err(|e| SourceError::Remote {
                source_name: self.source_name.clone(),
                message: format!("cannot read {path}: {}", object_error_text(&e)),
            })?;
        let body = ObjectBody {
            stream: got.into_stream(),
            chunk: Bytes::new(),
            runtime: self.runtime.clone(),
        };
        Ok(self.layout.items(
            CountingReader::new(body, counter.clone()),
            format!("{}/{}", self.label, path.filename().unwrap_or_default()),
            self.source_name.clone(),
        ))
    }
}

/// An object's bytes as a blocking reader: chunks are fetched as the reader needs them, so an
/// object is never held whole in memory.
struct ObjectBody {
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    chunk: Bytes,
    runtime: tokio::runtime::Handle,
}

impl Read for ObjectBody {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.runtime.block_on(self.stream.next()) {
                None => return Ok(0),
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::data_source::{Charset, FileFormat};
    use crate::worker::source::{RecordSource, SourceItem};

    #[test]
    fn reads_matching_objects_under_the_prefix_in_name_order() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        for (path, body) in [
            ("lab/in/b.csv", "id,v\n3,z\n"),
            ("lab/in/a.csv", "id,v\n1,x\n2,y\n"),
            ("lab/in/.c.csv", "id,v\n9,hidden\n"),
            ("lab/in/sub/d.csv", "id,v\n9,nested\n"),
            ("lab/in/e.txt", "not csv"),
            ("lab/other/f.csv", "id,v\n9,elsewhere\n"),
        ] {
            rt.block_on(store.put(&path.into(), Bytes::from(body).into()))
                .unwrap();
        }
        let layout = FileLayout::new("lis", FileFormat::Csv, Charset::Utf8, None).unwrap();
        let mut src = ObjectFileSource::open(
            "lis",
            store,
            rt.handle().clone(),
            "lab/in/",
            "lake/lab/in",
            "*.csv",
            layout,
        )
        .unwrap();
        let mut seen = Vec::new();
        while let Some(item) = src.next_item() {
            for item in item.unwrap().into_items() {
                let SourceItem::Record { record, location } = item else {
                    panic!("{item:?}")
                };
                seen.push(format!("{} {location}", record["v"].as_str().unwrap()));
            }
        }
        assert_eq!(
            seen,
            [
                "x lake/lab/in/a.csv:record 1",
                "y lake/lab/in/a.csv:record 2",
                "z lake/lab/in/b.csv:record 1"
            ]
        );
        assert_eq!(src.bytes_read(), 22, "a.csv and b.csv only");
    }
}
