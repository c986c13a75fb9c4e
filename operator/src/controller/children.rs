//! Shared, metadata-only caches of the children medplat manages, one watch per child kind.
//!
//! Every controller needs to know which children exist (to prune) and whether they changed
//! since medplat applied them (to correct drift without writing when nothing changed). A
//! metadata watch per kind, filtered by `app.kubernetes.io/managed-by=medplat` and with
//! `managedFields` stripped, answers both at a fraction of the memory of full objects. The
//! same streams trigger reconciles of the owners (`Controller::owns_shared_stream`).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::Arc;

use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use kube::api::{ApiResource, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::cache_index::CacheIndex;
use super::fanout::Fanout;
use crate::render::common::{MANAGED_BY, MANAGED_BY_VALUE};

/// The annotation `kubectl apply` (client-side) keeps a whole copy of the object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops from an object's cached metadata what medplat never reads and what can be as large as
/// the object itself: `managedFields`, and the copy `kubectl apply` keeps in an annotation
/// (GitOps trees applied with client-side apply double every cached parent otherwise).
pub fn trim_cached_metadata(meta: &mut kube::api::ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// [`trim_cached_metadata`], and for a child also the labels every child carries alike and
/// nothing reads from the cache (`managed-by` is what the watch selects on; `part-of` is for
/// people): at tens of thousands of cached children they are megabytes.
fn trim_cached_child(meta: &mut kube::api::ObjectMeta) {
    trim_cached_metadata(meta);
    if let Some(labels) = meta.labels.as_mut() {
        labels.remove(MANAGED_BY);
        labels.remove(crate::render::common::PART_OF);
    }
}

/// The label selector every child watch uses.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY}={MANAGED_BY_VALUE}")
}

/// The objects a watch saw deleted, for consumers that must react to deletions.
///
/// kube's shared streams only carry objects that were applied: a deleted child would not
/// trigger its owner (so it would not be recreated until the next resync), and a deleted pod
/// or NodeCompliance would not trigger anything. This fills that gap. Receivers that fall more
/// than [`DELETIONS_BUFFER`] behind skip ahead rather than hold up the watch.
pub struct Deletions<K> {
    tx: tokio::sync::broadcast::Sender<Arc<K>>,
}

/// How many deletions a slow receiver may fall behind.
pub const DELETIONS_BUFFER: usize = 256;

impl<K: Clone + Send + Sync + 'static> Deletions<K> {
    /// A new signal.
    pub fn new() -> Self {
        Deletions {
            tx: tokio::sync::broadcast::channel(DELETIONS_BUFFER).0,
        }
    }

    /// Records the deletions in a watch event.
    pub fn observe(&self, event: &watcher::Result<watcher::Event<K>>) {
        if let Ok(watcher::Event::Delete(o)) = event {
            // No receiver is fine: nobody needs to know.
            let _ = self.tx.send(Arc::new(o.clone()));
        }
    }

    /// The deleted objects from now on, for `Controller::owns_shared_stream` or
    /// `watches_shared_stream`.
    pub fn stream(&self) -> impl Stream<Item = Arc<K>> + Send + 'static + use<K> {
        futures::stream::unfold(self.tx.subscribe(), |mut rx| async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match rx.recv().await {
                    Ok(o) => return Some((o, rx)),
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return None,
                }
            }
        })
    }
}

impl<K> Clone for Deletions<K> {
    fn clone(&self) -> Self {
        Deletions {
            tx: self.tx.clone(),
        }
    }
}

impl<K: Clone + Send + Sync + 'static> Default for Deletions<K> {
    fn default() -> Self {
        Self::new()
    }
}

/// One child kind: its metadata cache and a subscription that triggers owners.
pub struct ChildKind<K: Resource<DynamicType = ()> + Clone + 'static> {
    /// The cache, keyed by namespace and name.
    pub store: Store<PartialObjectMeta<K>>,
    /// The cache's children by owner uid, kept from the same watch.
    owners: Arc<CacheIndex<PartialObjectMeta<K>>>,
    /// When the watch last saw each child deleted (see [`RecentDeletions`]).
    recently_deleted: Arc<RecentDeletions>,
    fanout: Fanout<PartialObjectMeta<K>>,
    deletions: Deletions<PartialObjectMeta<K>>,
}

