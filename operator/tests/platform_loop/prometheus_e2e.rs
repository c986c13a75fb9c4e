//! End to end with a real Prometheus server: it scrapes the running operator's `/metrics` and
//! loads the rules the operator rendered (with a short `for` override); a violation created
//! against kubesim makes the alert go pending, then firing; fixing it resolves the alert.
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

    /// The state (`pending`, `firing`) of the active alert `name`, if any.
    async fn alert_state(&self, name: &str) -> Option<String> {
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
        let done = got.as_deref().is_some_and(|r| r.contains("for: 3s"));
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

/// Starts the operator with a Platform whose `alert` fires after 3 s, and Prometheus on it.
async fn setup(alert: &str) -> Option<(Harness, Prometheus)> {
    let binary = real_tool("prometheus")?;
    let h = harness::start(&["n1", "n2"]).await;
    h.apply(&platform(
        json!({"mode": "Audit", "interval": "1h", "deviations": owner_deviations()}),
        json!({"overrides": [{"alert": alert, "for": "3s"}]}),
    ))
    .await;
    let rules = rendered_rules(&h).await;
    let prom = Prometheus::start(&binary, h.metrics_addr, &rules).await;
    Some((h, prom))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensitive_workload_alert_goes_pending_fires_and_resolves_in_real_prometheus() {
    const ALERT: &str = "MedplatSensitiveWorkloadOnUnhardenedNode";
    let Some((h, prom)) = setup(ALERT).await else {
        return;
    };
    let mut seen = Vec::new();
    assert!(prom.wait_alert(ALERT, None, &mut seen).await);

    // The violation: an L3 pod bound to a node that is not hardened.
    let mut pod = harness::sensitive_pod("icu", "stray-worker", "L4");
    pod["spec"].as_object_mut().unwrap().remove("affinity");
    pod["spec"]["nodeName"] = json!("n2");
    h.apply(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "icu"}}))
        .await;
    h.apply(&pod).await;
    assert!(
        prom.wait_alert(ALERT, Some("pending"), &mut seen).await,
        "pending: {seen:?}"
    );
    assert!(
        prom.wait_alert(ALERT, Some("firing"), &mut seen).await,
        "firing: {seen:?}"
    );
    let body: Value = reqwest::get(format!("{}/api/v1/alerts", prom.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let firing = body["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["alertname"] == ALERT)
        .unwrap()
        .clone();
    assert_eq!(firing["labels"]["namespace"], "icu");
    assert_eq!(firing["labels"]["severity"], "critical");
    assert!(
        firing["annotations"]["runbook_url"]
            .as_str()
            .unwrap()
            .ends_with(ALERT)
    );

    // The fix: the pod is gone; the series disappears and the alert resolves.
    Api::<Pod>::namespaced(h.client.clone(), "icu")
        .delete("stray-worker", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let resolved = prom.wait_alert(ALERT, None, &mut seen).await;
    assert!(
        resolved,
        "resolved: {seen:?}; metric now {:?}; pod {:?}",
        h.ctx
            .metrics
            .encode()
            .unwrap()
            .lines()
            .filter(|l| l.contains("sensitive"))
            .collect::<Vec<_>>(),
        h.pod("icu", "stray-worker").await.map(|p| p.metadata)
    );
    assert_eq!(seen, ["inactive", "pending", "firing", "inactive"]);
    drop(prom);
    h.stop().await;
}
