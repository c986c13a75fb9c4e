//! OpenAPI v3 (per group version) and v2 documents: enough for `kubectl explain` on custom
//! resources and for kubectl's check that the server does field validation itself.
//!
//! Reproduces <https://kubernetes.io/docs/concepts/overview/kubernetes-api/#openapi-interface-definition>.
//! Custom resources carry their CRD schema; built-in kinds get an open object schema (their
//! full Go-derived schemas are not reproduced).

use serde_json::{Map, Value, json};

use crate::registry::{Registry, ResourceType};

/// Definition name, e.g. `io.medplat.v1alpha1.Pipeline` or `io.k8s.api.apps.v1.Deployment`.
pub fn definition_name(rt: &ResourceType) -> String {
    if rt.is_custom() {
        let reversed: Vec<&str> = rt.group.split('.').rev().collect();
        format!("{}.{}.{}", reversed.join("."), rt.version, rt.kind)
    } else {
        let g = if rt.group.is_empty() {
            "core".to_string()
        } else {
            rt.group.trim_end_matches(".k8s.io").to_string()
        };
        format!("io.k8s.api.{}.{}.{}", g, rt.version, rt.kind)
    }
}

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

fn object_meta_schema() -> Value {
    json!({
        "description": "ObjectMeta is metadata that all persisted resources must have, which includes all objects users must create.",
        "type": "object",
        "properties": {
            "name": {"description": "Name must be unique within a namespace.", "type": "string"},
            "generateName": {"description": "GenerateName is an optional prefix, used by the server, to generate a unique name ONLY IF the Name field has not been provided.", "type": "string"},
            "namespace": {"description": "Namespace defines the space within which each name must be unique.", "type": "string"},
            "labels": {"description": "Map of string keys and values that can be used to organize and categorize (scope and select) objects.", "type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"description": "Annotations is an unstructured key value map stored with a resource.", "type": "object", "additionalProperties": {"type": "string"}},
            "uid": {"description": "UID is the unique in time and space value for this object.", "type": "string"},
            "resourceVersion": {"description": "An opaque value that represents the internal version of this object.", "type": "string"},
            "generation": {"description": "A sequence number representing a specific generation of the desired state.", "type": "integer", "format": "int64"},
            "finalizers": {"description": "Must be empty before the object is deleted from the registry.", "type": "array", "items": {"type": "string"}},
            "ownerReferences": {"description": "List of objects depended by this object.", "type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
            "creationTimestamp": {"description": "CreationTimestamp is a timestamp representing the server time when this object was created.", "type": "string", "format": "date-time"},
            "deletionTimestamp": {"description": "DeletionTimestamp is RFC 3339 date and time at which this resource will be deleted.", "type": "string", "format": "date-time"},
        }
    })
}

fn schema_for(rt: &ResourceType, meta_ref: &str) -> Value {
    let mut schema = match &rt.schema {
        Some(s) => s.schema().clone(),
        None => json!({
            "description": format!("{} is a built-in Kubernetes kind (kubesim serves an open schema for it).", rt.kind),
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true,
        }),
    };
    if let Some(m) = schema.as_object_mut() {
        m.insert(
            "x-kubernetes-group-version-kind".into(),
            json!([{"group": rt.group, "version": rt.version, "kind": rt.kind}]),
        );
        let props = m.entry("properties").or_insert_with(|| json!({}));
        if let Some(p) = props.as_object_mut() {
            p.insert(
                "apiVersion".into(),
                json!({"description": "APIVersion defines the versioned schema of this representation of an object.", "type": "string"}),
            );
            p.insert(
                "kind".into(),
                json!({"description": "Kind is a string value representing the REST resource this object represents.", "type": "string"}),
            );
            p.insert(
                "metadata".into(),
                json!({"allOf": [{"$ref": meta_ref}], "description": "Standard object's metadata."}),
            );
        }
    }
    schema
}

fn params() -> Vec<Value> {
    [
        "dryRun",
        "fieldManager",
        "fieldValidation",
        "force",
        "pretty",
    ]
    .iter()
    .map(|n| json!({"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": true}}))
    .collect()
}

fn op(action: &str, rt: &ResourceType, def_ref: &str) -> Value {
    json!({
        "operationId": format!("{action}{}", rt.kind),
        "parameters": params(),
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": def_ref}}}}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
    })
}

fn prefix(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    }
}

