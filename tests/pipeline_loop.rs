//! The Pipeline controller against kubesim: the example hospital's pipelines become
//! CronJobs and Jobs on hardened nodes; a violation blocks them with a condition, an Event
//! and a metric; fixing it lets them run; removing the schedule prunes the CronJob.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use medplat_integration::{Cluster, condition, eventually, test_settings};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);
const V: &str = "medplat.io/v1alpha1";

async fn pipeline(c: &Cluster, name: &str) -> Option<Value> {
    c.get(V, "Pipeline", Some("clinical"), name).await
}

#[tokio::test]
async fn the_hospital_pipelines_run_where_their_classification_allows() {
    let c = Cluster::start(Cluster::default_nodes()).await;
    c.apply_hospital(&["Platform"]).await;
    let op = c.start_operator(test_settings());

    for (name, level) in [
        ("lab-results-curated", "L3"),
        ("research-extract", "L2"),
        ("adt-curated", "L3"),
        ("his-patients-sync", "L4"),
    ] {
        let p = eventually(T, &format!("{name} compliant and Ready"), || async {
            let p = pipeline(&c, name).await?;
            (condition(&p, "PolicyCompliant")?.0 == "True" && condition(&p, "Ready")?.0 == "True")
                .then_some(p)
        })
        .await;
        assert_eq!(
            p["status"]["outputClassification"]["level"], level,
            "{name}"
        );
        assert!(
            p["status"]["lineage"]["sink"]
                .as_str()
                .unwrap()
                .contains(level),
            "{name}"
        );
    }

    // Scheduled pipelines get a CronJob; the on-demand research extract gets exactly one Job for
    // its run request.
    let cj = eventually(T, "the curated lab CronJob", || async {
        c.get(
            "batch/v1",
            "CronJob",
            Some("clinical"),
            "medplat-pipeline-lab-results-curated",
        )
        .await
    })
    .await;
    assert_eq!(cj["spec"]["schedule"], "0 2 * * *");
    assert_eq!(cj["spec"]["suspend"], false);
    let jobs = eventually(T, "the research extract's Job", || async {
        let list = c
            .api("batch/v1", "Job", Some("clinical"))
            .list(&Default::default())
            .await
            .ok()?;
        let mine: Vec<_> = list
            .items
            .into_iter()
            .filter(|j| {
                j.metadata.labels.as_ref().is_some_and(|l| {
                    l.get("medplat.io/owner-name").map(String::as_str) == Some("research-extract")
                })
            })
            .collect();
        (!mine.is_empty()).then_some(mine)
    })
    .await;
    assert_eq!(jobs.len(), 1);
    let p = eventually(T, "the handled run request in status", || async {
        let p = pipeline(&c, "research-extract").await?;
        (p["status"]["lastHandledRunRequest"] == "2026-11-20T09:00:00Z").then_some(p)
    })
    .await;
    drop(p);

    // The worker pod handles L4 input: it must land on a hardened node.
    let pod = eventually(T, "the research extract's pod to be scheduled", || async {
        let pods = c
            .api("v1", "Pod", Some("clinical"))
            .list(&Default::default())
            .await
            .ok()?;
        pods.items
            .into_iter()
            .find(|p| {
                p.metadata.labels.as_ref().is_some_and(|l| {
                    l.get("medplat.io/pipeline").map(String::as_str) == Some("research-extract")
                })
            })
            .filter(|p| p.data["spec"]["nodeName"].is_string())
    })
    .await;
    let node = pod.data["spec"]["nodeName"].as_str().unwrap().to_string();
    assert!(
        node == "node-a" || node == "node-b",
        "an L4 worker ran on unhardened {node}"
    );
    assert_eq!(
        pod.metadata.labels.as_ref().unwrap()["medplat.io/level"],
        "L4"
    );

    // The run finishes (kubesim's kubelet completes it) and the status shows it.
    eventually(T, "lastRun to show the finished run", || async {
        let p = pipeline(&c, "research-extract").await?;
        (p["status"]["lastRun"]["result"] == "Succeeded").then_some(())
    })
    .await;

    // The same request is never run twice, even after the operator restarts.
    op.stop().await;
    let op = c.start_operator(test_settings());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let list = c
        .api("batch/v1", "Job", Some("clinical"))
        .list(&Default::default())
        .await
        .unwrap();
    let runs = list
        .items
        .iter()
        .filter(|j| {
            j.metadata.labels.as_ref().is_some_and(|l| {
                l.get("medplat.io/owner-name").map(String::as_str) == Some("research-extract")
            })
        })
        .count();
    assert_eq!(runs, 1, "a run request was turned into a Job twice");

    // A new request makes a new Job.
    c.request_run("clinical", "research-extract", "2026-11-28T12:00:00Z")
        .await;
    eventually(T, "a second Job for the new request", || async {
        let list = c
            .api("batch/v1", "Job", Some("clinical"))
            .list(&Default::default())
            .await
            .ok()?;
        let n = list
            .items
            .iter()
            .filter(|j| {
                j.metadata.labels.as_ref().is_some_and(|l| {
                    l.get("medplat.io/owner-name").map(String::as_str) == Some("research-extract")
                })
            })
            .count();
        (n == 2).then_some(())
    })
    .await;
    op.stop().await;
}

