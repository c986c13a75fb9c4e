//! Two operator replicas with leader election against kubesim: exactly one reconciles; when
//! it dies without releasing its Lease, the other takes over within the Lease duration, and
//! the handover rewrites no child with different content.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::{Duration, Instant};

use futures::FutureExt;
use medplat::cli::run::user_agent;
use medplat::controller::Operator;
use medplat::controller::leader::{LeaderConfig, run_as_leader};
use medplat_integration::{Cluster, condition, eventually, test_settings};
use serde_json::{Value, json};

const LEASE: Duration = Duration::from_secs(4);

struct Replica {
    task: tokio::task::JoinHandle<()>,
}

fn start_replica(c: &Cluster, id: &str) -> Replica {
    start_replica_with(c, id, LEASE, Duration::from_secs(1))
}

fn start_replica_with(c: &Cluster, id: &str, duration: Duration, grace: Duration) -> Replica {
    let mut config = c.sim.kube_config();
    config.headers.push(user_agent(id));
    let client = kube::Client::try_from(config).unwrap();
    let (operator, watches) = Operator::start_caches(client.clone(), test_settings()).unwrap();
    let leader = LeaderConfig {
        namespace: "medplat-system".into(),
        name: "medplat-operator".into(),
        identity: id.into(),
        duration,
        grace,
    };
    let never = futures::future::pending::<()>().boxed().shared();
    let task = tokio::spawn(async move {
        let watches = tokio::spawn(watches);
        let _ = run_as_leader(client, leader, never, |stop| {
            operator.controllers(stop).boxed()
        })
        .await;
        watches.abort();
    });
    Replica { task }
}

async fn holder(c: &Cluster) -> Option<String> {
    let lease = c
        .get(
            "coordination.k8s.io/v1",
            "Lease",
            Some("medplat-system"),
            "medplat-operator",
        )
        .await?;
    lease["spec"]["holderIdentity"].as_str().map(str::to_string)
}

/// Every medplat-managed child: `kind ns/name` → its desired-content hash and spec-ish body.
async fn children(c: &Cluster) -> BTreeMap<String, (String, Value)> {
    let mut out = BTreeMap::new();
    for (v, k) in [
        ("v1", "ServiceAccount"),
        ("v1", "ConfigMap"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
        ("batch/v1", "CronJob"),
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("rbac.authorization.k8s.io/v1", "Role"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ] {
        let list = c
            .api(v, k, Some("clinical"))
            .list(&kube::api::ListParams::default().labels("app.kubernetes.io/managed-by=medplat"))
            .await
            .unwrap();
        for o in list.items {
            let hash = o
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("medplat.io/applied-hash").cloned())
                .unwrap_or_default();
            let mut body = o.data.clone();
            if let Some(m) = body.as_object_mut() {
                m.remove("status");
            }
            out.insert(
                format!("{k} {}", o.metadata.name.clone().unwrap_or_default()),
                (hash, body),
            );
        }
    }
    out
}

#[tokio::test]
async fn one_replica_leads_and_the_other_takes_over_when_it_dies() {
    let c = Cluster::start(Cluster::default_nodes()).await;
    c.apply_yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: medplat-system}")
        .await;
    c.apply_hospital(&["Platform"]).await;

    let a = start_replica(&c, "replica-a");
    let first = eventually(Duration::from_secs(10), "a leader", || async {
        holder(&c).await
    })
    .await;
    let b = start_replica(&c, "replica-b");
    let (leader, follower, follower_id) = if first == "replica-a" {
        (a, b, "replica-b")
    } else {
        (b, a, "replica-a")
    };

    eventually(Duration::from_secs(30), "every pipeline Ready", || async {
        for p in [
            "lab-results-curated",
            "research-extract",
            "adt-curated",
            "his-patients-sync",
        ] {
            let o = c
                .get("medplat.io/v1alpha1", "Pipeline", Some("clinical"), p)
                .await?;
            if condition(&o, "Ready")?.0 != "True" {
                return None;
            }
        }
        Some(())
    })
    .await;
    // Let the leader settle, then check the follower wrote nothing but its Lease attempts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let follower_writes: Vec<String> = c
        .sim
        .request_log()
        .into_iter()
        .filter(|r| r.is_write() && r.user_agent.contains(follower_id) && r.resource != "leases")
        .map(|r| format!("{} {}", r.verb, r.path))
        .collect();
    assert!(
        follower_writes.is_empty(),
        "the follower wrote:\n{}",
        follower_writes.join("\n")
    );
    let before = children(&c).await;
    assert!(before.len() >= 10, "{} children", before.len());

    // The leader dies without releasing the Lease.
    leader.task.abort();
    let died = Instant::now();
    // A change elsewhere (a new namespace), so no existing child legitimately changes.
    c.apply_yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: lab2}")
        .await;
    c.apply(&json!({"apiVersion": "medplat.io/v1alpha1", "kind": "DataSource",
        "metadata": {"name": "late-lis", "namespace": "lab2"},
        "spec": {"system": "LIS", "connector": {"files": {"location": {"tier": "raw-l4", "path": "lis/late"}, "format": "csv"}},
                 "classification": {"level": "L4", "domain": "clinical"}, "fields": []}}))
        .await;
    eventually(
        LEASE + Duration::from_secs(6),
        "the follower to take the Lease",
        || async { (holder(&c).await.as_deref() == Some(follower_id)).then_some(()) },
    )
    .await;
    let took = died.elapsed();
    assert!(
        took <= LEASE + Duration::from_secs(3),
        "takeover took {took:?}, the Lease lasts {LEASE:?}"
    );
    eventually(
        Duration::from_secs(20),
        "the new leader to reconcile a new source",
        || async {
            let o = c
                .get(
                    "medplat.io/v1alpha1",
                    "DataSource",
                    Some("lab2"),
                    "late-lis",
                )
                .await?;
            (condition(&o, "Ready")?.0 == "True").then_some(())
        },
    )
    .await;

    // Every child the old leader made is unchanged in content.
    let after = children(&c).await;
    let mut changed = Vec::new();
    for (key, (hash, body)) in &before {
        match after.get(key) {
            Some((h, b)) if h == hash && strip_volatile(b) == strip_volatile(body) => {}
            Some(_) => changed.push(format!("{key}: content changed")),
            None => changed.push(format!("{key}: gone")),
        }
    }
    assert!(
        changed.is_empty(),
        "handover rewrote children:\n{}",
        changed.join("\n")
    );
    follower.task.abort();
}

