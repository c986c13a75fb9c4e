//! The Platform's children against kubesim: a bad logging config keeps the last good children,
//! the rules go to a PrometheusRule or a ConfigMap by discovery, a deleted child comes back at
//! once, the shared child caches keep up past their stream buffer, and an idle operator writes
//! nothing.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject};
use medplat::api::conditions::{ALERTING_CONFIGURED, LOGGING_CONFIGURED, READY, is_true};
use medplat::policy::hardening::EVENT_SENSITIVE_POD_ON_UNHARDENED_NODE;
use medplat::render::platform::rules::{RULES_NAME, prometheus_rule_resource};
use serde_json::json;

use super::harness::{
    self, Agent, OPERATOR_NS, TEST_MANAGER, platform, touch, touch_platform, wait_for,
};
use super::{condition, hardening};

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
        touch(&Api::<Node>::all(h.client.clone()), "n2", i).await;
        touch(
            &Api::<Pod>::namespaced(h.client.clone(), "default"),
            "stray",
            i,
        )
        .await;
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
