//! JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge patch.
//!
//! See <https://kubernetes.io/docs/tasks/manage-kubernetes-objects/update-api-object-kubectl-patch/>.
//! Strategic merge patch honours the merge keys of built-in kinds (`fields::builtin_list_kind`),
//! `null` deletion, `$patch: delete|replace|merge`, `$setElementOrder/<field>`,
//! `$deleteFromPrimitiveList/<field>` and `$retainKeys`.

use serde_json::{Map, Value};

use crate::fields::{ListKind, builtin_list_kind, item_key};

/// A patch that could not be applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PatchError {
    /// The patch document is not valid for its content type.
    #[error("{0}")]
    Malformed(String),
    /// A JSON patch operation failed (e.g. a `test` op or a missing path).
    #[error("{0}")]
    Failed(String),
}

/// Applies an RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// Applies an RFC 6902 JSON patch document.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| PatchError::Malformed(format!("invalid JSON patch: {e}")))?;
    json_patch::patch(target, &ops).map_err(|e| PatchError::Failed(e.to_string()))
}

/// Applies a strategic merge patch to a built-in kind's object.
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let Value::Object(p) = patch else {
        return Err(PatchError::Malformed(
            "strategic merge patch must be a JSON object".into(),
        ));
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else {
        return Ok(());
    };
    smp_map(t, p)
}

fn smp_map(t: &mut Map<String, Value>, p: &Map<String, Value>) -> Result<(), PatchError> {
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut clean = p.clone();
        clean.remove("$patch");
        *t = clean;
        return Ok(());
    }
    let retain: Option<Vec<String>> = p.get("$retainKeys").and_then(Value::as_array).map(|a| {
        a.iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    });
    for (k, v) in p {
        if k.starts_with("$setElementOrder/") || k == "$retainKeys" || k == "$patch" {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(del)) = (t.get_mut(field), v.as_array()) {
                list.retain(|x| !del.contains(x));
            }
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        match (t.get_mut(k), v) {
            (Some(Value::Object(tm)), Value::Object(pm)) => smp_map(tm, pm)?,
            (Some(Value::Array(tl)), Value::Array(pl)) => smp_list(k, tl, pl)?,
            (_, Value::Object(pm)) => {
                let mut fresh = Map::new();
                smp_map(&mut fresh, pm)?;
                t.insert(k.clone(), Value::Object(fresh));
            }
            (_, Value::Array(pl)) => {
                let mut fresh = Vec::new();
                smp_list(k, &mut fresh, pl)?;
                t.insert(k.clone(), Value::Array(fresh));
            }
            _ => {
                t.insert(k.clone(), v.clone());
            }
        }
    }
    for (k, order) in p {
        if let (Some(field), Some(order)) = (k.strip_prefix("$setElementOrder/"), order.as_array())
            && let Some(Value::Array(list)) = t.get_mut(field)
        {
            reorder(field, list, order);
        }
    }
    if let Some(keep) = retain {
        t.retain(|k, _| keep.contains(k));
    }
    Ok(())
}

