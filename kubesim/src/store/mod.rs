//! The object store: objects by (storage, namespace, name), one global resourceVersion, and a
//! bounded per-resource history of watch events.
//!
//! Reproduces <https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions>
//! (one cluster-wide, monotonically increasing resourceVersion) and
//! `#efficient-detection-of-changes` (watch from a resourceVersion; too old → 410 Gone).
//! All methods are synchronous and hold one mutex briefly; HTTP lives elsewhere.

mod watch;

pub use watch::{EventType, TooOld, WatchEvent, WatchFrom, WatchStart};

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use serde_json::Value;
use tokio::sync::broadcast;

use crate::registry::{Registry, StorageKey};

/// Identifies one stored object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjKey {
    /// Storage.
    pub storage: StorageKey,
    /// Namespace, empty for cluster-scoped objects.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// What a write expects to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The object must not exist (create).
    Absent,
    /// The object must exist at this resourceVersion.
    Rv(u64),
}

/// A low-level change, checked against the store's current state at commit.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Store this object (its resourceVersion is assigned at commit).
    Put {
        /// Which object.
        key: ObjKey,
        /// What must be there now.
        expect: Expect,
        /// The new object.
        object: Value,
    },
    /// Remove the object.
    Delete {
        /// Which object.
        key: ObjKey,
        /// Its resourceVersion as last seen.
        expect_rv: u64,
    },
}

/// Why a commit did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// Someone else wrote first; plan again.
    #[error("the object changed since the write was planned")]
    Stale,
    /// A create found the name taken.
    #[error("the object already exists")]
    AlreadyExists,
    /// The object is gone.
    #[error("the object does not exist")]
    NotFound,
}

#[derive(Debug)]
struct Table {
    objects: BTreeMap<(String, String), Arc<Value>>,
    history: VecDeque<Arc<WatchEvent>>,
    tx: broadcast::Sender<Arc<WatchEvent>>,
    /// Every event with a resourceVersion above this is still in `history`.
    window_start: u64,
}

impl Table {
    fn new() -> Self {
        let (tx, _) = broadcast::channel(WATCH_CHANNEL_CAPACITY);
        Table {
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            tx,
            window_start: 0,
        }
    }
}

/// Events a slow watcher may fall behind by before its watch is closed (it then resumes).
const WATCH_CHANNEL_CAPACITY: usize = 8192;

#[derive(Debug, Default)]
struct Inner {
    rv: u64,
    tables: HashMap<StorageKey, Table>,
    by_uid: HashMap<String, ObjKey>,
    dependents: HashMap<String, BTreeSet<ObjKey>>,
    /// Objects that carry a deletionTimestamp (waiting on finalizers).
    deleting: BTreeSet<ObjKey>,
    /// Uids of deleted objects that still had dependents (work for the garbage collector).
    gone_owners: Vec<String>,
}

/// The in-memory store shared by the HTTP layer and the simulated controllers.
#[derive(Debug)]
pub struct Store {
    inner: Mutex<Inner>,
    registry: RwLock<Arc<Registry>>,
    history_limit: usize,
    changes: tokio::sync::watch::Sender<u64>,
}

