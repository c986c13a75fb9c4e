//! Server-side apply and managedFields bookkeeping for ordinary updates.
//!
//! Reproduces <https://kubernetes.io/docs/reference/using-api/server-side-apply/>:
//! `#conflicts` (a 409 naming the other manager unless `force`), `#field-management`
//! (managedFields per manager and operation), and `#merge-strategy` including the removal of
//! fields a manager stops applying when no other manager owns them.

use serde_json::{Map, Value, json};

use crate::fields::{
    FieldSet, ListKind, Shape, display_path, field_set_of, item_key, value_at_path,
};

/// One conflict: another manager owns a field the applier sets to a different value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager.
    pub manager: String,
    /// The apiVersion it used.
    pub api_version: String,
    /// The field, like `.spec.replicas`.
    pub field: String,
    /// The field as path elements (`f:spec`, `f:replicas`).
    pub path: Vec<String>,
}

/// What a server-side apply request says about itself.
#[derive(Debug, Clone)]
pub struct ApplyOptions<'a> {
    /// `fieldManager`.
    pub manager: &'a str,
    /// `force=true`.
    pub force: bool,
    /// The subresource applied to (`status`), if any.
    pub subresource: Option<&'a str>,
    /// Whether the kind has a status subresource (the main endpoint then ignores `status`).
    pub status_split: bool,
    /// Timestamp for the managedFields entry.
    pub now: &'a str,
}

#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: Option<String>,
    subresource: Option<String>,
    set: FieldSet,
}

fn read_entries(obj: &Value) -> Vec<Entry> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|e| Entry {
                    manager: e["manager"].as_str().unwrap_or_default().to_string(),
                    operation: e["operation"].as_str().unwrap_or_default().to_string(),
                    api_version: e["apiVersion"].as_str().unwrap_or_default().to_string(),
                    time: e["time"].as_str().map(str::to_string),
                    subresource: e["subresource"].as_str().map(str::to_string),
                    set: FieldSet::from_json(&e["fieldsV1"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn write_entries(obj: &mut Value, entries: &[Entry]) {
    let arr: Vec<Value> = entries
        .iter()
        .filter(|e| !e.set.is_empty())
        .map(|e| {
            let mut m = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "fieldsType": "FieldsV1",
                "fieldsV1": e.set.to_json(),
            });
            if let Some(t) = &e.time {
                m["time"] = json!(t);
            }
            if let Some(s) = &e.subresource {
                m["subresource"] = json!(s);
            }
            m
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if arr.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(arr));
        }
    }
}

/// Restricts a field set to what an endpoint may change: the main endpoint of a kind with a
/// status subresource ignores `status`, the status endpoint only takes `status`.
fn scope_set(set: &mut FieldSet, subresource: Option<&str>, status_split: bool) {
    if subresource == Some("status") {
        set.children.retain(|k, _| k == "f:status");
    } else if status_split {
        set.children.remove("f:status");
    }
}

fn single(path: &[String]) -> FieldSet {
    let mut fs = FieldSet {
        member: path.is_empty(),
        ..FieldSet::default()
    };
    if let Some((first, rest)) = path.split_first() {
        fs.children.insert(first.clone(), single(rest));
    }
    fs
}

