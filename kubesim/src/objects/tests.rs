//! Tests of object semantics without HTTP.

use std::sync::Arc;

use serde_json::{Value, json};

use super::*;
use crate::registry::ResourceType;

fn setup() -> Objects {
    let o = Objects::new(Arc::new(Store::new(1000)));
    o.bootstrap().expect("bootstrap");
    o
}

fn rt(o: &Objects, g: &str, v: &str, p: &str) -> Arc<ResourceType> {
    o.store().registry().get(g, v, p).expect("type")
}

fn opts(manager: &str) -> WriteOptions {
    WriteOptions {
        manager: manager.into(),
        ..WriteOptions::default()
    }
}

fn create(o: &Objects, rt: &ResourceType, ns: &str, body: Value) -> Result<Outcome, ApiError> {
    o.run(rt, || {
        o.plan_create(rt, ns, body.clone(), &opts("test"), false)
    })
}

const WIDGET_CRD: &str = r#"{
  "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
  "metadata": {"name": "widgets.example.io"},
  "spec": {"group": "example.io", "scope": "Namespaced",
    "names": {"kind": "Widget", "plural": "widgets", "shortNames": ["wd"], "categories": ["all"]},
    "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
      "schema": {"openAPIV3Schema": {"type": "object", "properties": {
        "spec": {"type": "object", "required": ["size"], "properties": {"size": {"type": "integer", "minimum": 1}, "color": {"type": "string", "default": "blue"}}},
        "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}}}}}]}}"#;

fn with_crd(o: &Objects) -> Arc<ResourceType> {
    let crd_rt = rt(o, "apiextensions.k8s.io", "v1", "customresourcedefinitions");
    let crd: Value = serde_json::from_str(WIDGET_CRD).expect("json");
    let out = create(o, &crd_rt, "", crd).expect("crd");
    assert_eq!(out.object["status"]["conditions"][1]["type"], "Established");
    rt(o, "example.io", "v1", "widgets")
}

// https://kubernetes.io/docs/reference/using-api/api-concepts/#generated-values and
// https://kubernetes.io/docs/concepts/overview/working-with-objects/names/#uids
#[test]
fn create_fills_system_fields_and_generate_name() {
    let o = setup();
    let cm = rt(&o, "", "v1", "configmaps");
    let a = create(
        &o,
        &cm,
        "default",
        json!({"metadata": {"generateName": "cfg-"}, "data": {"k": "v"}}),
    )
    .expect("create");
    let name = a.object["metadata"]["name"].as_str().expect("name");
    assert!(name.starts_with("cfg-") && name.len() == 9, "{name}");
    assert!(a.object["metadata"]["uid"].is_string());
    assert!(a.object["metadata"]["creationTimestamp"].is_string());
    assert!(
        a.object["metadata"].get("generation").is_none(),
        "ConfigMaps have no generation"
    );
    assert_eq!(a.object["metadata"]["managedFields"][0]["manager"], "test");
    let dup = create(&o, &cm, "default", json!({"metadata": {"name": name}})).expect_err("dup");
    assert_eq!(dup.code, 409);
    assert_eq!(dup.reason, "AlreadyExists");
    assert_eq!(dup.message, format!("configmaps \"{name}\" already exists"));
    let missing_ns = create(&o, &cm, "nope", json!({"metadata": {"name": "x"}})).expect_err("404");
    assert_eq!(
        (missing_ns.code, missing_ns.message.as_str()),
        (404, "namespaces \"nope\" not found")
    );
    let no_name = create(&o, &cm, "default", json!({"metadata": {}})).expect_err("422");
    assert_eq!(
        no_name.message,
        "ConfigMap \"\" is invalid: metadata.name: Required value: name or generateName is required"
    );
}

// https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions (optimistic concurrency)
#[test]
fn stale_update_conflicts_and_noop_update_keeps_rv() {
    let o = setup();
    let cm = rt(&o, "", "v1", "configmaps");
    let a = create(
        &o,
        &cm,
        "default",
        json!({"metadata": {"name": "a"}, "data": {"k": "1"}}),
    )
    .expect("create");
    let mut b = (*a.object).clone();
    b["data"]["k"] = json!("2");
    let updated = o
        .run(&cm, || {
            o.plan_update(&cm, "default", "a", b.clone(), None, &opts("test"))
        })
        .expect("update");
    assert_ne!(
        updated.object["metadata"]["resourceVersion"],
        a.object["metadata"]["resourceVersion"]
    );
    let stale = o
        .run(&cm, || {
            o.plan_update(&cm, "default", "a", b.clone(), None, &opts("test"))
        })
        .expect_err("stale");
    assert_eq!(stale.code, 409);
    assert_eq!(
        stale.message,
        "Operation cannot be fulfilled on configmaps \"a\": the object has been modified; please apply your changes to the latest version and try again"
    );
    let same = (*updated.object).clone();
    let again = o
        .run(&cm, || {
            o.plan_update(&cm, "default", "a", same.clone(), None, &opts("test"))
        })
        .expect("noop");
    assert_eq!(
        again.object["metadata"]["resourceVersion"],
        updated.object["metadata"]["resourceVersion"]
    );
}

// https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#status-subresource
#[test]
fn generation_tracks_spec_only_and_status_is_split() {
    let o = setup();
    let w = with_crd(&o);
    let a = create(&o, &w, "default", json!({"apiVersion": "example.io/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}, "status": {"ready": true}}))
        .expect("create");
    assert_eq!(a.object["metadata"]["generation"], 1);
    assert!(
        a.object.get("status").is_none(),
        "status is dropped on create"
    );
    assert_eq!(a.object["spec"]["color"], "blue", "defaulted");
    let status = o
        .run(&w, || {
            o.plan_patch(
                &w,
                "default",
                "w",
                PatchKind::Merge,
                &json!({"status": {"ready": true}, "spec": {"size": 9}}),
                Some("status"),
                &opts("ctl"),
            )
        })
        .expect("status");
    assert_eq!(status.object["status"]["ready"], true);
    assert_eq!(
        status.object["spec"]["size"], 1,
        "the status endpoint ignores spec"
    );
    assert_eq!(status.object["metadata"]["generation"], 1);
    let labelled = o
        .run(&w, || {
            o.plan_patch(
                &w,
                "default",
                "w",
                PatchKind::Merge,
                &json!({"metadata": {"labels": {"a": "b"}}, "status": {"ready": false}}),
                None,
                &opts("ctl"),
            )
        })
        .expect("labels");
    assert_eq!(
        labelled.object["metadata"]["generation"], 1,
        "metadata changes do not bump generation"
    );
    assert_eq!(
        labelled.object["status"]["ready"], true,
        "the main endpoint ignores status"
    );
    let spec = o
        .run(&w, || {
            o.plan_patch(
                &w,
                "default",
                "w",
                PatchKind::Merge,
                &json!({"spec": {"size": 2}}),
                None,
                &opts("ctl"),
            )
        })
        .expect("spec");
    assert_eq!(spec.object["metadata"]["generation"], 2);
}

// https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#validation
#[test]
fn invalid_custom_resource_gets_422_with_causes() {
    let o = setup();
    let w = with_crd(&o);
    let e = create(&o, &w, "default", json!({"apiVersion": "example.io/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 0}}))
        .expect_err("invalid");
    assert_eq!(e.code, 422);
    assert_eq!(
        e.message,
        "Widget.example.io \"w\" is invalid: spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1"
    );
    let details = e.details.expect("details");
    assert_eq!(details["causes"][0]["field"], "spec.size");
    assert_eq!(details["causes"][0]["reason"], "FieldValueInvalid");
    assert_eq!(details["group"], "example.io");
    let wrong = create(&o, &w, "default", json!({"apiVersion": "example.io/v2", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}}))
        .expect_err("wrong apiVersion");
    assert_eq!(wrong.code, 400);
    let strict = o
        .run(&w, || {
            o.plan_create(
                &w,
                "default",
                json!({"metadata": {"name": "s"}, "spec": {"size": 1, "bogus": 1}}),
                &WriteOptions {
                    strict: true,
                    ..opts("t")
                },
                false,
            )
        })
        .expect_err("strict");
    assert!(
        strict
            .message
            .ends_with("strict decoding error: unknown field \"spec.bogus\""),
        "{}",
        strict.message
    );
}

// https://kubernetes.io/docs/concepts/overview/working-with-objects/finalizers/
#[test]
fn finalizers_hold_deletion_until_removed() {
    let o = setup();
    let cm = rt(&o, "", "v1", "configmaps");
    create(
        &o,
        &cm,
        "default",
        json!({"metadata": {"name": "f", "finalizers": ["example.io/hold"]}}),
    )
    .expect("create");
    let d = o
        .run(&cm, || {
            o.plan_delete(&cm, "default", "f", &DeleteOptions::default())
        })
        .expect("delete");
    assert!(d.object["metadata"]["deletionTimestamp"].is_string());
    assert!(o.get(&cm, "default", "f").is_ok(), "still there");
    let add = o.run(&cm, || {
        o.plan_patch(
            &cm,
            "default",
            "f",
            PatchKind::Merge,
            &json!({"metadata": {"finalizers": ["example.io/hold", "more"]}}),
            None,
            &opts("t"),
        )
    });
    assert_eq!(add.expect_err("no new finalizers").code, 422);
    o.run(&cm, || {
        o.plan_patch(
            &cm,
            "default",
            "f",
            PatchKind::Merge,
            &json!({"metadata": {"finalizers": null}}),
            None,
            &opts("t"),
        )
    })
    .expect("remove finalizer");
    assert_eq!(o.get(&cm, "default", "f").expect_err("gone").code, 404);
}

// https://kubernetes.io/docs/reference/using-api/server-side-apply/#conflicts
#[test]
fn apply_creates_then_conflicts_naming_the_manager() {
    let o = setup();
    let dep = rt(&o, "apps", "v1", "deployments");
    let body = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {
        "replicas": 2, "selector": {"matchLabels": {"app": "d"}},
        "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c", "image": "i:1"}]}}}});
    let created = o
        .run(&dep, || {
            o.plan_patch(
                &dep,
                "default",
                "d",
                PatchKind::Apply,
                &body,
                None,
                &opts("alice"),
            )
        })
        .expect("apply creates");
    assert!(created.created);
    let mut other = body.clone();
    other["spec"]["replicas"] = json!(3);
    let e = o
        .run(&dep, || {
            o.plan_patch(
                &dep,
                "default",
                "d",
                PatchKind::Apply,
                &other,
                None,
                &opts("bob"),
            )
        })
        .expect_err("conflict");
    assert_eq!(e.code, 409);
    assert_eq!(
        e.message,
        "Apply failed with 1 conflict: conflict with \"alice\" using apps/v1: .spec.replicas"
    );
    let forced = o
        .run(&dep, || {
            o.plan_patch(
                &dep,
                "default",
                "d",
                PatchKind::Apply,
                &other,
                None,
                &WriteOptions {
                    force: true,
                    ..opts("bob")
                },
            )
        })
        .expect("force");
    assert_eq!(forced.object["spec"]["replicas"], 3);
    assert_eq!(forced.object["metadata"]["generation"], 2);
    let same = o
        .run(&dep, || {
            o.plan_patch(
                &dep,
                "default",
                "d",
                PatchKind::Apply,
                &other,
                None,
                &WriteOptions {
                    force: true,
                    ..opts("bob")
                },
            )
        })
        .expect("idempotent");
    assert_eq!(
        same.object["metadata"]["resourceVersion"],
        forced.object["metadata"]["resourceVersion"]
    );
}

// https://kubernetes.io/docs/concepts/overview/working-with-objects/namespaces/ (Terminating)
#[test]
fn terminating_namespace_refuses_new_content() {
    let o = setup();
    let ns = rt(&o, "", "v1", "namespaces");
    let cm = rt(&o, "", "v1", "configmaps");
    create(&o, &ns, "", json!({"metadata": {"name": "team"}})).expect("ns");
    let d = o
        .run(&ns, || {
            o.plan_delete(&ns, "", "team", &DeleteOptions::default())
        })
        .expect("delete");
    assert_eq!(d.object["status"]["phase"], "Terminating");
    let e = create(&o, &cm, "team", json!({"metadata": {"name": "x"}})).expect_err("forbidden");
    assert_eq!(e.code, 403);
    assert!(
        e.message.contains("because it is being terminated"),
        "{}",
        e.message
    );
}

// https://kubernetes.io/docs/concepts/architecture/garbage-collection/#background-deletion
// (a cluster-scoped owner with a namespaced dependent, as the docs allow).
#[test]
fn background_gc_deletes_dependents_of_cluster_scoped_owner() {
    let o = setup();
    let ns = rt(&o, "", "v1", "namespaces");
    let sec = rt(&o, "", "v1", "secrets");
    let owner = create(&o, &ns, "", json!({"metadata": {"name": "owner-ns"}})).expect("owner");
    let uid = owner.object["metadata"]["uid"].clone();
    create(&o, &sec, "default", json!({"metadata": {"name": "child", "ownerReferences": [{"apiVersion": "v1", "kind": "Namespace", "name": "owner-ns", "uid": uid}]}}))
        .expect("child");
    let cm = rt(&o, "", "v1", "configmaps");
    create(&o, &cm, "default", json!({"metadata": {"name": "orphan", "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "nope", "uid": "missing"}]}}))
        .expect("dangling");
    crate::controllers::gc::pass(&o);
    assert_eq!(
        o.get(&cm, "default", "orphan")
            .expect_err("dangling owner → collected")
            .code,
        404
    );
    assert!(o.get(&sec, "default", "child").is_ok());
    o.run(&ns, || {
        o.plan_delete(&ns, "", "owner-ns", &DeleteOptions::default())
    })
    .expect("delete");
    for _ in 0..4 {
        crate::controllers::gc::pass(&o);
    }
    assert_eq!(
        o.get(&sec, "default", "child").expect_err("collected").code,
        404
    );
    assert_eq!(
        o.get(&ns, "", "owner-ns")
            .expect_err("namespace gone once empty")
            .code,
        404
    );
}

// https://kubernetes.io/docs/reference/using-api/server-side-apply/ on the status subresource:
// a controller applies status with its own manager; spec stays as it was.
#[test]
fn apply_to_the_status_subresource() {
    let o = setup();
    let w = with_crd(&o);
    create(&o, &w, "default", json!({"apiVersion": "example.io/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}}))
        .expect("create");
    let status = json!({"apiVersion": "example.io/v1", "kind": "Widget", "metadata": {"name": "w"}, "status": {"ready": true}, "spec": {"size": 7}});
    let out = o
        .run(&w, || {
            o.plan_patch(
                &w,
                "default",
                "w",
                PatchKind::Apply,
                &status,
                Some("status"),
                &WriteOptions {
                    force: true,
                    ..opts("ctl")
                },
            )
        })
        .expect("status apply");
    assert_eq!(out.object["status"]["ready"], true);
    assert_eq!(
        out.object["spec"]["size"], 1,
        "spec untouched through /status"
    );
    assert_eq!(out.object["metadata"]["generation"], 1);
    let entry = out.object["metadata"]["managedFields"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["manager"] == "ctl").cloned())
        .expect("ctl entry");
    assert_eq!(entry["subresource"], "status");
    assert_eq!(entry["fieldsV1"], json!({"f:status": {"f:ready": {}}}));
    let again = o
        .run(&w, || {
            o.plan_patch(
                &w,
                "default",
                "w",
                PatchKind::Apply,
                &status,
                Some("status"),
                &WriteOptions {
                    force: true,
                    ..opts("ctl")
                },
            )
        })
        .expect("again");
    assert_eq!(
        again.object["metadata"]["resourceVersion"], out.object["metadata"]["resourceVersion"],
        "idempotent"
    );
}
