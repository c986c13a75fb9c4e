//! Status writes that happen once per change, even when the cache lags behind.
//!
//! A reconcile compares the status it computed with the status in the parent cache. Right after
//! medplat writes a status, the cache still holds the old one until the watch delivers the
//! write; a reconcile triggered in that window (by a child the same reconcile applied) would
//! start from the old status (new transition times, a run request handled again) and write
//! again. The ledger remembers, per object, the status medplat last wrote and the
//! resourceVersions before and after that write:
//! - while the cached object is still at the version before, the reconcile starts from the
//!   status medplat wrote ([`StatusLedger::current`]);
//! - while it is at either version, nobody else has changed it since, and an equal status is
//!   not written again.
//!
//! Any other version (an edit by someone else) means the cache decides, as before.

use std::collections::HashMap;
use std::sync::Mutex;

use kube::api::Api;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::Result;
use crate::render::common::short_hash;

/// What medplat last wrote to an object's status.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Written {
    hash: String,
    body: String,
    before: Option<String>,
    after: Option<String>,
}

/// The status writes medplat made, by `kind/namespace/name`.
#[derive(Default)]
pub struct StatusLedger {
    written: Mutex<HashMap<String, Written>>,
}

impl StatusLedger {
    fn key<K: Resource<DynamicType = ()>>(object: &K) -> String {
        format!(
            "{}/{}/{}",
            K::kind(&()),
            object.meta().namespace.as_deref().unwrap_or_default(),
            object.meta().name.as_deref().unwrap_or_default()
        )
    }

    /// The status a reconcile of `object` starts from: what medplat last wrote when the cache
    /// has not caught up with that write yet, else the cached `status`.
    pub fn current<K, S>(&self, object: &K, status: Option<&S>) -> Option<S>
    where
        K: Resource<DynamicType = ()>,
        S: Clone + DeserializeOwned,
    {
        let rv = object.meta().resource_version.as_deref();
        let ours = self.written.lock().ok().and_then(|m| {
            m.get(&Self::key(object))
                .filter(|w| w.before.as_deref() == rv && w.after.as_deref() != rv)
                .map(|w| w.body.clone())
        });
        match ours.and_then(|body| serde_json::from_str(&body).ok()) {
            Some(written) => Some(written),
            None => status.cloned(),
        }
    }

    /// Whether `hash` is what medplat last wrote and the object (as cached, at
    /// `resource_version`) has not been changed by anyone since.
    fn already_written(&self, key: &str, hash: &str, resource_version: Option<&str>) -> bool {
        self.written.lock().ok().is_some_and(|m| {
            m.get(key).is_some_and(|w| {
                w.hash == hash
                    && (w.before.as_deref() == resource_version
                        || w.after.as_deref() == resource_version)
            })
        })
    }

    fn record(&self, key: String, written: Written) {
        if let Ok(mut m) = self.written.lock() {
            m.insert(key, written);
        }
    }

    /// Writes `status` to `object`'s status subresource, by server-side apply under
    /// `field_manager` (so fields medplat stops setting are removed), unless `current` (from
    /// [`StatusLedger::current`]) already is it, or medplat already wrote it and nobody changed
    /// the object since. Returns whether a write happened.
    pub async fn write_if_changed<K, S>(
        &self,
        api: &Api<K>,
        object: &K,
        field_manager: &str,
        current: Option<&S>,
        status: &S,
    ) -> Result<bool>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
        S: Serialize + PartialEq,
    {
        if current == Some(status) {
            return Ok(false);
        }
        let key = Self::key(object);
        let body = serde_json::to_string(status).unwrap_or_default();
        let hash = short_hash(&body);
        let before = object.resource_version();
        if self.already_written(&key, &hash, before.as_deref()) {
            return Ok(false);
        }
        let written =
            super::context::apply_status(api, &object.name_any(), field_manager, status).await?;
        self.record(
            key,
            Written {
                hash,
                body,
                before,
                after: written.resource_version(),
            },
        );
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_equal_status_is_skipped_only_while_nobody_else_wrote() {
        let ledger = StatusLedger::default();
        ledger.record(
            "Pipeline/ns/p".into(),
            Written {
                hash: "h1".into(),
                body: "{}".into(),
                before: Some("10".into()),
                after: Some("12".into()),
            },
        );
        assert!(
            ledger.already_written("Pipeline/ns/p", "h1", Some("10")),
            "the cache has not seen the write yet"
        );
        assert!(
            ledger.already_written("Pipeline/ns/p", "h1", Some("12")),
            "the cache holds medplat's own write"
        );
        assert!(
            !ledger.already_written("Pipeline/ns/p", "h1", Some("13")),
            "someone else wrote after medplat"
        );
        assert!(
            !ledger.already_written("Pipeline/ns/p", "h2", Some("12")),
            "a different status is written"
        );
        assert!(!ledger.already_written("Pipeline/ns/q", "h1", Some("10")));
    }
}