/// The OpenAPI v3 document for one group version.
pub fn v3_group_version(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    if !reg.has_group_version(group, version) {
        return None;
    }
    let mut schemas = Map::new();
    let mut paths = Map::new();
    let meta_ref = format!("#/components/schemas/{OBJECT_META}");
    schemas.insert(OBJECT_META.into(), object_meta_schema());
    for rt in reg.in_group_version(group, version) {
        let def = definition_name(&rt);
        let def_ref = format!("#/components/schemas/{def}");
        schemas.insert(def.clone(), schema_for(&rt, &meta_ref));
        let base = prefix(group, version);
        let collection = if rt.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", rt.plural)
        } else {
            format!("{base}/{}", rt.plural)
        };
        paths.insert(
            format!("{collection}/{{name}}"),
            json!({
                "get": op("get", &rt, &def_ref),
                "put": op("put", &rt, &def_ref),
                "patch": op("patch", &rt, &def_ref),
                "delete": op("delete", &rt, &def_ref),
            }),
        );
        paths.insert(
            collection,
            json!({"get": op("list", &rt, &def_ref), "post": op("post", &rt, &def_ref)}),
        );
        if rt.status_subresource {
            paths.insert(
                format!("{}/{{name}}/status", prefix_path(&rt, &base)),
                json!({"get": op("get", &rt, &def_ref), "put": op("put", &rt, &def_ref), "patch": op("patch", &rt, &def_ref)}),
            );
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

fn prefix_path(rt: &ResourceType, base: &str) -> String {
    if rt.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", rt.plural)
    } else {
        format!("{base}/{}", rt.plural)
    }
}

fn fnv(text: &str) -> String {
    let h = text.bytes().fold(1469598103934665603u64, |h, b| {
        (h ^ b as u64).wrapping_mul(1099511628211)
    });
    format!("{h:016X}")
}

/// `/openapi/v3`: the index of group-version documents, with content hashes for caching.
pub fn v3_index(reg: &Registry) -> Value {
    let mut paths = Map::new();
    for (g, vs) in reg.groups() {
        for v in vs {
            let key = if g.is_empty() {
                format!("api/{v}")
            } else {
                format!("apis/{g}/{v}")
            };
            let hash = v3_group_version(reg, &g, &v)
                .map(|d| fnv(&d.to_string()))
                .unwrap_or_default();
            paths.insert(
                key.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={hash}")}),
            );
        }
    }
    json!({"paths": paths})
}

/// `/openapi/v2`: one Swagger document with every definition.
pub fn v2(reg: &Registry) -> Value {
    let mut defs = Map::new();
    let meta_ref = format!("#/definitions/{OBJECT_META}");
    defs.insert(OBJECT_META.into(), object_meta_schema());
    for rt in reg.all() {
        defs.insert(definition_name(rt), schema_for(rt, &meta_ref));
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": {},
        "definitions": defs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // kubectl checks that PATCH takes `fieldValidation` before relying on server-side validation
    // (https://kubernetes.io/docs/reference/using-api/api-concepts/#field-validation).
    #[test]
    fn v3_docs_advertise_field_validation_and_gvk() {
        let reg = Registry::with_builtins();
        let doc = v3_group_version(&reg, "apps", "v1").expect("apps/v1");
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        assert!(
            patch["parameters"]
                .as_array()
                .is_some_and(|p| p.iter().any(|x| x["name"] == "fieldValidation"))
        );
        let idx = v3_index(&reg);
        assert!(
            idx["paths"]["apis/apps/v1"]["serverRelativeURL"]
                .as_str()
                .is_some_and(|u| u.contains("hash="))
        );
        assert!(v3_group_version(&reg, "nope", "v1").is_none());
    }
}
