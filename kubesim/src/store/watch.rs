//! Starting watches: replay from the history window, or synthetic ADDED events for current state.
//!
//! See <https://kubernetes.io/docs/reference/using-api/api-concepts/#semantics-for-watch>:
//! an unset or `0` resourceVersion starts with synthetic ADDED events for every object; an
//! exact resourceVersion replays what happened after it, or fails with 410 Gone when the
//! window no longer reaches back that far.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::broadcast;

use super::{Store, Table};
use crate::registry::StorageKey;

/// The type of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Created (or synthetic initial state).
    Added,
    /// Changed.
    Modified,
    /// Removed.
    Deleted,
}

impl EventType {
    /// The wire name (`ADDED`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change to one object.
#[derive(Debug, Clone)]
pub struct WatchEvent {
    /// The resourceVersion of the change.
    pub rv: u64,
    /// What happened.
    pub kind: EventType,
    /// The object after the change (for DELETED, its last state).
    pub object: Arc<Value>,
    /// The object before the change, so selector watches can turn MODIFIED into ADDED/DELETED.
    pub prev: Option<Arc<Value>>,
    /// The object's JSON, encoded once and shared by every watcher that serves it unconverted.
    pub encoded: std::sync::OnceLock<bytes::Bytes>,
}

impl WatchEvent {
    /// An event for a change.
    pub fn new(rv: u64, kind: EventType, object: Arc<Value>, prev: Option<Arc<Value>>) -> Self {
        WatchEvent {
            rv,
            kind,
            object,
            prev,
            encoded: std::sync::OnceLock::new(),
        }
    }

    /// The object's JSON (encoded on first use).
    pub fn encoded(&self) -> &bytes::Bytes {
        self.encoded.get_or_init(|| {
            bytes::Bytes::from(serde_json::to_vec(&*self.object).unwrap_or_default())
        })
    }
}

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchFrom {
    /// Synthetic ADDED events for the current state, then changes.
    CurrentState,
    /// Changes after this resourceVersion.
    After(u64),
}

/// A started watch: events to send first, then the live channel.
#[derive(Debug)]
pub struct WatchStart {
    /// Events to deliver before anything from `rx`.
    pub initial: Vec<Arc<WatchEvent>>,
    /// Live events (all of which are newer than `initial`).
    pub rx: broadcast::Receiver<Arc<WatchEvent>>,
    /// The store's resourceVersion when the watch started.
    pub rv: u64,
}

/// The requested resourceVersion is older than the watch window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too old resource version: {requested} ({oldest})")]
pub struct TooOld {
    /// What the client asked for.
    pub requested: u64,
    /// The oldest resourceVersion still watchable.
    pub oldest: u64,
}

impl Store {
    /// Starts a watch on one storage (all namespaces; callers filter).
    pub fn watch(&self, storage: &StorageKey, from: WatchFrom) -> Result<WatchStart, TooOld> {
        let mut inner = self.lock();
        let rv = inner.rv;
        let table = inner
            .tables
            .entry(storage.clone())
            .or_insert_with(Table::new);
        let rx = table.tx.subscribe();
        let initial = match from {
            WatchFrom::CurrentState => table
                .objects
                .values()
                .map(|o| {
                    Arc::new(WatchEvent::new(
                        super::rv_of(o),
                        EventType::Added,
                        o.clone(),
                        None,
                    ))
                })
                .collect(),
            WatchFrom::After(requested) => {
                if requested < table.window_start {
                    return Err(TooOld {
                        requested,
                        oldest: table.window_start + 1,
                    });
                }
                table
                    .history
                    .iter()
                    .filter(|e| e.rv > requested)
                    .cloned()
                    .collect()
            }
        };
        Ok(WatchStart { initial, rx, rv })
    }

    /// Sends a no-op through every channel so that watch loops look at fault flags promptly.
    pub fn wake_watchers(&self) {
        self.changes.send_modify(|_| {});
    }
}
