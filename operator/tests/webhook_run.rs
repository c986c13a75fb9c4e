//! `medplat run` with its admission webhook, as two leader-electing processes against kubesim:
//! they share one generated certificate Secret, write `caBundle`, both refuse a non-compliant
//! Pipeline once their caches have synced (leader or not), and exit 0 on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use medplat::webhook::{FailurePolicy, WebhookConfigOptions, WebhookTarget};
use serde_json::{Value, json};

fn api(client: &kube::Client, v: &Value) -> Api<DynamicObject> {
    let (group, version) = v["apiVersion"]
        .as_str()
        .unwrap()
        .split_once('/')
        .unwrap_or(("", v["apiVersion"].as_str().unwrap()));
    let kind = v["kind"].as_str().unwrap();
    let plural = match kind {
        "AccessPolicy" => "accesspolicies".to_string(),
        k => format!("{}s", k.to_lowercase()),
    };
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), &plural);
    match v["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

async fn apply(client: &kube::Client, v: &Value) {
    let name = v["metadata"]["name"].as_str().unwrap();
    api(client, v)
        .patch(name, &PatchParams::apply("test").force(), &Patch::Apply(v))
        .await
        .unwrap_or_else(|e| panic!("apply {name}: {e}"));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn medplat_run_serves_the_webhook_and_stops_on_sigterm() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = kubesim::Sim::start().await.unwrap();
    let client = sim.client();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).unwrap();
    for crd in medplat::api::all_crds() {
        apply(&client, &serde_json::to_value(&crd).unwrap()).await;
    }
    apply(
        &client,
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "medplat-system"}}),
    )
    .await;
    let hospital = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hospital");
    let objects: Vec<Value> = medplat::manifests::load(&[hospital])
        .unwrap()
        .into_iter()
        .map(|o| o.value)
        .filter(|v| {
            ["Namespace", "StorageTier", "DataSource", "AccessPolicy"]
                .contains(&v["kind"].as_str().unwrap())
        })
        .collect();
    for v in &objects {
        apply(&client, v).await;
    }

    // Two replicas electing a leader, as the Deployment runs them: both serve the webhook.
    let ports = [free_port(), free_port()];
    let mut replicas: Vec<_> = ports
        .iter()
        .map(|port| {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_medplat"))
                .args(["run", "--leader-election", "--lease-duration-secs", "5"])
                .args(["--metrics-addr", &format!("127.0.0.1:{}", free_port())])
                .args(["--webhook-addr", &format!("127.0.0.1:{port}")])
                .args(["--webhook-extra-san", "127.0.0.1"])
                .env("KUBECONFIG", &kubeconfig)
                .env("POD_NAMESPACE", "medplat-system")
                .env("MEDPLAT_POD_NAME", format!("medplat-{port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .unwrap()
        })
        .collect();

    let violation = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/violations/pipeline-raw-l4-into-research.yaml");
    let mut pipeline = medplat::manifests::load(&[violation])
        .unwrap()
        .remove(0)
        .value;
    pipeline["metadata"]["namespace"] = json!("clinical");
    let pipelines = api(&client, &pipeline);
    let typed: DynamicObject = serde_json::from_value(pipeline.clone()).unwrap();
    for port in ports {
        let mut opts =
            WebhookConfigOptions::in_cluster("medplat", "medplat-webhook", "medplat-system");
        opts.target = WebhookTarget::Url(format!("https://127.0.0.1:{port}/validate"));
        opts.failure_policy = FailurePolicy::Fail;
        let mut vwc =
            serde_json::to_value(medplat::webhook::validating_webhook_configuration(&opts))
                .unwrap();
        vwc["apiVersion"] = json!("admissionregistration.k8s.io/v1");
        vwc["kind"] = json!("ValidatingWebhookConfiguration");
        apply(&client, &vwc).await;
        let start = Instant::now();
        let message = loop {
            match pipelines.create(&PostParams::default(), &typed).await {
                Err(kube::Error::Api(s)) if s.code == 403 => break s.message,
                // Not listening, not trusted (caBundle not written yet) or not synced yet.
                Err(kube::Error::Api(s)) if s.code == 500 => {}
                other => panic!("expected a denial, got {other:?}"),
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the webhook on port {port} never answered"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert!(
            message.starts_with("admission webhook \"pipelines.medplat.io\" denied the request: Pipeline clinical/raw-copy-to-research is not compliant: TierLevelTooLow (spec.sink.tier)"),
            "{message}"
        );
    }
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), "medplat-system");
    let secret = secrets.get("medplat-webhook-tls").await.unwrap();
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));

    for child in &mut replicas {
        let pid = child.id().unwrap().to_string();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(killed.success());
    }
    for child in &mut replicas {
        let status = tokio::time::timeout(Duration::from_secs(40), child.wait())
            .await
            .expect("medplat run exits after SIGTERM")
            .unwrap();
        assert!(status.success(), "{status}");
    }
    sim.shutdown().await;
}