/// Applies `applied` to `live` for one manager; returns the merged object with managedFields.
pub fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    shape: Shape<'_>,
    opts: &ApplyOptions<'_>,
) -> Result<Value, Vec<Conflict>> {
    let live_obj = live.cloned().unwrap_or_else(|| json!({}));
    let mut entries = read_entries(&live_obj);
    let mut applied_set = field_set_of(applied, shape);
    scope_set(&mut applied_set, opts.subresource, opts.status_split);
    let mine = |e: &Entry| {
        e.manager == opts.manager
            && e.operation == "Apply"
            && e.subresource.as_deref() == opts.subresource
    };

    let mut conflicts = Vec::new();
    let mut forced: Vec<(usize, Vec<String>)> = Vec::new();
    for (idx, e) in entries.iter().enumerate() {
        if mine(e) {
            continue;
        }
        for path in e.set.intersect(&applied_set).paths() {
            if path
                .last()
                .is_some_and(|l| l.starts_with("k:") || l.starts_with("v:"))
            {
                continue;
            }
            if value_at_path(&live_obj, &path, shape) != value_at_path(applied, &path, shape) {
                conflicts.push(Conflict {
                    manager: e.manager.clone(),
                    api_version: e.api_version.clone(),
                    field: display_path(&path),
                    path: path.clone(),
                });
                forced.push((idx, path));
            }
        }
    }
    if !conflicts.is_empty() && !opts.force {
        return Err(conflicts);
    }
    for (idx, path) in forced {
        if let Some(e) = entries.get_mut(idx) {
            e.set.subtract(&single(&path));
        }
    }

    let previous = entries
        .iter()
        .find(|e| mine(e))
        .map(|e| e.set.clone())
        .unwrap_or_default();
    let mut to_remove = previous;
    to_remove.subtract(&applied_set);
    let others: Vec<&Entry> = entries.iter().filter(|e| !mine(e)).collect();
    for o in &others {
        to_remove.subtract(&o.set);
    }
    let mut result = live_obj.clone();
    // Whole list items go first, found by their key while it is still intact; then fields,
    // deepest first. (Removing an item's key field first would leave a keyless remnant of
    // server-defaulted fields behind, which a real API server never does.)
    let mut removals = to_remove.paths();
    removals.sort_by_key(|p| {
        let item = p.last().is_some_and(|l| l.starts_with("k:"));
        (!item, if item { p.len() } else { usize::MAX - p.len() })
    });
    for path in removals {
        if others.iter().any(|o| {
            o.set.contains_prefix(&path) && path.last().is_some_and(|l| l.starts_with("k:"))
        }) {
            continue;
        }
        remove_path(&mut result, &path);
    }

    let mut applied_scoped = applied.clone();
    if let Some(m) = applied_scoped.as_object_mut() {
        if opts.subresource == Some("status") {
            m.retain(|k, _| k == "status" || k == "apiVersion" || k == "kind" || k == "metadata");
            if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.retain(|k, _| k == "name" || k == "namespace");
            }
        } else if opts.status_split {
            m.remove("status");
        }
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("managedFields");
            meta.remove("resourceVersion");
        }
    }
    merge_applied(&mut result, &applied_scoped, shape, "", true);

    let api_version = applied["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    match entries.iter_mut().find(|e| mine(e)) {
        Some(e) => {
            if e.set != applied_set || e.api_version != api_version {
                e.time = Some(opts.now.to_string());
            }
            e.set = applied_set;
            e.api_version = api_version;
        }
        None => entries.push(Entry {
            manager: opts.manager.to_string(),
            operation: "Apply".into(),
            api_version,
            time: Some(opts.now.to_string()),
            subresource: opts.subresource.map(str::to_string),
            set: applied_set,
        }),
    }
    if result.get("metadata").is_none() {
        result["metadata"] = json!({});
    }
    write_entries(&mut result, &entries);
    Ok(result)
}

/// Whether `kubectl` switching from client-side to server-side apply may take these fields:
/// the API server allows conflicts on fields that the `last-applied-configuration` annotation
/// holds (its "last applied manager"), so the switch needs no `--force-conflicts`.
pub fn conflicts_covered_by_last_applied(
    live: &Value,
    conflicts: &[Conflict],
    shape: Shape<'_>,
) -> bool {
    let Some(text) = live
        .pointer("/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration")
        .and_then(Value::as_str)
    else {
        return false;
    };
    let Ok(last) = serde_json::from_str::<Value>(text) else {
        return false;
    };
    let set = field_set_of(&last, shape);
    conflicts.iter().all(|c| set.contains_member(&c.path))
}

