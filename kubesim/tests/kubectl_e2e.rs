//! The real `kubectl` (1.32) against kubesim: CRDs and the hospital examples applied client- and
//! server-side, printer columns, categories, `-o yaml`, `explain`, `wait`, deletion with
//! finalizers, events, and HTTPS with a bearer token.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kubesim::Sim;
use serde_json::json;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

struct Kubectl {
    kubeconfig: PathBuf,
    cache: PathBuf,
    _dir: tempfile::TempDir,
}

impl Kubectl {
    fn new(sim: &Sim) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        sim.write_kubeconfig(&kubeconfig).unwrap();
        Kubectl {
            kubeconfig,
            cache: dir.path().join("cache"),
            _dir: dir,
        }
    }

    /// Runs kubectl; returns (success, stdout, stderr).
    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = tokio::process::Command::new("kubectl")
            .args(args)
            .arg("--cache-dir")
            .arg(&self.cache)
            .env("KUBECONFIG", &self.kubeconfig)
            .output()
            .await
            .expect("kubectl must be installed (it is on every medplat machine)");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    async fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args).await;
        assert!(ok, "kubectl {args:?} failed:\nstdout: {out}\nstderr: {err}");
        out
    }
}

fn crds() -> String {
    repo().join("crds").display().to_string()
}

fn hospital() -> String {
    repo().join("examples/hospital").display().to_string()
}

fn ar(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

// kubectl apply --server-side of the CRDs, then the examples client-side and server-side
// (https://kubernetes.io/docs/tasks/manage-kubernetes-objects/declarative-config/ and
// https://kubernetes.io/docs/reference/using-api/server-side-apply/#using-server-side-apply-in-a-controller).
#[tokio::test]
async fn apply_get_explain_and_categories() {
    let sim = Sim::start().await.unwrap();
    let k = Kubectl::new(&sim);
    let out = k.ok(&["apply", "--server-side", "-f", &crds()]).await;
    assert!(
        out.contains(
            "customresourcedefinition.apiextensions.k8s.io/pipelines.medplat.io serverside-applied"
        ),
        "{out}"
    );
    let out = k.ok(&["apply", "-f", &hospital()]).await;
    assert!(
        out.contains("datasource.medplat.io/his-patients created"),
        "{out}"
    );
    let again = k.ok(&["apply", "-f", &hospital()]).await;
    assert!(
        again.contains("datasource.medplat.io/his-patients unchanged"),
        "client-side re-apply is a no-op: {again}"
    );
    let ssa = k.ok(&["apply", "--server-side", "-f", &hospital()]).await;
    assert!(ssa.contains("serverside-applied"), "{ssa}");

    let table = k.ok(&["get", "datasources", "-n", "clinical"]).await;
    let header = table.lines().next().unwrap_or_default();
    for col in [
        "NAME",
        "SYSTEM",
        "CONNECTOR",
        "LEVEL",
        "DOMAIN",
        "REACHABLE",
    ] {
        assert!(header.contains(col), "printer column {col} in {header:?}");
    }
    assert!(table.contains("his-patients"), "{table}");
    let all = k.ok(&["get", "medplat", "-A"]).await;
    for kind in [
        "datasource.medplat.io/",
        "pipeline.medplat.io/",
        "storagetier.medplat.io/",
    ] {
        assert!(
            all.contains(kind),
            "`kubectl get medplat` lists {kind}: {all}"
        );
    }
    let yaml = k
        .ok(&["get", "mds", "his-patients", "-n", "clinical", "-o", "yaml"])
        .await;
    assert!(
        yaml.contains("kind: DataSource") && yaml.contains("name: his-patients"),
        "{yaml}"
    );
    assert!(
        yaml.contains("kubectl.kubernetes.io/last-applied-configuration"),
        "{yaml}"
    );
    let explain = k.ok(&["explain", "pipeline.spec.steps"]).await;
    assert!(
        explain.contains("KIND:       Pipeline") && explain.contains("FIELD: steps"),
        "{explain}"
    );
    assert!(explain.contains("deidentify"), "{explain}");
    // Validation errors come back in the API server's words.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: medplat.io/v1alpha1\nkind: StorageTier\nmetadata:\n  name: broken\nspec:\n  domain: clinical\n  maxLevel: L9\n").unwrap();
    let (ok, _, err) = k.run(&["apply", "-f", bad.to_str().unwrap()]).await;
    assert!(!ok);
    assert!(
        err.contains("is invalid") && err.contains("spec.maxLevel: Unsupported value: \"L9\""),
        "{err}"
    );
    sim.shutdown().await;
}

// kubectl wait --for=condition=Ready (https://kubernetes.io/docs/reference/kubectl/generated/kubectl_wait/),
// deletion with finalizers, and `kubectl get events` showing events.k8s.io/v1 Events.
#[tokio::test]
async fn wait_delete_with_finalizers_and_events() {
    let sim = Sim::start().await.unwrap();
    let k = Kubectl::new(&sim);
    k.ok(&["apply", "--server-side", "-f", &crds()]).await;
    k.ok(&["apply", "--server-side", "-f", &hospital()]).await;
    let client = sim.client();
    let pipelines: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "clinical",
        &ar("medplat.io", "v1alpha1", "Pipeline", "pipelines"),
    );
    let name = "lab-results-curated";
    let writer = pipelines.clone();
    let setter = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Reconciled", "message": "ok", "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}]}});
        writer
            .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
            .await
            .unwrap();
    });
    let out = k
        .ok(&[
            "wait",
            "--for=condition=Ready",
            &format!("pipeline/{name}"),
            "-n",
            "clinical",
            "--timeout=20s",
        ])
        .await;
    assert!(out.contains("condition met"), "{out}");
    setter.await.unwrap();

    pipelines
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["medplat.io/cleanup"]}})),
        )
        .await
        .unwrap();
    let out = k
        .ok(&[
            "delete",
            &format!("pipeline/{name}"),
            "-n",
            "clinical",
            "--wait=false",
        ])
        .await;
    assert!(out.contains("deleted"), "{out}");
    let held = pipelines.get(name).await.unwrap();
    assert!(
        held.metadata.deletion_timestamp.is_some(),
        "a finalizer holds the object"
    );
    let remover = pipelines.clone();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        remover
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": null}})),
            )
            .await
            .unwrap();
    });
    let out = k
        .ok(&[
            "delete",
            &format!("pipeline/{name}"),
            "-n",
            "clinical",
            "--timeout=20s",
        ])
        .await;
    assert!(out.contains("deleted"), "{out}");
    release.await.unwrap();
    assert!(pipelines.get_opt(name).await.unwrap().is_none());

    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "medplat".into(),
            instance: Some("test".into()),
        },
    );
    let ds_ref = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("medplat.io/v1alpha1".into()),
        kind: Some("DataSource".into()),
        name: Some("his-patients".into()),
        namespace: Some("clinical".into()),
        ..Default::default()
    };
    recorder
        .publish(
            &Event {
                type_: EventType::Warning,
                reason: "Unreachable".into(),
                note: Some("connection refused".into()),
                action: "Probe".into(),
                secondary: None,
            },
            &ds_ref,
        )
        .await
        .unwrap();
    // The same event again becomes a series (the Recorder patches it).
    recorder
        .publish(
            &Event {
                type_: EventType::Warning,
                reason: "Unreachable".into(),
                note: Some("connection refused".into()),
                action: "Probe".into(),
                secondary: None,
            },
            &ds_ref,
        )
        .await
        .unwrap();
    let events = k.ok(&["get", "events", "-n", "clinical"]).await;
    assert!(
        events.contains("Unreachable") && events.contains("connection refused"),
        "{events}"
    );
    assert!(events.contains("datasource/his-patients"), "{events}");
    assert!(
        events
            .lines()
            .next()
            .unwrap_or_default()
            .starts_with("LAST SEEN"),
        "{events}"
    );
    sim.shutdown().await;
}

