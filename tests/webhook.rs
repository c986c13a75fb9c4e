//! The admission webhook end to end: the real `kubectl` against kubesim, which calls the
//! operator's webhook over HTTPS trusting the `caBundle` the operator wrote.
//!
//! A non-compliant Pipeline is refused at `kubectl apply` with every reason; compliant ones are
//! admitted; with the webhook down `failurePolicy` decides (`Fail` refuses, `Ignore` admits and
//! the controller then blocks the pipeline). A generated certificate near expiry is renewed under
//! the same CA; two replicas serve one certificate, and a rotated (cert-manager) or deleted Secret
//! is followed without a restart. No Secret value reaches a log line or a response.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine;
use medplat::webhook::FailurePolicy;
use medplat_integration::{
    Cluster, OPERATOR_NAMESPACE, WEBHOOK_CONFIG, WEBHOOK_SECRET, condition, eventually, repo_root,
    test_settings,
};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);
const V: &str = "medplat.io/v1alpha1";

/// Everything the process logs, for the "no Secret value in a log line" checks.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("info,medplat=debug,kubesim=debug")
            .with_writer(move || Capture(sink.clone()))
            .try_init();
        buffer
    })
    .clone()
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Kubectl {
    kubeconfig: PathBuf,
    dir: tempfile::TempDir,
}

impl Kubectl {
    fn new(c: &Cluster) -> Kubectl {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        c.sim.write_kubeconfig(&kubeconfig).unwrap();
        Kubectl { kubeconfig, dir }
    }

    /// Writes `objects` as a YAML stream into a file named `name`.
    fn file(&self, name: &str, objects: &[Value]) -> PathBuf {
        let path = self.dir.path().join(name);
        let docs: Vec<String> = objects
            .iter()
            .map(|o| serde_yaml::to_string(o).unwrap())
            .collect();
        std::fs::write(&path, docs.join("---\n")).unwrap();
        path
    }

    /// `kubectl apply -f path`: (success, stdout, stderr).
    async fn apply(&self, path: &Path) -> (bool, String, String) {
        let out = tokio::process::Command::new("kubectl")
            .arg("apply")
            .arg("-f")
            .arg(path)
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
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

    /// Applies until kubectl's stderr contains `want` (the webhook answers 503 until its caches
    /// have synced, and the API server trusts it once `caBundle` is written).
    async fn apply_until(&self, path: &Path, want: &str) -> String {
        eventually(T, &format!("kubectl apply to answer {want:?}"), || async {
            let (_, _, err) = self.apply(path).await;
            err.contains(want).then_some(err)
        })
        .await
    }
}

fn hospital(kind: &str, name: &str) -> Value {
    medplat::manifests::load(&[repo_root().join("examples/hospital")])
        .unwrap()
        .into_iter()
        .map(|o| o.value)
        .find(|v| v["kind"] == kind && v["metadata"]["name"] == name)
        .unwrap()
}

/// The HIS patient master (L4, clinical) straight into the research tier (L2, unencrypted).
fn leak(name: &str) -> Value {
    let mut p = hospital("Pipeline", "his-patients-sync");
    p["metadata"]["name"] = json!(name);
    p["spec"]["sink"]["tier"] = json!("research-l2");
    p
}

/// Every Secret value the examples hold, and the webhook's keys: none may be logged or answered.
async fn secret_values(c: &Cluster) -> Vec<String> {
    let mut values = Vec::new();
    let dir = repo_root().join("examples/hospital/secrets");
    for s in medplat::manifests::secrets_from_dir(&dir, "clinical").unwrap() {
        for v in s["data"].as_object().unwrap().values() {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap())
                .unwrap();
            values.push(String::from_utf8_lossy(&raw).trim().to_string());
            values.push(v.as_str().unwrap().to_string());
        }
    }
    let tls = c
        .get("v1", "Secret", Some(OPERATOR_NAMESPACE), WEBHOOK_SECRET)
        .await
        .unwrap();
    for key in ["tls.key", "ca.key"] {
        let Some(b64) = tls["data"][key].as_str() else {
            continue;
        };
        values.push(b64.to_string());
        let pem = String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
        )
        .unwrap();
        // A line of the key's body is enough to recognise it.
        values.push(pem.lines().nth(1).unwrap().to_string());
    }
    values.retain(|v| v.len() >= 8);
    values
}

fn assert_no_secret_in(text: &str, secrets: &[String], what: &str) {
    for s in secrets {
        assert!(
            !text.contains(s.as_str()),
            "a Secret value appears in {what}"
        );
    }
}

async fn ca_bundle(c: &Cluster) -> Vec<String> {
    let vwc = c
        .get(
            "admissionregistration.k8s.io/v1",
            "ValidatingWebhookConfiguration",
            None,
            WEBHOOK_CONFIG,
        )
        .await
        .unwrap();
    vwc["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            h["clientConfig"]["caBundle"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

async fn cluster() -> Cluster {
    let c = Cluster::start(Cluster::default_nodes()).await;
    c.apply_yaml(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {OPERATOR_NAMESPACE}, labels: {{kubernetes.io/metadata.name: {OPERATOR_NAMESPACE}}}}}"
    ))
    .await;
    c.apply_hospital(&["Pipeline", "Platform"]).await;
    c
}

