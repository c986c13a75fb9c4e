//! Runs an async producer (a database cursor, an HTTP pager) on the runtime and hands its items
//! to the synchronous pipeline through a bounded channel, so a slow pipeline slows the reader
//! instead of filling memory.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::ndjson::NdjsonRowDecoder;
use super::rows::RowBatch;
use super::{ByteCounter, RecordSource, SourceError, SourceItem};
use crate::api::data_source::Charset;

/// Records in flight between a reader task that sends one record at a time and the pipeline.
pub const RECORDS_IN_FLIGHT: usize = 1024;

/// Batches of rows in flight between a reader task that sends batches and the pipeline.
pub const BATCHES_IN_FLIGHT: usize = 4;

/// What a producer gets to report into.
#[derive(Clone)]
pub struct Producer {
    tx: mpsc::Sender<Result<SourceItem, SourceError>>,
    /// Bytes read from the network.
    pub bytes: ByteCounter,
    watermark: Arc<Mutex<Option<String>>>,
}

impl Producer {
    /// Sends one item; `false` when the pipeline has stopped listening.
    pub async fn send(&self, item: Result<SourceItem, SourceError>) -> bool {
        self.tx.send(item).await.is_ok()
    }

    /// Records the watermark reached so far.
    pub fn set_watermark(&self, w: Option<String>) {
        if let Ok(mut g) = self.watermark.lock() {
            *g = w;
        }
    }
}

/// Rows as JSON text, gathered into batches that the worker threads parse like NDJSON lines:
/// one channel hand-off per batch rather than per row (the database connectors).
pub struct JsonLineBatches {
    decoder: Arc<NdjsonRowDecoder>,
    location: Arc<str>,
    batch: RowBatch,
}

impl JsonLineBatches {
    /// Batches of rows located as `<label>#<row number>`.
    pub fn new(label: &str) -> Self {
        let decoder = Arc::new(NdjsonRowDecoder::new(Charset::Utf8, false));
        let location: Arc<str> = format!("{label}#").into();
        let batch = RowBatch::new(decoder.clone(), location.clone());
        JsonLineBatches {
            decoder,
            location,
            batch,
        }
    }

    /// Adds row `number`, sending the batch once it is full; `false` when the pipeline has
    /// stopped listening.
    pub async fn push(&mut self, producer: &Producer, number: u64, json: &[u8]) -> bool {
        self.batch.push_line(number, json);
        !self.batch.is_full() || self.send(producer).await
    }

    /// Sends the rows gathered so far, if any (before an item that must follow them, and at
    /// the end); `false` when the pipeline has stopped listening.
    pub async fn send(&mut self, producer: &Producer) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        let fresh = RowBatch::new(self.decoder.clone(), self.location.clone());
        let full = std::mem::replace(&mut self.batch, fresh);
        producer.send(Ok(SourceItem::Rows(full))).await
    }
}

/// A [`RecordSource`] fed by an async producer task.
pub struct ChannelSource {
    rx: mpsc::Receiver<Result<SourceItem, SourceError>>,
    bytes: ByteCounter,
    watermark: Arc<Mutex<Option<String>>>,
    description: String,
}

impl ChannelSource {
    /// Spawns `produce` on `runtime` with at most `depth` items in flight; its error, if any,
    /// becomes the last item.
    pub fn spawn<F, Fut>(
        runtime: &tokio::runtime::Handle,
        description: String,
        depth: usize,
        produce: F,
    ) -> Self
    where
        F: FnOnce(Producer) -> Fut,
        Fut: Future<Output = Result<(), SourceError>> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(depth.max(1));
        let producer = Producer {
            tx: tx.clone(),
            bytes: ByteCounter::default(),
            watermark: Arc::new(Mutex::new(None)),
        };
        let bytes = producer.bytes.clone();
        let watermark = producer.watermark.clone();
        let fut = produce(producer);
        runtime.spawn(async move {
            if let Err(e) = fut.await {
                let _ = tx.send(Err(e)).await;
            }
        });
        ChannelSource {
            rx,
            bytes,
            watermark,
            description,
        }
    }
}

impl RecordSource for ChannelSource {
    fn next_item(&mut self) -> Option<Result<SourceItem, SourceError>> {
        self.rx.blocking_recv()
    }

    fn bytes_read(&self) -> u64 {
        self.bytes.get()
    }

    fn watermark(&self) -> Option<String> {
        self.watermark.lock().ok().and_then(|g| g.clone())
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}