impl<K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static> ChildKind<K> {
    /// A stream of changed children, for `Controller::owns_shared_stream`.
    pub fn subscribe(
        &self,
    ) -> futures::channel::mpsc::UnboundedReceiver<Arc<PartialObjectMeta<K>>> {
        self.fanout.subscribe()
    }

    /// A stream of deleted children, for a second `Controller::owns_shared_stream`: kube's
    /// shared streams do not carry deletions, and a deleted child must be recreated.
    pub fn deleted(
        &self,
    ) -> impl Stream<Item = Arc<PartialObjectMeta<K>>> + Send + 'static + use<K> {
        self.deletions.stream()
    }
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> ChildKind<K> {
    /// The cached metadata of `namespace/name`.
    pub fn get(&self, namespace: Option<&str>, name: &str) -> Option<Arc<PartialObjectMeta<K>>> {
        let key = match namespace {
            Some(ns) => reflector::ObjectRef::new(name).within(ns),
            None => reflector::ObjectRef::new(name),
        };
        self.store.get(&key)
    }

    /// Children labelled with this owner uid: looked up in the owner index, and each checked
    /// against the cache, which the index may briefly run ahead of or behind.
    pub fn owned_by(&self, uid: &str) -> Vec<Arc<PartialObjectMeta<K>>> {
        self.owners
            .lookup(uid)
            .into_iter()
            .filter_map(|(ns, name)| self.get(ns.as_deref(), &name))
            .filter(|o| {
                o.labels()
                    .get(crate::render::common::OWNER_UID)
                    .map(String::as_str)
                    == Some(uid)
            })
            .collect()
    }
}

/// The owner-uid label of a child, its key in the owner index.
fn owner_uid_of<K: Resource>(o: &K) -> Vec<String> {
    o.meta()
        .labels
        .as_ref()
        .and_then(|l| l.get(crate::render::common::OWNER_UID).cloned())
        .into_iter()
        .collect()
}

/// When the watch last saw each child (namespace, name) deleted, so the apply routine can tell
/// a child it created that the cache has not shown yet from one deleted since. Entries older
/// than [`super::apply::CACHE_LAG_GRACE`] are dropped once there are many.
#[derive(Default)]
pub struct RecentDeletions {
    /// By namespace (`""` for cluster-scoped children), then name: looked up with borrowed
    /// strings, as the apply routine does for every child it considers.
    at: std::sync::Mutex<HashMap<String, HashMap<String, std::time::Instant>>>,
}

impl RecentDeletions {
    /// How many entries are kept before old ones are dropped.
    const KEEP: usize = 4096;

    fn observe<K: Resource>(&self, event: &watcher::Result<watcher::Event<K>>) {
        let Ok(watcher::Event::Delete(o)) = event else {
            return;
        };
        if let Ok(mut at) = self.at.lock() {
            if at.values().map(HashMap::len).sum::<usize>() >= Self::KEEP {
                for names in at.values_mut() {
                    names.retain(|_, t| t.elapsed() < super::apply::CACHE_LAG_GRACE);
                }
                at.retain(|_, names| !names.is_empty());
            }
            at.entry(o.meta().namespace.clone().unwrap_or_default())
                .or_default()
                .insert(
                    o.meta().name.clone().unwrap_or_default(),
                    std::time::Instant::now(),
                );
        }
    }

    /// When `namespace/name` was last seen deleted, if recently.
    pub fn at(&self, namespace: Option<&str>, name: &str) -> Option<std::time::Instant> {
        self.at
            .lock()
            .ok()?
            .get(namespace.unwrap_or_default())?
            .get(name)
            .copied()
    }
}

/// How many events a shared stream buffers before its writer waits for slow subscribers.
const SHARED_BUFFER: usize = 1024;

