//! What every reconciler shares: the client, caches, metrics, the event recorder, settings,
//! and the helpers for the status and event steps (write only on change).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::apply::{AppliedLedger, Applier};
use super::children::ChildStores;
use super::error::{Error, Result};
use super::last_run::FinishedRuns;
use super::metrics::Metrics;
use super::status_write::StatusLedger;
use crate::api::{AccessPolicy, DataSource, Pipeline, StorageTier};
use crate::render::settings::WorkloadSettings;

/// The field manager prefix; each controller appends its name.
pub const FIELD_MANAGER: &str = "medplat";

/// Operator-wide settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Images of medplat's workloads.
    pub workload: WorkloadSettings,
    /// Watch only this namespace (`None`: all namespaces).
    pub namespace: Option<String>,
    /// Timeout of reachability probes.
    pub probe_timeout: Duration,
    /// How often a healthy object is re-checked (probes, expiry, drift of external state).
    pub resync: Duration,
    /// The namespace the operator runs in; the Platform's namespaced children go there.
    pub operator_namespace: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            workload: WorkloadSettings::default(),
            namespace: None,
            probe_timeout: Duration::from_secs(3),
            resync: Duration::from_secs(300),
            operator_namespace: crate::render::platform::DEFAULT_NAMESPACE.to_string(),
        }
    }
}

/// Which parent caches have finished their first list.
///
/// `Store::wait_until_ready` wakes only the last task that polled it (a oneshot channel keeps a
/// single waker) and each controller already waits on its own store, so other readers (the
/// admission webhook, every reconcile) must not wait on it: they read or await these flags
/// instead, which wake every waiter.
#[derive(Clone, Debug)]
pub struct ParentsSynced {
    kinds: Arc<tokio::sync::watch::Sender<std::collections::BTreeSet<&'static str>>>,
}

impl Default for ParentsSynced {
    fn default() -> Self {
        ParentsSynced {
            kinds: Arc::new(tokio::sync::watch::Sender::new(Default::default())),
        }
    }
}

impl ParentsSynced {
    /// The parent kinds a complete view needs.
    pub const KINDS: [&'static str; 4] = ["StorageTier", "DataSource", "AccessPolicy", "Pipeline"];

    /// Records that `kind`'s cache has listed once (idempotent: a re-list repeats it).
    pub fn mark(&self, kind: &'static str) {
        self.kinds.send_if_modified(|k| k.insert(kind));
    }

    /// Whether every parent cache has listed once.
    pub fn all(&self) -> bool {
        Self::KINDS
            .iter()
            .all(|kind| self.kinds.borrow().contains(kind))
    }

    /// Waits until every parent cache has listed once.
    pub async fn wait(&self) {
        let mut rx = self.kinds.subscribe();
        let _ = rx
            .wait_for(|k| Self::KINDS.iter().all(|kind| k.contains(kind)))
            .await;
    }
}

/// The caches of the parent kinds, shared by the controllers that cross-reference them.
#[derive(Clone)]
pub struct ParentStores {
    /// StorageTiers.
    pub tiers: Store<kube::core::DeserializeGuard<StorageTier>>,
    /// DataSources.
    pub sources: Store<kube::core::DeserializeGuard<DataSource>>,
    /// AccessPolicies.
    pub policies: Store<kube::core::DeserializeGuard<AccessPolicy>>,
    /// Pipelines.
    pub pipelines: Store<kube::core::DeserializeGuard<Pipeline>>,
    /// Pipelines by the DataSources they read (see [`super::triggers::source_key`]).
    pub pipelines_by_source:
        Arc<super::cache_index::CacheIndex<kube::core::DeserializeGuard<Pipeline>>>,
    /// Which of them have listed once.
    pub synced: ParentsSynced,
}

/// Everything a reconcile needs.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Child caches.
    pub children: Arc<ChildStores>,
    /// Parent caches.
    pub parents: ParentStores,
    /// What medplat last applied.
    pub ledger: AppliedLedger,
    /// What medplat last wrote to each parent's status.
    pub statuses: StatusLedger,
    /// Finished pipeline runs already read.
    pub finished_runs: FinishedRuns,
    /// Referenced Secrets recently seen to exist.
    pub secrets: super::secret_presence::SecretPresence,
    /// Metrics.
    pub metrics: Metrics,
    /// Event recorder.
    pub recorder: Recorder,
    /// Audit events (JSON lines with `"audit": true`) for the log collector.
    pub audit: crate::api::audit::AuditEmitter,
    /// Settings.
    pub settings: Settings,
    /// Consecutive failures per object, for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// The last Warning event reason+message per object, so a condition that persists is
    /// reported once, not on every reconcile.
    last_event: Mutex<HashMap<String, String>>,
    /// Keys already seen by [`Context::first_sighting`] (e.g. finished Jobs whose counters were
    /// exported), so counters are never incremented twice for one run.
    sighted: Mutex<std::collections::HashSet<String>>,
}

