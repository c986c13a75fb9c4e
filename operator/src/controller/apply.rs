//! The one shared routine that brings children to their desired state: server-side apply under
//! the controller's field manager with `force`, skipping children that are unchanged since
//! medplat applied them, then pruning children that are no longer desired.
//!
//! "Unchanged" means the child carries the hash of the desired object in
//! `medplat.io/applied-hash` and its generation (or resourceVersion, for kinds without one) is
//! the one medplat saw after its own last apply. An edit by anyone else moves the generation
//! or resourceVersion, so drift is corrected; an idle reconcile writes nothing.
//!
//! The cache learns of medplat's own writes a moment later, by watch. A reconcile that follows
//! straight on another (the first one's earlier children woke it) would otherwise see the last
//! child it just wrote as missing or old and write it again: at 5,000 Pipelines that doubled
//! the CronJob writes. So a child medplat applied with the same hash within
//! [`CACHE_LAG_GRACE`], which the cache does not show yet, is left alone, and the reconcile
//! comes back after the grace ([`ApplyOutcome::requeue_within`]) in case it was deleted meanwhile.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::Client;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams,
};
use serde_json::Value;

use super::children::{CachedChild, ChildStores};
use super::error::{Error, Result};
use crate::render::Child;
use crate::render::common::short_hash;

/// The annotation holding the hash of the object medplat applied.
pub const APPLIED_HASH: &str = "medplat.io/applied-hash";

/// What the apply routine did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// Children written.
    pub applied: Vec<String>,
    /// Children already in the desired state.
    pub unchanged: usize,
    /// Children deleted because they are no longer desired.
    pub pruned: Vec<String>,
    /// Children left alone because medplat applied them just now and the cache does not show
    /// it yet.
    pub awaiting_cache: usize,
}

impl ApplyOutcome {
    /// When the parent must be reconciled again at the latest: `after`, or sooner when a child
    /// was awaiting the cache, so a child deleted during the grace is not lost until resync.
    pub fn requeue_within(&self, after: Duration) -> Duration {
        if self.awaiting_cache > 0 {
            after.min(CACHE_LAG_GRACE)
        } else {
            after
        }
    }
}

/// How long medplat trusts its own recent apply of a child the cache does not show yet. At
/// 5,000 Pipelines the child watches ran more than 5 s behind the writes during start-up (468
/// CronJobs written again when a 5 s grace ran out); 30 s covers that, and a child deleted
/// right after its creation still comes back within it.
pub const CACHE_LAG_GRACE: Duration = Duration::from_secs(30);

/// medplat's last apply of one child: what the server returned, the hash applied, and when.
struct LastApply {
    marker: String,
    hash: Option<String>,
    at: Instant,
}

/// A child's identity: kind, namespace, name.
type ChildKey = (String, Option<String>, String);

/// What medplat saw of each child after its own last apply: generation or resourceVersion.
#[derive(Default)]
pub struct AppliedLedger {
    seen: Mutex<HashMap<ChildKey, LastApply>>,
    /// Shared children (tier claims) medplat created recently, which the cache may not show yet.
    created: Mutex<HashMap<ChildKey, Instant>>,
}

/// How long a shared child medplat created is trusted to exist while the cache does not show
/// it yet. Past this, the cache decides again, so a claim deleted later is created again.
const CREATED_GRACE: Duration = Duration::from_secs(60);

impl AppliedLedger {
    fn key(kind: &str, ns: Option<&str>, name: &str) -> ChildKey {
        (kind.to_string(), ns.map(str::to_string), name.to_string())
    }

    fn record(
        &self,
        kind: &str,
        ns: Option<&str>,
        name: &str,
        marker: String,
        hash: Option<String>,
    ) {
        if let Ok(mut m) = self.seen.lock() {
            m.insert(
                Self::key(kind, ns, name),
                LastApply {
                    marker,
                    hash,
                    at: Instant::now(),
                },
            );
        }
    }