/// Starts a metadata watch of `K` children through `api` and returns its cache plus the driver
/// future.
fn child_kind_from<K>(
    api: Api<PartialObjectMeta<K>>,
) -> Option<(ChildKind<K>, futures::future::BoxFuture<'static, ()>)>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store_shared::<PartialObjectMeta<K>>(SHARED_BUFFER);
    let (fanout, drain) = Fanout::new(writer.subscribe()?);
    let deletions = Deletions::new();
    let observer = deletions.clone();
    let owners = Arc::new(CacheIndex::new(owner_uid_of::<PartialObjectMeta<K>>));
    let indexer = owners.clone();
    let recently_deleted = Arc::new(RecentDeletions::default());
    let deletion_clock = recently_deleted.clone();
    let stream = watcher(api, watcher::Config::default().labels(&managed_selector()))
        .default_backoff()
        .modify(|o: &mut PartialObjectMeta<K>| trim_cached_child(o.meta_mut()))
        .inspect(move |ev| indexer.observe(ev))
        .reflect_shared(writer)
        .for_each(move |ev| {
            observer.observe(&ev);
            deletion_clock.observe(&ev);
            futures::future::ready(())
        });
    // Boxed: kept on the heap, so building many watches does not grow the caller's stack.
    let drive = async move {
        futures::join!(stream, drain);
    }
    .boxed();
    Some((
        ChildKind {
            store,
            owners,
            recently_deleted,
            fanout,
            deletions,
        },
        drive,
    ))
}

/// Starts a metadata watch of namespaced `K` children (in `namespace`, or everywhere).
fn child_kind<K>(
    client: &Client,
    namespace: Option<&str>,
) -> Option<(ChildKind<K>, futures::future::BoxFuture<'static, ()>)>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    let api: Api<PartialObjectMeta<K>> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    child_kind_from(api)
}

/// Starts a metadata watch of cluster-scoped `K` children.
fn cluster_child_kind<K>(
    client: &Client,
) -> Option<(ChildKind<K>, futures::future::BoxFuture<'static, ()>)>
where
    K: Resource<DynamicType = (), Scope = ClusterResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    child_kind_from(Api::<PartialObjectMeta<K>>::all(client.clone()))
}

/// A child kind known only at run time (a CRD such as the Prometheus operator's
/// `PrometheusRule`), whose API may be absent.
///
/// While the API is absent the watch keeps retrying with backoff and the cache stays empty, so
/// nothing is pruned; it is never part of [`ChildStores::wait_until_ready`], so a cluster
/// without the CRD does not hold up any reconcile.
pub struct DynamicChildKind {
    /// The kind.
    pub resource: ApiResource,
    /// The cache, keyed by namespace and name.
    pub store: Store<PartialObjectMeta<DynamicObject>>,
    /// Signals every change; lagging receivers skip ahead, so the watch never waits for them.
    changes: tokio::sync::broadcast::Sender<()>,
}

impl DynamicChildKind {
    /// A stream that yields once per change (possibly coalesced), for
    /// `Controller::reconcile_on`. kube's shared-stream handles need a kind known at compile
    /// time, hence this signal instead.
    pub fn changes(&self) -> impl Stream<Item = ()> + Send + 'static + use<> {
        futures::stream::unfold(self.changes.subscribe(), |mut rx| async move {
            use tokio::sync::broadcast::error::RecvError;
            match rx.recv().await {
                Ok(()) | Err(RecvError::Lagged(_)) => Some(((), rx)),
                Err(RecvError::Closed) => None,
            }
        })
    }

    fn cached(&self, o: &PartialObjectMeta<DynamicObject>) -> CachedChild {
        CachedChild {
            kind: self.resource.kind.clone(),
            namespace: o.namespace(),
            name: o.name_any(),
            labels: o.labels().clone(),
            annotations: o.annotations().clone(),
            generation: o.metadata.generation,
            resource_version: o.resource_version(),
        }
    }

    fn get(&self, namespace: Option<&str>, name: &str) -> Option<CachedChild> {
        let key = reflector::ObjectRef::new_with(name, self.resource.clone());
        let key = match namespace {
            Some(ns) => key.within(ns),
            None => key,
        };
        self.store.get(&key).map(|o| self.cached(&o))
    }

    fn owned_by(&self, uid: &str) -> Vec<CachedChild> {
        self.store
            .state()
            .iter()
            .filter(|o| {
                o.labels()
                    .get(crate::render::common::OWNER_UID)
                    .map(String::as_str)
                    == Some(uid)
            })
            .map(|o| self.cached(o))
            .collect()
    }
}

