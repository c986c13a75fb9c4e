//! The conformance suite: each scenario states the documented Kubernetes behaviour it checks
//! and runs twice: against an in-process kubesim, and against a real cluster when
//! `KUBESIM_CONFORMANCE_KUBECONFIG` names a kubeconfig (e.g. a kind cluster's). Without it the
//! real-cluster variant prints a loud SKIPPED line and passes, so anyone with a cluster can
//! prove kubesim right with:
//!
//! ```sh
//! KUBESIM_CONFORMANCE_KUBECONFIG=~/.kube/config cargo test -p kubesim --test conformance -- real_cluster
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use http_body_util::BodyExt;
use kube::Client;
use serde_json::{Value, json};

const ENV: &str = "KUBESIM_CONFORMANCE_KUBECONFIG";

/// What a scenario gets: a client, its own namespace, and whether the server is kubesim.
struct Ctx {
    client: Client,
    ns: String,
    is_sim: bool,
}

type Scenario = fn(Ctx) -> Pin<Box<dyn Future<Output = ()> + Send>>;

async fn raw(
    client: &Client,
    method: &str,
    path: &str,
    body: Option<Value>,
    content_type: &str,
) -> (u16, Value) {
    let bytes = body
        .map(|b| serde_json::to_vec(&b).unwrap())
        .unwrap_or_default();
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .header("accept", "application/json")
        .body(kube::client::Body::from(bytes))
        .unwrap();
    let resp = client.send(req).await.unwrap();
    let code = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (code, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn post(c: &Ctx, path: &str, body: Value) -> (u16, Value) {
    raw(&c.client, "POST", path, Some(body), "application/json").await
}

async fn get(c: &Ctx, path: &str) -> (u16, Value) {
    raw(&c.client, "GET", path, None, "application/json").await
}

async fn patch(c: &Ctx, path: &str, body: Value, ct: &str) -> (u16, Value) {
    raw(&c.client, "PATCH", path, Some(body), ct).await
}

async fn delete(c: &Ctx, path: &str, body: Option<Value>) -> (u16, Value) {
    raw(&c.client, "DELETE", path, body, "application/json").await
}

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..200 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

async fn with_namespace(client: Client, is_sim: bool, name: &str, scenario: Scenario) {
    let ns = format!("conf-{}-{}", name.replace('_', "-"), &uuid_suffix());
    let ctx = Ctx {
        client: client.clone(),
        ns: ns.clone(),
        is_sim,
    };
    let (code, body) = post(
        &ctx,
        "/api/v1/namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
    )
    .await;
    assert_eq!(code, 201, "creating namespace: {body}");
    scenario(ctx).await;
    let _ = raw(
        &client,
        "DELETE",
        &format!("/api/v1/namespaces/{ns}"),
        None,
        "application/json",
    )
    .await;
}

fn uuid_suffix() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:08x}", t ^ std::process::id())
}

async fn run_kubesim(name: &str, scenario: Scenario) {
    let sim = kubesim::Sim::builder()
        .bookmark_interval(Duration::from_millis(200))
        .history_limit(50)
        .start()
        .await
        .unwrap();
    with_namespace(sim.client(), true, name, scenario).await;
    sim.shutdown().await;
}

async fn run_real(name: &str, scenario: Scenario) {
    let Ok(path) = std::env::var(ENV) else {
        // Written to the raw stderr handle so that libtest's capture does not hide it.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED conformance::{name}::real_cluster: set {ENV} to a kubeconfig to run it against a real cluster"
        );
        return;
    };
    let kc = kube::config::Kubeconfig::read_from(&path).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let client = Client::try_from(cfg).unwrap();
    with_namespace(client, false, name, scenario).await;
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn kubesim() {
                super::run_kubesim(stringify!($name), |c| Box::pin(super::scenarios::$name(c))).await
            }
            #[tokio::test]
            async fn real_cluster() {
                super::run_real(stringify!($name), |c| Box::pin(super::scenarios::$name(c))).await
            }
        }
    )*};
}

