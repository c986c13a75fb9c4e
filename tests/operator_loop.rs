//! The operator's controllers against kubesim, through their real watches: children appear,
//! follow updates, come back when deleted or edited, are pruned when no longer desired;
//! references are verified; grants expire on time; an idle operator writes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use medplat_integration::{Cluster, condition, eventually, test_settings};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(20);

const TIERS: &str = r#"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: encrypted-ssd, annotations: {medplat.io/encrypted: "true"}}
provisioner: csi.test
---
apiVersion: medplat.io/v1alpha1
kind: StorageTier
metadata: {name: raw-l4}
spec:
  domain: clinical
  maxLevel: L4
  encryption: required
  retentionDays: 3650
  backend: {volume: {storageClassName: encrypted-ssd, size: 10Gi}}
"#;

const ADT: &str = r#"
apiVersion: medplat.io/v1alpha1
kind: DataSource
metadata: {name: adt, namespace: clinical}
spec:
  system: HIS
  connector: {hl7v2: {port: 2575, charset: GB18030, landing: {tier: raw-l4, path: adt/inbox}}}
  classification: {level: L4, domain: clinical}
  fields: [{path: PID.3, identifier: direct, category: PersonalAttributes}]
"#;

async fn child(c: &Cluster, api_version: &str, kind: &str, name: &str) -> Option<Value> {
    c.get(api_version, kind, Some("clinical"), name).await
}

#[tokio::test]
async fn a_push_source_gets_its_children_which_follow_updates_and_come_back() {
    let c = Cluster::start(Cluster::default_nodes()).await;
    c.apply_yaml(TIERS).await;
    c.apply_yaml(ADT).await;
    let op = c.start_operator(test_settings());

    for (v, k) in [
        ("v1", "ServiceAccount"),
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
    ] {
        let name = if k == "NetworkPolicy" {
            "medplat-source-adt-listener"
        } else {
            "medplat-source-adt"
        };
        eventually(T, &format!("{k} {name}"), || async {
            child(&c, v, k, name).await
        })
        .await;
    }
    let claim = eventually(T, "the landing tier's claim", || async {
        child(&c, "v1", "PersistentVolumeClaim", "medplat-tier-raw-l4").await
    })
    .await;
    assert!(
        claim["metadata"].get("ownerReferences").is_none(),
        "a Retain tier's claim has no owner"
    );

    let ds = eventually(T, "DataSource Ready", || async {
        let o = c
            .get("medplat.io/v1alpha1", "DataSource", Some("clinical"), "adt")
            .await?;
        (condition(&o, "Ready")?.0 == "True").then_some(o)
    })
    .await;
    assert_eq!(ds["status"]["connector"], "hl7v2");
    assert_eq!(ds["status"]["level"], "L4");
    assert_eq!(
        ds["status"]["observedGeneration"],
        ds["metadata"]["generation"]
    );

    // An update changes the children.
    c.apply(&json!({"apiVersion": "medplat.io/v1alpha1", "kind": "DataSource",
        "metadata": {"name": "adt", "namespace": "clinical"},
        "spec": {"system": "HIS", "connector": {"hl7v2": {"port": 2600, "charset": "GB18030", "landing": {"tier": "raw-l4", "path": "adt/inbox"}}},
                 "classification": {"level": "L4", "domain": "clinical"}, "fields": []}}))
        .await;
    eventually(T, "the Service on the new port", || async {
        let s = child(&c, "v1", "Service", "medplat-source-adt").await?;
        (s["spec"]["ports"][0]["port"] == 2600).then_some(())
    })
    .await;

    // A deleted child comes back; an edited one is reverted.
    c.api("v1", "Service", Some("clinical"))
        .delete("medplat-source-adt", &Default::default())
        .await
        .unwrap();
    eventually(T, "the deleted Service to come back", || async {
        let s = child(&c, "v1", "Service", "medplat-source-adt").await?;
        (s["metadata"]["deletionTimestamp"].is_null()).then_some(())
    })
    .await;
    c.api("v1", "ServiceAccount", Some("clinical"))
        .patch(
            "medplat-source-adt",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"automountServiceAccountToken": true})),
        )
        .await
        .unwrap();
    eventually(T, "the edited ServiceAccount to be reverted", || async {
        let s = child(&c, "v1", "ServiceAccount", "medplat-source-adt").await?;
        (s["automountServiceAccountToken"] == false).then_some(())
    })
    .await;

    // Switching to a files connector prunes the listener's children. A merge patch that nulls
    // hl7v2 is the portable way to swap a one-of (SSA leaves server-defaulted siblings behind).
    c.api("medplat.io/v1alpha1", "DataSource", Some("clinical"))
        .patch(
            "adt",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"connector": {"hl7v2": null,
                "files": {"location": {"tier": "raw-l4", "path": "adt/inbox"}, "format": "hl7v2"}}}})),
        )
        .await
        .unwrap();
    eventually(
        T,
        "the listener Deployment and Service to be pruned",
        || async {
            let d = child(&c, "apps/v1", "Deployment", "medplat-source-adt").await;
            let s = child(&c, "v1", "Service", "medplat-source-adt").await;
            (d.is_none() && s.is_none()).then_some(())
        },
    )
    .await;
    assert!(
        child(&c, "v1", "ServiceAccount", "medplat-source-adt")
            .await
            .is_some()
    );
    op.stop().await;
}

