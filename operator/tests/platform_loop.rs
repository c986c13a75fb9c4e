//! The Platform loop against in-process kubesim. Here, node hardening: node agents scanning
//! fixture host trees write their NodeCompliance, the operator labels nodes (a stale scan loses
//! the label), evicts in Enforce mode and only reports in Audit, and reports expired deviations.
//! The Platform's children are tested in `platform_loop/children.rs`, and the real-Prometheus
//! end-to-end test is in `platform_loop/prometheus_e2e.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

#[path = "platform_loop/children.rs"]
mod children;
#[path = "platform_loop/harness.rs"]
mod harness;
#[path = "platform_loop/prometheus_e2e.rs"]
mod prometheus_e2e;

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::{Client, ResourceExt};
use medplat::api::conditions::{NODES_HARDENED, READY, find_condition, is_true};
use medplat::api::node_compliance::NodeCompliance;
use medplat::api::platform::Platform;
use medplat::policy::hardening::{
    EVENT_DEVIATION_EXPIRED, EVENT_EVICTED_FROM_UNHARDENED_NODE,
    EVENT_SENSITIVE_POD_ON_UNHARDENED_NODE,
};
use serde_json::json;

use harness::{Agent, owner_deviations, platform, touch_platform, wait_for};

fn condition(p: &Platform, type_: &str) -> Option<(String, String, String)> {
    p.status
        .as_ref()
        .and_then(|s| find_condition(&s.conditions, type_))
        .map(|c| {
            (
                format!("{:?}", c.status),
                c.reason.clone(),
                c.message.clone(),
            )
        })
}