/// Starts a metadata watch of a run-time kind (see [`DynamicChildKind`]).
fn dynamic_child_kind(
    client: &Client,
    namespace: Option<&str>,
    resource: ApiResource,
) -> Option<(DynamicChildKind, futures::future::BoxFuture<'static, ()>)> {
    let api: Api<PartialObjectMeta<DynamicObject>> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let writer =
        reflector::store::Writer::<PartialObjectMeta<DynamicObject>>::new(resource.clone());
    let store = writer.as_reader();
    let (changes, _) = tokio::sync::broadcast::channel(16);
    let tx = changes.clone();
    let drive = watcher(api, watcher::Config::default().labels(&managed_selector()))
        .default_backoff()
        .modify(|o: &mut PartialObjectMeta<DynamicObject>| trim_cached_child(o.meta_mut()))
        .reflect(writer)
        .touched_objects()
        .for_each(move |r| {
            if r.is_ok() {
                // No receiver is fine: nobody needs to know.
                let _ = tx.send(());
            }
            futures::future::ready(())
        })
        .boxed();
    Some((
        DynamicChildKind {
            resource,
            store,
            changes,
        },
        drive,
    ))
}

/// The caches of every child kind medplat renders.
pub struct ChildStores {
    /// Becomes true once every cache has listed once.
    ready: tokio::sync::watch::Receiver<bool>,
    /// ServiceAccounts.
    pub service_accounts: ChildKind<ServiceAccount>,
    /// ConfigMaps.
    pub config_maps: ChildKind<ConfigMap>,
    /// NetworkPolicies.
    pub network_policies: ChildKind<NetworkPolicy>,
    /// CronJobs.
    pub cron_jobs: ChildKind<CronJob>,
    /// Jobs (run records; never pruned by owners).
    pub jobs: ChildKind<Job>,
    /// Deployments.
    pub deployments: ChildKind<Deployment>,
    /// Services.
    pub services: ChildKind<Service>,
    /// Roles.
    pub roles: ChildKind<Role>,
    /// RoleBindings.
    pub role_bindings: ChildKind<RoleBinding>,
    /// Tier claims.
    pub claims: ChildKind<PersistentVolumeClaim>,
    /// DaemonSets.
    pub daemon_sets: ChildKind<DaemonSet>,
    /// StatefulSets.
    pub stateful_sets: ChildKind<StatefulSet>,
    /// ClusterRoles (cluster-scoped).
    pub cluster_roles: ChildKind<ClusterRole>,
    /// ClusterRoleBindings (cluster-scoped).
    pub cluster_role_bindings: ChildKind<ClusterRoleBinding>,
    /// ValidatingAdmissionPolicies (cluster-scoped; the API may be absent before
    /// Kubernetes 1.30, so not waited for).
    pub admission_policies: ChildKind<ValidatingAdmissionPolicy>,
    /// ValidatingAdmissionPolicyBindings (as [`Self::admission_policies`]).
    pub admission_policy_bindings: ChildKind<ValidatingAdmissionPolicyBinding>,
    /// The Prometheus operator's PrometheusRules (the CRD may be absent).
    pub prometheus_rules: DynamicChildKind,
    /// The Prometheus operator's ServiceMonitors (the CRD may be absent).
    pub service_monitors: DynamicChildKind,
}

/// The cached metadata of one child, whatever its kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedChild {
    /// `kind`.
    pub kind: String,
    /// Namespace, if namespaced.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// `metadata.generation`, when the kind has one.
    pub generation: Option<i64>,
    /// `metadata.resourceVersion`.
    pub resource_version: Option<String>,
}

fn cached<K: Resource<DynamicType = ()>>(o: &PartialObjectMeta<K>) -> CachedChild {
    CachedChild {
        kind: K::kind(&()).into_owned(),
        namespace: o.namespace(),
        name: o.name_any(),
        labels: o.labels().clone(),
        annotations: o.annotations().clone(),
        generation: o.metadata.generation,
        resource_version: o.resource_version(),
    }
}

macro_rules! per_kind {
    ($self:ident, $kind:expr, $f:expr) => {
        match $kind {
            "ServiceAccount" => $f(&$self.service_accounts),
            "ConfigMap" => $f(&$self.config_maps),
            "NetworkPolicy" => $f(&$self.network_policies),
            "CronJob" => $f(&$self.cron_jobs),
            "Job" => $f(&$self.jobs),
            "Deployment" => $f(&$self.deployments),
            "Service" => $f(&$self.services),
            "Role" => $f(&$self.roles),
            "RoleBinding" => $f(&$self.role_bindings),
            "PersistentVolumeClaim" => $f(&$self.claims),
            "DaemonSet" => $f(&$self.daemon_sets),
            "StatefulSet" => $f(&$self.stateful_sets),
            "ClusterRole" => $f(&$self.cluster_roles),
            "ClusterRoleBinding" => $f(&$self.cluster_role_bindings),
            "ValidatingAdmissionPolicy" => $f(&$self.admission_policies),
            "ValidatingAdmissionPolicyBinding" => $f(&$self.admission_policy_bindings),
            _ => None,
        }
    };
}

