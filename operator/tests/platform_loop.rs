//! The Platform loop against in-process kubesim: node agents scanning fixture host trees write
//! their NodeCompliance, the operator labels nodes, evicts in Enforce mode, reports expired
//! deviations, keeps the last good log configuration, switches the rules target with the
//! Prometheus operator's CRD, and writes nothing when nothing changes. The real-Prometheus
//! end-to-end test is in `platform_loop/prometheus_e2e.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

#[path = "platform_loop/harness.rs"]
mod harness;
#[path = "platform_loop/prometheus_e2e.rs"]
mod prometheus_e2e;

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::{Client, ResourceExt};
use medplat::api::conditions::{
    ALERTING_CONFIGURED, LOGGING_CONFIGURED, NODES_HARDENED, READY, find_condition, is_true,
};
use medplat::api::node_compliance::NodeCompliance;
use medplat::api::platform::Platform;
use medplat::policy::hardening::{
    EVENT_DEVIATION_EXPIRED, EVENT_EVICTED_FROM_UNHARDENED_NODE,
    EVENT_SENSITIVE_POD_ON_UNHARDENED_NODE,
};
use medplat::render::platform::rules::{RULES_NAME, prometheus_rule_resource};
use serde_json::json;

use harness::{Agent, OPERATOR_NS, TEST_MANAGER, owner_deviations, platform, wait_for};

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
    let p = h
        .wait_platform("hardened count", |p| {
            p.status.as_ref().and_then(|s| s.hardened_nodes.as_deref()) == Some("1/3")
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

async fn touch_platform(client: &Client, i: usize) {
    Api::<Platform>::all(client.clone())
        .patch(
            "default",
            &PatchParams {
                field_manager: Some(TEST_MANAGER.into()),
                ..PatchParams::default()
            },
            &Patch::Merge(
                json!({"metadata": {"annotations": {"medplat.test/touch": i.to_string()}}}),
            ),
        )
        .await
        .unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_logging_config_keeps_the_last_good_children() {
    let h = harness::start(&["n1"]).await;
    h.apply(&platform(hardening("Audit", "1h"), json!({})))
        .await;
    let good = h
        .wait_platform("logging configured", |p| {
            p.status
                .as_ref()
                .is_some_and(|s| s.logging_config_hash.is_some())
        })
        .await;
    let hash = good.status.unwrap().logging_config_hash;
    let cms: Api<ConfigMap> = Api::namespaced(h.client.clone(), OPERATOR_NS);
    let ds: Api<DaemonSet> = Api::namespaced(h.client.clone(), OPERATOR_NS);
    let agent_cm = cms.get("medplat-log-agent").await.unwrap();
    let agent_ds = ds.get("medplat-log-agent").await.unwrap();

    // The audit tier now keeps data 90 days: the logging settings are invalid. At the same
    // time the node-agent settings change, and they must still be rolled out.
    h.apply(&harness::audit_tier(90)).await;
    h.apply(&platform(hardening("Audit", "30m"), json!({})))
        .await;
    let bad = h
        .wait_platform("invalid logging", |p| {
            condition(p, LOGGING_CONFIGURED).is_some_and(|(s, _, _)| s == "False")
        })
        .await;
    let (_, reason, message) = condition(&bad, LOGGING_CONFIGURED).unwrap();
    assert_eq!(reason, "InvalidConfig");
    assert!(
        message.contains("spec.logging.auditTier") && message.contains("90"),
        "{message}"
    );
    let (ready, ready_reason, _) = condition(&bad, READY).unwrap();
    assert_eq!(
        (ready.as_str(), ready_reason.as_str()),
        ("False", "InvalidLogging")
    );
    assert_eq!(bad.status.as_ref().unwrap().logging_config_hash, hash);
    let node_agent_rolled = wait_for(Duration::from_secs(10), || async {
        ds.get("medplat-node-agent")
            .await
            .ok()
            .and_then(|d| d.spec)
            .and_then(|s| s.template.spec)
            .is_some_and(|s| {
                s.containers[0]
                    .args
                    .as_ref()
                    .is_some_and(|a| a.contains(&"30m".to_string()))
            })
    })
    .await;
    assert!(node_agent_rolled, "the valid group is still reconciled");
    let still_cm = cms.get("medplat-log-agent").await.unwrap();
    let still_ds = ds.get("medplat-log-agent").await.unwrap();
    assert_eq!(still_cm.resource_version(), agent_cm.resource_version());
    // The DaemonSet's status moves (kubesim runs its pods); its spec must not.
    assert_eq!(still_ds.metadata.generation, agent_ds.metadata.generation);
    assert_eq!(still_ds.spec, agent_ds.spec);
    let ok = wait_for(Duration::from_secs(5), || async {
        h.event_count(
            medplat::controller::platform::EVENT_INVALID_LOGGING,
            "default",
        )
        .await
            == 1
    })
    .await;
    assert!(ok, "one InvalidLoggingConfig event");

    // Fixed: the condition clears and the configuration is the same as before.
    h.apply(&harness::audit_tier(365)).await;
    let fixed = h
        .wait_platform("logging fixed", |p| {
            condition(p, LOGGING_CONFIGURED).is_some_and(|(s, _, _)| s == "True")
                && is_true(&p.status.as_ref().unwrap().conditions, READY)
        })
        .await;
    assert_eq!(fixed.status.unwrap().logging_config_hash, hash);
    h.stop().await;
}

/// A minimal CRD for one of the Prometheus operator's kinds.
fn monitoring_crd(kind: &str, plural: &str) -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.monitoring.coreos.com")},
        "spec": {
            "group": "monitoring.coreos.com",
            "names": {"kind": kind, "plural": plural, "listKind": format!("{kind}List"), "singular": kind.to_lowercase()},
            "scope": "Namespaced",
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]
        }
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rules_target_follows_the_prometheus_operator_crd() {
    let h = harness::start(&["n1"]).await;
    h.apply(&platform(hardening("Audit", "1h"), json!({})))
        .await;
    let p = h
        .wait_platform("rules ConfigMap", |p| {
            p.status.as_ref().and_then(|s| s.rules_target.as_deref()) == Some("ConfigMap")
        })
        .await;
    assert_eq!(
        condition(&p, ALERTING_CONFIGURED).unwrap().1,
        "RulesConfigMap"
    );
    let cms: Api<ConfigMap> = Api::namespaced(h.client.clone(), OPERATOR_NS);
    let rules = cms.get(RULES_NAME).await.unwrap();
    assert!(rules.data.unwrap()["medplat-rules.yaml"].contains("MedplatNodeHardeningNonCompliant"));

    harness::install_crds(
        &h.client,
        vec![
            monitoring_crd("PrometheusRule", "prometheusrules"),
            monitoring_crd("ServiceMonitor", "servicemonitors"),
        ],
    )
    .await;
    let p = h
        .wait_platform("PrometheusRule", |p| {
            p.status.as_ref().and_then(|s| s.rules_target.as_deref()) == Some("PrometheusRule")
        })
        .await;
    assert_eq!(
        condition(&p, ALERTING_CONFIGURED).unwrap().1,
        "PrometheusRule"
    );
    let prs: Api<DynamicObject> =
        Api::namespaced_with(h.client.clone(), OPERATOR_NS, &prometheus_rule_resource());
    let switched = wait_for(Duration::from_secs(10), || async {
        prs.get_opt(RULES_NAME).await.unwrap().is_some()
            && cms.get_opt(RULES_NAME).await.unwrap().is_none()
    })
    .await;
    assert!(switched, "the PrometheusRule replaces the rules ConfigMap");
    let pr = prs.get(RULES_NAME).await.unwrap();
    assert!(
        pr.data["spec"]["groups"]
            .as_array()
            .is_some_and(|g| !g.is_empty())
    );
    let sms: Api<DynamicObject> = Api::namespaced_with(
        h.client.clone(),
        OPERATOR_NS,
        &medplat::render::platform::rules::service_monitor_resource(),
    );
    let names: Vec<String> = sms
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|o| o.name_any())
        .collect();
    assert_eq!(
        names.len(),
        3,
        "operator, log agent and aggregator: {names:?}"
    );

    // The Prometheus operator is removed again: back to the ConfigMap.
    let crds: Api<CustomResourceDefinition> = Api::all(h.client.clone());
    for n in [
        "prometheusrules.monitoring.coreos.com",
        "servicemonitors.monitoring.coreos.com",
    ] {
        crds.delete(n, &DeleteParams::default()).await.unwrap();
    }
    h.wait_platform("back to ConfigMap", |p| {
        p.status.as_ref().and_then(|s| s.rules_target.as_deref()) == Some("ConfigMap")
    })
    .await;
    let back = wait_for(Duration::from_secs(10), || async {
        cms.get_opt(RULES_NAME).await.unwrap().is_some()
    })
    .await;
    assert!(back, "the rules ConfigMap is back");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_child_is_recreated_at_once() {
    let h = harness::start(&["n1"]).await;
    h.apply(&platform(hardening("Audit", "1h"), json!({})))
        .await;
    let ds: Api<DaemonSet> = Api::namespaced(h.client.clone(), OPERATOR_NS);
    let ok = wait_for(Duration::from_secs(10), || async {
        ds.get_opt("medplat-node-agent").await.unwrap().is_some()
    })
    .await;
    assert!(ok, "the node-agent DaemonSet exists");
    let old = ds.get("medplat-node-agent").await.unwrap().uid();
    ds.delete("medplat-node-agent", &DeleteParams::default())
        .await
        .unwrap();
    // Well within the resync period (5 minutes): only the deletion can trigger this.
    let ok = wait_for(Duration::from_secs(10), || async {
        ds.get_opt("medplat-node-agent")
            .await
            .unwrap()
            .is_some_and(|d| d.uid() != old)
    })
    .await;
    assert!(ok, "the deleted DaemonSet is recreated");
    h.stop().await;
}

/// The shared child caches keep following their watch after more changes than a shared
/// stream buffers (1024), even though the subscription handles they keep for later
/// subscribers are never read by anyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_caches_keep_up_past_the_shared_stream_buffer() {
    let sim = kubesim::Sim::builder().start().await.unwrap();
    let client = sim.client();
    let (stores, drive) = medplat::controller::children::ChildStores::start(&client, None).unwrap();
    let task = tokio::spawn(drive);
    stores.wait_until_ready().await;
    const N: usize = 1100;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let writes = futures::stream::iter(0..N).for_each_concurrent(16, |i| {
        let cms = cms.clone();
        async move {
            let cm: ConfigMap = serde_json::from_value(json!({
                "metadata": {"name": format!("cm-{i}"), "labels": {"app.kubernetes.io/managed-by": "medplat"}}
            }))
            .unwrap();
            cms.create(&Default::default(), &cm).await.unwrap();
        }
    });
    writes.await;
    let ok = wait_for(Duration::from_secs(30), || async {
        stores.config_maps.store.state().len() >= N
    })
    .await;
    assert!(
        ok,
        "the ConfigMap cache stalled at {} of {N}",
        stores.config_maps.store.state().len()
    );
    task.abort();
    sim.shutdown().await;
}

/// After everything settled, reconciles triggered by unrelated changes write nothing: not a
/// child, not a label, not a status, not an event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_operator_writes_nothing() {
    let h = harness::start(&["n1", "n2"]).await;
    h.apply(&platform(hardening("Audit", "1h"), json!({})))
        .await;
    let a1 = Agent::new(&h.client, "n1", "hardened", "1h");
    a1.scan().await;
    // An L3 pod on the unhardened node keeps the sensitive-pod watch busy.
    let mut pod = harness::sensitive_pod("default", "stray", "L3");
    pod["spec"].as_object_mut().unwrap().remove("affinity");
    pod["spec"]["nodeName"] = json!("n2");
    h.apply(&pod).await;
    h.wait_labels(&[("n1", "true"), ("n2", "false")], "settle")
        .await;
    h.wait_platform("settled", |p| {
        p.status
            .as_ref()
            .is_some_and(|s| s.logging_config_hash.is_some())
    })
    .await;
    let settled = wait_for(Duration::from_secs(10), || async {
        !h.events(EVENT_SENSITIVE_POD_ON_UNHARDENED_NODE, "stray")
            .await
            .is_empty()
    })
    .await;
    assert!(settled);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let reconciles = || {
        h.ctx
            .metrics
            .reconciles
            .with_label_values(&[medplat::controller::platform::CONTROLLER])
            .get()
    };
    let before = reconciles();
    h.sim.clear_request_log();
    // Unrelated changes that trigger reconciles: the Platform's annotations, a node's
    // annotations, the pod's annotations, the agent's unchanged rescan.
    for i in 0..3 {
        touch_platform(&h.client, i).await;
        Api::<k8s_openapi::api::core::v1::Node>::all(h.client.clone())
            .patch(
                "n2",
                &PatchParams {
                    field_manager: Some(TEST_MANAGER.into()),
                    ..PatchParams::default()
                },
                &Patch::Merge(
                    json!({"metadata": {"annotations": {"medplat.test/touch": i.to_string()}}}),
                ),
            )
            .await
            .unwrap();
        Api::<Pod>::namespaced(h.client.clone(), "default")
            .patch(
                "stray",
                &PatchParams {
                    field_manager: Some(TEST_MANAGER.into()),
                    ..PatchParams::default()
                },
                &Patch::Merge(
                    json!({"metadata": {"annotations": {"medplat.test/touch": i.to_string()}}}),
                ),
            )
            .await
            .unwrap();
        a1.scan().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let writes: Vec<String> = h
        .sim
        .request_log()
        .into_iter()
        .filter(|r| r.is_write() && r.field_manager != TEST_MANAGER)
        .map(|r| format!("{} {} {} ({})", r.verb, r.path, r.code, r.field_manager))
        .collect();
    assert!(writes.is_empty(), "an idle operator wrote: {writes:#?}");
    let during = reconciles() - before;
    assert!(
        during >= 3.0,
        "the touches did trigger reconciles ({during})"
    );
    h.stop().await;
}