/// Under a flaky API server a replica retries a failed creation of the Lease instead of ending,
/// and a leader keeps its term through failed renewals as long as a retry gets through in time,
/// instead of handing over (and making the next leader reconcile every parent) on the second
/// error.
#[tokio::test]
async fn a_leader_rides_out_failed_lease_requests() {
    let c = Cluster::start(Cluster::default_nodes()).await;
    c.apply_yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: medplat-system}")
        .await;
    c.sim.faults().fail_next(2, "create", "leases", 500);
    // The installed ratio of grace to duration (one third).
    let a = start_replica_with(
        &c,
        "replica-a",
        Duration::from_secs(6),
        Duration::from_secs(2),
    );
    eventually(Duration::from_secs(10), "a leader", || async {
        (holder(&c).await.as_deref() == Some("replica-a")).then_some(())
    })
    .await;
    assert!(c.sim.faults().rules().is_empty());
    // The next two renewals fail, as a flapping API server would answer them.
    c.sim.faults().fail_next(2, "patch", "leases", 500);
    let failed_by = Instant::now() + Duration::from_secs(12);
    while !c.sim.faults().rules().is_empty() && Instant::now() < failed_by {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        c.sim.faults().rules().is_empty(),
        "the leader never tried to renew"
    );
    // Past the next renewal too, so the term must have been extended after the failures.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        !a.task.is_finished(),
        "the leader stopped leading after two failed renewals"
    );
    let lease = c
        .get(
            "coordination.k8s.io/v1",
            "Lease",
            Some("medplat-system"),
            "medplat-operator",
        )
        .await
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "replica-a");
    let renewed = jiff::Timestamp::from_str(lease["spec"]["renewTime"].as_str().unwrap()).unwrap();
    let age = jiff::Timestamp::now().duration_since(renewed);
    assert!(
        age < jiff::SignedDuration::from_secs(6),
        "the Lease was last renewed {age:?} ago"
    );
    a.task.abort();
}

fn strip_volatile(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in ["resourceVersion", "managedFields", "generation"] {
            meta.remove(k);
        }
    }
    v
}
