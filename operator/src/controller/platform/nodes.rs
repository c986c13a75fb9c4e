//! Acting on the hardening verdicts: the `medplat.io/hardened` node label and, in `Enforce`
//! mode, evicting sensitive pods from nodes that are not hardened.
//!
//! The label is written with a merge patch of that one label, and only when it differs, so a
//! node's other labels are never touched and an unchanged cluster gets no writes. Pods leave
//! through the eviction subresource, so PodDisruptionBudgets are honoured.

use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod};
use kube::api::{Api, EvictParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};

use super::FIELD_MANAGER;
use crate::controller::context::{Context, truncate};
use crate::controller::error::{Error, Result};
use crate::policy::hardening::{
    EVENT_EVICTED_FROM_UNHARDENED_NODE, HARDENED_LABEL, NodeState, NodeVerdict, PodRef,
};

/// Sets `medplat.io/hardened` on every node whose label differs from its verdict. Returns the
/// nodes written.
pub async fn label_nodes(ctx: &Context, verdicts: &[NodeVerdict]) -> Result<Vec<String>> {
    let api: Api<Node> = Api::all(ctx.client.clone());
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    let mut written = Vec::new();
    for v in verdicts.iter().filter(|v| v.label_needs_update()) {
        let patch = serde_json::json!({
            "metadata": {"labels": {HARDENED_LABEL: v.desired_label_value()}}
        });
        match api.patch(&v.node, &params, &Patch::Merge(&patch)).await {
            Ok(_) => {
                tracing::info!(node = %v.node, hardened = v.desired_label, state = %state_text(&v.state), "node label set");
                written.push(v.node.clone());
            }
            // The node left the cluster since the cache saw it.
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(Error::kube("label", format!("Node {}", v.node), e)),
        }
    }
    Ok(written)
}

/// What happened to the evictions of one reconcile.
#[derive(Debug, Default)]
pub struct Evictions {
    /// Pods evicted.
    pub evicted: Vec<PodRef>,
    /// Pods a PodDisruptionBudget protects for now (HTTP 429); retried soon.
    pub blocked: Vec<PodRef>,
}

/// Evicts `pods` (Enforce mode) and records a Warning Event on each evicted pod.
pub async fn evict(ctx: &Context, pods: &[PodRef], verdicts: &[NodeVerdict]) -> Result<Evictions> {
    let mut out = Evictions::default();
    for p in pods {
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &p.namespace);
        match api.evict(&p.name, &EvictParams::default()).await {
            Ok(_) => {
                let why = verdicts
                    .iter()
                    .find(|v| v.node == p.node)
                    .map(|v| state_text(&v.state))
                    .unwrap_or_else(|| "the node is unknown".into());
                let note = format!(
                    "evicted: the pod holds {} data and node {} is not hardened ({why}); it reschedules onto a node labelled {HARDENED_LABEL}=true",
                    p.level, p.node
                );
                publish(
                    ctx,
                    &pod_reference(p),
                    EVENT_EVICTED_FROM_UNHARDENED_NODE,
                    note,
                )
                .await;
                tracing::warn!(pod = %format!("{}/{}", p.namespace, p.name), node = %p.node, "evicted sensitive pod from unhardened node");
                out.evicted.push(p.clone());
            }
            // Already gone (the cache lags the deletion).
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(kube::Error::Api(s)) if s.code == 429 => {
                tracing::warn!(pod = %format!("{}/{}", p.namespace, p.name), reason = %s.message, "eviction refused by a disruption budget; retrying");
                out.blocked.push(p.clone());
            }
            Err(e) => {
                return Err(Error::kube(
                    "evict",
                    format!("Pod {}/{}", p.namespace, p.name),
                    e,
                ));
            }
        }
    }
    Ok(out)
}

/// The Event reference of a pod.
pub fn pod_reference(p: &PodRef) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some(p.namespace.clone()),
        name: Some(p.name.clone()),
        ..ObjectReference::default()
    }
}

/// Publishes a Warning Event; events are best effort, so a failure is only logged. Callers
/// publish on transitions only.
pub async fn publish(ctx: &Context, reference: &ObjectReference, reason: &str, note: String) {
    let ev = Event {
        type_: EventType::Warning,
        reason: reason.into(),
        note: Some(truncate(&note, 1000)),
        action: "Harden".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, reference).await {
        tracing::warn!(reason, error = %e, "cannot publish event");
    }
}

/// Why a node is or is not hardened, in words that do not change from one reconcile to the
/// next (no ages), so conditions built from them stay equal while nothing changes.
pub fn state_text(state: &NodeState) -> String {
    match state {
        NodeState::Hardened => "hardened".into(),
        NodeState::NotSelected => "not selected by spec.hardening.nodeSelector".into(),
        NodeState::NoScan => "no scan reported".into(),
        NodeState::Stale { .. } => "last scan older than two intervals".into(),
        NodeState::Failing { checks } => {
            let shown: Vec<&str> = checks.iter().take(5).map(String::as_str).collect();
            let more = checks.len().saturating_sub(shown.len());
            let mut s = format!("{} failing: {}", checks.len(), shown.join(", "));
            if more > 0 {
                s.push_str(&format!(" and {more} more"));
            }
            s
        }
    }
}
