//! The harness of medplat's integration tests: an in-process kubesim with medplat's CRDs, the
//! real operator running against it, and helpers to apply manifests and wait for state.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::time::{Duration, Instant};

use futures::FutureExt;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use medplat::controller::apply::dynamic_api;
use medplat::controller::{Operator, Settings};
use serde_json::Value;
use tokio::sync::watch;

pub mod state;
pub mod workload;

/// A simulated cluster with medplat's CRDs installed.
pub struct Cluster {
    /// The simulated API server.
    pub sim: kubesim::Sim,
    /// A client for it.
    pub client: Client,
}

/// A running operator; stopping it waits for in-flight reconciles.
pub struct RunningOperator {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    /// The operator's shared state (metrics, caches).
    pub operator: Operator,
}

impl RunningOperator {
    /// Asks the operator to stop and waits until it has.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(30), self.task).await;
    }
}

pub mod canary;

/// Settings suited to tests: short probes and a short resync so periodic work is exercised.
pub fn test_settings() -> Settings {
    Settings {
        probe_timeout: Duration::from_millis(300),
        resync: Duration::from_secs(3),
        ..Settings::default()
    }
}

impl Cluster {
    /// Starts kubesim with `nodes` and installs the CRDs and the `clinical` namespace.
    pub async fn start(nodes: Vec<kubesim::NodeSpec>) -> Cluster {
        Cluster::start_with_outcome(nodes, kubesim::PodOutcome::default()).await
    }

    /// As [`Cluster::start`], with `outcome` deciding how pods end (kubesim runs no
    /// containers, so this stands in for what they would do).
    pub async fn start_with_outcome(
        nodes: Vec<kubesim::NodeSpec>,
        outcome: kubesim::PodOutcome,
    ) -> Cluster {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let sim = kubesim::Sim::builder()
            .nodes(nodes)
            .pod_outcome(outcome)
            .start()
            .await
            .unwrap();
        let client = sim.client();
        let c = Cluster { sim, client };
        for crd in medplat::api::all_crds() {
            c.apply(&serde_json::to_value(&crd).unwrap()).await;
        }
        c.apply_yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: clinical}")
            .await;
        c
    }

    /// Two hardened nodes and one that is not.
    pub fn default_nodes() -> Vec<kubesim::NodeSpec> {
        vec![
            kubesim::NodeSpec::new("node-a").label("medplat.io/hardened", "true"),
            kubesim::NodeSpec::new("node-b").label("medplat.io/hardened", "true"),
            kubesim::NodeSpec::new("node-c"),
        ]
    }

    /// Applies `examples/hospital/*.yaml` (as `kubectl apply -f examples/hospital/` would:
    /// not recursive) and its development Secrets, skipping kinds listed in `skip_kinds`.
    pub async fn apply_hospital(&self, skip_kinds: &[&str]) {
        let dir = repo_root().join("examples/hospital");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        for f in files {
            for obj in medplat::manifests::load(&[f]).unwrap() {
                if !skip_kinds.contains(&obj.kind()) {
                    self.apply(&obj.value).await;
                }
            }
        }
        for secret in
            medplat::manifests::secrets_from_dir(&dir.join("secrets"), "clinical").unwrap()
        {
            self.apply(&secret).await;
        }
    }

    /// Server-side applies one object as the test's own field manager.
    pub async fn apply(&self, obj: &Value) -> DynamicObject {
        let api = self.api_for(obj);
        let name = obj["metadata"]["name"].as_str().unwrap();
        api.patch(
            name,
            &PatchParams::apply("integration-test").force(),
            &Patch::Apply(obj),
        )
        .await
        .unwrap_or_else(|e| panic!("apply {name}: {e}"))
    }

    /// Applies every document of a YAML stream.
    pub async fn apply_yaml(&self, yaml: &str) {
        for doc in serde_yaml::Deserializer::from_str(yaml) {
            let v: Value = serde::Deserialize::deserialize(doc).unwrap();
            if !v.is_null() {
                self.apply(&v).await;
            }
        }
    }

    /// The dynamic API of an object's kind, in its namespace.
    pub fn api_for(&self, obj: &Value) -> Api<DynamicObject> {
        dynamic_api(
            &self.client,
            obj["apiVersion"].as_str().unwrap(),
            obj["kind"].as_str().unwrap(),
            obj["metadata"]["namespace"].as_str(),
        )
    }

    /// The dynamic API of `api_version`/`kind` in `namespace`.
    pub fn api(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
    ) -> Api<DynamicObject> {
        dynamic_api(&self.client, api_version, kind, namespace)
    }

    /// Gets an object as JSON, if it exists.
    pub async fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        self.api(api_version, kind, namespace)
            .get_opt(name)
            .await
            .unwrap()
            .map(|o| serde_json::to_value(o).unwrap())
    }

    /// Asks for a run of Pipeline `namespace/name`, as a user does: by setting the annotation
    /// `medplat.io/run-requested-at` to `at`.
    pub async fn request_run(&self, namespace: &str, name: &str, at: &str) {
        self.api("medplat.io/v1alpha1", "Pipeline", Some(namespace))
            .patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(
                    serde_json::json!({"metadata": {"annotations": {"medplat.io/run-requested-at": at}}}),
                ),
            )
            .await
            .unwrap();
    }

    /// The Events (`events.k8s.io/v1`) in `namespace`, as JSON.
    pub async fn events(&self, namespace: &str) -> Vec<Value> {
        self.api("events.k8s.io/v1", "Event", Some(namespace))
            .list(&Default::default())
            .await
            .map(|l| l.items.iter().map(|e| e.data.clone()).collect())
            .unwrap_or_default()
    }

    /// Starts the operator with `settings`.
    pub fn start_operator(&self, settings: Settings) -> RunningOperator {
        let (stop, mut rx) = watch::channel(false);
        let shutdown = async move {
            let _ = rx.wait_for(|s| *s).await;
        }
        .boxed()
        .shared();
        let (operator, run) = Operator::start(self.client.clone(), settings, shutdown).unwrap();
        let task = tokio::spawn(run);
        RunningOperator {
            stop,
            task,
            operator,
        }
    }
}

