//! The cluster-wide watch of sensitive pods: any pod labelled `medplat.io/level` L3 or above
//! that runs on a node not labelled `medplat.io/hardened=true` is counted in
//! `medplat_sensitive_pods_on_unhardened_nodes{namespace}` and gets one Warning Event.
//!
//! It depends only on pod placement and node labels, so it runs whether or not a Platform
//! exists. Every change of a labelled pod or of a node recomputes the whole picture from the
//! caches (debounced), which keeps the metric exact without per-pod bookkeeping. The Event is
//! published once per pod and node while the pod stays there; if the pod leaves the unhardened
//! node (or the node gets hardened) and the problem comes back, it is reported again.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};

use super::nodes::{pod_reference, publish};
use super::watches::{PlatformWatches, node_infos, pod_infos};
use crate::controller::context::Context;
use crate::policy::hardening::{
    EVENT_SENSITIVE_POD_ON_UNHARDENED_NODE, HARDENED_LABEL, PodRef, sensitive_pods_on_unhardened,
};

/// How long to collect further changes before recomputing.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// How often the picture is recomputed without a change, in case a change signal was lost.
pub const RECHECK: Duration = Duration::from_secs(10);

/// What the watch has published so far.
#[derive(Default)]
struct Published {
    /// (namespace, pod, node) that already got their Event.
    reported: HashSet<(String, String, String)>,
    /// Namespaces with a series in the metric.
    namespaces: BTreeSet<String>,
}

/// Runs until `changes` ends (the caller ends it at shutdown).
pub async fn run(
    ctx: Arc<Context>,
    watches: Arc<PlatformWatches>,
    changes: impl Stream<Item = ()> + Send,
) {
    futures::join!(watches.nodes.wait_synced(), watches.pods.wait_synced());
    let (nodes, pods) = (&watches.nodes.store, &watches.pods.store);
    let mut published = Published::default();
    let changes = changes.ready_chunks(1024);
    futures::pin_mut!(changes);
    loop {
        let flagged = sensitive_pods_on_unhardened(&node_infos(nodes), &pod_infos(pods));
        export(&ctx, &mut published, &flagged).await;
        if changes.next().await.is_none() {
            return;
        }
        tokio::time::sleep(DEBOUNCE).await;
    }
}

async fn export(ctx: &Context, published: &mut Published, flagged: &[PodRef]) {
    let mut by_namespace: BTreeMap<&str, i64> = BTreeMap::new();
    for p in flagged {
        *by_namespace.entry(p.namespace.as_str()).or_default() += 1;
    }
    let gauge = &ctx.metrics.sensitive_pods_on_unhardened;
    for (ns, n) in &by_namespace {
        gauge.with_label_values(&[*ns]).set(*n as f64);
    }
    for gone in published
        .namespaces
        .iter()
        .filter(|ns| !by_namespace.contains_key(ns.as_str()))
    {
        let _ = gauge.remove_label_values(&[gone.as_str()]);
    }
    published.namespaces = by_namespace.keys().map(|s| s.to_string()).collect();

    let now: HashSet<(String, String, String)> = flagged
        .iter()
        .map(|p| (p.namespace.clone(), p.name.clone(), p.node.clone()))
        .collect();
    for p in flagged {
        let key = (p.namespace.clone(), p.name.clone(), p.node.clone());
        if published.reported.contains(&key) {
            continue;
        }
        let note = format!(
            "pod holds {} data but runs on node {}, which is not labelled {HARDENED_LABEL}=true; move it to a hardened node",
            p.level, p.node
        );
        publish(
            ctx,
            &pod_reference(p),
            EVENT_SENSITIVE_POD_ON_UNHARDENED_NODE,
            note,
        )
        .await;
        tracing::warn!(pod = %format!("{}/{}", p.namespace, p.name), node = %p.node, level = %p.level, "sensitive pod on unhardened node");
    }
    published.reported = now;
}