fn smp_list(key: &str, target: &mut Vec<Value>, patch: &[Value]) -> Result<(), PatchError> {
    let kind = if key == "taints" || key == "tolerations" {
        ListKind::Atomic
    } else {
        builtin_list_kind(key, patch)
    };
    match kind {
        ListKind::Atomic => {
            if patch.iter().any(|i| i.get("$patch").is_some()) {
                target.retain(|_| false);
                target.extend(patch.iter().filter(|i| i.get("$patch").is_none()).cloned());
            } else {
                *target = patch.to_vec();
            }
        }
        ListKind::Set => {
            for item in patch {
                if !target.contains(item) {
                    target.push(item.clone());
                }
            }
        }
        ListKind::Map(keys) => {
            if patch
                .iter()
                .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
            {
                *target = patch
                    .iter()
                    .filter(|i| i.get("$patch").is_none())
                    .cloned()
                    .collect();
                return Ok(());
            }
            for item in patch {
                let Some(obj) = item.as_object() else {
                    return Err(PatchError::Malformed(format!(
                        "list {key} needs objects with merge key(s) {keys:?}, got {item}"
                    )));
                };
                let id = item_key(item, &keys);
                let pos = target.iter().position(|t| item_key(t, &keys) == id);
                if obj.get("$patch").and_then(Value::as_str) == Some("delete") {
                    if let Some(p) = pos {
                        target.remove(p);
                    }
                    continue;
                }
                match pos.and_then(|p| target.get_mut(p)) {
                    Some(Value::Object(existing)) => smp_map(existing, obj)?,
                    _ => {
                        let mut fresh = Map::new();
                        smp_map(&mut fresh, obj)?;
                        target.push(Value::Object(fresh));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Orders list items as `$setElementOrder` says; items it does not name keep their place after.
fn reorder(key: &str, list: &mut Vec<Value>, order: &[Value]) {
    let keys = match builtin_list_kind(key, order) {
        ListKind::Map(k) => Some(k),
        _ => None,
    };
    let ident = |v: &Value| match &keys {
        Some(k) => item_key(v, k),
        None => v.to_string(),
    };
    let mut ordered = Vec::with_capacity(list.len());
    for o in order {
        let id = ident(o);
        if let Some(pos) = list.iter().position(|i| ident(i) == id) {
            ordered.push(list.remove(pos));
        }
    }
    ordered.append(list);
    *list = ordered;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // https://kubernetes.io/docs/tasks/manage-kubernetes-objects/update-api-object-kubectl-patch/#use-a-json-merge-patch-to-update-a-deployment
    #[test]
    fn merge_patch_replaces_lists_and_deletes_nulls() {
        let mut t = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        merge_patch(&mut t, &json!({"a": {"b": null, "d": 3}, "l": [3]}));
        assert_eq!(t, json!({"a": {"c": 2, "d": 3}, "l": [3]}));
    }

    // https://kubernetes.io/docs/tasks/manage-kubernetes-objects/update-api-object-kubectl-patch/#notes-on-the-strategic-merge-patch
    #[test]
    fn strategic_merge_patch_merges_by_key_matrix() {
        let base = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}], "ports": [{"containerPort": 80}]},
            {"name": "b", "image": "b:1"}
        ], "volumes": [{"name": "v1", "emptyDir": {}}], "tolerations": [{"key": "t"}]},
        "metadata": {"finalizers": ["f1"]}});
        let cases = vec![
            (
                json!({"spec": {"containers": [{"name": "a", "image": "a:2", "env": [{"name": "Y", "value": "2"}]}]}}),
                json!([{"name": "a", "image": "a:2", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}], "ports": [{"containerPort": 80}]}, {"name": "b", "image": "b:1"}]),
            ),
            (
                json!({"spec": {"containers": [{"name": "b", "$patch": "delete"}]}}),
                json!([{"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}], "ports": [{"containerPort": 80}]}]),
            ),
            (
                json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}], "containers": [{"name": "b", "image": "b:2"}]}}),
                json!([{"name": "b", "image": "b:2"}, {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}], "ports": [{"containerPort": 80}]}]),
            ),
            (
                json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 81}]}]}}),
                json!([{"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}], "ports": [{"containerPort": 80}, {"containerPort": 81}]}, {"name": "b", "image": "b:1"}]),
            ),
        ];
        for (patch, want) in cases {
            let mut t = base.clone();
            strategic_merge_patch(&mut t, &patch).expect("applies");
            assert_eq!(t["spec"]["containers"], want, "patch {patch}");
        }
        let mut t = base.clone();
        strategic_merge_patch(
            &mut t,
            &json!({"spec": {"volumes": [{"name": "v2", "emptyDir": {}}], "tolerations": [{"key": "u"}]},
                    "metadata": {"finalizers": ["f2"], "$deleteFromPrimitiveList/finalizers": ["f1"]}}),
        )
        .expect("applies");
        assert_eq!(t["spec"]["volumes"].as_array().map(Vec::len), Some(2));
        assert_eq!(t["spec"]["tolerations"], json!([{"key": "u"}]));
        assert_eq!(t["metadata"]["finalizers"], json!(["f2"]));
    }

    #[test]
    fn json_patch_ops_and_failures() {
        let mut t = json!({"a": [1]});
        json_patch(&mut t, &json!([{"op": "add", "path": "/a/-", "value": 2}, {"op": "replace", "path": "/b", "value": 1}]))
            .expect_err("replace of a missing path fails");
        let mut t2 = json!({"a": [1]});
        json_patch(&mut t2, &json!([{"op": "add", "path": "/a/-", "value": 2}])).expect("ok");
        assert_eq!(t2, json!({"a": [1, 2]}));
        assert!(matches!(
            json_patch(&mut t, &json!({"op": "x"})),
            Err(PatchError::Malformed(_))
        ));
    }
}