/// The namespace the webhook's Secret lives in, as `medplat run --operator-namespace`.
pub const OPERATOR_NAMESPACE: &str = "medplat-system";
/// The ValidatingWebhookConfiguration the webhook keeps `caBundle` of.
pub const WEBHOOK_CONFIG: &str = "medplat";
/// The Secret holding the webhook's certificate.
pub const WEBHOOK_SECRET: &str = "medplat-webhook-tls";

/// A running admission webhook (one replica); stopping it closes its port.
pub struct RunningWebhook {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    /// Its address and CA.
    pub webhook: medplat::webhook::Webhook,
}

impl RunningWebhook {
    /// The URL the API server calls.
    pub fn url(&self) -> String {
        format!(
            "https://127.0.0.1:{}{}",
            self.webhook.local_addr.port(),
            medplat::webhook::config::VALIDATE_PATH
        )
    }

    /// Stops it and waits until its port is closed.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(30), self.task).await;
    }
}

impl Cluster {
    /// Starts a webhook replica on a loopback port beside `operator`, reading its caches, with
    /// its certificate from (or generated into) Secret `medplat-system/medplat-webhook-tls`.
    pub async fn start_webhook(&self, operator: &RunningOperator) -> RunningWebhook {
        use medplat::webhook::{CertSource, ServingIdentity, WebhookOptions};
        let options = WebhookOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            cert: CertSource {
                namespace: OPERATOR_NAMESPACE.into(),
                secret: WEBHOOK_SECRET.into(),
                identity: ServingIdentity {
                    service: "medplat-webhook".into(),
                    namespace: OPERATOR_NAMESPACE.into(),
                    extra_dns: vec!["localhost".into()],
                    extra_ips: vec!["127.0.0.1".parse().unwrap()],
                },
                config_name: Some(WEBHOOK_CONFIG.into()),
            },
        };
        let (stop, mut rx) = watch::channel(false);
        let shutdown = async move {
            let _ = rx.wait_for(|s| *s).await;
        }
        .boxed()
        .shared();
        let (webhook, run) = medplat::webhook::start(
            self.client.clone(),
            operator.operator.context.parents.clone(),
            options,
            shutdown,
        )
        .await
        .unwrap();
        RunningWebhook {
            stop,
            task: tokio::spawn(run),
            webhook,
        }
    }

    /// Registers (or re-registers) the ValidatingWebhookConfiguration, as the chart renders it
    /// but calling `url` (kubesim has no cluster DNS for Services) and without `caBundle`:
    /// the webhook writes it.
    pub async fn register_webhook(
        &self,
        url: &str,
        failure_policy: medplat::webhook::FailurePolicy,
    ) {
        use medplat::webhook::{WebhookConfigOptions, WebhookTarget};
        let mut opts =
            WebhookConfigOptions::in_cluster(WEBHOOK_CONFIG, "medplat-webhook", OPERATOR_NAMESPACE);
        opts.target = WebhookTarget::Url(url.into());
        opts.failure_policy = failure_policy;
        let mut vwc =
            serde_json::to_value(medplat::webhook::validating_webhook_configuration(&opts))
                .unwrap();
        vwc["apiVersion"] = "admissionregistration.k8s.io/v1".into();
        vwc["kind"] = "ValidatingWebhookConfiguration".into();
        self.apply(&vwc).await;
    }
}

/// The repository's root directory.
pub fn repo_root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The status of condition `type_` of an object, if set.
pub fn condition(obj: &Value, type_: &str) -> Option<(String, String, String)> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
                c["message"].as_str().unwrap_or_default().to_string(),
            )
        })
}