#[tokio::test]
async fn kubectl_apply_is_judged_and_failure_policy_decides_when_the_webhook_is_down() {
    let logs = captured_logs();
    let c = cluster().await;
    let op = c.start_operator(test_settings());
    // A certificate medplat generated earlier, 10 days from expiry: renewed at start-up under
    // the same CA, so caBundle does not change.
    let identity = medplat::webhook::ServingIdentity {
        service: "medplat-webhook".into(),
        namespace: OPERATOR_NAMESPACE.into(),
        extra_dns: vec![],
        extra_ips: vec!["127.0.0.1".parse().unwrap()],
    };
    let mut old = medplat::webhook::tls::generate(&identity, jiff::Timestamp::now()).unwrap();
    old.not_after = Some(jiff::Timestamp::now() + jiff::SignedDuration::from_hours(240));
    let mut seeded = serde_json::to_value(medplat::webhook::certs::secret_from_bundle(
        OPERATOR_NAMESPACE,
        WEBHOOK_SECRET,
        &old,
    ))
    .unwrap();
    seeded["apiVersion"] = json!("v1");
    seeded["kind"] = json!("Secret");
    c.apply(&seeded).await;
    let hook = c.start_webhook(&op).await;
    assert_eq!(hook.webhook.ca_pem, old.ca_pem, "renewal keeps the CA");
    let renewed = c
        .get("v1", "Secret", Some(OPERATOR_NAMESPACE), WEBHOOK_SECRET)
        .await
        .unwrap();
    let old_crt = base64::engine::general_purpose::STANDARD.encode(&old.cert_pem);
    assert_ne!(
        renewed["data"]["tls.crt"],
        json!(old_crt),
        "the serving certificate was renewed"
    );
    c.register_webhook(&hook.url(), FailurePolicy::Fail).await;
    let ca = base64::engine::general_purpose::STANDARD.encode(hook.webhook.ca_pem.clone().unwrap());
    eventually(T, "the operator to write caBundle", || async {
        ca_bundle(&c).await.iter().all(|b| *b == ca).then_some(())
    })
    .await;

    let k = Kubectl::new(&c);
    let bad = k.file("leak.yaml", &[leak("leak")]);
    let err = k.apply_until(&bad, "denied the request").await;
    assert!(
        err.contains(
            "admission webhook \"pipelines.medplat.io\" denied the request: Pipeline clinical/leak is not compliant: \
             TierLevelTooLow (spec.sink.tier): the output is L4 but StorageTier research-l2 accepts at most L2 (no deidentify step lowers it); \
             TierNotEncrypted (spec.sink.tier): L4 output needs a tier with encryption: required; StorageTier research-l2 has encryption: none"
        ),
        "{err}"
    );
    assert!(
        c.get(V, "Pipeline", Some("clinical"), "leak")
            .await
            .is_none()
    );

    // The example pipelines are compliant: all admitted.
    let (ok, out, err) = k
        .apply(&repo_root().join("examples/hospital/30-pipelines.yaml"))
        .await;
    assert!(ok, "{out}\n{err}");
    assert_eq!(out.matches("created").count(), 4, "{out}");

    // A source update that would block a running pipeline is admitted (warning only).
    let mut his = hospital("DataSource", "his-patients");
    his["spec"]["fields"][0]["description"] = json!("患者ID");
    let (ok, _, err) = k.apply(&k.file("his.yaml", &[his])).await;
    assert!(ok, "{err}");

    let secrets = secret_values(&c).await;
    assert_no_secret_in(&err, &secrets, "kubectl's stderr");

    // The webhook is down: Fail refuses every write it would have judged …
    hook.stop().await;
    let err = k.apply_until(&bad, "failed calling webhook").await;
    assert!(err.contains("\"pipelines.medplat.io\""), "{err}");
    assert!(
        c.get(V, "Pipeline", Some("clinical"), "leak")
            .await
            .is_none()
    );

    // … and Ignore admits it, and the controller blocks it.
    c.register_webhook("https://127.0.0.1:1/validate", FailurePolicy::Ignore)
        .await;
    let (ok, _, err) = k.apply(&bad).await;
    assert!(ok, "{err}");
    let (status, reason, message) = eventually(T, "leak to be PolicyCompliant=False", || async {
        let p = c.get(V, "Pipeline", Some("clinical"), "leak").await?;
        condition(&p, "PolicyCompliant").filter(|(s, _, _)| s == "False")
    })
    .await;
    assert_eq!(status, "False");
    assert!(!reason.is_empty());
    assert!(
        message.contains("TierLevelTooLow (spec.sink.tier): the output is L4 but StorageTier research-l2 accepts at most L2"),
        "{message}"
    );

    op.stop().await;
    let logged = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(
        logged.contains("admission review"),
        "the decisions are logged"
    );
    assert_no_secret_in(&logged, &secrets, "the logs");
    c.sim.shutdown().await;
}

