//! Whether the Secrets a parent refers to exist: asked by metadata GET, remembered briefly.
//!
//! medplat does not list or watch Secrets (least privilege: it needs to know that a key
//! exists, never its value, and never every Secret of the cluster), so each reconcile asks the
//! API server. Many pipelines of a namespace share one key Secret, and a start-up reconciles
//! thousands of them: at 5,000 Pipelines that was ~22,000 GETs of a handful of Secrets. A
//! Secret seen to exist is therefore remembered for [`SEEN_FOR`]. Absence is never remembered,
//! so a Secret created after its parent is found at the parent's next reconcile. A deleted
//! Secret triggers no reconcile either way (there is no watch); it is found at the next
//! resync, which is longer than [`SEEN_FOR`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

/// How long a Secret seen to exist is taken to exist without asking again.
pub const SEEN_FOR: Duration = Duration::from_secs(30);

/// The Secrets recently seen to exist, by namespace and name.
#[derive(Default)]
pub struct SecretPresence {
    seen: Mutex<HashMap<(String, String), Instant>>,
}

impl SecretPresence {
    /// Whether Secret `namespace/name` exists: from memory if seen within [`SEEN_FOR`],
    /// otherwise by a metadata GET (the value is never fetched).
    pub async fn exists(
        &self,
        client: &Client,
        namespace: &str,
        name: &str,
    ) -> Result<bool, kube::Error> {
        let key = (namespace.to_string(), name.to_string());
        if self.seen_recently(&key, Instant::now()) {
            return Ok(true);
        }
        let found = Api::<Secret>::namespaced(client.clone(), namespace)
            .get_metadata_opt(name)
            .await?
            .is_some();
        if let Ok(mut seen) = self.seen.lock() {
            if found {
                seen.insert(key, Instant::now());
            } else {
                seen.remove(&key);
            }
        }
        Ok(found)
    }

    fn seen_recently(&self, key: &(String, String), now: Instant) -> bool {
        self.seen
            .lock()
            .ok()
            .and_then(|m| m.get(key).copied())
            .is_some_and(|at| now.saturating_duration_since(at) < SEEN_FOR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sighting_is_trusted_for_a_while_and_then_asked_again() {
        let presence = SecretPresence::default();
        let key = ("ns".to_string(), "hmac".to_string());
        let t0 = Instant::now();
        assert!(!presence.seen_recently(&key, t0), "never seen: ask");
        presence.seen.lock().unwrap().insert(key.clone(), t0);
        assert!(presence.seen_recently(&key, t0 + SEEN_FOR / 2));
        assert!(!presence.seen_recently(&key, t0 + SEEN_FOR));
        let other = ("other-ns".to_string(), "hmac".to_string());
        assert!(!presence.seen_recently(&other, t0), "per namespace");
    }
}
