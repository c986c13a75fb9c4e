//! An index of a watch cache by keys derived from each object, kept from the same watch.
//!
//! Two questions are asked on every reconcile and were answered by scanning a whole cache:
//! - which children of a kind a parent owns (to prune), keyed by the owner-uid label;
//! - which Pipelines read a DataSource (for its `lastSync`, and to wake them when it changes).
//!
//! Scanning made one reconcile linear in the cluster's object count and a start-up of thousands
//! of parents quadratic: at 5,000 Pipelines, `perf` put about 60% of the operator's time in the
//! owner scans alone (7,000 ServiceAccounts compared per reconcile per kind). The index answers
//! with a lookup.
//!
//! It follows the watch's events the way kube's reflector store does: applies and deletions as
//! they come, and a relist (`Init` … `InitDone`) built aside and swapped in whole, so objects
//! deleted while the watch was down leave the index with the relist. Readers check each key
//! against the cache (the index may be a step ahead of or behind the store), so a lookup never
//! returns an object the cache no longer holds.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use kube::Resource;
use kube::runtime::watcher;

/// An object's place in its cache: namespace (none when cluster-scoped) and name.
pub type ObjectKey = (Option<String>, String);

/// An object's place as one shared string, `namespace/name` (`/name` when cluster-scoped):
/// neither part can hold a `/`. The index holds one per object, shared by both maps, since at
/// tens of thousands of children its size counts against the operator's memory.
type CompactKey = Arc<str>;

fn compact((namespace, name): &ObjectKey) -> CompactKey {
    format!("{}/{name}", namespace.as_deref().unwrap_or_default()).into()
}

fn expand(key: &str) -> ObjectKey {
    let (namespace, name) = key.split_once('/').unwrap_or(("", key));
    (
        (!namespace.is_empty()).then(|| namespace.to_string()),
        name.to_string(),
    )
}

#[derive(Default)]
struct Entries {
    /// Index key → the objects it names.
    by_key: HashMap<Arc<str>, BTreeSet<CompactKey>>,
    /// Object → its index keys, so a deletion or change finds the entries to drop.
    keys_of: HashMap<CompactKey, Box<[Arc<str>]>>,
}

impl Entries {
    fn insert(&mut self, object: &ObjectKey, keys: Vec<String>) {
        let object = compact(object);
        self.remove(&object);
        if keys.is_empty() {
            return;
        }
        let keys: Box<[Arc<str>]> = keys
            .into_iter()
            .map(|k| match self.by_key.get_key_value(k.as_str()) {
                // Share the key string with the other objects under it.
                Some((shared, _)) => shared.clone(),
                None => Arc::from(k),
            })
            .collect();
        for k in keys.iter() {
            self.by_key
                .entry(k.clone())
                .or_default()
                .insert(object.clone());
        }
        self.keys_of.insert(object, keys);
    }

    fn remove(&mut self, object: &str) {
        for k in self.keys_of.remove(object).unwrap_or_default() {
            if let Some(objects) = self.by_key.get_mut(&k) {
                objects.remove(object);
                if objects.is_empty() {
                    self.by_key.remove(&k);
                }
            }
        }
    }
}

#[derive(Default)]
struct State {
    current: Entries,
    /// The relist in progress, swapped in at `InitDone`.
    relist: Option<Entries>,
}

/// A cache's objects by derived keys (see the module docs).
pub struct CacheIndex<K> {
    keys_of: fn(&K) -> Vec<String>,
    state: RwLock<State>,
}

fn object_key<K: Resource>(o: &K) -> ObjectKey {
    let m = o.meta();
    (m.namespace.clone(), m.name.clone().unwrap_or_default())
}

impl<K: Resource> CacheIndex<K> {
    /// An empty index whose keys for each object are `keys_of(object)`.
    pub fn new(keys_of: fn(&K) -> Vec<String>) -> Self {
        CacheIndex {
            keys_of,
            state: RwLock::new(State::default()),
        }
    }

    /// Follows one watch event.
    pub fn observe(&self, event: &watcher::Result<watcher::Event<K>>) {
        let Ok(event) = event else { return };
        // A poisoned lock means a reader panicked mid-read; the entries are still whole.
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        match event {
            watcher::Event::Apply(o) => state.current.insert(&object_key(o), (self.keys_of)(o)),
            watcher::Event::Delete(o) => state.current.remove(&compact(&object_key(o))),
            watcher::Event::Init => state.relist = Some(Entries::default()),
            watcher::Event::InitApply(o) => {
                if let Some(relist) = state.relist.as_mut() {
                    relist.insert(&object_key(o), (self.keys_of)(o));
                }
            }
            watcher::Event::InitDone => {
                if let Some(relist) = state.relist.take() {
                    state.current = relist;
                }
            }
        }
    }