impl ChildStores {
    /// Starts one metadata watch per child kind. Returns the caches and the future that drives
    /// every watch; the caller spawns it.
    /// Returns `None` only if a shared store refuses a subscription, which kube guarantees
    /// it does not for shared stores.
    pub fn start(
        client: &Client,
        namespace: Option<&str>,
    ) -> Option<(
        Arc<ChildStores>,
        impl std::future::Future<Output = ()> + Send + use<>,
    )> {
        let (service_accounts, a) = child_kind(client, namespace)?;
        let (config_maps, b) = child_kind(client, namespace)?;
        let (network_policies, c) = child_kind(client, namespace)?;
        let (cron_jobs, d) = child_kind(client, namespace)?;
        let (jobs, e) = child_kind(client, namespace)?;
        let (deployments, f) = child_kind(client, namespace)?;
        let (services, g) = child_kind(client, namespace)?;
        let (roles, h) = child_kind(client, namespace)?;
        let (role_bindings, i) = child_kind(client, namespace)?;
        let (claims, j) = child_kind(client, namespace)?;
        let (daemon_sets, k) = child_kind(client, namespace)?;
        let (stateful_sets, l) = child_kind(client, namespace)?;
        let (cluster_roles, m) = cluster_child_kind(client)?;
        let (cluster_role_bindings, n) = cluster_child_kind(client)?;
        let (admission_policies, o) = cluster_child_kind(client)?;
        let (admission_policy_bindings, p) = cluster_child_kind(client)?;
        let (prometheus_rules, q) = dynamic_child_kind(
            client,
            namespace,
            crate::render::platform::rules::prometheus_rule_resource(),
        )?;
        let (service_monitors, r) = dynamic_child_kind(
            client,
            namespace,
            crate::render::platform::rules::service_monitor_resource(),
        )?;
        let (ready_tx, ready) = tokio::sync::watch::channel(false);
        let stores = Arc::new(ChildStores {
            ready,
            service_accounts,
            config_maps,
            network_policies,
            cron_jobs,
            jobs,
            deployments,
            services,
            roles,
            role_bindings,
            claims,
            daemon_sets,
            stateful_sets,
            cluster_roles,
            cluster_role_bindings,
            admission_policies,
            admission_policy_bindings,
            prometheus_rules,
            service_monitors,
        });
        // `Store::wait_until_ready` keeps a single waker (a oneshot channel): only this one task
        // waits on the stores; everyone else waits on the `ready` watch, which wakes them all.
        let watched = stores.clone();
        let announce = async move {
            let _ = futures::join!(
                watched.service_accounts.store.wait_until_ready(),
                watched.config_maps.store.wait_until_ready(),
                watched.network_policies.store.wait_until_ready(),
                watched.cron_jobs.store.wait_until_ready(),
                watched.jobs.store.wait_until_ready(),
                watched.deployments.store.wait_until_ready(),
                watched.services.store.wait_until_ready(),
                watched.roles.store.wait_until_ready(),
                watched.role_bindings.store.wait_until_ready(),
                watched.claims.store.wait_until_ready(),
                watched.daemon_sets.store.wait_until_ready(),
                watched.stateful_sets.store.wait_until_ready(),
                watched.cluster_roles.store.wait_until_ready(),
                watched.cluster_role_bindings.store.wait_until_ready(),
            );
            let _ = ready_tx.send(true);
        };
        let drive = async move {
            futures::join!(
                a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p, q, r, announce
            );
        };
        Some((stores, drive))
    }

    /// Waits until every cache has its first list, so prune never mistakes "not seen yet" for
    /// "absent". Any number of tasks may wait at once. The kinds whose API may be missing
    /// (admission policies, the Prometheus operator's CRDs) are not waited for: their callers
    /// prune them only where discovery found the API, and an empty cache prunes nothing.
    pub async fn wait_until_ready(&self) {
        let mut ready = self.ready.clone();
        let _ = ready.wait_for(|r| *r).await;
    }