#[tokio::test]
async fn replicas_share_one_certificate_through_rotation_and_deletion_without_restart() {
    let logs = captured_logs();
    let c = cluster().await;
    let op = c.start_operator(test_settings());
    // Two replicas start at once and race to create the Secret.
    let (a, b) = tokio::join!(c.start_webhook(&op), c.start_webhook(&op));
    assert!(a.webhook.ca_pem.is_some());
    assert_eq!(
        a.webhook.ca_pem, b.webhook.ca_pem,
        "both replicas serve the same CA"
    );
    let secret = c
        .get("v1", "Secret", Some(OPERATOR_NAMESPACE), WEBHOOK_SECRET)
        .await
        .unwrap();
    assert_eq!(secret["type"], "kubernetes.io/tls");
    for key in ["tls.crt", "tls.key", "ca.crt"] {
        assert!(secret["data"][key].is_string(), "{key}");
    }

    // Each replica answers with the certificate the caBundle trusts.
    let k = Kubectl::new(&c);
    let bad = k.file("leak.yaml", &[leak("leak")]);
    for replica in [&a, &b] {
        c.register_webhook(&replica.url(), FailurePolicy::Fail)
            .await;
        k.apply_until(
            &bad,
            "denied the request: Pipeline clinical/leak is not compliant",
        )
        .await;
    }

    let mut secrets = secret_values(&c).await;
    // cert-manager rotates the Secret to a certificate from another CA: every replica serves
    // it and caBundle follows, with no restart.
    let identity = medplat::webhook::ServingIdentity {
        service: "medplat-webhook".into(),
        namespace: OPERATOR_NAMESPACE.into(),
        extra_dns: vec![],
        extra_ips: vec!["127.0.0.1".parse().unwrap()],
    };
    let mut rotated = medplat::webhook::tls::generate(&identity, jiff::Timestamp::now()).unwrap();
    rotated.ca_key_pem = None;
    let mut rotated_secret = serde_json::to_value(medplat::webhook::certs::secret_from_bundle(
        OPERATOR_NAMESPACE,
        WEBHOOK_SECRET,
        &rotated,
    ))
    .unwrap();
    rotated_secret["metadata"]["annotations"] =
        json!({"cert-manager.io/certificate-name": "medplat-webhook"});
    rotated_secret["apiVersion"] = json!("v1");
    rotated_secret["kind"] = json!("Secret");
    c.api("v1", "Secret", Some(OPERATOR_NAMESPACE))
        .replace(
            WEBHOOK_SECRET,
            &Default::default(),
            &serde_json::from_value(rotated_secret).unwrap(),
        )
        .await
        .unwrap();
    let new_ca = base64::engine::general_purpose::STANDARD.encode(rotated.ca_pem.clone().unwrap());
    eventually(T, "caBundle to follow the rotated CA", || async {
        ca_bundle(&c)
            .await
            .iter()
            .all(|b| *b == new_ca)
            .then_some(())
    })
    .await;
    for replica in [&b, &a] {
        c.register_webhook(&replica.url(), FailurePolicy::Fail)
            .await;
        k.apply_until(
            &bad,
            "denied the request: Pipeline clinical/leak is not compliant",
        )
        .await;
    }

    secrets.extend(secret_values(&c).await);

    // The Secret is deleted: the replicas make a new one (one wins the race), serve it, and
    // caBundle follows.
    c.api("v1", "Secret", Some(OPERATOR_NAMESPACE))
        .delete(WEBHOOK_SECRET, &Default::default())
        .await
        .unwrap();
    let regenerated = eventually(T, "a new webhook Secret", || async {
        let s = c
            .get("v1", "Secret", Some(OPERATOR_NAMESPACE), WEBHOOK_SECRET)
            .await?;
        let ca = s["data"]["ca.crt"].as_str()?.to_string();
        (ca != new_ca).then_some(ca)
    })
    .await;
    eventually(T, "caBundle to follow the regenerated CA", || async {
        ca_bundle(&c)
            .await
            .iter()
            .all(|b| *b == regenerated)
            .then_some(())
    })
    .await;
    for replica in [&a, &b] {
        c.register_webhook(&replica.url(), FailurePolicy::Fail)
            .await;
        k.apply_until(
            &bad,
            "denied the request: Pipeline clinical/leak is not compliant",
        )
        .await;
    }
    secrets.extend(secret_values(&c).await);
    a.stop().await;
    b.stop().await;
    op.stop().await;
    let logged = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(logged.contains("reloaded the webhook's serving certificate"));
    assert_no_secret_in(&logged, &secrets, "the logs");
    c.sim.shutdown().await;
}