    /// The objects indexed under `key`, in key order.
    pub fn lookup(&self, key: &str) -> Vec<ObjectKey> {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        state
            .current
            .by_key
            .get(key)
            .map(|objects| objects.iter().map(|o| expand(o)).collect())
            .unwrap_or_default()
    }

    /// How many objects the index holds under at least one key.
    #[cfg(test)]
    fn len(&self) -> usize {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        state.current.keys_of.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;
    use watcher::Event;

    /// Keys: the `owner` label and, for a many-key index, every `data` key.
    fn object(name: &str, owner: Option<&str>, data: &[&str]) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("n".into()),
                labels: owner.map(|o| [("owner".to_string(), o.to_string())].into()),
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|d| (d.to_string(), String::new()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn by_owner(o: &ConfigMap) -> Vec<String> {
        o.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("owner").cloned())
            .into_iter()
            .collect()
    }

    fn by_data(o: &ConfigMap) -> Vec<String> {
        o.data.iter().flat_map(|d| d.keys().cloned()).collect()
    }

    fn names(index: &CacheIndex<ConfigMap>, key: &str) -> Vec<String> {
        index.lookup(key).into_iter().map(|(_, n)| n).collect()
    }

    #[test]
    fn follows_applies_changes_and_deletions() {
        let index = CacheIndex::new(by_owner);
        for e in [
            Event::Apply(object("a", Some("u1"), &[])),
            Event::Apply(object("b", Some("u1"), &[])),
            Event::Apply(object("c", Some("u2"), &[])),
            Event::Apply(object("d", None, &[])),
        ] {
            index.observe(&Ok(e));
        }
        assert_eq!(names(&index, "u1"), ["a", "b"]);
        assert_eq!(names(&index, "u2"), ["c"]);
        assert_eq!(index.len(), 3);

        index.observe(&Ok(Event::Apply(object("b", Some("u2"), &[]))));
        index.observe(&Ok(Event::Delete(object("a", Some("u1"), &[]))));
        assert!(names(&index, "u1").is_empty());
        assert_eq!(names(&index, "u2"), ["b", "c"]);
        index.observe(&Ok(Event::Apply(object("c", None, &[]))));
        assert_eq!(names(&index, "u2"), ["b"]);
    }

    #[test]
    fn an_object_can_sit_under_many_keys() {
        let index = CacheIndex::new(by_data);
        index.observe(&Ok(Event::Apply(object("p1", None, &["his", "lis"]))));
        index.observe(&Ok(Event::Apply(object("p2", None, &["lis"]))));
        assert_eq!(names(&index, "lis"), ["p1", "p2"]);
        index.observe(&Ok(Event::Apply(object("p1", None, &["emr"]))));
        assert!(names(&index, "his").is_empty());
        assert_eq!(names(&index, "lis"), ["p2"]);
        assert_eq!(names(&index, "emr"), ["p1"]);
    }

    #[test]
    fn compact_keys_round_trip() {
        for key in [
            (Some("ns".to_string()), "name".to_string()),
            (None, "cluster-wide".to_string()),
        ] {
            assert_eq!(expand(&compact(&key)), key);
        }
    }

    #[test]
    fn a_relist_replaces_the_index_only_when_done() {
        let index = CacheIndex::new(by_owner);
        index.observe(&Ok(Event::Apply(object("gone", Some("u"), &[]))));
        index.observe(&Ok(Event::Apply(object("kept", Some("u"), &[]))));
        index.observe(&Ok(Event::Init));
        index.observe(&Ok(Event::InitApply(object("kept", Some("u"), &[]))));
        index.observe(&Ok(Event::InitApply(object("new", Some("u"), &[]))));
        // Until the relist is done, readers see the last complete state.
        assert_eq!(names(&index, "u"), ["gone", "kept"]);
        index.observe(&Ok(Event::InitDone));
        assert_eq!(names(&index, "u"), ["kept", "new"]);
        index.observe(&Err(watcher::Error::NoResourceVersion));
        assert_eq!(names(&index, "u"), ["kept", "new"]);
    }
}