fn hardening(mode: &str, interval: &str) -> serde_json::Value {
    json!({"mode": mode, "interval": interval, "deviations": owner_deviations()})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_write_compliance_and_labels_follow_it() {
    let h = harness::start(&["n1", "n2", "n3"]).await;
    h.apply(&platform(hardening("Audit", "1h"), json!({})))
        .await;
    // The real agent loop: n1 is hardened, n2 is a default Ubuntu host, n3 runs no agent.
    let a1 = Agent::new(&h.client, "n1", "hardened", "1h");
    let a2 = Agent::new(&h.client, "n2", "ubuntu-default", "1h");
    let stop1 = a1.run();
    let stop2 = a2.run();
    h.wait_labels(
        &[("n1", "true"), ("n2", "false"), ("n3", "false")],
        "initial verdicts",
    )
    .await;
    let nc: NodeCompliance = Api::all(h.client.clone()).get("n2").await.unwrap();
    let st = nc.status.unwrap();
    assert!(!st.compliant && st.summary.fail > 0, "{:?}", st.summary);
    // Both scans seen: 1/3, and n2 failing (not merely unscanned).
    let p = h
        .wait_platform("hardened count", |p| {
            p.status.as_ref().and_then(|s| s.hardened_nodes.as_deref()) == Some("1/3")
                && condition(p, NODES_HARDENED).is_some_and(|(_, _, m)| m.contains("failing"))
        })
        .await;
    let (status, reason, message) = condition(&p, NODES_HARDENED).unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "NodesNotHardened")
    );
    assert!(
        message.contains("n2: ") && message.contains("failing"),
        "{message}"
    );
    assert!(message.contains("n3: no scan reported"), "{message}");
    assert!(is_true(&p.status.clone().unwrap().conditions, READY));
    let m = &h.ctx.metrics;
    assert_eq!(m.node_compliant.with_label_values(&["n1"]).get(), 1.0);
    assert_eq!(m.node_compliant.with_label_values(&["n2"]).get(), 0.0);
    assert!(m.node_checks_failed.with_label_values(&["n2"]).get() > 0.0);
    assert_eq!(m.scan_interval.with_label_values::<&str>(&[]).get(), 3600.0);

    // n2 is fixed: a fresh agent scanning a hardened tree reports it, and the label follows.
    drop(stop2);
    let fixed = Agent::new(&h.client, "n2", "hardened", "1h");
    fixed.scan().await;
    h.wait_labels(&[("n1", "true"), ("n2", "true")], "after the fix")
        .await;
    h.wait_platform("2/3", |p| {
        p.status.as_ref().and_then(|s| s.hardened_nodes.as_deref()) == Some("2/3")
    })
    .await;
    drop(stop1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_scan_goes_stale_loses_its_label_without_any_other_trigger() {
    let h = harness::start(&["n1"]).await;
    h.apply(&platform(hardening("Audit", "2s"), json!({})))
        .await;
    let a1 = Agent::new(&h.client, "n1", "hardened", "2s");
    a1.scan().await;
    h.wait_labels(&[("n1", "true")], "fresh scan").await;
    let scanned_at = tokio::time::Instant::now();
    // No more scans: after two intervals (4 s) the node is stale. Nothing else changes, so only
    // the requeue at the staleness deadline can flip the label.
    h.wait_labels(&[("n1", "false")], "stale scan").await;
    assert!(
        scanned_at.elapsed() >= Duration::from_secs(3),
        "the label flipped before the scan could be stale"
    );
    h.wait_platform("stale in the status", |p| {
        condition(p, NODES_HARDENED).is_some_and(|(_, _, m)| m.contains("older than two intervals"))
    })
    .await;
    h.stop().await;
}

/// The pods of the `worker` Deployment: (name, node).
async fn worker_pods(client: &Client) -> Vec<(String, Option<String>)> {
    Api::<Pod>::namespaced(client.clone(), "default")
        .list(&kube::api::ListParams::default().labels("app=worker"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| (p.name_any(), p.spec.and_then(|s| s.node_name)))
        .collect()
}

/// Waits until the `worker` Deployment has exactly one pod, bound to `node`; returns its name.
async fn worker_on(client: &Client, node: &str, what: &str) -> String {
    let mut last = Vec::new();
    for _ in 0..200 {
        last = worker_pods(client).await;
        if let [(name, Some(n))] = last.as_slice()
            && n == node
        {
            return name.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: worker pods are {last:?}, want one on {node}");
}

/// Enforce evicts the L3 pod from a node that falls out of compliance and its ReplicaSet's
/// replacement lands on the hardened node; Audit leaves it, counts it and raises one Warning
/// Event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_evicts_sensitive_pods_and_audit_only_reports() {
    for mode in ["Enforce", "Audit"] {
        let h = harness::start(&["n1", "n2"]).await;
        h.apply(&platform(hardening(mode, "1h"), json!({}))).await;
        let a1 = Agent::new(&h.client, "n1", "hardened", "1h");
        a1.scan().await;
        h.wait_labels(&[("n1", "true"), ("n2", "false")], mode)
            .await;
        // A pipeline-like L3 workload: may run only on hardened nodes.
        let pod = harness::sensitive_pod("default", "unused", "L3");
        h.apply(&json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "worker", "namespace": "default"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "worker"}},
                "template": {
                    "metadata": {"labels": {"app": "worker", "medplat.io/level": "L3"}},
                    "spec": pod["spec"],
                }
            }
        }))
        .await;
        let first = worker_on(&h.client, "n1", mode).await;
        let a2 = Agent::new(&h.client, "n2", "hardened", "1h");
        a2.scan().await;
        h.wait_labels(&[("n2", "true")], mode).await;

        // n1 falls out of compliance.
        a1.break_host();
        a1.scan().await;
        h.wait_labels(&[("n1", "false")], mode).await;

        if mode == "Enforce" {
            let second = worker_on(&h.client, "n2", "Enforce: the replacement").await;
            assert_ne!(first, second, "the pod on n1 was evicted and replaced");
            let events = h
                .event_count(EVENT_EVICTED_FROM_UNHARDENED_NODE, &first)
                .await;
            assert_eq!(events, 1, "one eviction event");
        } else {
            let counted = wait_for(Duration::from_secs(10), || async {
                h.ctx
                    .metrics
                    .sensitive_pods_on_unhardened
                    .with_label_values(&["default"])
                    .get()
                    == 1.0
            })
            .await;
            assert!(counted, "Audit: the pod is counted");
            // Nudge several reconciles: still one event, and the pod stays.
            for i in 0..3 {
                touch_platform(&h.client, i).await;
            }
            tokio::time::sleep(Duration::from_millis(800)).await;
            assert_eq!(
                worker_on(&h.client, "n1", "Audit never evicts").await,
                first
            );
            let events = h
                .event_count(EVENT_SENSITIVE_POD_ON_UNHARDENED_NODE, &first)
                .await;
            assert_eq!(events, 1, "exactly one warning for the pod on n1");
            assert!(
                h.events(EVENT_EVICTED_FROM_UNHARDENED_NODE, &first)
                    .await
                    .is_empty()
            );
        }
        h.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_deviation_raises_one_event_and_the_check_counts_again() {
    let h = harness::start(&["n1"]).await;
    let a1 = Agent::new(&h.client, "n1", "hardened", "1h");
    a1.break_host();
    a1.scan().await;
    let check = "sysctl.kernel.randomize_va_space";
    let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(4);
    let mut deviations = owner_deviations();
    deviations.push(json!({
        "checkId": check, "action": "Disable",
        "reason": "vendor driver needs ASLR off until the upgrade",
        "ticket": "CHG-2041", "expiresAt": expires.to_string(),
    }));
    h.apply(&platform(
        json!({"mode": "Audit", "interval": "1h", "deviations": deviations}),
        json!({}),
    ))
    .await;
    h.wait_labels(&[("n1", "true")], "deviation in force").await;
    // Nothing changes after this point: the requeue at expiry must act.
    h.wait_labels(&[("n1", "false")], "deviation expired").await;
    let p = h
        .wait_platform("expired listed", |p| {
            p.status
                .as_ref()
                .is_some_and(|s| s.expired_deviations == vec![check.to_string()])
        })
        .await;
    assert_eq!(
        p.status.unwrap().active_deviations as usize,
        owner_deviations().len()
    );
    let ok = wait_for(Duration::from_secs(5), || async {
        h.event_count(EVENT_DEVIATION_EXPIRED, "default").await == 1
    })
    .await;
    assert!(ok, "one HardeningDeviationExpired event");
    assert_eq!(
        h.ctx
            .metrics
            .deviation_expired
            .with_label_values(&[check])
            .get(),
        1.0
    );
    touch_platform(&h.client, 1).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(h.event_count(EVENT_DEVIATION_EXPIRED, "default").await, 1);
    h.stop().await;
}