    /// Whether medplat applied `hash` to this child within [`CACHE_LAG_GRACE`], the cache does
    /// not hold the child yet, and the watch has not seen it deleted since.
    fn awaiting_cache(
        &self,
        key: &ChildKey,
        hash: &str,
        cached: Option<&CachedChild>,
        deleted_at: Option<Instant>,
    ) -> bool {
        let Ok(m) = self.seen.lock() else {
            return false;
        };
        let Some(last) = m.get(key) else {
            return false;
        };
        // Only a child the cache does not hold at all is taken for lag: a cached child at
        // another version may as well be someone else's edit after ours, which must be
        // reverted at once (resourceVersions do not say which came first).
        let cache_behind = cached.is_none();
        // A deletion seen after the apply is no lag: the child must come back at once.
        let deleted_since = deleted_at.is_some_and(|d| d >= last.at);
        last.hash.as_deref() == Some(hash)
            && last.at.elapsed() < CACHE_LAG_GRACE
            && cache_behind
            && !deleted_since
    }

    fn forget(&self, kind: &str, ns: Option<&str>, name: &str) {
        if let Ok(mut m) = self.seen.lock() {
            m.remove(&Self::key(kind, ns, name));
        }
    }

    /// Claims `key` for creation unless it was claimed within [`CREATED_GRACE`]; returns
    /// whether the caller should create it.
    fn reserve_create(&self, kind: &str, ns: Option<&str>, name: &str) -> bool {
        let Ok(mut m) = self.created.lock() else {
            return true;
        };
        let key = Self::key(kind, ns, name);
        if m.get(&key).is_some_and(|t| t.elapsed() < CREATED_GRACE) {
            return false;
        }
        m.insert(key, Instant::now());
        true
    }

    fn release_create(&self, kind: &str, ns: Option<&str>, name: &str) {
        if let Ok(mut m) = self.created.lock() {
            m.remove(&Self::key(kind, ns, name));
        }
    }

    fn matches(&self, c: &CachedChild) -> bool {
        let marker = version_marker(c.generation, c.resource_version.as_deref());
        self.seen.lock().ok().is_some_and(|m| {
            m.get(&Self::key(&c.kind, c.namespace.as_deref(), &c.name))
                .is_some_and(|seen| seen.marker == marker)
        })
    }
}

fn version_marker(generation: Option<i64>, resource_version: Option<&str>) -> String {
    match generation {
        Some(g) => format!("g{g}"),
        None => format!("rv{}", resource_version.unwrap_or_default()),
    }
}

/// The plural resource name of a kind, by the Kubernetes convention.
pub fn plural_of(kind: &str) -> String {
    let lower = kind.to_lowercase();
    if let Some(stem) = lower.strip_suffix('y') {
        format!("{stem}ies")
    } else if lower.ends_with('s') {
        format!("{lower}es")
    } else {
        format!("{lower}s")
    }
}

/// The dynamic API for a child.
pub fn dynamic_api(
    client: &Client,
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let ar = ApiResource::from_gvk_with_plural(&gvk, &plural_of(kind));
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

/// Applies the desired children of one parent and prunes the rest.
pub struct Applier<'a> {
    /// The client.
    pub client: &'a Client,
    /// The child caches.
    pub stores: &'a ChildStores,
    /// What medplat last saw of each child.
    pub ledger: &'a AppliedLedger,
    /// The field manager, one per controller.
    pub field_manager: &'a str,
}

