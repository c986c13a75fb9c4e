//! Shared, metadata-only caches of the children medplat manages, one watch per child kind.
//!
//! Every controller needs to know which children exist (to prune) and whether they changed
//! since medplat applied them (to correct drift without writing when nothing changed). A
//! metadata watch per kind, filtered by `app.kubernetes.io/managed-by=medplat` and with
//! `managedFields` stripped, answers both at a fraction of the memory of full objects. The
//! same streams trigger reconciles of the owners (`Controller::owns_shared_stream`).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};

use super::fanout::Fanout;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::render::common::{MANAGED_BY, MANAGED_BY_VALUE};

/// The label selector every child watch uses.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY}={MANAGED_BY_VALUE}")
}

/// One child kind: its metadata cache and subscriptions that trigger owners.
pub struct ChildKind<K: Resource<DynamicType = ()> + Clone + 'static> {
    /// The cache, keyed by namespace and name.
    pub store: Store<PartialObjectMeta<K>>,
    fanout: Fanout<PartialObjectMeta<K>>,
}

impl<K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static> ChildKind<K> {
    /// A stream of changed children, for `Controller::owns_shared_stream`.
    pub fn subscribe(
        &self,
    ) -> futures::channel::mpsc::UnboundedReceiver<Arc<PartialObjectMeta<K>>> {
        self.fanout.subscribe()
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

    /// Children labelled with this owner uid.
    pub fn owned_by(&self, uid: &str) -> Vec<Arc<PartialObjectMeta<K>>> {
        self.store
            .state()
            .into_iter()
            .filter(|o| {
                o.labels()
                    .get(crate::render::common::OWNER_UID)
                    .map(String::as_str)
                    == Some(uid)
            })
            .collect()
    }
}

/// How many events a shared stream buffers before its writer waits for slow subscribers.
const SHARED_BUFFER: usize = 1024;

/// Starts a metadata watch of `K` children and returns its cache plus the driver future.
fn child_kind<K>(
    client: &Client,
    namespace: Option<&str>,
) -> Option<(
    ChildKind<K>,
    impl std::future::Future<Output = ()> + Send + use<K>,
)>
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
    let (store, writer) = reflector::store_shared::<PartialObjectMeta<K>>(SHARED_BUFFER);
    let (fanout, drain) = Fanout::new(writer.subscribe()?);
    let stream = watcher(api, watcher::Config::default().labels(&managed_selector()))
        .default_backoff()
        .modify(|o: &mut PartialObjectMeta<K>| {
            o.managed_fields_mut().clear();
        })
        .reflect_shared(writer)
        .for_each(|_| futures::future::ready(()));
    let drive = async move {
        futures::join!(stream, drain);
    };
    Some((ChildKind { store, fanout }, drive))
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
            );
            let _ = ready_tx.send(true);
        };
        let drive = async move {
            futures::join!(a, b, c, d, e, f, g, h, i, j, k, l, announce);
        };
        Some((stores, drive))
    }

    /// Waits until every cache has its first list, so prune never mistakes "not seen yet" for
    /// "absent". Any number of tasks may wait at once.
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
        per_kind!(self, kind, |k| all(k, uid)).unwrap_or_default()
    }
}
