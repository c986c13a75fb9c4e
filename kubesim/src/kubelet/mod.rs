//! Simulated nodes, scheduler and kubelet: pods are bound to nodes that fit and move
//! Pending → Running → Succeeded/Failed by a configurable rule (kwok-style; no containers run).
//!
//! Scheduling honours `nodeSelector`, required node affinity, taints and tolerations and
//! `spec.unschedulable` (<https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/>,
//! <https://kubernetes.io/docs/concepts/scheduling-eviction/taint-and-toleration/>); pods that fit
//! nowhere stay Pending with `PodScheduled=False`, reason `Unschedulable`
//! (<https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/#pod-conditions>).

use std::collections::HashMap;
use std::time::Instant;

use serde_json::{Value, json};

use crate::objects::{Objects, PatchKind, WriteOptions};
use crate::registry::ResourceType;

mod nodes;
mod outcome;
mod scheduling;

pub use nodes::{NodeSpec, Taint, seed_nodes};
pub use outcome::{PodFate, PodOutcome};
pub use scheduling::fits;

use scheduling::{fit, unschedulable_message};

/// Scheduler and kubelet state kept between passes (transition times are not persisted in objects).
#[derive(Debug, Default)]
pub struct Kubelet {
    bound_at: HashMap<String, Instant>,
    running_at: HashMap<String, Instant>,
}

fn opts(manager: &str) -> WriteOptions {
    WriteOptions {
        manager: manager.into(),
        ..WriteOptions::default()
    }
}

/// A termination message as a kubelet reports it: at most 4096 bytes (cut on a character
/// boundary here, so the status stays valid JSON text).
fn cut_message(m: &str) -> &str {
    const MAX: usize = 4096;
    if m.len() <= MAX {
        return m;
    }
    let mut end = MAX;
    while !m.is_char_boundary(end) {
        end -= 1;
    }
    &m[..end]
}

fn condition(
    t: &str,
    status: &str,
    reason: Option<&str>,
    message: Option<&str>,
    now: &str,
) -> Value {
    let mut c =
        json!({"type": t, "status": status, "lastProbeTime": null, "lastTransitionTime": now});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    if let Some(m) = message {
        c["message"] = json!(m);
    }
    c
}

fn patch_status(
    objects: &Objects,
    rt: &ResourceType,
    pod: &Value,
    status: Value,
    spec: Option<Value>,
) {
    let ns = pod
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let rv = pod
        .pointer("/metadata/resourceVersion")
        .cloned()
        .unwrap_or(Value::Null);
    if let Some(spec) = spec {
        let p = json!({"metadata": {"resourceVersion": rv}, "spec": spec});
        if objects
            .run(rt, || {
                objects.plan_patch(
                    rt,
                    ns,
                    name,
                    PatchKind::Merge,
                    &p,
                    None,
                    &opts("kube-scheduler"),
                )
            })
            .is_err()
        {
            return;
        }
    }
    let p = json!({"status": status});
    let _ = objects.run(rt, || {
        objects.plan_patch(
            rt,
            ns,
            name,
            PatchKind::Merge,
            &p,
            Some("status"),
            &opts("kubelet"),
        )
    });
}

