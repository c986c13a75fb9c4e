//! Simulated nodes, scheduler and kubelet: pods are bound to nodes that fit and move
//! Pending → Running → Succeeded/Failed by a configurable rule (kwok-style; no containers run).
//!
//! Scheduling honours `nodeSelector`, required node affinity, taints and tolerations and
//! `spec.unschedulable` (<https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/>,
//! <https://kubernetes.io/docs/concepts/scheduling-eviction/taint-and-toleration/>); pods that fit
//! nowhere stay Pending with `PodScheduled=False`, reason `Unschedulable`
//! (<https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/#pod-conditions>).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::error::ApiError;
use crate::objects::{Objects, PatchKind, WriteOptions};
use crate::registry::ResourceType;

/// A taint on a simulated node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    /// Key.
    pub key: String,
    /// Value (may be empty).
    pub value: String,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

/// A simulated node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// Node name.
    pub name: String,
    /// Extra labels (hostname, os and arch labels are always set).
    pub labels: BTreeMap<String, String>,
    /// Taints.
    pub taints: Vec<Taint>,
    /// Cordoned.
    pub unschedulable: bool,
}

impl NodeSpec {
    /// A Ready, untainted node.
    pub fn new(name: impl Into<String>) -> Self {
        NodeSpec {
            name: name.into(),
            labels: BTreeMap::new(),
            taints: Vec::new(),
            unschedulable: false,
        }
    }

    /// Adds a label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Adds a taint.
    pub fn taint(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
        effect: impl Into<String>,
    ) -> Self {
        self.taints.push(Taint {
            key: key.into(),
            value: value.into(),
            effect: effect.into(),
        });
        self
    }

    /// Marks the node unschedulable (cordoned).
    pub fn unschedulable(mut self) -> Self {
        self.unschedulable = true;
        self
    }

    fn to_object(&self, index: usize) -> Value {
        let mut labels = json!({
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": "amd64",
        });
        for (k, v) in &self.labels {
            labels[k] = json!(v);
        }
        let taints: Vec<Value> = self
            .taints
            .iter()
            .map(|t| {
                let mut v = json!({"key": t.key, "effect": t.effect});
                if !t.value.is_empty() {
                    v["value"] = json!(t.value);
                }
                v
            })
            .collect();
        let mut spec = json!({});
        if !taints.is_empty() {
            spec["taints"] = Value::Array(taints);
        }
        if self.unschedulable {
            spec["unschedulable"] = json!(true);
        }
        let now = crate::meta::now();
        let resources =
            json!({"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"});
        json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.name, "labels": labels},
            "spec": spec,
            "status": {
                "conditions": [
                    {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status (simulated by kubesim)", "lastHeartbeatTime": now, "lastTransitionTime": now},
                    {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory", "lastHeartbeatTime": now, "lastTransitionTime": now},
                    {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure", "lastHeartbeatTime": now, "lastTransitionTime": now},
                    {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID", "lastHeartbeatTime": now, "lastTransitionTime": now}
                ],
                "addresses": [{"type": "InternalIP", "address": format!("10.0.0.{}", index + 10)}, {"type": "Hostname", "address": self.name}],
                "capacity": resources, "allocatable": resources,
                "nodeInfo": {"kubeletVersion": "v1.33.0-kubesim", "kubeProxyVersion": "v1.33.0-kubesim", "operatingSystem": "linux", "architecture": "amd64", "containerRuntimeVersion": "kubesim://0", "osImage": "kubesim", "kernelVersion": "0", "machineID": "", "systemUUID": "", "bootID": ""}
            }
        })
    }
}

/// Creates the Node objects.
pub fn seed_nodes(objects: &Objects, nodes: &[NodeSpec]) -> Result<(), ApiError> {
    for (i, n) in nodes.iter().enumerate() {
        crate::sim::seed_object(objects, &n.to_object(i))?;
    }
    Ok(())
}

/// What happens to one pod once it is bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodFate {
    /// Time from binding to Running.
    pub start_after: Duration,
    /// Time from Running to the end, and whether it succeeds; `None` runs forever.
    pub finish: Option<(Duration, bool)>,
}

/// The rule deciding each pod's fate. The default: pods owned by a Job succeed one second
/// after starting; other pods run forever. Annotations override any rule:
/// `kubesim.io/phase: Succeeded|Failed|Running`, `kubesim.io/run-seconds: "N"`.
#[derive(Clone)]
pub struct PodOutcome(Arc<dyn Fn(&Value) -> PodFate + Send + Sync>);

impl std::fmt::Debug for PodOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PodOutcome(..)")
    }
}

