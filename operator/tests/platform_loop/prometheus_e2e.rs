//! End to end with a real Prometheus server: it scrapes the running operator's `/metrics` and
//! loads the rules the operator rendered (with short `for` overrides); a violation created
//! against kubesim (a sensitive pod on an unhardened node; a pipeline blocked by policy) makes
//! its alert go pending, then firing; fixing it resolves the alert.
//!
//! Needs `/usr/bin/prometheus` (Debian package `prometheus`); skipped loudly when missing unless
//! `MEDPLAT_REQUIRE_REAL_TOOLS=1`. Everything listens on loopback ports picked free.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams};
use medplat::render::platform::rules::{RULES_FILE_KEY, RULES_NAME};
use serde_json::{Value, json};

use super::harness::{self, Harness, OPERATOR_NS, owner_deviations, platform, wait_for};
use crate::support::real_tool;

/// A Prometheus server on loopback, killed on drop.
struct Prometheus {
    base: String,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Prometheus {
    /// Starts `binary` scraping `target` every second and evaluating `rules` every second.
    async fn start(binary: &Path, target: std::net::SocketAddr, rules: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rules.yaml"), rules).unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n\
             rule_files: [rules.yaml]\n\
             scrape_configs:\n  - job_name: medplat-operator\n    static_configs:\n      - targets: ['{target}']\n"
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = tokio::process::Command::new(binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let ready = wait_for(Duration::from_secs(30), || async {
            http.get(format!("{base}/-/ready"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        let log_path: PathBuf = dir.path().join("prometheus.log");
        assert!(
            ready,
            "prometheus did not become ready: {}",
            std::fs::read_to_string(log_path).unwrap_or_default()
        );
        Prometheus {
            base,
            _child: child,
            _dir: dir,
        }
    }

    /// The active alert `name` as `/api/v1/alerts` reports it, if any.
    async fn alert(&self, name: &str) -> Option<Value> {
        let body: Value = reqwest::get(format!("{}/api/v1/alerts", self.base))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        body["data"]["alerts"]
            .as_array()?
            .iter()
            .find(|a| a["labels"]["alertname"] == name)
            .cloned()
    }

    /// The state (`pending`, `firing`) of the active alert `name`, if any.
    async fn alert_state(&self, name: &str) -> Option<String> {
        self.alert(name)
            .await
            .and_then(|a| a["state"].as_str().map(str::to_string))
    }

    /// Waits until alert `name` is in `state` (`None`: not active), recording every state seen.
    async fn wait_alert(&self, name: &str, state: Option<&str>, seen: &mut Vec<String>) -> bool {
        let log = std::sync::Mutex::new(std::mem::take(seen));
        let ok = wait_for(Duration::from_secs(30), || async {
            let now = self.alert_state(name).await;
            let label = now.clone().unwrap_or_else(|| "inactive".into());
            let mut log = log.lock().unwrap();
            if log.last() != Some(&label) {
                log.push(label);
            }
            now.as_deref() == state
        })
        .await;
        *seen = log.into_inner().unwrap();
        ok
    }
}

/// The rules file the operator rendered into its ConfigMap.
async fn rendered_rules(h: &Harness) -> String {
    let cms: Api<ConfigMap> = Api::namespaced(h.client.clone(), OPERATOR_NS);
    let rules = std::sync::Mutex::new(None);
    let ok = wait_for(Duration::from_secs(20), || async {
        let got = cms
            .get_opt(RULES_NAME)
            .await
            .unwrap()
            .and_then(|c| c.data)
            .and_then(|d| d.get(RULES_FILE_KEY).cloned());
        let done = got
            .as_deref()
            .is_some_and(|r| r.matches("for: 3s").count() == Violation::ALL.len());
        *rules.lock().unwrap() = got;
        done
    })
    .await;
    let rules = rules.into_inner().unwrap();
    assert!(
        ok,
        "the operator did not render the rules with the override: {rules:?}"
    );
    rules.unwrap_or_default()
}

/// A policy violation the operator turns into an alert, and how to fix it.
#[derive(Clone, Copy, Debug)]
enum Violation {
    /// An L4 pod bound to a node that is not hardened (the Platform's pod watch).
    SensitivePodOnUnhardenedNode,
    /// Identified lab results sunk into the L2 research tier (the Pipeline controller).
    PipelineBlockedByPolicy,
}

impl Violation {
    const ALL: [Violation; 2] = [
        Violation::SensitivePodOnUnhardenedNode,
        Violation::PipelineBlockedByPolicy,
    ];

    fn alert(self) -> &'static str {
        match self {
            Violation::SensitivePodOnUnhardenedNode => "MedplatSensitiveWorkloadOnUnhardenedNode",
            Violation::PipelineBlockedByPolicy => "MedplatPipelineBlockedByPolicy",
        }
    }

    /// Labels the firing alert must carry.
    fn labels(self) -> Vec<(&'static str, &'static str)> {
        match self {
            Violation::SensitivePodOnUnhardenedNode => vec![
                ("namespace", "icu"),
                ("severity", "critical"),
                ("component", "node-hardening"),
            ],
            Violation::PipelineBlockedByPolicy => vec![
                ("namespace", "clinical"),
                ("pipeline", "leak"),
                ("severity", "warning"),
                ("component", "pipeline"),
            ],
        }
    }

    async fn create(self, h: &Harness) {
        match self {
            Violation::SensitivePodOnUnhardenedNode => {
                let mut pod = harness::sensitive_pod("icu", "stray-worker", "L4");
                pod["spec"].as_object_mut().unwrap().remove("affinity");
                pod["spec"]["nodeName"] = json!("n2");
                h.apply(&pod).await;
            }
            Violation::PipelineBlockedByPolicy => {
                h.apply(&json!({
                    "apiVersion": "medplat.io/v1alpha1", "kind": "Pipeline",
                    "metadata": {"name": "leak", "namespace": "clinical"},
                    "spec": {"purpose": "Treatment", "sources": ["lis-results"],
                             "sink": {"tier": "research-l2", "dataset": "leak"},
                             "schedule": "0 3 * * *",
                             // The identity the hospital's policies grant lab results to.
                             "serviceAccountName": "medplat-pipeline-lab-results-curated"}
                }))
                .await;
            }
        }
    }

    async fn fix(self, h: &Harness) {
        match self {
            Violation::SensitivePodOnUnhardenedNode => {
                Api::<Pod>::namespaced(h.client.clone(), "icu")
                    .delete("stray-worker", &DeleteParams::default().grace_period(0))
                    .await
                    .unwrap();
            }
            Violation::PipelineBlockedByPolicy => {
                // Pseudonymise into the curated tier instead.
                h.apply(&json!({
                    "apiVersion": "medplat.io/v1alpha1", "kind": "Pipeline",
                    "metadata": {"name": "leak", "namespace": "clinical"},
                    "spec": {"purpose": "Treatment", "sources": ["lis-results"],
                             "sink": {"tier": "curated-l3", "dataset": "lab/fixed"},
                             "schedule": "0 3 * * *",
                             "serviceAccountName": "medplat-pipeline-lab-results-curated",
                             "steps": [{"name": "pseudonymise", "deidentify": {
                                 "keys": {"secretName": "lab-deid-keys"},
                                 "rules": [
                                     {"identifier": "direct", "method": "cryptoHash"},
                                     {"identifier": "quasi", "method": "keep"},
                                     {"identifier": "none", "method": "keep"}]}}]}
                }))
                .await;
            }
        }
    }
}

/// The example hospital's namespaces, tiers, sources, policies and secrets (not its Platform:
/// the test brings its own).
async fn apply_hospital(h: &Harness) {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/hospital");
    for obj in medplat::manifests::load(std::slice::from_ref(&dir)).unwrap() {
        if obj.kind() != "Platform" {
            h.apply(&obj.value).await;
        }
    }
    for secret in medplat::manifests::secrets_from_dir(&dir.join("secrets"), "clinical").unwrap() {
        h.apply(&secret).await;
    }
    h.apply(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "icu"}}))
        .await;
}

/// Each violation makes its alert go pending, then firing, in a real Prometheus that scrapes
/// the operator and loads the rules the operator rendered (each alert's `for` overridden to
/// 3 s); fixing the violation resolves the alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_go_pending_fire_and_resolve_in_real_prometheus() {
    let Some(binary) = real_tool("prometheus") else {
        return;
    };
    let h = harness::start(&["n1", "n2"]).await;
    apply_hospital(&h).await;
    let overrides: Vec<Value> = Violation::ALL
        .iter()
        .map(|v| json!({"alert": v.alert(), "for": "3s"}))
        .collect();
    h.apply(&platform(
        json!({"mode": "Audit", "interval": "1h", "deviations": owner_deviations()}),
        json!({"overrides": overrides}),
    ))
    .await;
    let rules = rendered_rules(&h).await;
    let prom = Prometheus::start(&binary, h.metrics_addr, &rules).await;

    for v in Violation::ALL {
        let alert = v.alert();
        let mut seen = Vec::new();
        assert!(
            prom.wait_alert(alert, None, &mut seen).await,
            "{alert} before: {seen:?}"
        );
        v.create(&h).await;
        assert!(
            prom.wait_alert(alert, Some("pending"), &mut seen).await,
            "{alert} pending: {seen:?}"
        );
        assert!(
            prom.wait_alert(alert, Some("firing"), &mut seen).await,
            "{alert} firing: {seen:?}"
        );
        let firing = prom.alert(alert).await.unwrap();
        for (k, want) in v.labels() {
            assert_eq!(firing["labels"][k], want, "{alert} label {k}: {firing:#}");
        }
        assert!(
            firing["annotations"]["runbook_url"]
                .as_str()
                .unwrap()
                .ends_with(alert)
        );
        v.fix(&h).await;
        let resolved = prom.wait_alert(alert, None, &mut seen).await;
        assert!(
            resolved,
            "{alert} resolved: {seen:?}; operator metrics:\n{}",
            h.ctx
                .metrics
                .encode()
                .unwrap_or_default()
                .lines()
                .filter(|l| l.starts_with("medplat_policy_violations")
                    || l.starts_with("medplat_sensitive"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert_eq!(
            seen,
            ["inactive", "pending", "firing", "inactive"],
            "{alert}"
        );
    }
    drop(prom);
    h.stop().await;
}