impl Applier<'_> {
    /// Applies `desired` and deletes children of `owner_uid` of the `prune_kinds` that are not
    /// in it. Jobs are run records and are never pruned here.
    pub async fn apply(
        &self,
        owner_uid: &str,
        desired: Vec<Child>,
        prune_kinds: &[&str],
    ) -> Result<ApplyOutcome> {
        self.apply_keeping(owner_uid, desired, prune_kinds, |_| false)
            .await
    }

    /// [`Self::apply`], but children for which `keep` holds are never pruned: a parent whose
    /// new spec is invalid for one group of children keeps that group's last good objects in
    /// place while the rest is reconciled.
    pub async fn apply_keeping(
        &self,
        owner_uid: &str,
        desired: Vec<Child>,
        prune_kinds: &[&str],
        keep: impl Fn(&CachedChild) -> bool,
    ) -> Result<ApplyOutcome> {
        let mut outcome = ApplyOutcome::default();
        let mut wanted = BTreeSet::new();
        for mut child in desired {
            wanted.insert((
                child.kind.clone(),
                child.namespace.clone(),
                child.name.clone(),
            ));
            let hash = stamp_hash(&mut child.object);
            let cached = self
                .stores
                .get(&child.kind, child.namespace.as_deref(), &child.name);
            if let Some(c) = &cached
                && c.annotations.get(APPLIED_HASH) == Some(&hash)
                && self.ledger.matches(c)
            {
                outcome.unchanged += 1;
                continue;
            }
            let key = AppliedLedger::key(&child.kind, child.namespace.as_deref(), &child.name);
            let deleted_at =
                self.stores
                    .deleted_at(&child.kind, child.namespace.as_deref(), &child.name);
            if self
                .ledger
                .awaiting_cache(&key, &hash, cached.as_ref(), deleted_at)
            {
                outcome.awaiting_cache += 1;
                continue;
            }
            self.apply_one(&child).await?;
            outcome.applied.push(child.display());
        }
        for kind in prune_kinds {
            for c in self.stores.owned_by(kind, owner_uid) {
                if wanted.contains(&(c.kind.clone(), c.namespace.clone(), c.name.clone()))
                    || keep(&c)
                {
                    continue;
                }
                self.delete(&c).await?;
                outcome.pruned.push(format!("{} {}", c.kind, c.name));
            }
        }
        Ok(outcome)
    }

    /// Creates a child several parents share (a tier's claim in a namespace) unless it exists:
    /// in the cache, or created by this process within the last minute (the cache may lag, and
    /// many parents of one namespace reconcile at once). Never rewrites an existing one.
    /// Returns whether it was applied.
    pub async fn ensure_exists(&self, child: &Child) -> Result<bool> {
        let ns = child.namespace.as_deref();
        if self.stores.get(&child.kind, ns, &child.name).is_some()
            || !self.ledger.reserve_create(&child.kind, ns, &child.name)
        {
            return Ok(false);
        }
        match self.apply_one(child).await {
            Ok(_) => Ok(true),
            Err(e) => {
                self.ledger.release_create(&child.kind, ns, &child.name);
                Err(e)
            }
        }
    }

    /// Server-side applies one child with `force` and records what the server returned.
    pub async fn apply_one(&self, child: &Child) -> Result<DynamicObject> {
        let api = dynamic_api(
            self.client,
            &child.api_version,
            &child.kind,
            child.namespace.as_deref(),
        );
        let params = PatchParams::apply(self.field_manager).force();
        let applied = api
            .patch(&child.name, &params, &Patch::Apply(&child.object))
            .await
            .map_err(|e| Error::kube("apply", child.display(), e))?;
        let hash = child
            .object
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(APPLIED_HASH))
            .and_then(Value::as_str)
            .map(str::to_string);
        self.ledger.record(
            &child.kind,
            child.namespace.as_deref(),
            &child.name,
            version_marker(
                applied.metadata.generation,
                applied.metadata.resource_version.as_deref(),
            ),
            hash,
        );
        Ok(applied)
    }

    async fn delete(&self, c: &CachedChild) -> Result<()> {
        let api_version = api_version_of(&c.kind);
        let api = dynamic_api(self.client, api_version, &c.kind, c.namespace.as_deref());
        match api.delete(&c.name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(Error::kube("prune", format!("{} {}", c.kind, c.name), e)),
        }
        self.ledger.forget(&c.kind, c.namespace.as_deref(), &c.name);
        Ok(())
    }
}

/// Adds the hash of the desired object (before the annotation) to its annotations.
fn stamp_hash(object: &mut Value) -> String {
    let hash = short_hash(&object.to_string());
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(a) = annotations.as_object_mut() {
            a.insert(APPLIED_HASH.into(), Value::String(hash.clone()));
        }
    }
    hash
}