/// The current resourceVersion of a stored object.
pub fn rv_of(obj: &Value) -> u64 {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The uid of an object.
pub fn uid_of(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/uid").and_then(Value::as_str)
}

fn owner_uids(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

impl Store {
    /// An empty store serving the built-in kinds; `history_limit` bounds each resource's watch window.
    pub fn new(history_limit: usize) -> Self {
        let (changes, _) = tokio::sync::watch::channel(0);
        Store {
            inner: Mutex::new(Inner::default()),
            registry: RwLock::new(Arc::new(Registry::with_builtins())),
            history_limit: history_limit.max(1),
            changes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied commit (commits mutate
        // after all checks), so a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current registry of served types.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry
            .read()
            .map(|r| r.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    fn set_registry(&self, f: impl FnOnce(&mut Registry)) {
        let mut guard = self.registry.write().unwrap_or_else(|p| p.into_inner());
        let mut next = (**guard).clone();
        f(&mut next);
        *guard = Arc::new(next);
    }

    /// The latest resourceVersion handed out.
    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    /// Subscribes to "something changed" notifications (carrying the latest resourceVersion).
    pub fn subscribe_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Reads one object.
    pub fn get(&self, key: &ObjKey) -> Option<Arc<Value>> {
        let inner = self.lock();
        inner
            .tables
            .get(&key.storage)
            .and_then(|t| t.objects.get(&(key.namespace.clone(), key.name.clone())))
            .cloned()
    }

    /// Finds an object by uid.
    pub fn get_by_uid(&self, uid: &str) -> Option<(ObjKey, Arc<Value>)> {
        let inner = self.lock();
        let key = inner.by_uid.get(uid)?.clone();
        let obj = inner
            .tables
            .get(&key.storage)?
            .objects
            .get(&(key.namespace.clone(), key.name.clone()))?
            .clone();
        Some((key, obj))
    }

    /// Objects waiting on finalizers.
    pub fn deleting(&self) -> Vec<ObjKey> {
        self.lock().deleting.iter().cloned().collect()
    }

    /// Takes the uids of deleted owners whose dependents the garbage collector must look at.
    pub fn take_gone_owners(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().gone_owners)
    }

    /// The resourceVersion of the latest change to a storage (0 when never written).
    pub fn storage_rv(&self, storage: &StorageKey) -> u64 {
        self.lock()
            .tables
            .get(storage)
            .and_then(|t| t.history.back().map(|e| e.rv))
            .unwrap_or(0)
    }

    /// Keys of objects that name `uid` as an owner.
    pub fn dependents_of(&self, uid: &str) -> Vec<ObjKey> {
        self.lock()
            .dependents
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Objects of a storage, in key order, optionally in one namespace, starting after `after`,
    /// with the resourceVersion the snapshot was taken at.
    pub fn list(
        &self,
        storage: &StorageKey,
        namespace: Option<&str>,
        after: Option<&(String, String)>,
    ) -> (Vec<Arc<Value>>, u64) {
        let inner = self.lock();
        let Some(table) = inner.tables.get(storage) else {
            return (Vec::new(), inner.rv);
        };
        type Entries<'a> = Box<dyn Iterator<Item = (&'a (String, String), &'a Arc<Value>)> + 'a>;
        let iter: Entries<'_> = match (namespace, after) {
            (_, Some(a)) => Box::new(table.objects.range::<(String, String), _>((
                std::ops::Bound::Excluded(a),
                std::ops::Bound::Unbounded,
            ))),
            (Some(ns), None) => Box::new(
                table
                    .objects
                    .range::<(String, String), _>((ns.to_string(), String::new())..),
            ),
            (None, None) => Box::new(table.objects.iter()),
        };
        let items = iter
            .filter(|((ns, _), _)| namespace.is_none_or(|want| want == ns))
            .take_while(|((ns, _), _)| namespace.is_none_or(|want| want >= ns.as_str()))
            .map(|(_, v)| v.clone())
            .collect();
        (items, inner.rv)
    }

    /// How many objects a storage holds (all namespaces).
    pub fn count(&self, storage: &StorageKey) -> usize {
        self.lock()
            .tables
            .get(storage)
            .map_or(0, |t| t.objects.len())
    }

    /// Namespaces that hold at least one object, with the storages holding them.
    pub fn contents_of_namespace(&self, namespace: &str) -> Vec<ObjKey> {
        let inner = self.lock();
        let mut out = Vec::new();
        for (storage, table) in &inner.tables {
            for (ns, name) in table.objects.keys() {
                if ns == namespace {
                    out.push(ObjKey {
                        storage: storage.clone(),
                        namespace: ns.clone(),
                        name: name.clone(),
                    });
                }
            }
        }
        out
    }

    /// Applies a mutation if the store still looks as the planner saw it.
    pub fn commit(&self, m: Mutation) -> Result<Arc<Value>, CommitError> {
        let mut inner = self.lock();
        let (storage, result, crd_change) = match m {
            Mutation::Put {
                key,
                expect,
                mut object,
            } => {
                let table = inner
                    .tables
                    .entry(key.storage.clone())
                    .or_insert_with(Table::new);
                let slot = (key.namespace.clone(), key.name.clone());
                let prev = table.objects.get(&slot).cloned();
                match (expect, &prev) {
                    (Expect::Absent, Some(_)) => return Err(CommitError::AlreadyExists),
                    (Expect::Rv(_), None) => return Err(CommitError::NotFound),
                    (Expect::Rv(rv), Some(p)) if rv_of(p) != rv => return Err(CommitError::Stale),
                    _ => {}
                }
                inner.rv += 1;
                let rv = inner.rv;
                if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
                }
                let object = Arc::new(object);
                let kind = if prev.is_some() {
                    EventType::Modified
                } else {
                    EventType::Added
                };
                self.index(&mut inner, &key, prev.as_deref(), Some(&object));
                let table = inner
                    .tables
                    .entry(key.storage.clone())
                    .or_insert_with(Table::new);
                table.objects.insert(slot, object.clone());
                let ev = Arc::new(WatchEvent::new(rv, kind, object.clone(), prev));
                self.record(table, ev);
                let crd = is_crd(&key.storage).then(|| (object.clone(), true));
                (key.storage, object, crd)
            }
            Mutation::Delete { key, expect_rv } => {
                let slot = (key.namespace.clone(), key.name.clone());
                let Some(table) = inner.tables.get_mut(&key.storage) else {
                    return Err(CommitError::NotFound);
                };
                let Some(prev) = table.objects.get(&slot).cloned() else {
                    return Err(CommitError::NotFound);
                };
                if rv_of(&prev) != expect_rv {
                    return Err(CommitError::Stale);
                }
                table.objects.remove(&slot);
                inner.rv += 1;
                let rv = inner.rv;
                let mut gone = (*prev).clone();
                if let Some(meta) = gone.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
                }
                let gone = Arc::new(gone);
                self.index(&mut inner, &key, Some(&prev), None);
                if let Some(table) = inner.tables.get_mut(&key.storage) {
                    let ev = Arc::new(WatchEvent::new(
                        rv,
                        EventType::Deleted,
                        gone.clone(),
                        Some(prev),
                    ));
                    self.record(table, ev);
                }
                let crd = is_crd(&key.storage).then(|| (gone.clone(), false));
                (key.storage, gone, crd)
            }
        };
        let rv = inner.rv;
        if let Some((crd, present)) = crd_change {
            self.set_registry(|r| {
                if present {
                    r.register_crd(&crd);
                } else if let Some(name) = crd.pointer("/metadata/name").and_then(Value::as_str) {
                    r.remove_crd(name);
                }
            });
            if !present {
                drop_custom_storage(&mut inner, &crd);
            }
        }
        drop(inner);
        let _ = storage;
        self.changes.send_replace(rv);
        Ok(result)
    }

    fn index(
        &self,
        inner: &mut Inner,
        key: &ObjKey,
        prev: Option<&Value>,
        next: Option<&Arc<Value>>,
    ) {
        inner.deleting.remove(key);
        if let Some(n) = next
            && n.pointer("/metadata/deletionTimestamp").is_some()
        {
            inner.deleting.insert(key.clone());
        }
        if let Some(p) = prev {
            if let Some(uid) = uid_of(p) {
                inner.by_uid.remove(uid);
                if next.is_none() && inner.dependents.contains_key(uid) {
                    inner.gone_owners.push(uid.to_string());
                }
            }
            for owner in owner_uids(p) {
                if let Some(set) = inner.dependents.get_mut(&owner) {
                    set.remove(key);
                    if set.is_empty() {
                        inner.dependents.remove(&owner);
                    }
                }
            }
        }
        if let Some(n) = next {
            if let Some(uid) = uid_of(n) {
                inner.by_uid.insert(uid.to_string(), key.clone());
            }
            for owner in owner_uids(n) {
                // A dependent naming an owner that does not exist is garbage as well.
                if !inner.by_uid.contains_key(&owner) {
                    inner.gone_owners.push(owner.clone());
                }
                inner
                    .dependents
                    .entry(owner)
                    .or_default()
                    .insert(key.clone());
            }
        }
    }

    fn record(&self, table: &mut Table, ev: Arc<WatchEvent>) {
        table.history.push_back(ev.clone());
        while table.history.len() > self.history_limit {
            if let Some(old) = table.history.pop_front() {
                table.window_start = old.rv;
            }
        }
        // No receivers is fine: nobody is watching this resource.
        let _ = table.tx.send(ev);
    }
}

fn is_crd(storage: &StorageKey) -> bool {
    storage.group == "apiextensions.k8s.io" && storage.resource == "customresourcedefinitions"
}

/// Forgets the objects of a deleted CRD (the CRD's finalizer already deleted them one by one).
fn drop_custom_storage(inner: &mut Inner, crd: &Value) {
    let key = StorageKey::of_crd(crd);
    if let Some(table) = inner.tables.remove(&key) {
        for obj in table.objects.values() {
            if let Some(uid) = uid_of(obj) {
                inner.by_uid.remove(uid);
            }
        }
    }
}

#[cfg(test)]
mod tests;
