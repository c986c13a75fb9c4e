//! What the webhook knows about the other objects: the operator's shared caches in production,
//! plain lists in tests. The decision reads only through [`Catalog`], never the API server, so
//! an admission call costs no API request and cannot deadlock on the write it is judging.

use kube::ResourceExt;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::Store;

use crate::api::{AccessPolicy, DataSource, Pipeline, StorageTier};
use crate::controller::context::ParentStores;

/// Read access to the medplat objects a decision cross-references.
pub trait Catalog {
    /// Every StorageTier.
    fn tiers(&self) -> Vec<StorageTier>;
    /// The DataSources of `namespace`, or of every namespace when `None`.
    fn sources(&self, namespace: Option<&str>) -> Vec<DataSource>;
    /// The AccessPolicies of `namespace`.
    fn policies(&self, namespace: &str) -> Vec<AccessPolicy>;
    /// The Pipelines of `namespace`, or of every namespace when `None`.
    fn pipelines(&self, namespace: Option<&str>) -> Vec<Pipeline>;
}

/// Objects held in memory: for tests and for callers that have already listed them.
#[derive(Clone, Debug, Default)]
pub struct Objects {
    /// StorageTiers.
    pub tiers: Vec<StorageTier>,
    /// DataSources of every namespace.
    pub sources: Vec<DataSource>,
    /// AccessPolicies of every namespace.
    pub policies: Vec<AccessPolicy>,
    /// Pipelines of every namespace.
    pub pipelines: Vec<Pipeline>,
}

fn in_namespace<K: ResourceExt + Clone>(objects: &[K], namespace: Option<&str>) -> Vec<K> {
    objects
        .iter()
        .filter(|o| namespace.is_none() || o.namespace().as_deref() == namespace)
        .cloned()
        .collect()
}

impl Catalog for Objects {
    fn tiers(&self) -> Vec<StorageTier> {
        self.tiers.clone()
    }
    fn sources(&self, namespace: Option<&str>) -> Vec<DataSource> {
        in_namespace(&self.sources, namespace)
    }
    fn policies(&self, namespace: &str) -> Vec<AccessPolicy> {
        in_namespace(&self.policies, Some(namespace))
    }
    fn pipelines(&self, namespace: Option<&str>) -> Vec<Pipeline> {
        in_namespace(&self.pipelines, namespace)
    }
}

/// The well-formed objects of a cache, optionally of one namespace. Objects that do not
/// deserialize are skipped, as the controllers skip them when they dereference.
fn cached<K>(store: &Store<DeserializeGuard<K>>, namespace: Option<&str>) -> Vec<K>
where
    K: kube::Resource<DynamicType = ()> + Clone,
{
    store
        .state()
        .iter()
        .filter(|g| namespace.is_none() || g.namespace().as_deref() == namespace)
        .filter_map(|g| g.0.as_ref().ok().cloned())
        .collect()
}

impl Catalog for ParentStores {
    fn tiers(&self) -> Vec<StorageTier> {
        cached(&self.tiers, None)
    }
    fn sources(&self, namespace: Option<&str>) -> Vec<DataSource> {
        cached(&self.sources, namespace)
    }
    fn policies(&self, namespace: &str) -> Vec<AccessPolicy> {
        cached(&self.policies, Some(namespace))
    }
    fn pipelines(&self, namespace: Option<&str>) -> Vec<Pipeline> {
        cached(&self.pipelines, namespace)
    }
}

/// Waits until every parent cache has finished its first list, so "absent" means absent.
/// Polls the flags the runner raises instead of `Store::wait_until_ready`, which would steal
/// the controllers' wake-up (see [`crate::controller::context::ParentsSynced`]).
pub async fn caches_synced(stores: &ParentStores) {
    while !stores.synced.all() {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
