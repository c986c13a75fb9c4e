//! Tests of the raw store: resourceVersions, optimistic concurrency and the watch window.

use serde_json::json;

use super::watch::WatchFrom;
use super::*;

fn key(name: &str) -> ObjKey {
    ObjKey {
        storage: StorageKey {
            group: String::new(),
            resource: "configmaps".into(),
        },
        namespace: "default".into(),
        name: name.into(),
    }
}

fn put(store: &Store, name: &str, expect: Expect) -> Result<Arc<Value>, CommitError> {
    store.commit(Mutation::Put {
        key: key(name),
        expect,
        object: json!({"metadata": {"name": name, "namespace": "default", "uid": format!("u-{name}")}}),
    })
}

// https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions
#[test]
fn resource_versions_are_global_and_increasing_and_stale_writes_fail() {
    let store = Store::new(100);
    let a = put(&store, "a", Expect::Absent).expect("create a");
    let b = put(&store, "b", Expect::Absent).expect("create b");
    assert!(rv_of(&b) > rv_of(&a));
    assert_eq!(
        put(&store, "a", Expect::Absent),
        Err(CommitError::AlreadyExists)
    );
    let a2 = put(&store, "a", Expect::Rv(rv_of(&a))).expect("update a");
    assert_eq!(
        put(&store, "a", Expect::Rv(rv_of(&a))),
        Err(CommitError::Stale)
    );
    assert!(rv_of(&a2) > rv_of(&b));
    assert_eq!(
        store.get_by_uid("u-a").map(|(k, _)| k.name),
        Some("a".to_string())
    );
}

// https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes
#[test]
fn watch_replays_after_rv_and_410s_past_the_window() {
    let store = Store::new(3);
    let first = put(&store, "a", Expect::Absent).expect("a");
    for n in ["b", "c", "d", "e"] {
        put(&store, n, Expect::Absent).expect("put");
    }
    let storage = key("x").storage;
    let too_old = store
        .watch(&storage, WatchFrom::After(rv_of(&first)))
        .expect_err("gone");
    assert_eq!(too_old.requested, rv_of(&first));
    let recent = store
        .watch(&storage, WatchFrom::After(rv_of(&first) + 2))
        .expect("in window");
    let names: Vec<&str> = recent
        .initial
        .iter()
        .filter_map(|e| e.object.pointer("/metadata/name").and_then(Value::as_str))
        .collect();
    assert_eq!(names, vec!["d", "e"]);
    let all = store
        .watch(&storage, WatchFrom::CurrentState)
        .expect("state");
    assert_eq!(all.initial.len(), 5);
    assert!(all.initial.iter().all(|e| e.kind == EventType::Added));
}

#[test]
fn list_filters_by_namespace_and_pages_after_a_key() {
    let store = Store::new(10);
    for n in ["a", "b", "c"] {
        put(&store, n, Expect::Absent).expect("put");
    }
    let storage = key("x").storage;
    let (items, _) = store.list(
        &storage,
        Some("default"),
        Some(&("default".into(), "a".into())),
    );
    assert_eq!(items.len(), 2);
    let (none, _) = store.list(&storage, Some("other"), None);
    assert!(none.is_empty());
}