#[tokio::test]
async fn missing_references_are_reported_and_fixed_references_recover() {
    let c = Cluster::start(Cluster::default_nodes()).await;
    c.apply_yaml(
        r#"
apiVersion: medplat.io/v1alpha1
kind: DataSource
metadata: {name: his, namespace: clinical}
spec:
  system: HIS
  connector: {postgres: {host: 127.0.0.1, port: 1, database: his, table: patient}}
  credentials: {secretName: his-db}
  classification: {level: L4, domain: clinical}
  fields: []
"#,
    )
    .await;
    let op = c.start_operator(test_settings());
    let ds = eventually(T, "Ready=False naming the Secret", || async {
        let o = c
            .get("medplat.io/v1alpha1", "DataSource", Some("clinical"), "his")
            .await?;
        let (status, reason, _) = condition(&o, "Ready")?;
        (status == "False" && reason == "SecretNotFound").then_some(o)
    })
    .await;
    assert!(
        condition(&ds, "Ready")
            .unwrap()
            .2
            .contains("Secret clinical/his-db")
    );
    assert_eq!(condition(&ds, "Stalled").unwrap().0, "True");
    assert_eq!(
        condition(&ds, "Reachable").unwrap().0,
        "False",
        "nothing listens on port 1"
    );
    assert!(
        c.events("clinical")
            .await
            .iter()
            .any(|e| e["reason"] == "SecretNotFound" && e["type"] == "Warning"),
        "a Warning Event names the problem"
    );

    c.apply(&json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "his-db", "namespace": "clinical"},
        "stringData": {"username": "u", "password": "p"}}))
        .await;
    eventually(T, "Ready=True once the Secret exists", || async {
        let o = c
            .get("medplat.io/v1alpha1", "DataSource", Some("clinical"), "his")
            .await?;
        (condition(&o, "Ready")?.0 == "True").then_some(())
    })
    .await;
    op.stop().await;
}

