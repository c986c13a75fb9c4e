//! The simulated scheduler, kubelet and workload controllers, driven through `kube::Client`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kubesim::{NodeSpec, PodFate, PodOutcome, Sim};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

async fn sim() -> Sim {
    Sim::builder()
        .nodes(vec![
            NodeSpec::new("node-a"),
            NodeSpec::new("node-b").label("medplat.io/hardened", "true"),
            NodeSpec::new("node-c")
                .label("medplat.io/hardened", "true")
                .taint("dedicated", "audit", "NoSchedule"),
        ])
        .tick(Duration::from_millis(20))
        .start()
        .await
        .unwrap()
}

fn obj<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

async fn wait<T, F>(api: &Api<T>, name: &str, what: &str, mut ok: F) -> T
where
    T: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
    F: FnMut(&T) -> bool,
{
    let mut last = None;
    for _ in 0..150 {
        if let Some(o) = api.get_opt(name).await.unwrap() {
            if ok(&o) {
                return o;
            }
            last = Some(o);
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    panic!("timed out waiting for {what}; last seen: {last:#?}");
}

fn pod(name: &str, spec: Value) -> Pod {
    let mut s = spec;
    s["containers"] = json!([{"name": "c", "image": "busybox"}]);
    obj(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": s}))
}

// https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/ and
// https://kubernetes.io/docs/concepts/scheduling-eviction/taint-and-toleration/
#[tokio::test]
async fn scheduling_honours_selectors_affinity_and_taints() {
    let sim = sim().await;
    let pods: Api<Pod> = Api::namespaced(sim.client(), "default");
    let pp = PostParams::default();
    pods.create(
        &pp,
        &pod(
            "hardened",
            json!({"nodeSelector": {"medplat.io/hardened": "true"}}),
        ),
    )
    .await
    .unwrap();
    pods.create(&pp, &pod("tolerating", json!({
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-c"]}]}]}}},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "audit", "effect": "NoSchedule"}]
    }))).await.unwrap();
    pods.create(
        &pp,
        &pod(
            "stuck",
            json!({"nodeSelector": {"medplat.io/hardened": "true", "zone": "nowhere"}}),
        ),
    )
    .await
    .unwrap();
    let p = wait(&pods, "hardened", "Running", |p| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
    })
    .await;
    assert_eq!(
        p.spec.unwrap().node_name.as_deref(),
        Some("node-b"),
        "the tainted hardened node is not used without a toleration"
    );
    let t = wait(&pods, "tolerating", "Running", |p| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
    })
    .await;
    assert_eq!(t.spec.unwrap().node_name.as_deref(), Some("node-c"));
    let stuck = wait(&pods, "stuck", "Unschedulable", |p| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.reason.as_deref() == Some("Unschedulable"))
            })
    })
    .await;
    let cond = stuck.status.unwrap().conditions.unwrap().remove(0);
    assert_eq!(cond.type_, "PodScheduled");
    assert_eq!(cond.status, "False");
    assert!(cond.message.unwrap().starts_with(
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector"
    ));
    sim.shutdown().await;
}

