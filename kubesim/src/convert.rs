//! Conversion between an object's stored form and the version a request is served in.
//!
//! CRD versions convert with `strategy: None` (only `apiVersion` changes). `events.k8s.io/v1`
//! Events are stored as core/v1 Events, as the real API server stores both in one resource,
//! so `kubectl get events` shows what `kube::runtime::events::Recorder` wrote.

use serde_json::{Map, Value, json};

use crate::registry::{Conversion, ResourceType};

/// Field renames between events.k8s.io/v1 (left) and core/v1 (right).
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
    ("reportingController", "reportingComponent"),
];

fn rename(obj: &Value, to_core: bool) -> Value {
    let Some(m) = obj.as_object() else {
        return obj.clone();
    };
    let mut out = Map::new();
    for (k, v) in m {
        let renamed = EVENT_FIELDS
            .iter()
            .find(|(events, core)| if to_core { k == events } else { k == core })
            .map(|(events, core)| if to_core { *core } else { *events });
        out.insert(renamed.unwrap_or(k).to_string(), v.clone());
    }
    Value::Object(out)
}

/// The stored form of an object received through `rt`.
pub fn to_storage(rt: &ResourceType, obj: Value) -> Value {
    match rt.conversion {
        Conversion::None => obj,
        Conversion::EventsV1 => {
            let mut core = rename(&obj, true);
            core["apiVersion"] = json!("v1");
            core["kind"] = json!("Event");
            if core.get("source").is_none()
                && let Some(c) = core.get("reportingComponent").cloned()
            {
                core["source"] = json!({"component": c});
            }
            if core.get("lastTimestamp").is_none()
                && let Some(t) = core
                    .get("eventTime")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            {
                core["lastTimestamp"] = json!(
                    t.split('.')
                        .next()
                        .map(|s| format!("{}Z", s.trim_end_matches('Z')))
                );
            }
            core
        }
    }
}

/// The served form of a stored object.
pub fn to_served(rt: &ResourceType, stored: &Value) -> Value {
    match rt.conversion {
        Conversion::None => {
            let mut v = stored.clone();
            if rt.version != rt.storage_version
                && let Some(m) = v.as_object_mut()
            {
                m.insert("apiVersion".into(), json!(rt.api_version()));
            }
            v
        }
        Conversion::EventsV1 => {
            let mut e = rename(stored, false);
            e["apiVersion"] = json!(rt.api_version());
            e["kind"] = json!("Event");
            e
        }
    }
}

/// Whether the stored form is already the served form (no copy needed).
pub fn is_identity(rt: &ResourceType) -> bool {
    rt.conversion == Conversion::None && rt.version == rt.storage_version
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    // events.k8s.io/v1 and core/v1 Events are one resource
    // (https://kubernetes.io/docs/reference/kubernetes-api/cluster-resources/event-v1/).
    #[test]
    fn events_round_trip_between_groups() {
        let reg = Registry::with_builtins();
        let rt = reg
            .get("events.k8s.io", "v1", "events")
            .expect("events.k8s.io");
        let ev = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
            "regarding": {"kind": "Pipeline", "name": "p"}, "note": "hello", "reason": "Synced",
            "reportingController": "medplat", "eventTime": "2026-01-01T00:00:00.000000Z", "type": "Normal", "action": "Reconcile"});
        let core = to_storage(&rt, ev.clone());
        assert_eq!(core["involvedObject"]["name"], "p");
        assert_eq!(core["message"], "hello");
        assert_eq!(core["source"]["component"], "medplat");
        assert_eq!(core["apiVersion"], "v1");
        let back = to_served(&rt, &core);
        assert_eq!(back["regarding"], ev["regarding"]);
        assert_eq!(back["note"], "hello");
        assert_eq!(back["apiVersion"], "events.k8s.io/v1");
    }
}