#[tokio::test]
async fn a_tier_verifies_its_storage_class_and_retain_keeps_claims_after_deletion() {
    let c = Cluster::start(Cluster::default_nodes()).await;
    c.apply_yaml(
        r#"
apiVersion: medplat.io/v1alpha1
kind: StorageTier
metadata: {name: raw-l4}
spec:
  domain: clinical
  maxLevel: L4
  encryption: required
  retentionDays: 3650
  backend: {volume: {storageClassName: plain-hdd, size: 10Gi}}
"#,
    )
    .await;
    let op = c.start_operator(test_settings());
    eventually(T, "BackendVerified=False: no such class", || async {
        let o = c
            .get("medplat.io/v1alpha1", "StorageTier", None, "raw-l4")
            .await?;
        (condition(&o, "BackendVerified")?.1 == "StorageClassNotFound").then_some(())
    })
    .await;
    c.apply_yaml("apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: plain-hdd}\nprovisioner: csi.test").await;
    eventually(T, "BackendVerified=False: class not encrypted", || async {
        let o = c
            .get("medplat.io/v1alpha1", "StorageTier", None, "raw-l4")
            .await?;
        (condition(&o, "BackendVerified")?.1 == "StorageClassNotEncrypted").then_some(())
    })
    .await;
    c.apply_yaml("apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: plain-hdd, annotations: {medplat.io/encrypted: \"true\"}}\nprovisioner: csi.test").await;
    eventually(T, "Ready once the class is marked encrypted", || async {
        let o = c
            .get("medplat.io/v1alpha1", "StorageTier", None, "raw-l4")
            .await?;
        (condition(&o, "Ready")?.0 == "True").then_some(())
    })
    .await;

    // A push source makes the tier's claim in its namespace; the tier lists it.
    c.apply_yaml(ADT).await;
    eventually(T, "the tier to list its claim", || async {
        let o = c
            .get("medplat.io/v1alpha1", "StorageTier", None, "raw-l4")
            .await?;
        (o["status"]["volumeClaims"][0] == "clinical/medplat-tier-raw-l4").then_some(())
    })
    .await;
    c.api("medplat.io/v1alpha1", "StorageTier", None)
        .delete("raw-l4", &Default::default())
        .await
        .unwrap();
    eventually(T, "the tier to be gone", || async {
        c.get("medplat.io/v1alpha1", "StorageTier", None, "raw-l4")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        child(&c, "v1", "PersistentVolumeClaim", "medplat-tier-raw-l4")
            .await
            .is_some(),
        "deletionPolicy Retain keeps the data's claim"
    );
    op.stop().await;
}

#[tokio::test]
async fn a_grant_is_removed_exactly_when_it_expires() {
    let c = Cluster::start(Cluster::default_nodes()).await;
    let until = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(4);
    c.apply_yaml(TIERS).await;
    c.apply(&json!({"apiVersion": "medplat.io/v1alpha1", "kind": "AccessPolicy",
        "metadata": {"name": "research", "namespace": "clinical"},
        "spec": {"purpose": "Research", "subjects": [{"kind": "Group", "name": "researchers"}],
                 "rules": [{"resources": {"kind": "StorageTier", "names": ["raw-l4"]}, "verbs": ["read"],
                            "constraints": {"validUntil": until.to_string()}}]}}))
        .await;
    let op = c.start_operator(test_settings());
    let rb = eventually(T, "the RoleBinding", || async {
        child(
            &c,
            "rbac.authorization.k8s.io/v1",
            "RoleBinding",
            "medplat-access-research",
        )
        .await
    })
    .await;
    assert_eq!(rb["subjects"][0]["name"], "researchers");
    let policy = eventually(T, "an expiring-soon Warning", || async {
        c.events("clinical")
            .await
            .iter()
            .any(|e| e["reason"] == "GrantExpiringSoon")
            .then_some(())
    });
    policy.await;
    eventually(
        Duration::from_secs(15),
        "the RoleBinding to be removed at validUntil",
        || async {
            child(
                &c,
                "rbac.authorization.k8s.io/v1",
                "RoleBinding",
                "medplat-access-research",
            )
            .await
            .is_none()
            .then_some(())
        },
    )
    .await;
    let removed_at = jiff::Timestamp::now();
    let late = removed_at.duration_since(until);
    assert!(
        late < jiff::SignedDuration::from_secs(2),
        "removed {late:?} after validUntil"
    );
    assert!(removed_at >= until, "removed before validUntil");
    let status = c
        .get(
            "medplat.io/v1alpha1",
            "AccessPolicy",
            Some("clinical"),
            "research",
        )
        .await
        .unwrap();
    eventually(T, "status to count the expired grant", || async {
        let s = c
            .get(
                "medplat.io/v1alpha1",
                "AccessPolicy",
                Some("clinical"),
                "research",
            )
            .await?;
        (s["status"]["expiredGrants"] == 1 && s["status"]["activeGrants"] == 0).then_some(())
    })
    .await;
    drop(status);
    op.stop().await;
}

#[tokio::test]
async fn an_idle_operator_writes_nothing() {
    let c = Cluster::start(Cluster::default_nodes()).await;
    c.apply_yaml(TIERS).await;
    c.apply_yaml(ADT).await;
    c.apply(&json!({"apiVersion": "medplat.io/v1alpha1", "kind": "AccessPolicy",
        "metadata": {"name": "clinicians", "namespace": "clinical"},
        "spec": {"purpose": "Treatment", "subjects": [{"kind": "Group", "name": "clinicians"}],
                 "rules": [{"resources": {"kind": "DataSource", "classification": {"domains": ["clinical"]}}, "verbs": ["read"]}]}}))
        .await;
    let op = c.start_operator(test_settings());
    eventually(T, "everything Ready", || async {
        let ds = c
            .get("medplat.io/v1alpha1", "DataSource", Some("clinical"), "adt")
            .await?;
        let tier = c
            .get("medplat.io/v1alpha1", "StorageTier", None, "raw-l4")
            .await?;
        let pol = c
            .get(
                "medplat.io/v1alpha1",
                "AccessPolicy",
                Some("clinical"),
                "clinicians",
            )
            .await?;
        let ready = |o: &Value| condition(o, "Ready").is_some_and(|r| r.0 == "True");
        (ready(&ds) && ready(&tier) && ready(&pol)).then_some(())
    })
    .await;
    // Let the listener's pods settle (kubesim's kubelet moves them to Running) and every
    // resync pass over them, then watch a window several resyncs long.
    tokio::time::sleep(Duration::from_secs(8)).await;
    c.sim.clear_request_log();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let writes: Vec<String> = c
        .sim
        .request_log()
        .into_iter()
        .filter(|r| r.is_write())
        .map(|r| {
            format!(
                "{} {} (manager {:?}, agent {:?})",
                r.verb, r.path, r.field_manager, r.user_agent
            )
        })
        .collect();
    assert!(
        writes.is_empty(),
        "an idle operator wrote:\n{}",
        writes.join("\n")
    );
    let reads = c.sim.request_log().len();
    assert!(
        reads > 0,
        "the operator should still be resyncing (probes, reads)"
    );
    op.stop().await;
}