impl Kubelet {
    /// One pass over pods: schedule, start, finish. Returns whether anything changed.
    pub fn pass(&mut self, objects: &Objects, outcome: &PodOutcome) -> bool {
        let store = objects.store();
        let reg = store.registry();
        let (Some(pods_rt), Some(nodes_rt)) =
            (reg.get("", "v1", "pods"), reg.get("", "v1", "nodes"))
        else {
            return false;
        };
        let (pods, _) = store.list(&pods_rt.storage, None, None);
        let (nodes, _) = store.list(&nodes_rt.storage, None, None);
        let live: std::collections::HashSet<String> = pods
            .iter()
            .filter_map(|p| {
                p.pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .collect();
        self.bound_at.retain(|k, _| live.contains(k));
        self.running_at.retain(|k, _| live.contains(k));
        let mut per_node: HashMap<String, usize> = HashMap::new();
        for p in &pods {
            if let Some(n) = p.pointer("/spec/nodeName").and_then(Value::as_str) {
                *per_node.entry(n.to_string()).or_default() += 1;
            }
        }
        let now = Instant::now();
        let stamp = crate::meta::now();
        let mut acted = false;
        for pod in pods {
            if pod.pointer("/metadata/deletionTimestamp").is_some() {
                continue;
            }
            let uid = pod
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let phase = pod
                .pointer("/status/phase")
                .and_then(Value::as_str)
                .unwrap_or("Pending")
                .to_string();
            let node = pod
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .map(str::to_string);
            match (phase.as_str(), node) {
                ("Pending", None) => {
                    let mut misfits = Vec::new();
                    let mut candidates = Vec::new();
                    for n in &nodes {
                        match fit(&pod, n) {
                            Ok(()) => candidates.push(
                                n.pointer("/metadata/name")
                                    .and_then(Value::as_str)
                                    .unwrap_or_default()
                                    .to_string(),
                            ),
                            Err(m) => misfits.push(m),
                        }
                    }
                    candidates.sort_by_key(|n| (per_node.get(n).copied().unwrap_or(0), n.clone()));
                    match candidates.first() {
                        Some(chosen) => {
                            *per_node.entry(chosen.clone()).or_default() += 1;
                            let status = json!({"phase": "Pending", "conditions": [condition("PodScheduled", "True", None, None, &stamp)]});
                            patch_status(
                                objects,
                                &pods_rt,
                                &pod,
                                status,
                                Some(json!({"nodeName": chosen})),
                            );
                            self.bound_at.insert(uid, now);
                            acted = true;
                        }
                        None => {
                            let msg = unschedulable_message(nodes.len(), &misfits);
                            let already = pod
                                .pointer("/status/conditions")
                                .and_then(Value::as_array)
                                .is_some_and(|cs| {
                                    cs.iter().any(|c| {
                                        c["type"] == "PodScheduled" && c["message"] == msg.as_str()
                                    })
                                });
                            if !already {
                                let status = json!({"phase": "Pending", "conditions": [condition("PodScheduled", "False", Some("Unschedulable"), Some(&msg), &stamp)]});
                                patch_status(objects, &pods_rt, &pod, status, None);
                                acted = true;
                            }
                        }
                    }
                }
                ("Pending", Some(node_name)) => {
                    let bound = *self.bound_at.entry(uid.clone()).or_insert(now);
                    let fate = outcome.fate(&pod);
                    if now.duration_since(bound) >= fate.start_after {
                        let containers = pod
                            .pointer("/spec/containers")
                            .and_then(Value::as_array)
                            .cloned()
                            .unwrap_or_default();
                        let statuses: Vec<Value> = containers
                            .iter()
                            .map(|c| json!({"name": c["name"], "image": c["image"], "imageID": "", "containerID": format!("kubesim://{}", c["name"].as_str().unwrap_or_default()), "ready": true, "started": true, "restartCount": 0, "state": {"running": {"startedAt": stamp}}}))
                            .collect();
                        let node_ip = nodes
                            .iter()
                            .find(|n| {
                                n.pointer("/metadata/name").and_then(Value::as_str)
                                    == Some(node_name.as_str())
                            })
                            .and_then(|n| n.pointer("/status/addresses/0/address").cloned())
                            .unwrap_or(json!("10.0.0.10"));
                        let pod_ip = format!(
                            "10.244.{}.{}",
                            (live.len() / 250) % 250,
                            uid.len() % 250 + 2
                        );
                        let status = json!({
                            "phase": "Running", "startTime": stamp, "hostIP": node_ip, "podIP": pod_ip, "podIPs": [{"ip": pod_ip}], "qosClass": "BestEffort",
                            "conditions": [
                                condition("PodReadyToStartContainers", "True", None, None, &stamp),
                                condition("Initialized", "True", None, None, &stamp),
                                condition("Ready", "True", None, None, &stamp),
                                condition("ContainersReady", "True", None, None, &stamp),
                                condition("PodScheduled", "True", None, None, &stamp),
                            ],
                            "containerStatuses": statuses,
                        });
                        patch_status(objects, &pods_rt, &pod, status, None);
                        self.running_at.insert(uid, now);
                        acted = true;
                    }
                }
                ("Running", Some(_)) => {
                    let started = *self.running_at.entry(uid.clone()).or_insert(now);
                    let fate = outcome.fate(&pod);
                    let restart_always = pod
                        .pointer("/spec/restartPolicy")
                        .and_then(Value::as_str)
                        .unwrap_or("Always")
                        == "Always";
                    if let Some((run, ok)) = fate.finish
                        && !restart_always
                        && now.duration_since(started) >= run
                    {
                        let (phase, reason, code) = if ok {
                            ("Succeeded", "Completed", 0)
                        } else {
                            ("Failed", "Error", 1)
                        };
                        let containers = pod
                            .pointer("/spec/containers")
                            .and_then(Value::as_array)
                            .cloned()
                            .unwrap_or_default();
                        let started_at = pod
                            .pointer("/status/startTime")
                            .cloned()
                            .unwrap_or(json!(stamp));
                        let statuses: Vec<Value> = containers
                            .iter()
                            .enumerate()
                            .map(|(i, c)| {
                                let mut terminated = json!({"exitCode": code, "reason": reason, "startedAt": started_at, "finishedAt": stamp});
                                if let (0, Some(m)) = (i, fate.termination_message.as_deref()) {
                                    terminated["message"] = json!(cut_message(m));
                                }
                                json!({"name": c["name"], "image": c["image"], "imageID": "", "containerID": format!("kubesim://{}", c["name"].as_str().unwrap_or_default()), "ready": false, "started": false, "restartCount": 0, "state": {"terminated": terminated}})
                            })
                            .collect();
                        let status = json!({
                            "phase": phase,
                            "conditions": [
                                condition("PodReadyToStartContainers", "False", None, None, &stamp),
                                condition("Initialized", "True", Some("PodCompleted"), None, &stamp),
                                condition("Ready", "False", Some("PodCompleted"), None, &stamp),
                                condition("ContainersReady", "False", Some("PodCompleted"), None, &stamp),
                                condition("PodScheduled", "True", None, None, &stamp),
                            ],
                            "containerStatuses": statuses,
                        });
                        patch_status(objects, &pods_rt, &pod, status, None);
                        acted = true;
                    }
                }
                _ => {}
            }
        }
        acted
    }
}
