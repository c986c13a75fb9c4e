//! Garbage collection, foreground/orphan deletion, namespace termination and CRD cleanup.
//!
//! Reproduces <https://kubernetes.io/docs/concepts/architecture/garbage-collection/>
//! (`#background-deletion`, `#foreground-deletion`, `#orphaned-dependents`; owners may be
//! cluster-scoped with namespaced dependents), namespace termination
//! (<https://kubernetes.io/docs/tasks/administer-cluster/namespaces/#deleting-a-namespace>)
//! and the CRD `customresourcecleanup` finalizer.

use serde_json::{Value, json};

use crate::objects::{DeleteOptions, Objects, PatchKind, WriteOptions};
use crate::registry::ResourceType;
use crate::store::ObjKey;

const MANAGER: &str = "kube-controller-manager";

fn opts() -> WriteOptions {
    WriteOptions {
        manager: MANAGER.into(),
        ..WriteOptions::default()
    }
}

fn rt_for(objects: &Objects, key: &ObjKey) -> Option<std::sync::Arc<ResourceType>> {
    objects.store().registry().by_storage(&key.storage)
}

fn delete(objects: &Objects, key: &ObjKey, policy: &str) {
    let Some(rt) = rt_for(objects, key) else {
        return;
    };
    let o = DeleteOptions {
        propagation: Some(policy.to_string()),
        ..DeleteOptions::default()
    };
    if let Err(e) = objects.run(&rt, || {
        objects.plan_delete(&rt, &key.namespace, &key.name, &o)
    }) && e.code != 404
    {
        tracing::debug!(object = %key.name, error = %e, "garbage collector could not delete");
    }
}

fn remove_finalizer(objects: &Objects, key: &ObjKey, finalizer: &str) {
    let Some(rt) = rt_for(objects, key) else {
        return;
    };
    let result = objects.run(&rt, || {
        let cur = objects.get(&rt, &key.namespace, &key.name)?;
        let fins: Vec<Value> = cur
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter(|f| f.as_str() != Some(finalizer)).cloned().collect())
            .unwrap_or_default();
        let patch = json!({"metadata": {"finalizers": fins, "resourceVersion": cur.pointer("/metadata/resourceVersion")}});
        objects.plan_patch(&rt, &key.namespace, &key.name, PatchKind::Merge, &patch, None, &opts())
    });
    if let Err(e) = result
        && e.code != 404
    {
        tracing::debug!(object = %key.name, error = %e, "could not remove finalizer {finalizer}");
    }
}

fn drop_owner_ref(objects: &Objects, key: &ObjKey, owner_uid: &str) {
    let Some(rt) = rt_for(objects, key) else {
        return;
    };
    let _ = objects.run(&rt, || {
        let cur = objects.get(&rt, &key.namespace, &key.name)?;
        let refs: Vec<Value> = cur
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter(|r| r["uid"].as_str() != Some(owner_uid))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let refs = if refs.is_empty() {
            Value::Null
        } else {
            Value::Array(refs)
        };
        let patch = json!({"metadata": {"ownerReferences": refs}});
        objects.plan_patch(
            &rt,
            &key.namespace,
            &key.name,
            PatchKind::Merge,
            &patch,
            None,
            &opts(),
        )
    });
}

fn has_finalizer(obj: &Value, f: &str) -> bool {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(f)))
}

/// One pass of the garbage collector and the deletion finalizers. Returns whether it acted.
pub fn pass(objects: &Objects) -> bool {
    let store = objects.store();
    let mut acted = false;
    for uid in store.take_gone_owners() {
        for dep in store.dependents_of(&uid) {
            let Some(obj) = store.get(&dep) else { continue };
            let owners: Vec<String> = obj
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|r| r["uid"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let any_alive = owners.iter().any(|o| store.get_by_uid(o).is_some());
            if any_alive {
                drop_owner_ref(objects, &dep, &uid);
            } else {
                delete(objects, &dep, "Background");
            }
            acted = true;
        }
    }
    for key in store.deleting() {
        let Some(obj) = store.get(&key) else { continue };
        let uid = obj
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if has_finalizer(&obj, "orphan") {
            for dep in store.dependents_of(&uid) {
                drop_owner_ref(objects, &dep, &uid);
            }
            remove_finalizer(objects, &key, "orphan");
            acted = true;
        }
        if has_finalizer(&obj, "foregroundDeletion") {
            let deps = store.dependents_of(&uid);
            if deps.is_empty() {
                remove_finalizer(objects, &key, "foregroundDeletion");
            } else {
                for dep in deps {
                    if store
                        .get(&dep)
                        .is_some_and(|d| d.pointer("/metadata/deletionTimestamp").is_none())
                    {
                        delete(objects, &dep, "Foreground");
                    }
                }
            }
            acted = true;
        }
        if key.storage.group.is_empty() && key.storage.resource == "namespaces" {
            acted |= terminate_namespace(objects, &key, &obj);
        }
        if key.storage.group == "apiextensions.k8s.io"
            && key.storage.resource == "customresourcedefinitions"
            && has_finalizer(&obj, "customresourcecleanup.apiextensions.k8s.io")
        {
            acted |= cleanup_crd(objects, &key, &obj);
        }
    }
    acted
}

fn terminate_namespace(objects: &Objects, key: &ObjKey, ns: &Value) -> bool {
    let store = objects.store();
    let contents = store.contents_of_namespace(&key.name);
    if contents.is_empty() {
        let has_spec_finalizer = ns
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        if has_spec_finalizer && let Some(rt) = rt_for(objects, key) {
            let _ = objects.run(&rt, || {
                objects.plan_patch(
                    &rt,
                    "",
                    &key.name,
                    PatchKind::Merge,
                    &json!({"spec": {"finalizers": []}}),
                    None,
                    &opts(),
                )
            });
            return true;
        }
        return false;
    }
    for item in contents {
        if store
            .get(&item)
            .is_some_and(|o| o.pointer("/metadata/deletionTimestamp").is_none())
        {
            delete(objects, &item, "Background");
        }
    }
    true
}

fn cleanup_crd(objects: &Objects, key: &ObjKey, crd: &Value) -> bool {
    let store = objects.store();
    let storage = crate::registry::StorageKey::of_crd(crd);
    let (items, _) = store.list(&storage, None, None);
    if items.is_empty() {
        remove_finalizer(objects, key, "customresourcecleanup.apiextensions.k8s.io");
        return true;
    }
    for item in items {
        if item.pointer("/metadata/deletionTimestamp").is_some() {
            continue;
        }
        let k = ObjKey {
            storage: storage.clone(),
            namespace: item
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            name: item
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        };
        delete(objects, &k, "Background");
    }
    true
}