impl Default for PodOutcome {
    fn default() -> Self {
        PodOutcome::new(|pod| {
            let owned_by_job = pod
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|r| r.iter().any(|o| o["kind"] == "Job"));
            PodFate {
                start_after: Duration::from_millis(200),
                finish: owned_by_job.then_some((Duration::from_secs(1), true)),
            }
        })
    }
}

impl PodOutcome {
    /// A custom rule.
    pub fn new(f: impl Fn(&Value) -> PodFate + Send + Sync + 'static) -> Self {
        PodOutcome(Arc::new(f))
    }

    /// Every pod ends this way after `run` (Succeeded when `succeed`, else Failed).
    pub fn all(run: Duration, succeed: bool) -> Self {
        PodOutcome::new(move |_| PodFate {
            start_after: Duration::from_millis(100),
            finish: Some((run, succeed)),
        })
    }

    /// The fate of a pod, annotations first.
    pub fn fate(&self, pod: &Value) -> PodFate {
        let mut fate = (self.0)(pod);
        let ann = |k: &str| {
            pod.pointer(&format!("/metadata/annotations/{}", k.replace('/', "~1")))
                .and_then(Value::as_str)
        };
        let run = ann("kubesim.io/run-seconds")
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64);
        match ann("kubesim.io/phase") {
            Some("Succeeded") => fate.finish = Some((run.unwrap_or(Duration::from_secs(1)), true)),
            Some("Failed") => fate.finish = Some((run.unwrap_or(Duration::from_secs(1)), false)),
            Some("Running") => fate.finish = None,
            _ => {
                if let (Some(r), Some((_, ok))) = (run, fate.finish) {
                    fate.finish = Some((r, ok));
                }
            }
        }
        fate
    }
}

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

fn tolerates(tolerations: &[Value], taint: &Value) -> bool {
    tolerations.iter().any(|t| {
        let effect_ok = t["effect"]
            .as_str()
            .is_none_or(|e| e.is_empty() || Some(e) == taint["effect"].as_str());
        let key = t["key"].as_str().unwrap_or_default();
        match t["operator"].as_str().unwrap_or("Equal") {
            "Exists" => effect_ok && (key.is_empty() || Some(key) == taint["key"].as_str()),
            _ => {
                effect_ok
                    && Some(key) == taint["key"].as_str()
                    && t["value"].as_str().unwrap_or_default()
                        == taint["value"].as_str().unwrap_or_default()
            }
        }
    })
}