#[tokio::test]
async fn a_violation_blocks_the_pipeline_until_it_is_fixed() {
    let c = Cluster::start(Cluster::default_nodes()).await;
    c.apply_hospital(&["Platform"]).await;
    // Sink the identified lab results straight into the research tier: L4 into an L2 tier.
    c.apply(&json!({"apiVersion": V, "kind": "Pipeline", "metadata": {"name": "leak", "namespace": "clinical"},
        "spec": {"purpose": "Treatment", "sources": ["lis-results"], "sink": {"tier": "research-l2", "dataset": "leak"},
                 "schedule": "0 3 * * *", "serviceAccountName": "medplat-pipeline-lab-results-curated"}}))
        .await;
    let op = c.start_operator(test_settings());
    let p = eventually(T, "PolicyCompliant=False", || async {
        let p = pipeline(&c, "leak").await?;
        (condition(&p, "PolicyCompliant")?.0 == "False").then_some(p)
    })
    .await;
    let (_, reason, message) = condition(&p, "PolicyCompliant").unwrap();
    assert_eq!(reason, "TierLevelTooLow");
    assert!(
        message.contains("StorageTier research-l2 accepts at most L2"),
        "{message}"
    );
    assert_eq!(condition(&p, "Ready").unwrap().0, "False");
    assert_eq!(condition(&p, "Stalled").unwrap().0, "True");
    assert!(!p["status"]["violations"].as_array().unwrap().is_empty());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        c.get(
            "batch/v1",
            "CronJob",
            Some("clinical"),
            "medplat-pipeline-leak"
        )
        .await
        .is_none(),
        "a non-compliant pipeline must not get a CronJob"
    );
    assert!(
        c.events("clinical")
            .await
            .iter()
            .any(|e| e["reason"] == "PolicyViolation" && e["regarding"]["name"] == "leak")
    );
    let metrics = op.operator.context.metrics.encode().unwrap();
    assert!(
        metrics.contains("medplat_policy_violations{namespace=\"clinical\",pipeline=\"leak\"} 4"),
        "level, encryption, cross-domain and write all block:\n{}",
        metrics
            .lines()
            .filter(|l| l.contains("policy_violations"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // Fix it: pseudonymise into the curated tier.
    c.api(V, "Pipeline", Some("clinical"))
        .patch(
            "leak",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {
                "sink": {"tier": "curated-l3", "dataset": "lab/fixed"},
                "steps": [{"deidentify": {"keys": {"secretName": "lab-deid-keys"}, "rules": [
                    {"identifier": "direct", "method": "cryptoHash"},
                    {"identifier": "quasi", "method": "keep"},
                    {"identifier": "none", "method": "keep"}]}}]}})),
        )
        .await
        .unwrap();
    eventually(T, "the CronJob once compliant", || async {
        c.get(
            "batch/v1",
            "CronJob",
            Some("clinical"),
            "medplat-pipeline-leak",
        )
        .await
    })
    .await;
    eventually(T, "the metric back to 0", || async {
        let m = op.operator.context.metrics.encode().ok()?;
        m.contains("medplat_policy_violations{namespace=\"clinical\",pipeline=\"leak\"} 0")
            .then_some(())
    })
    .await;

    // Break it again: the existing CronJob is suspended, not deleted.
    c.api(V, "Pipeline", Some("clinical"))
        .patch(
            "leak",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                json!({"spec": {"sink": {"tier": "research-l2", "dataset": "leak"}}}),
            ),
        )
        .await
        .unwrap();
    eventually(T, "the CronJob to be suspended", || async {
        let cj = c
            .get(
                "batch/v1",
                "CronJob",
                Some("clinical"),
                "medplat-pipeline-leak",
            )
            .await?;
        (cj["spec"]["suspend"] == true).then_some(())
    })
    .await;

    // Removing the schedule prunes the CronJob.
    c.api(V, "Pipeline", Some("clinical"))
        .patch(
            "lab-results-curated",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"schedule": null}})),
        )
        .await
        .unwrap();
    eventually(
        T,
        "the CronJob of lab-results-curated to be pruned",
        || async {
            c.get(
                "batch/v1",
                "CronJob",
                Some("clinical"),
                "medplat-pipeline-lab-results-curated",
            )
            .await
            .is_none()
            .then_some(())
        },
    )
    .await;
    op.stop().await;
}