    /// Whether every cache has its first list.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// The cached child of `kind` at `namespace/name`.
    pub fn get(&self, kind: &str, namespace: Option<&str>, name: &str) -> Option<CachedChild> {
        fn one<K: Resource<DynamicType = ()> + Clone + 'static>(
            k: &ChildKind<K>,
            ns: Option<&str>,
            name: &str,
        ) -> Option<CachedChild> {
            k.get(ns, name).map(|o| cached(&o))
        }
        match kind {
            "PrometheusRule" => self.prometheus_rules.get(namespace, name),
            "ServiceMonitor" => self.service_monitors.get(namespace, name),
            _ => per_kind!(self, kind, |k| one(k, namespace, name)),
        }
    }

    /// When the watch last saw the child of `kind` at `namespace/name` deleted, if recently
    /// (none for the run-time kinds).
    pub fn deleted_at(
        &self,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<std::time::Instant> {
        fn one<K: Resource<DynamicType = ()> + Clone + 'static>(
            k: &ChildKind<K>,
            ns: Option<&str>,
            name: &str,
        ) -> Option<std::time::Instant> {
            k.recently_deleted.at(ns, name)
        }
        per_kind!(self, kind, |k| one(k, namespace, name))
    }

    /// Every cached child of `kind` labelled with owner `uid`.
    pub fn owned_by(&self, kind: &str, uid: &str) -> Vec<CachedChild> {
        fn all<K: Resource<DynamicType = ()> + Clone + 'static>(
            k: &ChildKind<K>,
            uid: &str,
        ) -> Option<Vec<CachedChild>> {
            Some(k.owned_by(uid).iter().map(|o| cached(o)).collect())
        }
        match kind {
            "PrometheusRule" => self.prometheus_rules.owned_by(uid),
            "ServiceMonitor" => self.service_monitors.owned_by(uid),
            _ => per_kind!(self, kind, |k| all(k, uid)).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;

    #[test]
    fn cached_metadata_loses_only_what_medplat_never_reads() {
        let mut meta = ObjectMeta {
            name: Some("p".into()),
            annotations: Some(
                [
                    (
                        LAST_APPLIED.to_string(),
                        "{\"a whole\":\"copy\"}".to_string(),
                    ),
                    (
                        crate::controller::apply::APPLIED_HASH.to_string(),
                        "h".to_string(),
                    ),
                ]
                .into(),
            ),
            managed_fields: Some(vec![Default::default()]),
            ..Default::default()
        };
        trim_cached_metadata(&mut meta);
        assert_eq!(meta.managed_fields, None);
        let annotations = meta.annotations.unwrap_or_default();
        assert!(!annotations.contains_key(LAST_APPLIED));
        assert_eq!(
            annotations.get(crate::controller::apply::APPLIED_HASH),
            Some(&"h".to_string())
        );
    }

    #[test]
    fn deletions_are_remembered_by_namespace_and_name() {
        use k8s_openapi::api::core::v1::ConfigMap;
        let deleted = |ns: Option<&str>, name: &str| {
            Ok(watcher::Event::Delete(ConfigMap {
                metadata: ObjectMeta {
                    namespace: ns.map(str::to_string),
                    name: Some(name.into()),
                    ..Default::default()
                },
                ..Default::default()
            }))
        };
        let recent = RecentDeletions::default();
        recent.observe(&deleted(Some("lab"), "a"));
        recent.observe(&deleted(None, "cluster-wide"));
        recent.observe::<ConfigMap>(&Ok(watcher::Event::Init));
        assert!(recent.at(Some("lab"), "a").is_some());
        assert!(recent.at(None, "cluster-wide").is_some());
        assert!(recent.at(Some("other"), "a").is_none());
        assert!(recent.at(Some("lab"), "b").is_none());
    }

    #[test]
    fn cached_children_keep_the_labels_medplat_reads() {
        use crate::render::common::{COMPONENT, OWNER_UID, PART_OF};
        let mut meta = ObjectMeta {
            labels: Some(
                [MANAGED_BY, PART_OF, COMPONENT, OWNER_UID]
                    .map(|k| (k.to_string(), "v".to_string()))
                    .into(),
            ),
            ..Default::default()
        };
        trim_cached_child(&mut meta);
        let labels = meta.labels.unwrap_or_default();
        assert_eq!(
            labels.keys().map(String::as_str).collect::<Vec<_>>(),
            [COMPONENT, OWNER_UID]
        );
    }
}
