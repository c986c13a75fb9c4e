//! Runs an async producer (a database cursor, an HTTP pager) on the runtime and hands its items
//! to the synchronous pipeline through a bounded channel, so a slow pipeline slows the reader
//! instead of filling memory.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::{ByteCounter, RecordSource, SourceError, SourceItem};

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