impl Context {
    /// Builds the context.
    pub fn new(
        client: Client,
        children: Arc<ChildStores>,
        parents: ParentStores,
        metrics: Metrics,
        settings: Settings,
    ) -> Context {
        let reporter = Reporter {
            controller: "medplat".into(),
            instance: std::env::var("MEDPLAT_POD_NAME").ok(),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            audit: crate::api::audit::AuditEmitter::stdout(),
            client,
            children,
            parents,
            ledger: AppliedLedger::default(),
            statuses: StatusLedger::default(),
            finished_runs: FinishedRuns::default(),
            secrets: Default::default(),
            metrics,
            settings,
            failures: Mutex::new(HashMap::new()),
            last_event: Mutex::new(HashMap::new()),
            sighted: Mutex::new(std::collections::HashSet::new()),
        }
    }

    /// Waits until every parent and child cache has listed once, so "absent" means absent.
    pub async fn wait_synced(&self) {
        self.parents.synced.wait().await;
        self.children.wait_until_ready().await;
    }

    /// The apply routine under `controller`'s field manager.
    pub fn applier<'a>(&'a self, field_manager: &'a str) -> Applier<'a> {
        Applier {
            client: &self.client,
            stores: &self.children,
            ledger: &self.ledger,
            field_manager,
        }
    }

    /// Records a failure of `key` and returns how long to wait before retrying: 1s doubling
    /// to 5 minutes, so a broken object never hot-loops.
    pub fn backoff(&self, key: &str) -> Duration {
        let n = self
            .failures
            .lock()
            .map(|mut m| {
                let e = m.entry(key.to_string()).or_insert(0);
                *e = e.saturating_add(1);
                *e
            })
            .unwrap_or(1);
        let secs = 1u64
            .checked_shl(n.saturating_sub(1).min(9))
            .unwrap_or(300)
            .min(300);
        Duration::from_secs(secs)
    }

    /// Clears the failure count of `key` after a successful reconcile.
    pub fn succeeded(&self, key: &str) {
        if let Ok(mut m) = self.failures.lock() {
            m.remove(key);
        }
    }

    /// Publishes an event about `object` unless the same reason and message was the last
    /// event published for it. Event failures are logged, never fatal: events are best effort.
    /// Returns whether this was a new occurrence (so callers can report it once elsewhere too).
    pub async fn event(
        &self,
        object: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) -> bool {
        let key = event_key(object);
        let fingerprint = format!("{reason}\u{0}{note}");
        let repeated = self
            .last_event
            .lock()
            .map(|mut m| {
                m.insert(key.clone(), fingerprint.clone()).as_deref() == Some(fingerprint.as_str())
            })
            .unwrap_or(false);
        if repeated {
            return false;
        }
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(truncate(&note, 1000)),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, object).await {
            tracing::warn!(object = %key, error = %e, "cannot publish event");
        }
        true
    }

    /// True the first time `key` is seen by this process.
    pub fn first_sighting(&self, key: &str) -> bool {
        self.sighted
            .lock()
            .map(|mut s| s.insert(key.to_string()))
            .unwrap_or(false)
    }

    /// Whether the last event published for `object` had this reason and note.
    pub fn already_reported(&self, object: &ObjectReference, reason: &str, note: &str) -> bool {
        let key = event_key(object);
        let fingerprint = format!("{reason}\u{0}{note}");
        self.last_event
            .lock()
            .map(|m| m.get(&key) == Some(&fingerprint))
            .unwrap_or(false)
    }

    /// Forgets the last event of an object, so the next occurrence is reported again.
    pub fn clear_event(&self, object: &ObjectReference) {
        let key = event_key(object);
        if let Ok(mut m) = self.last_event.lock() {
            m.remove(&key);
        }
    }
}

fn event_key(object: &ObjectReference) -> String {
    format!(
        "{}/{}/{}",
        object.kind.as_deref().unwrap_or_default(),
        object.namespace.as_deref().unwrap_or_default(),
        object.name.as_deref().unwrap_or_default()
    )
}

/// The current time as a `metav1.Time`.
pub fn now() -> Time {
    Time(jiff::Timestamp::now())
}

/// Truncates a message to at most `max` bytes on a character boundary.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Writes `status` to the object's status subresource when it differs from `current`, by
/// server-side apply under `field_manager` so fields medplat stops setting are removed.
/// Returns whether a write happened.
pub async fn patch_status_if_changed<K, S>(
    api: &Api<K>,
    name: &str,
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
    apply_status(api, name, field_manager, status).await?;
    Ok(true)
}

/// Writes `status` to the object's status subresource by server-side apply under
/// `field_manager`, unconditionally, and returns the object as written.
pub async fn apply_status<K, S>(
    api: &Api<K>,
    name: &str,
    field_manager: &str,
    status: &S,
) -> Result<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(field_manager).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|e| Error::kube("patch status of", format!("{} {name}", K::kind(&())), e))
}
