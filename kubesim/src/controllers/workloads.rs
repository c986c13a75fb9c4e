//! Deployment → ReplicaSet → Pod, DaemonSet and StatefulSet controllers (kwok-style: pods are
//! created and report status; rollouts are immediate rather than surge-limited).
//!
//! Reproduces the observable parts of
//! <https://kubernetes.io/docs/concepts/workloads/controllers/deployment/>,
//! `/replicaset/`, `/daemonset/` and `/statefulset/`: owned children with controller
//! references and `pod-template-hash`, ordinal pod names and PVCs from `volumeClaimTemplates`,
//! one pod per eligible node, and the replica counts and conditions in `status`.

use serde_json::{Value, json};

use super::util::{
    condition, controller_ref, create, delete, deleting, keep_times, name, namespace, owned, patch,
    pod_from_template, pod_ready, rt, set_status, short_hash,
};
use crate::objects::Objects;

fn replicas(o: &Value) -> i64 {
    o.pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
        .max(0)
}

fn generation(o: &Value) -> Value {
    o.pointer("/metadata/generation")
        .cloned()
        .unwrap_or(json!(1))
}

/// One pass over Deployments and ReplicaSets. Returns whether anything was written.
pub fn deployments(objects: &Objects) -> bool {
    let (Some(dep_rt), Some(rs_rt)) = (
        rt(objects, "apps", "v1", "deployments"),
        rt(objects, "apps", "v1", "replicasets"),
    ) else {
        return false;
    };
    let store = objects.store();
    let (deps, _) = store.list(&dep_rt.storage, None, None);
    let now = crate::meta::now();
    let mut acted = false;
    for dep in deps.iter().filter(|d| !deleting(d)) {
        let ns = namespace(dep);
        let mut template = dep.pointer("/spec/template").cloned().unwrap_or(json!({}));
        let hash = short_hash(&template);
        template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
        let rs_name = format!("{}-{}", name(dep), hash);
        let children = owned(objects, &rs_rt, dep);
        let want = replicas(dep);
        let paused = dep.pointer("/spec/paused").and_then(Value::as_bool) == Some(true);
        if !paused {
            if !children.iter().any(|c| name(c) == rs_name) {
                let mut selector = dep.pointer("/spec/selector").cloned().unwrap_or(json!({}));
                selector["matchLabels"]["pod-template-hash"] = json!(hash);
                let labels = template["metadata"]["labels"].clone();
                let rs = json!({
                    "apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "metadata": {"name": rs_name, "labels": labels, "ownerReferences": [controller_ref(dep)],
                        "annotations": {"deployment.kubernetes.io/desired-replicas": want.to_string(), "deployment.kubernetes.io/revision": (children.len() + 1).to_string()}},
                    "spec": {"replicas": want, "selector": selector, "template": template},
                });
                acted |= create(objects, &rs_rt, ns, rs).is_some();
            }
            for c in &children {
                let target = if name(c) == rs_name { want } else { 0 };
                if replicas(c) != target {
                    patch(
                        objects,
                        &rs_rt,
                        ns,
                        name(c),
                        &json!({"spec": {"replicas": target}}),
                    );
                    acted = true;
                }
            }
        }
        let children = owned(objects, &rs_rt, dep);
        let sum = |path: &str| {
            children
                .iter()
                .map(|c| c.pointer(path).and_then(Value::as_i64).unwrap_or(0))
                .sum::<i64>()
        };
        let current = children.iter().find(|c| name(c) == rs_name);
        let updated = current
            .and_then(|c| c.pointer("/status/replicas").and_then(Value::as_i64))
            .unwrap_or(0);
        let ready = sum("/status/readyReplicas");
        let available = sum("/status/availableReplicas");
        let total = sum("/status/replicas");
        let mut conditions = vec![
            if available >= want {
                condition(
                    "Available",
                    "True",
                    "MinimumReplicasAvailable",
                    "Deployment has minimum availability.",
                    &now,
                )
            } else {
                condition(
                    "Available",
                    "False",
                    "MinimumReplicasUnavailable",
                    "Deployment does not have minimum availability.",
                    &now,
                )
            },
            if updated >= want && available >= want {
                condition(
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable",
                    &format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
                    &now,
                )
            } else {
                condition(
                    "Progressing",
                    "True",
                    "ReplicaSetUpdated",
                    &format!("ReplicaSet \"{rs_name}\" is progressing."),
                    &now,
                )
            },
        ];
        keep_times(dep.pointer("/status/conditions"), &mut conditions);
        let mut status = json!({
            "observedGeneration": generation(dep),
            "replicas": total, "updatedReplicas": updated, "readyReplicas": ready, "availableReplicas": available,
            "conditions": conditions,
        });
        if total - available > 0 {
            status["unavailableReplicas"] = json!(total - available);
        }
        acted |= set_status(objects, &dep_rt, dep, status);
    }
    acted |= replicasets(objects);
    acted
}