// https://kubernetes.io/docs/concepts/workloads/controllers/job/ (completions, parallelism,
// Indexed completion mode, backoffLimit).
#[tokio::test]
async fn jobs_complete_indexed_and_fail_by_backoff() {
    let sim = sim().await;
    let jobs: Api<Job> = Api::namespaced(sim.client(), "default");
    let pods: Api<Pod> = Api::namespaced(sim.client(), "default");
    let pp = PostParams::default();
    let template = |ann: Value| json!({"metadata": {"annotations": ann}, "spec": {"restartPolicy": "Never", "containers": [{"name": "w", "image": "medplat"}]}});
    jobs.create(&pp, &obj(json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "plain"}, "spec": {"completions": 2, "parallelism": 2,
        "template": template(json!({"kubesim.io/run-seconds": "0.2"}))}}))).await.unwrap();
    jobs.create(&pp, &obj(json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "idx"}, "spec": {"completions": 3, "parallelism": 2, "completionMode": "Indexed",
        "template": template(json!({"kubesim.io/run-seconds": "0.2"}))}}))).await.unwrap();
    jobs.create(&pp, &obj(json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "bad"}, "spec": {"backoffLimit": 1,
        "template": template(json!({"kubesim.io/phase": "Failed", "kubesim.io/run-seconds": "0.1"}))}}))).await.unwrap();
    let has = |j: &Job, t: &str| {
        j.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == t && c.status == "True"))
    };
    let plain = wait(&jobs, "plain", "Complete", |j| has(j, "Complete")).await;
    assert_eq!(plain.status.as_ref().unwrap().succeeded, Some(2));
    assert!(has(&plain, "SuccessCriteriaMet"));
    assert!(plain.status.unwrap().completion_time.is_some());
    let idx = wait(&jobs, "idx", "Complete", |j| has(j, "Complete")).await;
    assert_eq!(
        idx.status.unwrap().completed_indexes.as_deref(),
        Some("0-2")
    );
    let idx_pods = pods
        .list(&ListParams::default().labels("batch.kubernetes.io/job-name=idx"))
        .await
        .unwrap();
    let mut indexes: Vec<String> = idx_pods
        .items
        .iter()
        .filter_map(|p| {
            p.metadata
                .annotations
                .as_ref()?
                .get("batch.kubernetes.io/job-completion-index")
                .cloned()
        })
        .collect();
    indexes.sort();
    assert_eq!(indexes, vec!["0", "1", "2"]);
    let bad = wait(&jobs, "bad", "Failed", |j| has(j, "Failed")).await;
    assert_eq!(
        bad.status.as_ref().unwrap().failed,
        Some(2),
        "backoffLimit 1 allows one retry"
    );
    let reason = bad
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Failed")
        .unwrap()
        .reason;
    assert_eq!(reason.as_deref(), Some("BackoffLimitExceeded"));
    sim.shutdown().await;
}

// https://kubernetes.io/docs/concepts/workloads/controllers/deployment/,
// /daemonset/ and /statefulset/.
#[tokio::test]
async fn deployments_daemonsets_and_statefulsets_create_pods_and_report_status() {
    let sim = sim().await;
    let c = sim.client();
    let deps: Api<Deployment> = Api::namespaced(c.clone(), "default");
    let dss: Api<DaemonSet> = Api::namespaced(c.clone(), "default");
    let stss: Api<StatefulSet> = Api::namespaced(c.clone(), "default");
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(c.clone(), "default");
    let pp = PostParams::default();
    let tmpl = |app: &str| json!({"metadata": {"labels": {"app": app}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
    deps.create(&pp, &obj(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": tmpl("web")}}))).await.unwrap();
    let mut ds_tmpl = tmpl("agent");
    ds_tmpl["spec"]["nodeSelector"] = json!({"medplat.io/hardened": "true"});
    dss.create(&pp, &obj(json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"}, "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": ds_tmpl}}))).await.unwrap();
    stss.create(&pp, &obj(json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"}, "spec": {"replicas": 2, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}}, "template": tmpl("db"),
        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}}))).await.unwrap();
    let d = wait(&deps, "web", "2 ready replicas", |d| {
        d.status.as_ref().and_then(|s| s.ready_replicas) == Some(2)
    })
    .await;
    let st = d.status.unwrap();
    assert_eq!(st.observed_generation, Some(1));
    assert!(
        st.conditions
            .unwrap()
            .iter()
            .any(|c| c.type_ == "Available" && c.status == "True")
    );
    let ds = wait(&dss, "agent", "1 ready", |d| {
        d.status.as_ref().is_some_and(|s| s.number_ready == 1)
    })
    .await;
    assert_eq!(
        ds.status.unwrap().desired_number_scheduled,
        1,
        "hardened nodes only, and node-c's taint is not tolerated"
    );
    let s = wait(&stss, "db", "2 ready", |s| {
        s.status.as_ref().and_then(|s| s.ready_replicas) == Some(2)
    })
    .await;
    assert_eq!(s.status.unwrap().replicas, 2);
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    assert!(
        pods.get_opt("db-0").await.unwrap().is_some()
            && pods.get_opt("db-1").await.unwrap().is_some()
    );
    let claim = pvcs.get("data-db-0").await.unwrap();
    assert_eq!(claim.status.unwrap().phase.as_deref(), Some("Bound"));
    // Scaling the Deployment down removes pods.
    deps.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    wait(&deps, "web", "1 replica", |d| {
        d.status.as_ref().and_then(|s| s.replicas) == Some(1)
    })
    .await;
    sim.shutdown().await;
}

// https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/
#[tokio::test]
async fn cronjob_runs_due_schedule_and_records_it() {
    let sim = sim().await;
    let cjs: Api<CronJob> = Api::namespaced(sim.client(), "default");
    let jobs: Api<Job> = Api::namespaced(sim.client(), "default");
    cjs.create(&PostParams::default(), &obj(json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly"}, "spec": {"schedule": "*/5 * * * *",
        "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "w", "image": "medplat"}]}}}}}}))).await.unwrap();
    // Pretend the last run was long ago, so a schedule is due now.
    cjs.patch_status(
        "nightly",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"lastScheduleTime": "2020-01-01T00:00:00Z"}})),
    )
    .await
    .unwrap();
    let cj = wait(&cjs, "nightly", "a newer lastScheduleTime", |c| {
        c.status
            .as_ref()
            .and_then(|s| s.last_schedule_time.as_ref())
            .is_some_and(|t| t.0.as_second() > 1_600_000_000)
    })
    .await;
    let list = jobs.list(&ListParams::default()).await.unwrap();
    let job = list
        .items
        .iter()
        .find(|j| {
            j.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with("nightly-"))
        })
        .expect("a Job was created");
    assert_eq!(
        job.metadata.owner_references.as_ref().unwrap()[0].uid,
        cj.metadata.uid.unwrap()
    );
    let bad = cjs
        .create(&PostParams::default(), &obj(json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "bad"}, "spec": {"schedule": "not cron", "jobTemplate": {"spec": {"template": {"spec": {"containers": []}}}}}})))
        .await
        .unwrap_err();
    assert!(matches!(bad, kube::Error::Api(s) if s.code == 422));
    sim.shutdown().await;
}