conformance!(
    crud_status_shapes,
    generate_name_and_system_fields,
    stale_update_conflicts,
    patches_merge_json_strategic,
    server_side_apply_conflicts_and_removal,
    list_pagination_and_selectors,
    watch_resume_selectors_and_gone,
    finalizers_and_deletion_timestamp,
    garbage_collection_policies,
    custom_resources_end_to_end,
    table_output,
    metadata_only_representation,
    events_are_one_resource,
);

mod scenarios {
    use super::*;

    fn cm(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}})
    }

    // https://kubernetes.io/docs/reference/using-api/api-concepts/#api-verbs and the Status
    // kind (https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/status/).
    pub async fn crud_status_shapes(c: Ctx) {
        let base = format!("/api/v1/namespaces/{}/configmaps", c.ns);
        let (code, created) = post(&c, &base, cm("a")).await;
        assert_eq!(code, 201);
        assert_eq!(created["metadata"]["namespace"], c.ns.as_str());
        let (code, dup) = post(&c, &base, cm("a")).await;
        assert_eq!(
            (code, dup["kind"].as_str(), dup["reason"].as_str()),
            (409, Some("Status"), Some("AlreadyExists"))
        );
        assert_eq!(dup["message"], "configmaps \"a\" already exists");
        assert_eq!(dup["details"]["name"], "a");
        let (code, nf) = get(&c, &format!("{base}/missing")).await;
        assert_eq!((code, nf["reason"].as_str()), (404, Some("NotFound")));
        assert_eq!(nf["message"], "configmaps \"missing\" not found");
        assert_eq!(nf["details"]["kind"], "configmaps");
        let (code, _) = get(&c, "/api/v1/namespaces/default/nosuchresources").await;
        assert_eq!(code, 404);
        let (code, _) = delete(&c, &format!("{base}/a"), None).await;
        assert_eq!(code, 200);
        let (code, _) = get(&c, &format!("{base}/a")).await;
        assert_eq!(code, 404);
    }

    // https://kubernetes.io/docs/reference/using-api/api-concepts/#generated-values and
    // https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions
    pub async fn generate_name_and_system_fields(c: Ctx) {
        let base = format!("/api/v1/namespaces/{}/configmaps", c.ns);
        let (code, a) = post(
            &c,
            &base,
            json!({"metadata": {"generateName": "gen-"}, "data": {}}),
        )
        .await;
        assert_eq!(code, 201);
        let name = a["metadata"]["name"].as_str().unwrap();
        assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
        assert!(a["metadata"]["uid"].as_str().is_some_and(|u| u.len() == 36));
        assert!(
            a["metadata"]["creationTimestamp"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z'))
        );
        let (_, b) = post(&c, &base, cm("b")).await;
        let rv = |v: &Value| {
            v["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        };
        assert!(rv(&b) > rv(&a), "resourceVersions increase across objects");
        let (code, invalid) = post(&c, &base, json!({"metadata": {"name": "Not_Valid"}})).await;
        assert_eq!((code, invalid["reason"].as_str()), (422, Some("Invalid")));
        assert_eq!(invalid["details"]["causes"][0]["field"], "metadata.name");
    }

    // https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions (optimistic concurrency)
    pub async fn stale_update_conflicts(c: Ctx) {
        let base = format!("/api/v1/namespaces/{}/configmaps", c.ns);
        let (_, a) = post(&c, &base, cm("a")).await;
        let mut first = a.clone();
        first["data"]["k"] = json!("1");
        let (code, _) = raw(
            &c.client,
            "PUT",
            &format!("{base}/a"),
            Some(first),
            "application/json",
        )
        .await;
        assert_eq!(code, 200);
        let mut stale = a.clone();
        stale["data"]["k"] = json!("2");
        let (code, conflict) = raw(
            &c.client,
            "PUT",
            &format!("{base}/a"),
            Some(stale),
            "application/json",
        )
        .await;
        assert_eq!((code, conflict["reason"].as_str()), (409, Some("Conflict")));
        assert_eq!(
            conflict["message"],
            "Operation cannot be fulfilled on configmaps \"a\": the object has been modified; please apply your changes to the latest version and try again"
        );
    }

    // https://kubernetes.io/docs/tasks/manage-kubernetes-objects/update-api-object-kubectl-patch/
    pub async fn patches_merge_json_strategic(c: Ctx) {
        let base = format!("/apis/apps/v1/namespaces/{}/deployments", c.ns);
        let dep = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {
            "replicas": 0, "selector": {"matchLabels": {"app": "d"}},
            "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [
                {"name": "a", "image": "busybox:1", "env": [{"name": "X", "value": "1"}]}]}}}});
        let (code, created) = post(&c, &base, dep).await;
        assert_eq!(code, 201, "{created}");
        let path = format!("{base}/d");
        let (code, smp) = patch(&c, &path, json!({"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "busybox:2"}, {"name": "a", "env": [{"name": "Y", "value": "2"}]}]}}}}), "application/strategic-merge-patch+json").await;
        assert_eq!(code, 200, "{smp}");
        let containers = smp["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap();
        assert_eq!(containers.len(), 2, "merged by name: {containers:?}");
        let a = containers.iter().find(|x| x["name"] == "a").unwrap();
        assert_eq!(a["env"].as_array().unwrap().len(), 2, "env merged by name");
        assert_eq!(smp["metadata"]["generation"], 2);
        let (code, merged) = patch(
            &c,
            &path,
            json!({"metadata": {"labels": {"x": "y"}}}),
            "application/merge-patch+json",
        )
        .await;
        assert_eq!(code, 200);
        assert_eq!(
            merged["metadata"]["generation"], 2,
            "metadata changes do not bump generation"
        );
        let (code, jp) = patch(&c, &path, json!([{"op": "replace", "path": "/spec/replicas", "value": 0}, {"op": "add", "path": "/metadata/labels/z", "value": "w"}]), "application/json-patch+json").await;
        assert_eq!(code, 200);
        assert_eq!(jp["metadata"]["labels"]["z"], "w");
        let (code, failed) = patch(
            &c,
            &path,
            json!([{"op": "test", "path": "/spec/replicas", "value": 5}]),
            "application/json-patch+json",
        )
        .await;
        assert_eq!(code, 422, "{failed}");
    }

    // https://kubernetes.io/docs/reference/using-api/server-side-apply/#conflicts and #field-management
    pub async fn server_side_apply_conflicts_and_removal(c: Ctx) {
        let path = format!("/api/v1/namespaces/{}/configmaps/ssa", c.ns);
        let apply = |mgr: &str, force: bool| format!("{path}?fieldManager={mgr}&force={force}");
        let ct = "application/apply-patch+yaml";
        let (code, first) = patch(&c, &apply("alice", false), json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "1", "b": "1"}}), ct).await;
        assert_eq!(code, 201, "{first}");
        let (code, conflict) = patch(&c, &apply("bob", false), json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "2"}}), ct).await;
        assert_eq!(code, 409);
        assert_eq!(
            conflict["message"],
            "Apply failed with 1 conflict: conflict with \"alice\" using v1: .data.a"
        );
        assert_eq!(conflict["details"]["causes"][0]["field"], ".data.a");
        let (code, forced) = patch(&c, &apply("bob", true), json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "2"}}), ct).await;
        assert_eq!(code, 200);
        assert_eq!(forced["data"]["a"], "2");
        let managers: Vec<&str> = forced["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["manager"].as_str())
            .collect();
        assert_eq!(managers, vec!["alice", "bob"]);
        let (code, dropped) = patch(&c, &apply("alice", false), json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {}}), ct).await;
        assert_eq!(code, 200);
        assert_eq!(
            dropped["data"],
            json!({"a": "2"}),
            "alice's b is removed; bob's a stays"
        );
        let rv = dropped["metadata"]["resourceVersion"].clone();
        let (_, again) = patch(&c, &apply("alice", false), json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {}}), ct).await;
        assert_eq!(
            again["metadata"]["resourceVersion"], rv,
            "a no-op apply does not write"
        );
    }

    // https://kubernetes.io/docs/reference/using-api/api-concepts/#retrieving-large-results-sets-in-chunks
    // and https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors
    pub async fn list_pagination_and_selectors(c: Ctx) {
        let base = format!("/api/v1/namespaces/{}/configmaps", c.ns);
        for i in 0..5 {
            let mut o = cm(&format!("p{i}"));
            o["metadata"]["labels"] = json!({"parity": if i % 2 == 0 { "even" } else { "odd" }});
            post(&c, &base, o).await;
        }
        let mut names = Vec::new();
        let mut cont = String::new();
        loop {
            let (code, page) = get(&c, &format!("{base}?limit=2&continue={cont}")).await;
            assert_eq!(code, 200);
            assert!(page["items"].as_array().unwrap().len() <= 2);
            names.extend(
                page["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i["metadata"]["name"].as_str().unwrap().to_string()),
            );
            match page["metadata"]["continue"].as_str() {
                Some(t) if !t.is_empty() => cont = t.to_string(),
                _ => break,
            }
        }
        assert_eq!(names, vec!["p0", "p1", "p2", "p3", "p4"]);
        let (_, even) = get(&c, &format!("{base}?labelSelector=parity%3Deven")).await;
        assert_eq!(even["items"].as_array().unwrap().len(), 3);
        let (_, odd) = get(&c, &format!("{base}?labelSelector=parity%20notin%20(even)")).await;
        assert_eq!(odd["items"].as_array().unwrap().len(), 2);
        let (_, named) = get(&c, &format!("{base}?fieldSelector=metadata.name%3Dp3")).await;
        assert_eq!(named["items"].as_array().unwrap().len(), 1);
        let (code, bad) = get(&c, &format!("{base}?labelSelector=a%3D(b")).await;
        assert_eq!((code, bad["reason"].as_str()), (400, Some("BadRequest")));
        let (code, _) = get(&c, &format!("{base}?fieldSelector=spec.nope%3D1")).await;
        assert_eq!(code, 400);
    }

    // https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes
    // and #watch-bookmarks; an object leaving a label selector is reported DELETED.
    pub async fn watch_resume_selectors_and_gone(c: Ctx) {
        use k8s_openapi::api::core::v1::ConfigMap;
        use kube::api::{Api, WatchEvent, WatchParams};
        let api: Api<ConfigMap> = Api::namespaced(c.client.clone(), &c.ns);
        let base = format!("/api/v1/namespaces/{}/configmaps", c.ns);
        let (_, list) = get(&c, &base).await;
        let rv = list["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string();
        let mut o = cm("w");
        o["metadata"]["labels"] = json!({"sel": "yes"});
        post(&c, &base, o).await;
        let wp = WatchParams::default().labels("sel=yes").timeout(10);
        let mut stream = api.watch(&wp, &rv).await.unwrap().boxed();
        let first = stream.try_next().await.unwrap().unwrap();
        assert!(
            matches!(first, WatchEvent::Added(ref o) if o.metadata.name.as_deref() == Some("w")),
            "{first:?}"
        );
        patch(
            &c,
            &format!("{base}/w"),
            json!({"metadata": {"labels": {"sel": "no"}}}),
            "application/merge-patch+json",
        )
        .await;
        let second = stream.try_next().await.unwrap().unwrap();
        assert!(
            matches!(second, WatchEvent::Deleted(_)),
            "leaving the selector reads as DELETED: {second:?}"
        );
        if c.is_sim {
            // kubesim's window is 50 events per resource here; a real cluster compacts on a
            // timer, so this part only runs against kubesim.
            for i in 0..60 {
                post(&c, &base, cm(&format!("fill{i}"))).await;
            }
            let mut old = api
                .watch(&WatchParams::default(), &rv)
                .await
                .unwrap()
                .boxed();
            let ev = old.try_next().await.unwrap().unwrap();
            match ev {
                WatchEvent::Error(e) => assert_eq!(e.code, 410),
                other => panic!("expected 410 Gone, got {other:?}"),
            }
        }
        let mut bw = WatchParams::default().timeout(10);
        bw.bookmarks = true;
        let (_, now) = get(&c, &base).await;
        let now_rv = now["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string();
        if c.is_sim {
            let mut s = api.watch(&bw, &now_rv).await.unwrap().boxed();
            let ev = tokio::time::timeout(Duration::from_secs(5), s.try_next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert!(matches!(ev, WatchEvent::Bookmark(_)), "{ev:?}");
        }
    }

    // https://kubernetes.io/docs/concepts/overview/working-with-objects/finalizers/
    pub async fn finalizers_and_deletion_timestamp(c: Ctx) {
        let base = format!("/api/v1/namespaces/{}/configmaps", c.ns);
        let mut o = cm("f");
        o["metadata"]["finalizers"] = json!(["example.com/hold"]);
        post(&c, &base, o).await;
        let (code, deleting) = delete(&c, &format!("{base}/f"), None).await;
        assert!(code == 200 || code == 202, "{code}");
        assert!(deleting["metadata"]["deletionTimestamp"].is_string());
        let (code, still) = get(&c, &format!("{base}/f")).await;
        assert_eq!(code, 200);
        assert!(still["metadata"]["deletionTimestamp"].is_string());
        let (code, _) = patch(
            &c,
            &format!("{base}/f"),
            json!({"metadata": {"finalizers": ["example.com/hold", "example.com/more"]}}),
            "application/merge-patch+json",
        )
        .await;
        assert_eq!(code, 422, "no new finalizers on a deleting object");
        let (code, _) = patch(
            &c,
            &format!("{base}/f"),
            json!({"metadata": {"finalizers": null}}),
            "application/merge-patch+json",
        )
        .await;
        assert_eq!(code, 200);
        let (code, _) = get(&c, &format!("{base}/f")).await;
        assert_eq!(code, 404, "gone once the last finalizer is removed");
    }

    // https://kubernetes.io/docs/concepts/architecture/garbage-collection/ — Background, Foreground,
    // Orphan; owners can be cluster-scoped with namespaced dependents.
    pub async fn garbage_collection_policies(c: Ctx) {
        let cms = format!("/api/v1/namespaces/{}/configmaps", c.ns);
        let owner_of = |o: &Value, kind: &str| json!([{"apiVersion": "v1", "kind": kind, "name": o["metadata"]["name"], "uid": o["metadata"]["uid"], "blockOwnerDeletion": true}]);
        for policy in ["Background", "Foreground", "Orphan"] {
            let owner_name = format!("owner-{}", policy.to_lowercase());
            let (_, owner) = post(&c, &cms, cm(&owner_name)).await;
            let mut dep = cm(&format!("dep-{}", policy.to_lowercase()));
            dep["metadata"]["ownerReferences"] = owner_of(&owner, "ConfigMap");
            post(&c, &cms, dep).await;
            let (code, _) = delete(
                &c,
                &format!("{cms}/{owner_name}"),
                Some(json!({"propagationPolicy": policy})),
            )
            .await;
            assert!(code == 200 || code == 202);
            let dep_path = format!("{cms}/dep-{}", policy.to_lowercase());
            let owner_path = format!("{cms}/{owner_name}");
            let cc = &c;
            eventually(&format!("{policy}: owner gone"), || async {
                get(cc, &owner_path).await.0 == 404
            })
            .await;
            if policy == "Orphan" {
                let (code, orphan) = get(&c, &dep_path).await;
                assert_eq!(code, 200, "orphaned dependents stay");
                assert!(
                    orphan["metadata"].get("ownerReferences").is_none(),
                    "{orphan}"
                );
            } else {
                eventually(&format!("{policy}: dependent collected"), || async {
                    get(cc, &dep_path).await.0 == 404
                })
                .await;
            }
        }
        // Cluster-scoped owner (a Namespace-less ClusterRole) with a namespaced dependent.
        let (code, cr) = post(&c, "/apis/rbac.authorization.k8s.io/v1/clusterroles", json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": format!("{}-owner", c.ns)}, "rules": []})).await;
        assert_eq!(code, 201, "{cr}");
        let mut dep = cm("dep-cluster");
        dep["metadata"]["ownerReferences"] = json!([{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "name": cr["metadata"]["name"], "uid": cr["metadata"]["uid"]}]);
        post(&c, &cms, dep).await;
        delete(
            &c,
            &format!(
                "/apis/rbac.authorization.k8s.io/v1/clusterroles/{}-owner",
                c.ns
            ),
            None,
        )
        .await;
        let cc = &c;
        let dep_path = format!("{cms}/dep-cluster");
        eventually(
            "namespaced dependent of a cluster-scoped owner collected",
            || async { get(cc, &dep_path).await.0 == 404 },
        )
        .await;
    }

    const CRD: &str = r#"{
      "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
      "metadata": {"name": "NAME"},
      "spec": {"group": "GROUP", "scope": "Namespaced",
        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList", "categories": ["confwidgets"]},
        "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
          "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}, {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}],
          "schema": {"openAPIV3Schema": {"type": "object", "properties": {
            "spec": {"type": "object", "required": ["size"],
              "x-kubernetes-validations": [{"rule": "self.size <= self.max", "message": "size must not exceed max", "fieldPath": ".size"},
                                           {"rule": "self.mode == oldSelf.mode", "message": "mode is immutable"}],
              "properties": {"size": {"type": "integer", "minimum": 1}, "max": {"type": "integer", "default": 10}, "mode": {"type": "string", "enum": ["A", "B"], "default": "A"}}},
            "status": {"type": "object", "properties": {"conditions": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}}}}]}}"#;

    // https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/
    // (#create-a-customresourcedefinition, #validation, #defaulting, #field-pruning,
    // #validation-rules, #transition-rules, #status-subresource).
    pub async fn custom_resources_end_to_end(c: Ctx) {
        let group = format!("{}.conformance.kubesim.io", c.ns);
        let crd_name = format!("widgets.{group}");
        let crd: Value =
            serde_json::from_str(&CRD.replace("NAME", &crd_name).replace("GROUP", &group)).unwrap();
        let (code, created) = post(
            &c,
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            crd,
        )
        .await;
        assert_eq!(code, 201, "{created}");
        let cc = &c;
        let crd_path =
            format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd_name}");
        eventually("CRD Established", || async {
            let (_, v) = get(cc, &crd_path).await;
            v["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|x| x["type"] == "Established" && x["status"] == "True")
            })
        })
        .await;
        let base = format!("/apis/{group}/v1/namespaces/{}/widgets", c.ns);
        eventually("resource served", || async {
            get(cc, &base).await.0 == 200
        })
        .await;
        let w = |spec: Value| json!({"apiVersion": format!("{group}/v1"), "kind": "Widget", "metadata": {"name": "w"}, "spec": spec});
        let (code, invalid) = post(&c, &base, w(json!({"size": 0}))).await;
        assert_eq!(code, 422);
        assert_eq!(invalid["details"]["causes"][0]["field"], "spec.size");
        let (code, cel) = post(&c, &base, w(json!({"size": 11}))).await;
        assert_eq!(code, 422);
        assert!(
            cel["message"]
                .as_str()
                .unwrap()
                .contains("size must not exceed max"),
            "{cel}"
        );
        assert_eq!(cel["details"]["causes"][0]["field"], "spec.size");
        let (code, ok) = post(
            &c,
            &format!("{base}?fieldValidation=Ignore"),
            w(json!({"size": 2, "unknown": true})),
        )
        .await;
        assert_eq!(code, 201, "{ok}");
        assert_eq!(
            ok["spec"],
            json!({"size": 2, "max": 10, "mode": "A"}),
            "defaulted and pruned"
        );
        assert_eq!(ok["metadata"]["generation"], 1);
        let (code, strict) = post(&c, &format!("{base}?fieldValidation=Strict"), json!({"apiVersion": format!("{group}/v1"), "kind": "Widget", "metadata": {"name": "s"}, "spec": {"size": 1, "bogus": 1}})).await;
        assert_eq!(code, 400, "{strict}");
        assert!(
            strict["message"]
                .as_str()
                .unwrap()
                .contains("unknown field \"spec.bogus\""),
            "{strict}"
        );
        let (code, imm) = patch(
            &c,
            &format!("{base}/w"),
            json!({"spec": {"mode": "B"}}),
            "application/merge-patch+json",
        )
        .await;
        assert_eq!(code, 422, "transition rule: {imm}");
        let (code, st) = patch(&c, &format!("{base}/w/status"), json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}, "spec": {"size": 5}}), "application/merge-patch+json").await;
        assert_eq!(code, 200);
        assert_eq!(st["spec"]["size"], 2, "status endpoint ignores spec");
        assert_eq!(
            st["metadata"]["generation"], 1,
            "status writes do not bump generation"
        );
        let (_, sp) = patch(
            &c,
            &format!("{base}/w"),
            json!({"spec": {"size": 3}, "status": {"conditions": []}}),
            "application/merge-patch+json",
        )
        .await;
        assert_eq!(sp["metadata"]["generation"], 2);
        assert_eq!(
            sp["status"]["conditions"][0]["type"], "Ready",
            "main endpoint ignores status"
        );
        let (code, _) = delete(&c, &crd_path, None).await;
        assert!(code == 200 || code == 202);
        eventually("CRD and its objects gone", || async {
            get(cc, &crd_path).await.0 == 404
        })
        .await;
    }

    // https://kubernetes.io/docs/reference/using-api/api-concepts/#receiving-resources-as-tables
    pub async fn table_output(c: Ctx) {
        let base = format!("/api/v1/namespaces/{}/configmaps", c.ns);
        post(&c, &base, cm("t")).await;
        let req = http::Request::get(&base)
            .header(
                "accept",
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
            )
            .body(kube::client::Body::empty())
            .unwrap();
        let resp = c.client.send(req).await.unwrap();
        let body: Value =
            serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(body["kind"], "Table");
        assert_eq!(body["columnDefinitions"][0]["name"], "Name");
        assert_eq!(body["rows"][0]["cells"][0], "t");
        assert_eq!(body["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    }

    // https://kubernetes.io/docs/reference/using-api/api-concepts/#resources-that-support-the-partialobjectmetadata-representation
    // (metadata-only lists and gets, as kube's metadata_watcher asks for them).
    pub async fn metadata_only_representation(c: Ctx) {
        let base = format!("/api/v1/namespaces/{}/configmaps", c.ns);
        post(&c, &base, cm("m")).await;
        let accept =
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";
        let req = http::Request::get(&base)
            .header("accept", accept)
            .body(kube::client::Body::empty())
            .unwrap();
        let resp = c.client.send(req).await.unwrap();
        let list: Value =
            serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(list["kind"], "PartialObjectMetadataList", "{list}");
        assert_eq!(list["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(list["items"][0]["kind"], "PartialObjectMetadata");
        assert_eq!(list["items"][0]["metadata"]["name"], "m");
        assert!(list["items"][0].get("data").is_none(), "metadata only");
        use k8s_openapi::api::core::v1::ConfigMap;
        let api: kube::Api<ConfigMap> = kube::Api::namespaced(c.client.clone(), &c.ns);
        let meta = api.get_metadata("m").await.unwrap();
        assert_eq!(meta.metadata.name.as_deref(), Some("m"));
        let meta_api: kube::Api<kube::core::PartialObjectMeta<ConfigMap>> =
            kube::Api::namespaced(c.client.clone(), &c.ns);
        let mut stream =
            kube::runtime::watcher(meta_api, kube::runtime::watcher::Config::default()).boxed();
        let first = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
            .await
            .unwrap()
            .unwrap();
        assert!(first.is_some());
    }

    // events.k8s.io/v1 and core/v1 Events are one resource
    // (https://kubernetes.io/docs/reference/kubernetes-api/cluster-resources/event-v1/).
    pub async fn events_are_one_resource(c: Ctx) {
        let ev = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e1"},
            "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "conformance.kubesim.io/test", "reportingInstance": "i1",
            "action": "Test", "reason": "Tested", "type": "Normal", "note": "hello",
            "regarding": {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "namespace": c.ns}});
        let (code, created) = post(
            &c,
            &format!("/apis/events.k8s.io/v1/namespaces/{}/events", c.ns),
            ev,
        )
        .await;
        assert_eq!(code, 201, "{created}");
        let (code, core) = get(&c, &format!("/api/v1/namespaces/{}/events/e1", c.ns)).await;
        assert_eq!(code, 200);
        assert_eq!(core["message"], "hello");
        assert_eq!(core["involvedObject"]["name"], "x");
        assert_eq!(core["reason"], "Tested");
    }
}
