//! The watches only the Platform side needs: Nodes (metadata), NodeCompliance objects, pods
//! labelled `medplat.io/level` (trimmed to what placement needs), the Platform itself, and the
//! metadata of CustomResourceDefinitions (to notice the Prometheus operator coming or going).
//!
//! Each is a shared reflector: one watch feeds the Platform controller and the cluster-wide
//! pod watch.

use std::fmt::Debug;
use std::future::Future;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod, PodSpec, PodStatus};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::api::node_compliance::NodeCompliance;
use crate::api::platform::Platform;
use crate::controller::children::Deletions;
use crate::controller::fanout::Fanout;
use crate::policy::hardening::{ComplianceInfo, LEVEL_LABEL, NodeInfo, PodInfo};

const BUFFER: usize = 1024;

/// A shared watch: its cache and where its subscriptions come from.
pub struct Shared<K: Resource<DynamicType = ()> + Clone + 'static> {
    /// The cache.
    pub store: Store<K>,
    /// Subscriptions to applied objects.
    pub fanout: Fanout<K>,
    deletions: Deletions<K>,
    /// Raised at the end of the first list. Waiting on this, unlike `Store::wait_until_ready`,
    /// works for any number of waiters (the store's wakes only one).
    synced: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
}

impl<K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static> Shared<K> {
    /// A new subscription to applied objects.
    pub fn subscribe(&self) -> futures::channel::mpsc::UnboundedReceiver<std::sync::Arc<K>> {
        self.fanout.subscribe()
    }

    /// Waits until the first list is complete.
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        let _ = rx.wait_for(|synced| *synced).await;
    }

    /// The objects deleted from now on (kube's shared streams do not carry deletions).
    pub fn deleted(
        &self,
    ) -> impl futures::Stream<Item = std::sync::Arc<K>> + Send + 'static + use<K> {
        self.deletions.stream()
    }
}

/// Starts a shared watch of `api` with `config`, trimming each object with `trim`.
fn shared<K>(
    api: Api<K>,
    config: watcher::Config,
    trim: impl FnMut(&mut K) + Send + 'static,
) -> Option<(Shared<K>, futures::future::BoxFuture<'static, ()>)>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store_shared(BUFFER);
    let (fanout, drain) = Fanout::new(writer.subscribe()?);
    let deletions = Deletions::new();
    let observer = deletions.clone();
    let synced = std::sync::Arc::new(tokio::sync::watch::Sender::new(false));
    let raise = synced.clone();
    let stream = watcher(api, config)
        .default_backoff()
        .modify(trim)
        .reflect_shared(writer)
        .for_each(move |ev| {
            observer.observe(&ev);
            if let Ok(watcher::Event::InitDone) = ev {
                raise.send_replace(true);
            }
            futures::future::ready(())
        });
    // Boxed: kept on the heap, so building the watches does not grow the caller's stack.
    let drive = async move {
        futures::join!(stream, drain);
    }
    .boxed();
    Some((
        Shared {
            store,
            fanout,
            deletions,
            synced,
        },
        drive,
    ))
}

/// Every Platform-side watch.
pub struct PlatformWatches {
    /// Platforms.
    pub platforms: Shared<DeserializeGuard<Platform>>,
    /// Node metadata.
    pub nodes: Shared<PartialObjectMeta<Node>>,
    /// NodeCompliance objects.
    pub compliances: Shared<DeserializeGuard<NodeCompliance>>,
    /// Pods labelled `medplat.io/level`, trimmed to metadata, node and phase.
    pub pods: Shared<Pod>,
    /// CustomResourceDefinition metadata.
    pub crds: Shared<PartialObjectMeta<CustomResourceDefinition>>,
}