#[tokio::test]
async fn worker_resources_size_the_pods_and_a_request_above_its_limit_stalls_the_pipeline() {
    let c = Cluster::start(Cluster::default_nodes()).await;
    c.apply_hospital(&["Platform"]).await;
    // Compliant in every other way: pseudonymised lab results into the curated tier.
    c.apply(&json!({"apiVersion": V, "kind": "Pipeline", "metadata": {"name": "sized", "namespace": "clinical"},
        "spec": {"purpose": "Treatment", "sources": ["lis-results"], "sink": {"tier": "curated-l3", "dataset": "lab/sized"},
                 "steps": [{"deidentify": {"keys": {"secretName": "lab-deid-keys"}, "rules": [
                    {"identifier": "direct", "method": "cryptoHash"},
                    {"identifier": "quasi", "method": "keep"},
                    {"identifier": "none", "method": "keep"}]}}],
                 "resources": {"requests": {"memory": "4Gi"}, "limits": {"memory": "1Gi"}},
                 "schedule": "0 3 * * *", "serviceAccountName": "medplat-pipeline-lab-results-curated"}}))
        .await;
    let op = c.start_operator(test_settings());
    let p = eventually(T, "Stalled=True", || async {
        let p = pipeline(&c, "sized").await?;
        (condition(&p, "Stalled")?.0 == "True").then_some(p)
    })
    .await;
    let (_, reason, message) = condition(&p, "Ready").unwrap();
    assert_eq!(reason, "InvalidResources");
    assert_eq!(
        message,
        "spec.resources.requests.memory 4Gi is above spec.resources.limits.memory 1Gi"
    );
    // The sizing is no policy matter: the pipeline is compliant, and nothing runs.
    assert_eq!(condition(&p, "PolicyCompliant").unwrap().0, "True");
    assert!(
        c.events("clinical")
            .await
            .iter()
            .any(|e| e["reason"] == "InvalidResources" && e["regarding"]["name"] == "sized")
    );
    assert!(
        c.get(
            "batch/v1",
            "CronJob",
            Some("clinical"),
            "medplat-pipeline-sized"
        )
        .await
        .is_none()
    );

    // Fixed: the CronJob's worker gets what the spec asks for.
    c.api(V, "Pipeline", Some("clinical"))
        .patch(
            "sized",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                json!({"spec": {"resources": {"limits": {"memory": "8Gi", "cpu": "4"}}}}),
            ),
        )
        .await
        .unwrap();
    let cj = eventually(T, "the CronJob once sized", || async {
        c.get(
            "batch/v1",
            "CronJob",
            Some("clinical"),
            "medplat-pipeline-sized",
        )
        .await
    })
    .await;
    let resources =
        &cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["resources"];
    assert_eq!(
        resources["requests"],
        json!({"cpu": "100m", "memory": "4Gi"})
    );
    assert_eq!(resources["limits"], json!({"cpu": "4", "memory": "8Gi"}));
    op.stop().await;
}
