//! kube 5's `Client`, `watcher` and `Controller` work against kubesim unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::json;

fn cm(name: &str, v: &str) -> ConfigMap {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"v": v}})).unwrap()
}

// https://kubernetes.io/docs/reference/using-api/api-concepts/#api-verbs
#[tokio::test]
async fn typed_crud_through_kube_client() {
    let sim = kubesim::Sim::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(sim.client(), "default");
    let created = api
        .create(&PostParams::default(), &cm("a", "1"))
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some());
    let err = api
        .create(&PostParams::default(), &cm("a", "1"))
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            assert_eq!(s.reason, "AlreadyExists");
        }
        other => panic!("unexpected {other:?}"),
    }
    let patched = api
        .patch(
            "a",
            &PatchParams::apply("test").force(),
            &Patch::Apply(cm("a", "2")),
        )
        .await
        .unwrap();
    assert_eq!(patched.data.unwrap()["v"], "2");
    let list = api
        .list(&ListParams::default().labels("x!=y"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);
    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(api.get_opt("a").await.unwrap().is_none());
    sim.shutdown().await;
}

// https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes
#[tokio::test]
async fn watcher_sees_changes_with_both_initial_list_strategies() {
    let sim = kubesim::Sim::builder()
        .bookmark_interval(Duration::from_millis(200))
        .start()
        .await
        .unwrap();
    let api: Api<ConfigMap> = Api::namespaced(sim.client(), "default");
    for i in 0..3 {
        api.create(&PostParams::default(), &cm(&format!("pre-{i}"), "x"))
            .await
            .unwrap();
    }
    for cfg in [
        watcher::Config::default().page_size(2),
        watcher::Config::default().streaming_lists(),
    ] {
        let mut stream = watcher(api.clone(), cfg)
            .default_backoff()
            .applied_objects()
            .boxed();
        let mut seen = Vec::new();
        while seen.len() < 3 {
            let obj = tokio::time::timeout(Duration::from_secs(5), stream.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            seen.push(obj.metadata.name.unwrap());
        }
        let name = format!("live-{}", sim.objects().store().current_rv());
        api.create(&PostParams::default(), &cm(&name, "y"))
            .await
            .unwrap();
        loop {
            let obj = tokio::time::timeout(Duration::from_secs(5), stream.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            if obj.metadata.name.as_deref() == Some(name.as_str()) {
                break;
            }
        }
    }
    sim.shutdown().await;
}

// A Controller reconciles, owns children and re-reconciles when a child changes; an idle
// controller writes nothing (the request log proves it).
#[tokio::test]
async fn controller_reconciles_owned_children_and_idles_quietly() {
    let sim = kubesim::Sim::start().await.unwrap();
    let client = sim.client();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let count = Arc::new(AtomicUsize::new(0));
    struct Ctx {
        secrets: Api<Secret>,
        count: Arc<AtomicUsize>,
    }
    async fn reconcile(obj: Arc<ConfigMap>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
        ctx.count.fetch_add(1, Ordering::SeqCst);
        let name = obj.metadata.name.clone().unwrap();
        let owner = json!({"apiVersion": "v1", "kind": "ConfigMap", "name": name, "uid": obj.metadata.uid, "controller": true});
        let child = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("{name}-child"), "ownerReferences": [owner]},
            "stringData": {"v": obj.data.as_ref().and_then(|d| d.get("v")).cloned().unwrap_or_default()}});
        ctx.secrets
            .patch(
                &format!("{name}-child"),
                &PatchParams::apply("ctl").force(),
                &Patch::Apply(child),
            )
            .await?;
        Ok(Action::await_change())
    }
    fn error_policy(_: Arc<ConfigMap>, _: &kube::Error, _: Arc<Ctx>) -> Action {
        Action::requeue(Duration::from_millis(100))
    }
    let ctx = Arc::new(Ctx {
        secrets: secrets.clone(),
        count: count.clone(),
    });
    let ctl = Controller::new(cms.clone(), watcher::Config::default())
        .owns(secrets.clone(), watcher::Config::default())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {});
    let handle = tokio::spawn(ctl);
    cms.create(&PostParams::default(), &cm("parent", "1"))
        .await
        .unwrap();
    let mut child = None;
    for _ in 0..200 {
        if let Some(s) = secrets.get_opt("parent-child").await.unwrap() {
            child = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(child.is_some(), "the controller created the child");
    // Let the reconcile triggered by the child's own ADDED event finish before measuring.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sim.clear_request_log();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let writes: Vec<_> = sim
        .request_log()
        .into_iter()
        .filter(|r| r.is_write())
        .collect();
    assert!(
        writes.is_empty(),
        "an idle controller writes nothing: {writes:?}"
    );
    // Deleting the parent garbage-collects the child (Background propagation).
    cms.delete("parent", &DeleteParams::default())
        .await
        .unwrap();
    let mut gone = false;
    for _ in 0..200 {
        if secrets.get_opt("parent-child").await.unwrap().is_none() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "ownerReference garbage collection removed the child");
    assert!(count.load(Ordering::SeqCst) >= 1);
    handle.abort();
    sim.shutdown().await;
}
