//! Helpers shared by the workload controllers: owner references, owned objects, pod creation
//! from templates and status writes.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::objects::{DeleteOptions, Objects, PatchKind, WriteOptions};
use crate::registry::ResourceType;

/// The field manager controllers write with.
pub const MANAGER: &str = "kube-controller-manager";

/// Write options for controller writes.
pub fn opts() -> WriteOptions {
    WriteOptions {
        manager: MANAGER.into(),
        ..WriteOptions::default()
    }
}

/// A served type by group, version and plural.
pub fn rt(
    objects: &Objects,
    group: &str,
    version: &str,
    plural: &str,
) -> Option<Arc<ResourceType>> {
    objects.store().registry().get(group, version, plural)
}

/// `metadata.name`.
pub fn name(o: &Value) -> &str {
    o.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// `metadata.namespace`.
pub fn namespace(o: &Value) -> &str {
    o.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// `metadata.uid`.
pub fn uid(o: &Value) -> &str {
    o.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Whether the object is being deleted.
pub fn deleting(o: &Value) -> bool {
    o.pointer("/metadata/deletionTimestamp").is_some()
}

/// A controller ownerReference to `owner`.
pub fn controller_ref(owner: &Value) -> Value {
    json!({
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": name(owner),
        "uid": uid(owner),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// Objects of a type in one namespace whose controller is `owner`.
pub fn owned(objects: &Objects, rt: &ResourceType, owner: &Value) -> Vec<Arc<Value>> {
    let store = objects.store();
    let owner_uid = uid(owner);
    store
        .dependents_of(owner_uid)
        .into_iter()
        .filter(|k| k.storage == rt.storage)
        .filter_map(|k| store.get(&k))
        .filter(|o| {
            o.pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|refs| {
                    refs.iter()
                        .any(|r| r["uid"] == owner_uid && r["controller"] == true)
                })
        })
        .collect()
}

/// Builds a pod from a template, owned by `owner`.
pub fn pod_from_template(
    template: &Value,
    owner: &Value,
    name: Option<&str>,
    generate_name: &str,
) -> Value {
    let mut meta = template.get("metadata").cloned().unwrap_or(json!({}));
    if let Some(m) = meta.as_object_mut() {
        m.remove("name");
        m.remove("namespace");
        m.insert("ownerReferences".into(), json!([controller_ref(owner)]));
        match name {
            Some(n) => {
                m.insert("name".into(), json!(n));
            }
            None => {
                m.insert("generateName".into(), json!(generate_name));
            }
        }
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": template.get("spec").cloned().unwrap_or(json!({})),
    })
}

/// Creates an object as the controller manager; errors are logged (the next pass retries).
pub fn create(objects: &Objects, rt: &ResourceType, ns: &str, obj: Value) -> Option<Arc<Value>> {
    match objects.run(rt, || {
        objects.plan_create(rt, ns, obj.clone(), &opts(), false)
    }) {
        Ok(o) => Some(o.object),
        Err(e) => {
            tracing::debug!(error = %e, "controller create failed");
            None
        }
    }
}

/// Deletes an object as the controller manager (Background).
pub fn delete(objects: &Objects, rt: &ResourceType, ns: &str, name: &str) {
    let o = DeleteOptions {
        propagation: Some("Background".into()),
        ..DeleteOptions::default()
    };
    if let Err(e) = objects.run(rt, || objects.plan_delete(rt, ns, name, &o)) {
        tracing::debug!(error = %e, "controller delete failed");
    }
}

/// Merge-patches an object's spec or metadata (main endpoint).
pub fn patch(objects: &Objects, rt: &ResourceType, ns: &str, name: &str, patch: &Value) {
    if let Err(e) = objects.run(rt, || {
        objects.plan_patch(rt, ns, name, PatchKind::Merge, patch, None, &opts())
    }) {
        tracing::debug!(error = %e, "controller patch failed");
    }
}

/// Replaces `status` through the status subresource if it differs.
pub fn set_status(objects: &Objects, rt: &ResourceType, obj: &Value, status: Value) -> bool {
    if obj.get("status") == Some(&status) {
        return false;
    }
    let p = json!({"status": status});
    let (ns, n) = (namespace(obj).to_string(), name(obj).to_string());
    match objects.run(rt, || {
        let cur = objects.get(rt, &ns, &n)?;
        let mut full = (*cur).clone();
        full["status"] = p["status"].clone();
        objects.plan_update(rt, &ns, &n, full, Some("status"), &opts())
    }) {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!(error = %e, "controller status write failed");
            false
        }
    }
}

/// Whether a pod is Running and Ready.
pub fn pod_ready(p: &Value) -> bool {
    p.pointer("/status/phase").and_then(Value::as_str) == Some("Running")
        && p.pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
}

/// A pod's phase.
pub fn phase(p: &Value) -> &str {
    p.pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("Pending")
}

/// A short stable hash of a JSON value (pod-template-hash, controller-revision names).
pub fn short_hash(v: &Value) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let text = v.to_string();
    let mut h: u64 = 1469598103934665603;
    for b in text.bytes() {
        h = (h ^ b as u64).wrapping_mul(1099511628211);
    }
    (0..10)
        .map(|i| ALPHABET[((h >> (i * 6)) as usize) % ALPHABET.len()] as char)
        .collect()
}

/// A condition object.
pub fn condition(t: &str, status: &str, reason: &str, message: &str, now: &str) -> Value {
    json!({"type": t, "status": status, "reason": reason, "message": message, "lastTransitionTime": now, "lastUpdateTime": now})
}

/// Keeps `lastTransitionTime`s of unchanged conditions so status stays stable between passes.
pub fn keep_times(old: Option<&Value>, new: &mut [Value]) {
    let Some(old) = old.and_then(Value::as_array) else {
        return;
    };
    for c in new.iter_mut() {
        if let Some(prev) = old
            .iter()
            .find(|p| p["type"] == c["type"] && p["status"] == c["status"])
        {
            for k in ["lastTransitionTime", "lastUpdateTime", "lastProbeTime"] {
                if let Some(v) = prev.get(k) {
                    c[k] = v.clone();
                }
            }
        }
    }
}
