//! Which parents a change to another parent must wake, and only when it matters.
//!
//! A Pipeline reads the specs of its DataSources, the namespace's AccessPolicies and the
//! StorageTiers; an AccessPolicy reads the namespace's DataSources; a DataSource reads the
//! tiers. None reads another parent's status or metadata. So a watched parent wakes its
//! dependants only when its spec changed (a new generation) or it is new, never on its own
//! status writes: otherwise every status write of a DataSource would reconcile every Pipeline
//! of its namespace, which at hospital scale (thousands of pipelines) is quadratic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use super::cache_index::CacheIndex;
use crate::api::{DataSource, Pipeline};

/// What identifies one spec of one object: its uid and generation.
type SpecVersion = (Option<String>, Option<i64>);

/// Passes an object only when it is new or its spec changed (uid or generation moved) since
/// this stream last passed it.
pub fn spec_changes<K, S>(stream: S) -> impl Stream<Item = Arc<K>> + Send + 'static + use<K, S>
where
    K: Resource<DynamicType = ()> + Send + Sync + 'static,
    S: Stream<Item = Arc<K>> + Send + 'static,
{
    let seen: Mutex<HashMap<ObjectRef<K>, SpecVersion>> = Mutex::new(HashMap::new());
    stream.filter(move |o| {
        let version = (o.meta().uid.clone(), o.meta().generation);
        let changed = seen.lock().map_or(true, |mut m| {
            m.insert(ObjectRef::from_obj(o.as_ref()), version.clone()) != Some(version)
        });
        futures::future::ready(changed)
    })
}

/// The index key of DataSource `name` in `namespace`, under which the Pipelines reading it
/// are found.
pub fn source_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// The index key under which a namespace's unreadable Pipelines sit: they cannot say what they
/// read, so every change of a source of their namespace wakes them. (`*` is no valid name.)
fn unreadable_key(namespace: &str) -> String {
    source_key(namespace, "*")
}

/// The index keys of a Pipeline: one per DataSource it reads (see [`source_key`]).
pub fn sources_read_by(pipeline: &DeserializeGuard<Pipeline>) -> Vec<String> {
    let ns = pipeline.namespace().unwrap_or_default();
    match &pipeline.0 {
        Ok(p) => p.spec.sources.iter().map(|s| source_key(&ns, s)).collect(),
        Err(_) => vec![unreadable_key(&ns)],
    }
}

/// The Pipelines of `source`'s namespace that read it (and the namespace's unreadable ones).
pub fn pipelines_reading(
    by_source: &CacheIndex<DeserializeGuard<Pipeline>>,
    source: &DeserializeGuard<DataSource>,
) -> Vec<ObjectRef<DeserializeGuard<Pipeline>>> {
    let ns = source.namespace().unwrap_or_default();
    let mut found = by_source.lookup(&source_key(&ns, &source.name_any()));
    found.extend(by_source.lookup(&unreadable_key(&ns)));
    found
        .into_iter()
        .map(|(namespace, name)| {
            let r = ObjectRef::new(&name);
            match namespace {
                Some(ns) => r.within(&ns),
                None => r,
            }
        })
        .collect()
}

/// The objects of `store` in `namespace` (every namespace when `None`).
pub fn in_namespace<K>(store: &Store<K>, namespace: Option<&str>) -> Vec<ObjectRef<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store
        .state()
        .iter()
        .filter(|o| namespace.is_none() || o.meta().namespace.as_deref() == namespace)
        .map(|o| ObjectRef::from_obj(o.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;

    fn source(generation: i64, uid: &str) -> Arc<DeserializeGuard<DataSource>> {
        let mut d: DataSource = serde_json::from_value(serde_json::json!({
            "apiVersion": "medplat.io/v1alpha1", "kind": "DataSource",
            "metadata": {"name": "s", "namespace": "n"},
            "spec": {"system": "LIS", "connector": {"files": {"location": {"tier": "t", "path": "p"}, "format": "csv"}},
                     "classification": {"level": "L4", "domain": "clinical"}, "fields": []}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        d.metadata = ObjectMeta {
            generation: Some(generation),
            uid: Some(uid.into()),
            resource_version: Some(format!("{generation}{uid}")),
            ..d.metadata
        };
        Arc::new(DeserializeGuard(Ok(d)))
    }

    #[tokio::test]
    async fn only_new_objects_and_spec_changes_pass() {
        let events = vec![
            source(1, "a"), // new
            source(1, "a"), // a status write: same generation
            source(2, "a"), // spec changed
            source(2, "a"),
            source(1, "b"), // deleted and created again under the same name
        ];
        let passed: Vec<_> = spec_changes(futures::stream::iter(events))
            .map(|o| (o.meta().generation, o.meta().uid.clone()))
            .collect()
            .await;
        assert_eq!(
            passed,
            vec![
                (Some(1), Some("a".to_string())),
                (Some(2), Some("a".to_string())),
                (Some(1), Some("b".to_string())),
            ]
        );
    }
}