fn expr_matches(
    expr: &Value,
    labels: &serde_json::Map<String, Value>,
    node_name: &str,
    field: bool,
) -> bool {
    let key = expr["key"].as_str().unwrap_or_default();
    let got = if field {
        (key == "metadata.name").then_some(node_name)
    } else {
        labels.get(key).and_then(Value::as_str)
    };
    let values: Vec<&str> = expr["values"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    match expr["operator"].as_str().unwrap_or_default() {
        "In" => got.is_some_and(|g| values.contains(&g)),
        "NotIn" => got.is_none_or(|g| !values.contains(&g)),
        "Exists" => got.is_some(),
        "DoesNotExist" => got.is_none(),
        "Gt" | "Lt" => {
            let (Some(g), Some(v)) = (
                got.and_then(|g| g.parse::<i64>().ok()),
                values.first().and_then(|v| v.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if expr["operator"] == "Gt" {
                g > v
            } else {
                g < v
            }
        }
        _ => false,
    }
}

/// Why a node does not fit a pod, for the Unschedulable message.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Misfit {
    Affinity,
    Taint(String),
    Unschedulable,
}

fn fit(pod: &Value, node: &Value) -> Result<(), Misfit> {
    let labels = node
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let node_name = node
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let tolerations = pod
        .pointer("/spec/tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true)
        && !tolerates(
            &tolerations,
            &json!({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}),
        )
    {
        return Err(Misfit::Unschedulable);
    }
    if let Some(sel) = pod.pointer("/spec/nodeSelector").and_then(Value::as_object)
        && !sel.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return Err(Misfit::Affinity);
    }
    if let Some(terms) = pod
        .pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")
        .and_then(Value::as_array)
    {
        let any = terms.iter().any(|term| {
            let exprs = term["matchExpressions"].as_array().cloned().unwrap_or_default();
            let fields = term["matchFields"].as_array().cloned().unwrap_or_default();
            (!exprs.is_empty() || !fields.is_empty())
                && exprs.iter().all(|e| expr_matches(e, &labels, node_name, false))
                && fields.iter().all(|e| expr_matches(e, &labels, node_name, true))
        });
        if !any {
            return Err(Misfit::Affinity);
        }
    }
    for taint in node
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        let effect = taint["effect"].as_str().unwrap_or_default();
        if (effect == "NoSchedule" || effect == "NoExecute") && !tolerates(&tolerations, &taint) {
            let k = taint["key"].as_str().unwrap_or_default();
            let v = taint["value"].as_str().unwrap_or_default();
            return Err(Misfit::Taint(if v.is_empty() {
                format!("{{{k}: }}")
            } else {
                format!("{{{k}: {v}}}")
            }));
        }
    }
    Ok(())
}

/// Whether a pod (template) fits a node: selector, required affinity, taints, cordon.
pub fn fits(pod: &Value, node: &Value) -> bool {
    fit(pod, node).is_ok()
}

fn unschedulable_message(total: usize, misfits: &[Misfit]) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for m in misfits {
        let text = match m {
            Misfit::Affinity => "node(s) didn't match Pod's node affinity/selector".to_string(),
            Misfit::Taint(t) => format!("node(s) had untolerated taint {t}"),
            Misfit::Unschedulable => "node(s) were unschedulable".to_string(),
        };
        *counts.entry(text).or_default() += 1;
    }
    let parts: Vec<String> = counts.iter().map(|(t, n)| format!("{n} {t}")).collect();
    if parts.is_empty() {
        format!("0/{total} nodes are available: no nodes registered.")
    } else {
        format!(
            "0/{total} nodes are available: {}. preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling.",
            parts.join(", ")
        )
    }
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
                            .map(|c| json!({"name": c["name"], "image": c["image"], "imageID": "", "containerID": format!("kubesim://{}", c["name"].as_str().unwrap_or_default()), "ready": false, "started": false, "restartCount": 0, "state": {"terminated": {"exitCode": code, "reason": reason, "startedAt": started_at, "finishedAt": stamp}}}))
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

#[cfg(test)]
mod tests {
    use super::*;

    // https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/ and
    // https://kubernetes.io/docs/concepts/scheduling-eviction/taint-and-toleration/
    #[test]
    fn fit_matrix() {
        let hardened = NodeSpec::new("h")
            .label("medplat.io/hardened", "true")
            .taint("dedicated", "medplat", "NoSchedule")
            .to_object(0);
        let plain = NodeSpec::new("p").to_object(1);
        let cordoned = NodeSpec::new("c").unschedulable().to_object(2);
        let tol = json!([{"key": "dedicated", "operator": "Equal", "value": "medplat", "effect": "NoSchedule"}]);
        let affinity = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "medplat.io/hardened", "operator": "In", "values": ["true"]}]}]}}});
        let cases = [
            (json!({"spec": {}}), &plain, Ok(())),
            (
                json!({"spec": {}}),
                &hardened,
                Err(Misfit::Taint("{dedicated: medplat}".into())),
            ),
            (json!({"spec": {"tolerations": tol}}), &hardened, Ok(())),
            (
                json!({"spec": {"tolerations": [{"operator": "Exists"}]}}),
                &hardened,
                Ok(()),
            ),
            (
                json!({"spec": {"nodeSelector": {"medplat.io/hardened": "true"}}}),
                &plain,
                Err(Misfit::Affinity),
            ),
            (
                json!({"spec": {"affinity": affinity, "tolerations": tol}}),
                &hardened,
                Ok(()),
            ),
            (
                json!({"spec": {"affinity": affinity}}),
                &plain,
                Err(Misfit::Affinity),
            ),
            (json!({"spec": {}}), &cordoned, Err(Misfit::Unschedulable)),
        ];
        for (pod, node, want) in cases {
            assert_eq!(fit(&pod, node), want, "{pod}");
        }
        assert_eq!(
            unschedulable_message(2, &[Misfit::Affinity, Misfit::Taint("{a: b}".into())]),
            "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {a: b}. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn annotations_override_the_rule() {
        let o = PodOutcome::default();
        let job_pod = json!({"metadata": {"ownerReferences": [{"kind": "Job"}]}});
        assert_eq!(
            o.fate(&job_pod).finish,
            Some((Duration::from_secs(1), true))
        );
        let plain = json!({"metadata": {}});
        assert_eq!(o.fate(&plain).finish, None);
        let failing = json!({"metadata": {"annotations": {"kubesim.io/phase": "Failed", "kubesim.io/run-seconds": "0.5"}}});
        assert_eq!(
            o.fate(&failing).finish,
            Some((Duration::from_millis(500), false))
        );
    }
}
