//! Simulated node agents for the sandbox.
//!
//! kubesim runs no containers, so the node-agent DaemonSet the Platform renders scans nothing.
//! Without scans the Platform would (rightly) call every node unhardened, take the
//! `medplat.io/hardened` label away and, in Enforce mode, evict the sandbox's L3+ pods. These
//! simulated agents stand in for the DaemonSet: they write each node's NodeCompliance through
//! the real agent's narrow writer and write rule, from a fixed scan: every check passes on the
//! nodes the sandbox starts labelled hardened, and ASLR is off on the others. The agent
//! version says `simulated`, so nobody mistakes these for real scans.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;
use serde_json::Value;

use crate::api::node_compliance::{CheckResult, CheckSeverity, CheckStatus};
use crate::node_agent::BASELINE;
use crate::node_agent::agent::{ComplianceStore, KubeStore};
use crate::node_agent::status::{WriteDecision, WritePolicy, build_status};
use crate::policy::hardening::parse_interval;

/// The agent version the simulated scans report.
pub const SIMULATED_AGENT_VERSION: &str = "sandbox-simulated";

/// The scan interval when the example Platform does not give one.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(600);

fn check(id: &str, title: &str, expected: &str, actual: &str, pass: bool) -> CheckResult {
    CheckResult {
        id: id.into(),
        title: title.into(),
        benchmark_ref: "simulated by medplat sandbox".into(),
        severity: CheckSeverity::High,
        status: if pass {
            CheckStatus::Pass
        } else {
            CheckStatus::Fail
        },
        expected: expected.into(),
        actual: actual.into(),
        remediation: if pass {
            String::new()
        } else {
            format!("set {id} to {expected}")
        },
    }
}

/// The fixed scan of a simulated node.
pub fn simulated_scan(hardened: bool) -> Vec<CheckResult> {
    vec![
        check(
            "sysctl.kernel.randomize_va_space",
            "Address space layout randomisation is fully on",
            "2",
            if hardened { "2" } else { "0" },
            hardened,
        ),
        check(
            "ssh.permit_root_login",
            "SSH refuses root logins",
            "no",
            "no",
            true,
        ),
        check(
            "kubelet.anonymous_auth",
            "The kubelet refuses anonymous requests",
            "false",
            "false",
            true,
        ),
    ]
}

/// The example Platform's `spec.hardening.interval` from the embedded manifests.
pub fn example_interval() -> Duration {
    super::embedded::MANIFESTS
        .iter()
        .flat_map(|(_, text)| serde_yaml::Deserializer::from_str(text))
        .filter_map(|doc| <Value as serde::Deserialize>::deserialize(doc).ok())
        .find(|v| v["kind"] == "Platform")
        .and_then(|v| {
            v["spec"]["hardening"]["interval"]
                .as_str()
                .and_then(|s| parse_interval(s).ok())
        })
        .unwrap_or(DEFAULT_INTERVAL)
}

/// Writes the simulated scans of `nodes` (name, hardened) every half interval, by the agent's
/// write rule, until the task is dropped. Failures are logged and retried next round.
pub async fn run(client: Client, nodes: Vec<(String, bool)>, interval: Duration) {
    let store = KubeStore::new(client);
    let policy = WritePolicy { interval };
    let mut ticker = tokio::time::interval(policy.scan_period());
    loop {
        ticker.tick().await;
        for (node, hardened) in &nodes {
            let now = Time(jiff::Timestamp::now());
            let next = build_status(
                simulated_scan(*hardened),
                now.clone(),
                BASELINE,
                SIMULATED_AGENT_VERSION,
            );
            let result = match store.current(node).await {
                Ok(prev) => match policy.decide(prev.as_ref(), &next, &now) {
                    WriteDecision::Skip => Ok(()),
                    _ => store.write(node, &next).await,
                },
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::warn!(node = %node, error = %e, "simulated node agent could not write");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unhardened_nodes_fail_and_the_interval_comes_from_the_example() {
        let ok = build_status(simulated_scan(true), Time(jiff::Timestamp::now()), "b", "v");
        let bad = build_status(
            simulated_scan(false),
            Time(jiff::Timestamp::now()),
            "b",
            "v",
        );
        assert!(ok.compliant);
        assert!(!bad.compliant && bad.summary.fail == 1);
        assert_eq!(example_interval(), Duration::from_secs(600));
    }
}
