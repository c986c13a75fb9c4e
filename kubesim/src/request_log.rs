//! The request log: one record per API request, queryable by tests and the admin endpoint.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// One API request as kubesim saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    /// When it arrived (RFC 3339, milliseconds).
    pub time: String,
    /// The Kubernetes verb: get, list, watch, create, update, patch, delete, deletecollection;
    /// or the lower-case HTTP method for non-resource URLs.
    pub verb: String,
    /// HTTP method.
    pub method: String,
    /// Request path (without query).
    pub path: String,
    /// Query string, if any.
    pub query: String,
    /// API group of the resource, if a resource URL.
    pub group: String,
    /// Plural resource, if a resource URL.
    pub resource: String,
    /// Subresource, if any.
    pub subresource: String,
    /// Namespace, if any.
    pub namespace: String,
    /// Object name, if any.
    pub name: String,
    /// `fieldManager` query parameter, if any.
    pub field_manager: String,
    /// `User-Agent` header.
    pub user_agent: String,
    /// HTTP status code of the response.
    pub code: u16,
}

impl RequestRecord {
    /// Whether this request changed (or tried to change) state.
    pub fn is_write(&self) -> bool {
        matches!(
            self.verb.as_str(),
            "create" | "update" | "patch" | "delete" | "deletecollection"
        )
    }
}

/// A bounded, thread-safe log of requests.
#[derive(Debug)]
pub struct RequestLog {
    records: Mutex<VecDeque<RequestRecord>>,
    capacity: usize,
}

impl RequestLog {
    /// A log keeping at most `capacity` records (oldest dropped first).
    pub fn new(capacity: usize) -> Self {
        RequestLog {
            records: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
        }
    }

    /// Appends a record.
    pub fn push(&self, r: RequestRecord) {
        let mut g = self.records.lock().unwrap_or_else(|p| p.into_inner());
        if g.len() >= self.capacity {
            g.pop_front();
        }
        g.push_back(r);
    }

    /// A copy of every record.
    pub fn snapshot(&self) -> Vec<RequestRecord> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Forgets every record.
    pub fn clear(&self) {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}