/// Removes the field or list item a path names.
fn remove_path(obj: &mut Value, path: &[String]) {
    let Some((last, parent_path)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for el in parent_path {
        let next = if let Some(f) = el.strip_prefix("f:") {
            cur.get_mut(f)
        } else if el.starts_with("k:") {
            let keys = crate::fields::key_names(el);
            cur.as_array_mut()
                .and_then(|a| a.iter_mut().find(|i| item_key(i, &keys) == *el))
        } else {
            None
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(f);
        }
    } else if last.starts_with("k:") {
        let keys = crate::fields::key_names(last);
        if let Some(a) = cur.as_array_mut() {
            a.retain(|i| item_key(i, &keys) != *last);
        }
    } else if let Some(raw) = last.strip_prefix("v:")
        && let Ok(v) = serde_json::from_str::<Value>(raw)
        && let Some(a) = cur.as_array_mut()
    {
        a.retain(|i| *i != v);
    }
}

/// Deep-merges an applied configuration into an object, by list semantics.
fn merge_applied(target: &mut Value, applied: &Value, shape: Shape<'_>, key: &str, at_root: bool) {
    match (target, applied) {
        (Value::Object(t), Value::Object(a)) if !shape.atomic_map() => {
            for (k, v) in a {
                let child_shape = shape.child(k, at_root);
                match t.get_mut(k) {
                    Some(existing) => merge_applied(existing, v, child_shape, k, false),
                    None => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Array(t), Value::Array(a)) => match shape.list_kind(key, a) {
            ListKind::Atomic => *t = a.clone(),
            ListKind::Set => {
                for v in a {
                    if !t.contains(v) {
                        t.push(v.clone());
                    }
                }
            }
            ListKind::Map(keys) => {
                let item_shape = shape.items();
                for v in a {
                    let id = item_key(v, &keys);
                    match t.iter_mut().find(|i| item_key(i, &keys) == id) {
                        Some(existing) => merge_applied(existing, v, item_shape, "", false),
                        None => t.push(v.clone()),
                    }
                }
            }
        },
        (t, a) => *t = a.clone(),
    }
}

/// Records an ordinary (non-apply) write in managedFields: fields whose values changed become
/// the updater's, and other managers lose them.
pub fn track_update(
    old: Option<&Value>,
    new: &mut Value,
    shape: Shape<'_>,
    manager: &str,
    subresource: Option<&str>,
    status_split: bool,
    now: &str,
) {
    let empty = json!({});
    let old_obj = old.unwrap_or(&empty);
    let sent = new.pointer("/metadata/managedFields").cloned();
    let old_fields = old_obj.pointer("/metadata/managedFields").cloned();
    let mut entries = match (&sent, &old_fields) {
        (Some(Value::Array(a)), _) if a.is_empty() => Vec::new(),
        (Some(s), Some(o)) if s != o => read_entries(new),
        (Some(_), None) if old.is_some() => read_entries(new),
        _ => read_entries(old_obj),
    };
    let new_set = field_set_of(new, shape);
    let mut changed = FieldSet::default();
    for path in new_set.paths() {
        if value_at_path(old_obj, &path, shape) != value_at_path(new, &path, shape) {
            changed.union(&single(&path));
        }
    }
    scope_set(&mut changed, subresource, status_split);
    for e in entries.iter_mut() {
        e.set.retain_existing(new, shape, true);
        if !(e.manager == manager
            && e.operation == "Update"
            && e.subresource.as_deref() == subresource)
        {
            e.set.subtract(&changed);
        }
    }
    let api_version = new["apiVersion"].as_str().unwrap_or_default().to_string();
    if !changed.is_empty() {
        match entries.iter_mut().find(|e| {
            e.manager == manager
                && e.operation == "Update"
                && e.subresource.as_deref() == subresource
        }) {
            Some(e) => {
                e.set.union(&changed);
                e.time = Some(now.to_string());
                e.api_version = api_version;
            }
            None => entries.push(Entry {
                manager: manager.to_string(),
                operation: "Update".into(),
                api_version,
                time: Some(now.to_string()),
                subresource: subresource.map(str::to_string),
                set: changed,
            }),
        }
    }
    if new.get("metadata").is_none() {
        new["metadata"] = Value::Object(Map::new());
    }
    write_entries(new, &entries);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts<'a>(manager: &'a str, force: bool) -> ApplyOptions<'a> {
        ApplyOptions {
            manager,
            force,
            subresource: None,
            status_split: true,
            now: "2026-01-01T00:00:00Z",
        }
    }

    fn cm(data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": data})
    }

    // https://kubernetes.io/docs/reference/using-api/server-side-apply/#conflicts
    #[test]
    fn conflicting_apply_names_the_other_manager_and_force_takes_ownership() {
        let live = server_side_apply(
            None,
            &cm(json!({"a": "1", "b": "1"})),
            Shape::Builtin,
            &opts("alice", false),
        )
        .expect("first apply");
        let err = server_side_apply(
            Some(&live),
            &cm(json!({"a": "2"})),
            Shape::Builtin,
            &opts("bob", false),
        )
        .expect_err("conflict");
        assert_eq!(
            err,
            vec![Conflict {
                manager: "alice".into(),
                api_version: "v1".into(),
                field: ".data.a".into(),
                path: vec!["f:data".into(), "f:a".into()],
            }]
        );
        // Same value: shared ownership, no conflict.
        let shared = server_side_apply(
            Some(&live),
            &cm(json!({"b": "1"})),
            Shape::Builtin,
            &opts("bob", false),
        )
        .expect("no conflict on equal values");
        assert_eq!(
            shared["metadata"]["managedFields"].as_array().map(Vec::len),
            Some(2)
        );
        let forced = server_side_apply(
            Some(&live),
            &cm(json!({"a": "2"})),
            Shape::Builtin,
            &opts("bob", true),
        )
        .expect("forced");
        assert_eq!(forced["data"], json!({"a": "2", "b": "1"}));
        let mf = &forced["metadata"]["managedFields"];
        assert_eq!(mf[0]["manager"], "alice");
        assert_eq!(mf[0]["fieldsV1"], json!({"f:data": {"f:b": {}}}));
        assert_eq!(mf[1]["fieldsV1"], json!({"f:data": {"f:a": {}}}));
    }

    // https://kubernetes.io/docs/reference/using-api/server-side-apply/#merge-strategy
    // ("fields that a manager stops applying are removed if no other manager owns them")
    #[test]
    fn dropping_a_field_from_the_applied_config_removes_it_unless_shared() {
        let live = server_side_apply(
            None,
            &cm(json!({"a": "1", "b": "1"})),
            Shape::Builtin,
            &opts("alice", false),
        )
        .expect("apply");
        let after = server_side_apply(
            Some(&live),
            &cm(json!({"a": "1"})),
            Shape::Builtin,
            &opts("alice", false),
        )
        .expect("apply");
        assert_eq!(after["data"], json!({"a": "1"}));
        let shared = server_side_apply(
            Some(&live),
            &cm(json!({"b": "1"})),
            Shape::Builtin,
            &opts("bob", false),
        )
        .expect("bob co-owns b");
        let alice_drops = server_side_apply(
            Some(&shared),
            &cm(json!({"a": "1"})),
            Shape::Builtin,
            &opts("alice", false),
        )
        .expect("apply");
        assert_eq!(alice_drops["data"], json!({"a": "1", "b": "1"}));
    }

    #[test]
    fn reapplying_the_same_config_changes_nothing() {
        let live = server_side_apply(
            None,
            &cm(json!({"a": "1"})),
            Shape::Builtin,
            &opts("alice", false),
        )
        .expect("apply");
        let mut again_opts = opts("alice", false);
        again_opts.now = "2030-01-01T00:00:00Z";
        let again = server_side_apply(
            Some(&live),
            &cm(json!({"a": "1"})),
            Shape::Builtin,
            &again_opts,
        )
        .expect("apply");
        assert_eq!(again, live);
    }

    #[test]
    fn updates_move_changed_fields_to_the_updater() {
        let live = server_side_apply(
            None,
            &cm(json!({"a": "1", "b": "1"})),
            Shape::Builtin,
            &opts("alice", false),
        )
        .expect("apply");
        let mut new = live.clone();
        new["data"]["a"] = json!("2");
        track_update(
            Some(&live),
            &mut new,
            Shape::Builtin,
            "kubectl-edit",
            None,
            false,
            "2026-01-02T00:00:00Z",
        );
        let mf = new["metadata"]["managedFields"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(mf.len(), 2);
        assert_eq!(mf[0]["fieldsV1"], json!({"f:data": {"f:b": {}}}));
        assert_eq!(mf[1]["manager"], "kubectl-edit");
        assert_eq!(mf[1]["operation"], "Update");
        assert_eq!(mf[1]["fieldsV1"], json!({"f:data": {"f:a": {}}}));
    }
}