// kubectl's typed-client commands send protobuf bodies
// (https://kubernetes.io/docs/reference/using-api/api-concepts/#protobuf-encoding); kubesim
// decodes the kinds they write and `kubectl drain` evicts through the eviction subresource.
#[tokio::test]
async fn typed_client_commands_create_and_drain() {
    let sim = Sim::start().await.unwrap();
    let k = Kubectl::new(&sim);
    k.ok(&["create", "namespace", "hospital-ops"]).await;
    k.ok(&[
        "create",
        "secret",
        "generic",
        "pg-credentials",
        "-n",
        "hospital-ops",
        "--from-literal=password=s3cret",
    ])
    .await;
    k.ok(&[
        "create",
        "configmap",
        "settings",
        "-n",
        "hospital-ops",
        "--from-literal=a=b",
    ])
    .await;
    k.ok(&["create", "serviceaccount", "worker", "-n", "hospital-ops"])
        .await;
    let data = k
        .ok(&[
            "get",
            "secret",
            "pg-credentials",
            "-n",
            "hospital-ops",
            "-o",
            "jsonpath={.data.password}",
        ])
        .await;
    assert_eq!(data, "czNjcmV0");
    k.ok(&["run", "probe", "--image=busybox", "-n", "hospital-ops"])
        .await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(sim.client(), "hospital-ops");
    for _ in 0..100 {
        let p = pods.get("probe").await.unwrap();
        if p.status.and_then(|s| s.phase).as_deref() == Some("Running") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = k
        .ok(&[
            "drain",
            "kubesim-node",
            "--ignore-daemonsets",
            "--force",
            "--timeout=20s",
        ])
        .await;
    assert!(out.contains("evicted") && out.contains("drained"), "{out}");
    assert!(pods.get_opt("probe").await.unwrap().is_none());
    let nodes = k.ok(&["get", "nodes"]).await;
    assert!(nodes.contains("Ready,SchedulingDisabled"), "{nodes}");
    sim.shutdown().await;
}

// HTTPS with rustls and a bearer token: kubectl and kube::Client both use the kubeconfig.
#[tokio::test]
async fn https_with_bearer_token() {
    let sim = Sim::builder()
        .https_with_token("s3cret-token")
        .start()
        .await
        .unwrap();
    assert!(sim.url().starts_with("https://127.0.0.1:"));
    let k = Kubectl::new(&sim);
    let out = k.ok(&["get", "namespaces"]).await;
    assert!(out.contains("kube-system"), "{out}");
    let ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(sim.client());
    assert!(ns.get("default").await.is_ok());
    // Without the token: 401.
    let mut cfg = sim.kube_config();
    cfg.headers.clear();
    let anon: Api<k8s_openapi::api::core::v1::Namespace> =
        Api::all(kube::Client::try_from(cfg).unwrap());
    match anon.get("default").await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 401),
        other => panic!("expected 401, got {other:?}"),
    }
    sim.shutdown().await;
}
