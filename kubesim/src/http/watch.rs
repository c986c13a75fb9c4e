//! Watch streams: newline-delimited `WatchEvent` JSON with selectors, bookmarks, initial-events
//! bookmarks, timeouts and fault-injected closes.
//!
//! Reproduces <https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes>,
//! `#watch-bookmarks`, `#streaming-lists` (`sendInitialEvents` ending in a bookmark annotated
//! `k8s.io/initial-events-end`), and the selector semantics of watches: an object that stops
//! matching is reported DELETED, one that starts matching ADDED.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::time::Instant;

use super::Shared;
use super::table::{IncludeObject, table};
use crate::convert;
use crate::registry::ResourceType;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::store::{EventType, WatchEvent, WatchStart};

/// What a watch filters and how it reports.
#[derive(Debug, Clone)]
pub struct WatchParams {
    /// The served type.
    pub rt: Arc<ResourceType>,
    /// Restrict to one namespace.
    pub namespace: Option<String>,
    /// Label selector.
    pub labels: LabelSelector,
    /// Field selector.
    pub fields: FieldSelector,
    /// `allowWatchBookmarks`.
    pub bookmarks: bool,
    /// `sendInitialEvents=true`: end the initial events with an annotated bookmark.
    pub initial_events_end: bool,
    /// `timeoutSeconds`.
    pub timeout: Option<Duration>,
    /// Render objects as Table rows.
    pub table: Option<IncludeObject>,
    /// Render objects as `PartialObjectMetadata`.
    pub metadata_only: bool,
}

struct State {
    shared: Arc<Shared>,
    /// The served form is the stored form (no conversion, no copy).
    identity: bool,
    params: WatchParams,
    initial: VecDeque<Arc<WatchEvent>>,
    rx: tokio::sync::broadcast::Receiver<Arc<WatchEvent>>,
    start_rv: u64,
    last_rv: u64,
    pending: VecDeque<Bytes>,
    announced_initial_end: bool,
    bookmark: tokio::time::Interval,
    epoch: tokio::sync::watch::Receiver<u64>,
    deadline: Option<Instant>,
    done: bool,
}

fn line(kind: &str, object: Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

/// The ERROR event a watch from a too-old resourceVersion receives (HTTP 200, then this).
pub fn gone_event(message: &str) -> Bytes {
    line(
        "ERROR",
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": "Expired", "code": 410}),
    )
}

impl State {
    fn matches(&self, obj: &Value) -> bool {
        if let Some(ns) = &self.params.namespace
            && obj.pointer("/metadata/namespace").and_then(Value::as_str) != Some(ns.as_str())
        {
            return false;
        }
        if self.identity {
            return self.params.labels.matches_object(obj) && self.params.fields.matches(obj);
        }
        let served = convert::to_served(&self.params.rt, obj);
        self.params.labels.matches_object(&served) && self.params.fields.matches(&served)
    }

    /// The wire line for an event, serialising the stored object without copying it when the
    /// served form is the stored form.
    fn render_line(&self, kind: &str, ev: &WatchEvent) -> Bytes {
        let obj: &Value = &ev.object;
        if self.params.metadata_only {
            return line(kind, super::table::partial(obj));
        }
        match self.params.table {
            Some(include) => {
                let served = convert::to_served(&self.params.rt, obj);
                let rv = obj
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                line(
                    kind,
                    table(
                        &self.params.rt,
                        std::slice::from_ref(&served),
                        rv,
                        None,
                        include,
                    ),
                )
            }
            None if self.identity => {
                let encoded = ev.encoded();
                let mut v = Vec::with_capacity(encoded.len() + 40);
                v.extend_from_slice(b"{\"type\":\"");
                v.extend_from_slice(kind.as_bytes());
                v.extend_from_slice(b"\",\"object\":");
                v.extend_from_slice(encoded);
                v.extend_from_slice(b"}\n");
                Bytes::from(v)
            }
            None => line(kind, convert::to_served(&self.params.rt, obj)),
        }
    }

    /// Queues the wire form of an event if it passes the filters.
    fn push_event(&mut self, ev: &WatchEvent) {
        self.last_rv = self.last_rv.max(ev.rv);
        let now = self.matches(&ev.object);
        let before = ev.prev.as_deref().is_some_and(|p| self.matches(p));
        let kind = match ev.kind {
            EventType::Added if now => Some("ADDED"),
            EventType::Modified if now && before => Some("MODIFIED"),
            EventType::Modified if now => Some("ADDED"),
            EventType::Modified if before => Some("DELETED"),
            EventType::Deleted if now || before => Some("DELETED"),
            _ => None,
        };
        if let Some(k) = kind {
            let b = self.render_line(k, ev);
            self.pending.push_back(b);
        }
    }

    fn bookmark_line(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        line(
            "BOOKMARK",
            json!({"kind": self.params.rt.kind, "apiVersion": self.params.rt.api_version(), "metadata": meta}),
        )
    }

    /// Moves everything already in the channel into `pending`; false when the watch must end.
    fn drain(&mut self) -> bool {
        loop {
            match self.rx.try_recv() {
                Ok(ev) => self.push_event(&ev),
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Lagged(_)) | Err(TryRecvError::Closed) => return false,
            }
        }
    }
}

/// Builds the body stream of a watch.
pub fn stream(
    shared: Arc<Shared>,
    params: WatchParams,
    start: WatchStart,
) -> impl Stream<Item = Bytes> + Send {
    let interval = shared.bookmark_interval.max(Duration::from_millis(10));
    let mut bookmark = tokio::time::interval_at(Instant::now() + interval, interval);
    bookmark.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let epoch = shared.faults.watch_epoch();
    let deadline = params.timeout.map(|t| Instant::now() + t);
    let state = State {
        identity: convert::is_identity(&params.rt),
        epoch,
        shared,
        initial: start.initial.into_iter().collect(),
        rx: start.rx,
        start_rv: start.rv,
        last_rv: 0,
        pending: VecDeque::new(),
        announced_initial_end: !params.initial_events_end,
        bookmark,
        deadline,
        done: false,
        params,
    };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(b) = st.pending.pop_front() {
                return Some((b, st));
            }
            if st.done {
                return None;
            }
            if let Some(ev) = st.initial.pop_front() {
                st.push_event(&ev);
                continue;
            }
            if !st.announced_initial_end {
                st.announced_initial_end = true;
                st.last_rv = st.last_rv.max(st.start_rv);
                let b = st.bookmark_line(st.start_rv, true);
                st.pending.push_back(b);
                continue;
            }
            let sleep_deadline = st
                .deadline
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(86400));
            tokio::select! {
                received = st.rx.recv() => match received {
                    Ok(ev) => st.push_event(&ev),
                    // A watcher that fell too far behind is closed; the client resumes from its
                    // last resourceVersion, as it would after a real server's watch cache overflow.
                    Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => st.done = true,
                },
                _ = st.bookmark.tick(), if st.params.bookmarks => {
                    let rv = st.shared.objects.store().current_rv();
                    if st.drain() {
                        let rv = rv.max(st.last_rv);
                        st.last_rv = rv;
                        let b = st.bookmark_line(rv, false);
                        st.pending.push_back(b);
                    } else {
                        st.done = true;
                    }
                },
                _ = st.epoch.changed() => st.done = true,
                _ = tokio::time::sleep_until(sleep_deadline) => st.done = true,
            }
        }
    })
}
