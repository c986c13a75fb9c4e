//! What medplat has made of a cluster, read straight from kubesim's store (no HTTP, so reading
//! costs the operator nothing and no injected fault touches it): readiness of the parents,
//! the children medplat wrote, and a normalised snapshot to compare two runs field by field.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

/// The kinds whose objects must become Ready.
pub const PARENTS: [(&str, &str); 4] = [
    ("medplat.io/v1alpha1", "StorageTier"),
    ("medplat.io/v1alpha1", "DataSource"),
    ("medplat.io/v1alpha1", "AccessPolicy"),
    ("medplat.io/v1alpha1", "Pipeline"),
];

/// The kinds medplat writes children of (for its parents; the Platform's are not here).
pub const CHILD_KINDS: [(&str, &str); 10] = [
    ("v1", "ServiceAccount"),
    ("v1", "ConfigMap"),
    ("v1", "Service"),
    ("v1", "PersistentVolumeClaim"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("batch/v1", "CronJob"),
    ("batch/v1", "Job"),
    ("apps/v1", "Deployment"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
];

/// Every stored object of a kind.
pub fn stored(sim: &kubesim::Sim, api_version: &str, kind: &str) -> Vec<Arc<Value>> {
    let store = sim.objects().store();
    let rt = store
        .registry()
        .by_kind(api_version, kind)
        .unwrap_or_else(|| panic!("kubesim serves no {kind}"));
    store.list(&rt.storage, None, None).0
}

/// Whether a medplat object is Ready for its current generation.
pub fn is_ready(obj: &Value) -> bool {
    let generation = obj["metadata"]["generation"].as_i64();
    obj["status"]["observedGeneration"].as_i64() == generation
        && obj["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// How many parents are not Ready yet, and a description of one of them.
pub fn not_ready(sim: &kubesim::Sim) -> (usize, Option<String>) {
    let mut n = 0;
    let mut example = None;
    for (v, k) in PARENTS {
        for o in stored(sim, v, k) {
            if !is_ready(&o) {
                n += 1;
                example.get_or_insert_with(|| {
                    format!(
                        "{k} {}/{}: {}",
                        o["metadata"]["namespace"].as_str().unwrap_or_default(),
                        o["metadata"]["name"].as_str().unwrap_or_default(),
                        o["status"]["conditions"]
                    )
                });
            }
        }
    }
    (n, example)
}

/// Whether medplat (any of its field managers) wrote this object's main resource.
pub fn written_by_medplat(o: &Value) -> bool {
    o["metadata"]["managedFields"].as_array().is_some_and(|m| {
        m.iter().any(|f| {
            f["manager"]
                .as_str()
                .is_some_and(|m| m.starts_with("medplat-") && f["subresource"].is_null())
        })
    })
}

/// Every object medplat wrote (its children), as stored, with its kind.
pub fn children(sim: &kubesim::Sim) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (v, k) in CHILD_KINDS {
        for o in stored(sim, v, k) {
            if written_by_medplat(&o) {
                out.push((k.to_string(), (*o).clone()));
            }
        }
    }
    out
}

fn remove(v: &mut Value, pointer: &str, keys: &[&str]) {
    if let Some(o) = v.pointer_mut(pointer).and_then(Value::as_object_mut) {
        for k in keys {
            o.remove(*k);
        }
    }
}

/// The metadata the server or other controllers set, which differs between two clusters
/// holding the same state.
const VOLATILE_METADATA: [&str; 6] = [
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionGracePeriodSeconds",
];

/// Labels that carry a server-assigned uid.
const UID_LABELS: [&str; 3] = [
    "medplat.io/owner-uid",
    "controller-uid",
    "batch.kubernetes.io/controller-uid",
];

/// Removes [`UID_LABELS`] from every label map and label selector, at any depth (a CronJob's
/// Job template and its pod template carry them too).
fn strip_uid_labels(v: &mut Value) {
    match v {
        Value::Object(o) => {
            for (k, child) in o.iter_mut() {
                if (k == "labels" || k == "matchLabels")
                    && let Some(m) = child.as_object_mut()
                {
                    for l in UID_LABELS {
                        m.remove(l);
                    }
                }
                strip_uid_labels(child);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strip_uid_labels),
        _ => {}
    }
}

/// An object without what differs between two clusters holding the same state: server-set
/// metadata, owner and controller uids, `status` (written by kubesim's controllers), and a
/// Service's cluster IP. A Job's selector and template labels name its own uid. medplat's
/// applied-hash annotation hashes the desired object with its owner's uid, so it differs too;
/// everything it hashes is compared itself.
pub fn normalised(obj: &Value) -> Value {
    let mut v = obj.clone();
    remove(&mut v, "", &["status"]);
    remove(&mut v, "/metadata", &VOLATILE_METADATA);
    remove(
        &mut v,
        "/metadata/annotations",
        &["medplat.io/applied-hash"],
    );
    if v["metadata"]["annotations"]
        .as_object()
        .is_some_and(|a| a.is_empty())
    {
        remove(&mut v, "/metadata", &["annotations"]);
    }
    strip_uid_labels(&mut v);
    if let Some(owners) = v
        .pointer_mut("/metadata/ownerReferences")
        .and_then(Value::as_array_mut)
    {
        for o in owners {
            remove(o, "", &["uid"]);
        }
    }
    if v["kind"] == "Service" {
        remove(&mut v, "/spec", &["clusterIP", "clusterIPs"]);
    }
    v
}

/// A parent's status without times: conditions keep type, status, reason, message and
/// observed generation; the last run keeps its Job and result.
pub fn normalised_status(obj: &Value) -> Value {
    let mut s = obj["status"].clone();
    if let Some(cs) = s.get_mut("conditions").and_then(Value::as_array_mut) {
        for c in cs {
            remove(c, "", &["lastTransitionTime"]);
        }
    }
    remove(&mut s, "/lastRun", &["startTime", "completionTime"]);
    remove(&mut s, "", &["lastSync"]);
    s
}

/// Every child medplat wrote and every parent's status, normalised, by `Kind ns/name`.
pub fn snapshot(sim: &kubesim::Sim) -> BTreeMap<String, Value> {
    let key = |kind: &str, o: &Value| {
        format!(
            "{kind} {}/{}",
            o["metadata"]["namespace"].as_str().unwrap_or_default(),
            o["metadata"]["name"].as_str().unwrap_or_default()
        )
    };
    let mut out = BTreeMap::new();
    for (kind, o) in children(sim) {
        out.insert(key(&kind, &o), normalised(&o));
    }
    for (v, k) in PARENTS {
        for o in stored(sim, v, k) {
            out.insert(format!("{} status", key(k, &o)), normalised_status(&o));
        }
    }
    out
}

/// The JSON pointers where `expected` and `actual` differ, with both values.
fn differing_paths(expected: &Value, actual: &Value, at: String, out: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            let keys: std::collections::BTreeSet<&String> = e.keys().chain(a.keys()).collect();
            for k in keys {
                differing_paths(
                    e.get(k).unwrap_or(&Value::Null),
                    a.get(k).unwrap_or(&Value::Null),
                    format!("{at}/{k}"),
                    out,
                );
            }
        }
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => {
            for (i, (e, a)) in e.iter().zip(a).enumerate() {
                differing_paths(e, a, format!("{at}/{i}"), out);
            }
        }
        (e, a) if e != a => {
            let short = |v: &Value| {
                let s = v.to_string();
                if s.len() > 300 {
                    format!("{}…", &s[..s.floor_char_boundary(300)])
                } else {
                    s
                }
            };
            out.push(format!("{at}: expected {} actual {}", short(e), short(a)));
        }
        _ => {}
    }
}

/// The differences between two snapshots, one line each (at most `max`).
pub fn differences(
    expected: &BTreeMap<String, Value>,
    actual: &BTreeMap<String, Value>,
    max: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in expected {
        match actual.get(k) {
            None => out.push(format!("missing: {k}")),
            Some(a) if a != v => {
                let mut paths = Vec::new();
                differing_paths(v, a, String::new(), &mut paths);
                paths.truncate(5);
                out.push(format!("differs: {k}: {}", paths.join("; ")));
            }
            Some(_) => {}
        }
    }
    for k in actual.keys().filter(|k| !expected.contains_key(*k)) {
        out.push(format!("unexpected: {k}"));
    }
    out.truncate(max);
    out
}