fn replicasets(objects: &Objects) -> bool {
    let (Some(rs_rt), Some(pod_rt)) = (
        rt(objects, "apps", "v1", "replicasets"),
        rt(objects, "", "v1", "pods"),
    ) else {
        return false;
    };
    let (sets, _) = objects.store().list(&rs_rt.storage, None, None);
    let mut acted = false;
    for rs in sets.iter().filter(|d| !deleting(d)) {
        let ns = namespace(rs);
        let pods: Vec<_> = owned(objects, &pod_rt, rs)
            .into_iter()
            .filter(|p| !deleting(p))
            .collect();
        let live: Vec<_> = pods
            .iter()
            .filter(|p| !matches!(super::util::phase(p), "Succeeded" | "Failed"))
            .collect();
        let want = replicas(rs) as usize;
        if live.len() < want {
            let template = rs.pointer("/spec/template").cloned().unwrap_or(json!({}));
            for _ in live.len()..want {
                let pod = pod_from_template(&template, rs, None, &format!("{}-", name(rs)));
                acted |= create(objects, &pod_rt, ns, pod).is_some();
            }
        } else if live.len() > want {
            let mut extra: Vec<_> = live.iter().collect();
            extra.sort_by_key(|p| {
                std::cmp::Reverse(
                    p.pointer("/metadata/creationTimestamp")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                )
            });
            for p in extra.into_iter().take(live.len() - want) {
                delete(objects, &pod_rt, ns, name(p));
                acted = true;
            }
        }
        for p in pods
            .iter()
            .filter(|p| matches!(super::util::phase(p), "Succeeded" | "Failed"))
        {
            delete(objects, &pod_rt, ns, name(p));
            acted = true;
        }
        let pods: Vec<_> = owned(objects, &pod_rt, rs)
            .into_iter()
            .filter(|p| !deleting(p))
            .collect();
        let ready = pods.iter().filter(|p| pod_ready(p)).count();
        let status = json!({
            "replicas": pods.len(), "fullyLabeledReplicas": pods.len(), "readyReplicas": ready, "availableReplicas": ready,
            "observedGeneration": generation(rs),
        });
        acted |= set_status(objects, &rs_rt, rs, status);
    }
    acted
}

/// One pass over DaemonSets: one pod per node the template fits (via node affinity on the name).
pub fn daemonsets(objects: &Objects) -> bool {
    let (Some(ds_rt), Some(pod_rt), Some(node_rt)) = (
        rt(objects, "apps", "v1", "daemonsets"),
        rt(objects, "", "v1", "pods"),
        rt(objects, "", "v1", "nodes"),
    ) else {
        return false;
    };
    let store = objects.store();
    let (sets, _) = store.list(&ds_rt.storage, None, None);
    if sets.is_empty() {
        return false;
    }
    let (nodes, _) = store.list(&node_rt.storage, None, None);
    let mut acted = false;
    for ds in sets.iter().filter(|d| !deleting(d)) {
        let ns = namespace(ds);
        let template = ds.pointer("/spec/template").cloned().unwrap_or(json!({}));
        let pods: Vec<_> = owned(objects, &pod_rt, ds)
            .into_iter()
            .filter(|p| !deleting(p))
            .collect();
        let mut desired = 0;
        for node in &nodes {
            let node_name = name(node);
            let probe = json!({"spec": template.get("spec").cloned().unwrap_or(json!({}))});
            if !crate::kubelet::fits(&probe, node) {
                continue;
            }
            desired += 1;
            let on_node = pods.iter().any(|p| {
                p.pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchFields/0/values/0")
                    .and_then(Value::as_str)
                    == Some(node_name)
                    || p.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node_name)
            });
            if !on_node {
                let mut pod = pod_from_template(&template, ds, None, &format!("{}-", name(ds)));
                pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] = json!({
                    "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_name]}]}]
                });
                acted |= create(objects, &pod_rt, ns, pod).is_some();
            }
        }
        let pods: Vec<_> = owned(objects, &pod_rt, ds)
            .into_iter()
            .filter(|p| !deleting(p))
            .collect();
        let scheduled = pods
            .iter()
            .filter(|p| p.pointer("/spec/nodeName").is_some())
            .count();
        let ready = pods.iter().filter(|p| pod_ready(p)).count();
        let status = json!({
            "desiredNumberScheduled": desired, "currentNumberScheduled": scheduled, "updatedNumberScheduled": scheduled,
            "numberReady": ready, "numberAvailable": ready, "numberMisscheduled": 0,
            "observedGeneration": generation(ds),
        });
        acted |= set_status(objects, &ds_rt, ds, status);
    }
    acted
}