impl PlatformWatches {
    /// Starts every watch; returns them and the future that drives them all. `None` only if a
    /// shared store refuses a subscription, which kube guarantees it does not.
    pub fn start(
        client: &Client,
    ) -> Option<(PlatformWatches, impl Future<Output = ()> + Send + 'static)> {
        let (platforms, a) = shared(
            Api::<DeserializeGuard<Platform>>::all(client.clone()),
            watcher::Config::default(),
            |p| p.managed_fields_mut().clear(),
        )?;
        let (nodes, b) = shared(
            Api::<PartialObjectMeta<Node>>::all(client.clone()),
            watcher::Config::default(),
            |n| {
                n.managed_fields_mut().clear();
                n.annotations_mut().clear();
            },
        )?;
        let (compliances, c) = shared(
            Api::<DeserializeGuard<NodeCompliance>>::all(client.clone()),
            watcher::Config::default(),
            |n| n.managed_fields_mut().clear(),
        )?;
        let (pods, d) = shared(
            Api::<Pod>::all(client.clone()),
            watcher::Config::default().labels(LEVEL_LABEL),
            trim_pod,
        )?;
        let (crds, e) = shared(
            Api::<PartialObjectMeta<CustomResourceDefinition>>::all(client.clone()),
            watcher::Config::default(),
            |c| {
                c.managed_fields_mut().clear();
                c.annotations_mut().clear();
            },
        )?;
        let drive = async move {
            futures::join!(a, b, c, d, e);
        };
        Some((
            PlatformWatches {
                platforms,
                nodes,
                compliances,
                pods,
                crds,
            },
            drive,
        ))
    }

    /// Waits for the first list of the nodes, NodeCompliance objects and pods, so a verdict is
    /// never taken on a partial view (a node whose scan is not listed yet is not "unscanned").
    pub async fn wait_until_ready(&self) {
        futures::join!(
            self.nodes.wait_synced(),
            self.compliances.wait_synced(),
            self.pods.wait_synced(),
        );
    }

    /// The nodes as the hardening rules need them.
    pub fn node_infos(&self) -> Vec<NodeInfo> {
        node_infos(&self.nodes.store)
    }

    /// The NodeCompliance objects that deserialise.
    pub fn compliance_infos(&self) -> Vec<ComplianceInfo> {
        self.compliances
            .store
            .state()
            .iter()
            .filter_map(|g| g.0.as_ref().ok())
            .map(|nc| ComplianceInfo {
                node_name: nc.spec.node_name.clone(),
                status: nc.status.clone(),
            })
            .collect()
    }

    /// The labelled pods.
    pub fn pod_infos(&self) -> Vec<PodInfo> {
        pod_infos(&self.pods.store)
    }
}

/// The nodes in `store` as the hardening rules need them.
pub fn node_infos(store: &Store<PartialObjectMeta<Node>>) -> Vec<NodeInfo> {
    store
        .state()
        .iter()
        .map(|n| NodeInfo {
            name: n.name_any(),
            labels: n.labels().clone(),
        })
        .collect()
}

/// The pods in `store` as the hardening rules need them.
pub fn pod_infos(store: &Store<Pod>) -> Vec<PodInfo> {
    store
        .state()
        .iter()
        .map(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            PodInfo {
                namespace: p.namespace().unwrap_or_default(),
                name: p.name_any(),
                node_name: p.spec.as_ref().and_then(|s| s.node_name.clone()),
                labels: p.labels().clone(),
                finished_or_terminating: p.metadata.deletion_timestamp.is_some()
                    || matches!(phase, Some("Succeeded" | "Failed")),
            }
        })
        .collect()
}

/// Keeps only what placement needs: metadata without managed fields or annotations, the node,
/// and the phase. Containers, volumes and conditions would multiply the cache's memory.
fn trim_pod(p: &mut Pod) {
    p.managed_fields_mut().clear();
    p.annotations_mut().clear();
    let node_name = p.spec.as_ref().and_then(|s| s.node_name.clone());
    p.spec = Some(PodSpec {
        node_name,
        ..PodSpec::default()
    });
    let phase = p.status.as_ref().and_then(|s| s.phase.clone());
    p.status = Some(PodStatus {
        phase,
        ..PodStatus::default()
    });
}