/// The apiVersion of the child kinds medplat prunes.
fn api_version_of(kind: &str) -> &'static str {
    match kind {
        "Deployment" | "DaemonSet" | "StatefulSet" => "apps/v1",
        "CronJob" | "Job" => "batch/v1",
        "NetworkPolicy" => "networking.k8s.io/v1",
        "Role" | "RoleBinding" | "ClusterRole" | "ClusterRoleBinding" => {
            "rbac.authorization.k8s.io/v1"
        }
        "ValidatingAdmissionPolicy" | "ValidatingAdmissionPolicyBinding" => {
            "admissionregistration.k8s.io/v1"
        }
        "PrometheusRule" | "ServiceMonitor" => "monitoring.coreos.com/v1",
        _ => "v1",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals_follow_the_kubernetes_convention() {
        assert_eq!(plural_of("NetworkPolicy"), "networkpolicies");
        assert_eq!(plural_of("ConfigMap"), "configmaps");
        assert_eq!(plural_of("Ingress"), "ingresses");
        assert_eq!(plural_of("PersistentVolumeClaim"), "persistentvolumeclaims");
    }

    #[test]
    fn the_hash_is_stable_and_ignores_itself() {
        let mut a = serde_json::json!({"metadata": {"name": "x"}, "data": {"k": "v"}});
        let mut b = a.clone();
        let h1 = stamp_hash(&mut a);
        let h2 = stamp_hash(&mut b);
        assert_eq!(h1, h2);
        assert_eq!(a["metadata"]["annotations"][APPLIED_HASH], h1);
        let mut c = serde_json::json!({"metadata": {"name": "x"}, "data": {"k": "w"}});
        assert_ne!(stamp_hash(&mut c), h1);
    }

    #[test]
    fn the_ledger_matches_only_the_version_it_saw() {
        let ledger = AppliedLedger::default();
        let mut c = CachedChild {
            kind: "ConfigMap".into(),
            namespace: Some("ns".into()),
            name: "a".into(),
            labels: Default::default(),
            annotations: Default::default(),
            generation: None,
            resource_version: Some("10".into()),
        };
        assert!(!ledger.matches(&c));
        ledger.record(
            "ConfigMap",
            Some("ns"),
            "a",
            version_marker(None, Some("10")),
            Some("h1".into()),
        );
        assert!(ledger.matches(&c));
        c.resource_version = Some("11".into());
        assert!(
            !ledger.matches(&c),
            "an edit by someone else moves the resourceVersion"
        );
    }

    #[test]
    fn a_fresh_apply_the_cache_has_not_shown_yet_is_awaited_briefly() {
        let ledger = AppliedLedger::default();
        let key = AppliedLedger::key("CronJob", Some("ns"), "p");
        let mut cached = CachedChild {
            kind: "CronJob".into(),
            namespace: Some("ns".into()),
            name: "p".into(),
            labels: Default::default(),
            annotations: Default::default(),
            generation: Some(1),
            resource_version: Some("7".into()),
        };
        assert!(
            !ledger.awaiting_cache(&key, "h2", None, None),
            "never applied: apply"
        );
        ledger.record(
            "CronJob",
            Some("ns"),
            "p",
            version_marker(Some(2), Some("9")),
            Some("h2".into()),
        );
        assert!(
            ledger.awaiting_cache(&key, "h2", None, None),
            "not in the cache yet"
        );
        assert!(
            !ledger.awaiting_cache(&key, "h2", None, Some(Instant::now())),
            "deleted since the apply: applied again at once"
        );
        assert!(
            !ledger.awaiting_cache(&key, "h2", Some(&cached), None),
            "a cached child at another version may be someone else's edit: applied at once"
        );
        assert!(
            !ledger.awaiting_cache(&key, "h3", None, None),
            "a different desired object is applied at once"
        );
        cached.generation = Some(2);
        assert!(
            !ledger.awaiting_cache(&key, "h2", Some(&cached), None),
            "the cache caught up: the usual checks decide"
        );
        if let Ok(mut m) = ledger.seen.lock()
            && let Some(last) = m.get_mut(&key)
        {
            last.at = Instant::now() - CACHE_LAG_GRACE;
        }
        assert!(
            !ledger.awaiting_cache(&key, "h2", None, None),
            "past the grace the cache decides: a deleted child is created again"
        );
        let outcome = ApplyOutcome {
            awaiting_cache: 1,
            ..ApplyOutcome::default()
        };
        assert_eq!(
            outcome.requeue_within(Duration::from_secs(300)),
            CACHE_LAG_GRACE
        );
        assert_eq!(
            ApplyOutcome::default().requeue_within(Duration::from_secs(300)),
            Duration::from_secs(300)
        );
    }
}