/// One pass over StatefulSets: ordinal pods, ordered or parallel, with PVCs from templates.
pub fn statefulsets(objects: &Objects) -> bool {
    let (Some(sts_rt), Some(pod_rt), Some(pvc_rt)) = (
        rt(objects, "apps", "v1", "statefulsets"),
        rt(objects, "", "v1", "pods"),
        rt(objects, "", "v1", "persistentvolumeclaims"),
    ) else {
        return false;
    };
    let store = objects.store();
    let (sets, _) = store.list(&sts_rt.storage, None, None);
    let mut acted = false;
    for sts in sets.iter().filter(|d| !deleting(d)) {
        let ns = namespace(sts);
        let want = replicas(sts) as usize;
        let parallel = sts
            .pointer("/spec/podManagementPolicy")
            .and_then(Value::as_str)
            == Some("Parallel");
        let template = sts.pointer("/spec/template").cloned().unwrap_or(json!({}));
        let revision = format!("{}-{}", name(sts), short_hash(&template));
        let pods: Vec<_> = owned(objects, &pod_rt, sts)
            .into_iter()
            .filter(|p| !deleting(p))
            .collect();
        let claims = sts
            .pointer("/spec/volumeClaimTemplates")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for i in 0..want {
            let pod_name = format!("{}-{i}", name(sts));
            if pods.iter().any(|p| name(p) == pod_name) {
                continue;
            }
            if !parallel && i > 0 {
                let prev = format!("{}-{}", name(sts), i - 1);
                if !pods.iter().any(|p| name(p) == prev && pod_ready(p)) {
                    break;
                }
            }
            let mut volumes = template
                .pointer("/spec/volumes")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for claim in &claims {
                let claim_name = claim
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("data");
                let pvc_name = format!("{claim_name}-{pod_name}");
                if store.get(&Objects::key(&pvc_rt, ns, &pvc_name)).is_none() {
                    let mut pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": claim.get("metadata").cloned().unwrap_or(json!({})), "spec": claim.get("spec").cloned().unwrap_or(json!({}))});
                    pvc["metadata"]["name"] = json!(pvc_name);
                    pvc["metadata"]["labels"] = template
                        .pointer("/metadata/labels")
                        .cloned()
                        .unwrap_or(json!({}));
                    create(objects, &pvc_rt, ns, pvc);
                }
                volumes.retain(|v| v["name"].as_str() != Some(claim_name));
                volumes.push(
                    json!({"name": claim_name, "persistentVolumeClaim": {"claimName": pvc_name}}),
                );
            }
            let mut pod = pod_from_template(&template, sts, Some(&pod_name), "");
            pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] = json!(pod_name);
            pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"] = json!(i.to_string());
            pod["metadata"]["labels"]["controller-revision-hash"] = json!(revision);
            if !volumes.is_empty() {
                pod["spec"]["volumes"] = Value::Array(volumes);
            }
            if let Some(svc) = sts.pointer("/spec/serviceName").and_then(Value::as_str) {
                pod["spec"]["hostname"] = json!(pod_name);
                pod["spec"]["subdomain"] = json!(svc);
            }
            acted |= create(objects, &pod_rt, ns, pod).is_some();
            if !parallel {
                break;
            }
        }
        for p in &pods {
            let ordinal = name(p)
                .rsplit('-')
                .next()
                .and_then(|o| o.parse::<usize>().ok())
                .unwrap_or(0);
            if ordinal >= want {
                delete(objects, &pod_rt, ns, name(p));
                acted = true;
            }
        }
        let pods: Vec<_> = owned(objects, &pod_rt, sts)
            .into_iter()
            .filter(|p| !deleting(p))
            .collect();
        let ready = pods.iter().filter(|p| pod_ready(p)).count();
        let status = json!({
            "replicas": pods.len(), "readyReplicas": ready, "currentReplicas": pods.len(), "updatedReplicas": pods.len(),
            "availableReplicas": ready, "currentRevision": revision, "updateRevision": revision,
            "observedGeneration": generation(sts), "collisionCount": 0,
        });
        acted |= set_status(objects, &sts_rt, sts, status);
    }
    acted
}

/// Binds PersistentVolumeClaims at once (as a provisioner with `Immediate` binding would).
pub fn claims(objects: &Objects) -> bool {
    let Some(pvc_rt) = rt(objects, "", "v1", "persistentvolumeclaims") else {
        return false;
    };
    let (pvcs, _) = objects.store().list(&pvc_rt.storage, None, None);
    let mut acted = false;
    for pvc in pvcs
        .iter()
        .filter(|p| !deleting(p) && p.pointer("/status/phase").is_none())
    {
        let status = json!({
            "phase": "Bound",
            "accessModes": pvc.pointer("/spec/accessModes").cloned().unwrap_or(json!(["ReadWriteOnce"])),
            "capacity": {"storage": pvc.pointer("/spec/resources/requests/storage").cloned().unwrap_or(json!("1Gi"))},
        });
        acted |= set_status(objects, &pvc_rt, pvc, status);
    }
    acted
}