// https://kubernetes.io/docs/concepts/scheduling-eviction/api-eviction/ and a custom PodOutcome.
#[tokio::test]
async fn eviction_respects_disruption_budgets_and_outcome_rules_apply() {
    let sim = Sim::builder()
        .pod_outcome(PodOutcome::new(|p| PodFate {
            start_after: Duration::from_millis(10),
            finish: (p.pointer("/metadata/labels/short").is_some())
                .then_some((Duration::from_millis(100), false)),
            // Longer than a kubelet keeps, and cut inside a two-byte character.
            termination_message: Some(format!("why{}", "é".repeat(3000))),
        }))
        .tick(Duration::from_millis(20))
        .start()
        .await
        .unwrap();
    // kube retries 429 with backoff by default; a real PDB denial is a 429 too, so turn retries off.
    let mut cfg = sim.kube_config();
    cfg.default_retry = false;
    let client = kube::Client::try_from(cfg).unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client, "default");
    let mut guarded = pod("guarded", json!({}));
    guarded.metadata.labels = Some([("app".to_string(), "g".to_string())].into());
    pods.create(&PostParams::default(), &guarded).await.unwrap();
    pdbs.create(&PostParams::default(), &obj(json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "g"}, "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "g"}}}}))).await.unwrap();
    wait(&pods, "guarded", "Running", |p| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
    })
    .await;
    let err = pods
        .evict("guarded", &Default::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 429),
        "{err:?}"
    );
    let mut short = pod("short", json!({"restartPolicy": "Never"}));
    short.metadata.labels = Some([("short".to_string(), "1".to_string())].into());
    pods.create(&PostParams::default(), &short).await.unwrap();
    let failed = wait(&pods, "short", "Failed by the custom rule", |p| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
    })
    .await;
    let terminated = failed
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0]
        .state
        .as_ref()
        .unwrap()
        .terminated
        .clone()
        .unwrap();
    let message = terminated.message.unwrap();
    assert!(message.starts_with("whyé"), "{message:.20}");
    assert_eq!(
        message.len(),
        4095,
        "cut to the last whole character within 4096 bytes"
    );
    assert_eq!(terminated.exit_code, 1);
    pods.evict("short", &Default::default()).await.unwrap();
    assert!(pods.get_opt("short").await.unwrap().is_none());
    sim.shutdown().await;
}