/// `medplat sandbox` runs the example hospital's Enforce-mode Platform: its simulated node
/// agents keep the ward nodes hardened, so the Platform settles Ready at 2/3 and no L3+ pod is
/// evicted from them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_settles_with_the_platform_reconciled() {
    use medplat::sandbox::{Sandbox, SandboxOptions, summary};
    let dir = tempfile::tempdir().unwrap();
    let opts = SandboxOptions {
        kubeconfig: dir.path().join("kubeconfig"),
        port: 0,
        settle_timeout: Duration::from_secs(60),
    };
    let sandbox = Sandbox::start(&opts).await.unwrap();
    assert!(sandbox.wait_settled(opts.settle_timeout).await.unwrap());
    let rows = sandbox.rows().await.unwrap();
    let platform = rows.iter().find(|r| r.kind == "Platform").unwrap();
    assert!(
        summary::ready(&platform.object),
        "{:#}",
        platform.object["status"]
    );
    assert_eq!(platform.object["status"]["hardenedNodes"], "2/3");
    assert_eq!(
        condition_of(&platform.object, "NodesHardened"),
        Some("False".to_string())
    );
    for n in sandbox.nodes().await.unwrap() {
        let name = n["metadata"]["name"].as_str().unwrap();
        let want = if name.starts_with("ward-") {
            "true"
        } else {
            "false"
        };
        assert_eq!(
            n["metadata"]["labels"]["medplat.io/hardened"], want,
            "{name}"
        );
    }
    let evicted = sandbox
        .sim
        .request_log()
        .into_iter()
        .filter(|r| r.subresource == "eviction")
        .count();
    assert_eq!(
        evicted, 0,
        "no pod runs on an unhardened node in the sandbox"
    );
    sandbox.stop().await;
}

fn condition_of(obj: &serde_json::Value, type_: &str) -> Option<String> {
    medplat::sandbox::summary::condition(obj, type_).map(|c| c.0)
}
