//! The renderers from inline YAML, with no API server: which children each resource gets, what
//! they carry, and a snapshot of one complete pipeline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use jiff::Timestamp;
use medplat::api::access_policy::AccessPolicy;
use medplat::api::data_source::{DataSource, DataSourceSpec};
use medplat::api::pipeline::Pipeline;
use medplat::api::resolved::{Mounts, ResolvedPipeline};
use medplat::api::storage_tier::{StorageTier, StorageTierSpec};
use medplat::policy::{NamedPolicy, PipelineContext, PipelineDecision, evaluate_pipeline};
use medplat::render::Child;
use medplat::render::access_policy::render_access_policy_children;
use medplat::render::data_source::render_data_source_children;
use medplat::render::pipeline::{PipelineRenderInput, render_pipeline_children, run_job_name};
use medplat::render::pod_security::restricted_violations;
use medplat::render::settings::WorkloadSettings;
use medplat::render::tier_claim::render_tier_claim;
use serde_json::Value;

fn now() -> Timestamp {
    "2026-11-28T12:00:00Z".parse().unwrap()
}

const TIERS: &str = r#"
raw: {domain: clinical, maxLevel: L4, encryption: required, retentionDays: 3650, backend: {volume: {storageClassName: enc, size: 10Gi}}}
curated: {domain: clinical, maxLevel: L3, encryption: required, retentionDays: 3650, backend: {volume: {storageClassName: enc, size: 10Gi}}}
open: {domain: clinical, maxLevel: L2, encryption: none, retentionDays: 365, backend: {objectStore: {endpoint: "https://10.9.8.7:9000", bucket: open-data, accessKeyId: {name: s3, key: id}, secretAccessKey: {name: s3, key: secret}}}}
"#;

const SOURCES: &str = r#"
lis:
  system: LIS
  connector: {files: {location: {tier: raw, path: lis}, format: csv}}
  classification: {level: L4, domain: clinical, categories: [HealthStatus]}
  fields:
    - {path: name, identifier: direct, category: PersonalAttributes}
    - {path: birth, identifier: quasi, category: PersonalAttributes}
    - {path: value, identifier: none, category: HealthStatus}
"#;

const POLICY: &str = r#"
apiVersion: medplat.io/v1alpha1
kind: AccessPolicy
metadata: {name: runners, namespace: clinical, uid: pol-1}
spec:
  purpose: Treatment
  subjects: [{kind: ServiceAccount, name: medplat-pipeline-lab}]
  rules:
    - {resources: {kind: DataSource, names: [lis]}, verbs: [read]}
    - {resources: {kind: StorageTier, names: [curated, raw, open]}, verbs: [write]}
"#;

fn tiers() -> BTreeMap<String, StorageTierSpec> {
    serde_yaml::from_str(TIERS).unwrap()
}

fn sources() -> BTreeMap<String, DataSourceSpec> {
    serde_yaml::from_str(SOURCES).unwrap()
}

fn pipeline(yaml: &str) -> Pipeline {
    serde_yaml::from_str(yaml).unwrap()
}

fn decide(p: &Pipeline, policies: &[AccessPolicy]) -> PipelineDecision {
    let named: Vec<NamedPolicy<'_>> = policies
        .iter()
        .map(|a| NamedPolicy {
            namespace: "clinical",
            name: a.metadata.name.as_deref().unwrap(),
            spec: &a.spec,
        })
        .collect();
    let sa = p.service_account();
    let (s, t) = (sources(), tiers());
    evaluate_pipeline(
        &PipelineContext {
            namespace: "clinical",
            name: p.metadata.name.as_deref().unwrap(),
            spec: &p.spec,
            service_account: &sa,
            sources: &s,
            tiers: &t,
            policies: &named,
        },
        now(),
    )
}

fn resolved(p: &Pipeline) -> ResolvedPipeline {
    let sources: Vec<DataSource> = sources()
        .into_iter()
        .map(|(n, spec)| {
            let mut d = DataSource::new(&n, spec);
            d.metadata.namespace = Some("clinical".into());
            d
        })
        .collect();
    let tiers: Vec<StorageTier> = tiers()
        .into_iter()
        .map(|(n, spec)| StorageTier::new(&n, spec))
        .collect();
    ResolvedPipeline::build(p, &sources, &tiers, &[], &Mounts::in_cluster()).unwrap()
}

fn render(
    p: &Pipeline,
    d: &PipelineDecision,
    cronjob_exists: bool,
    request: Option<&str>,
) -> Vec<Child> {
    let r = resolved(p);
    render_pipeline_children(&PipelineRenderInput {
        pipeline: p,
        decision: d,
        resolved: Some(&r),
        settings: &WorkloadSettings::default(),
        may_run: d.allowed(),
        cronjob_exists,
        pending_run_request: request,
    })
    .unwrap()
}

fn kinds(children: &[Child]) -> Vec<String> {
    children
        .iter()
        .map(|c| format!("{}/{}", c.kind, c.name))
        .collect()
}

fn find<'a>(children: &'a [Child], kind: &str) -> &'a Value {
    &children.iter().find(|c| c.kind == kind).unwrap().object
}

fn pod_spec(template_owner: &Value) -> k8s_openapi::api::core::v1::PodSpec {
    let spec = template_owner
        .pointer("/spec/jobTemplate/spec/template/spec")
        .or_else(|| template_owner.pointer("/spec/template/spec"))
        .unwrap();
    serde_json::from_value(spec.clone()).unwrap()
}

const CURATED: &str = r#"
apiVersion: medplat.io/v1alpha1
kind: Pipeline
metadata: {name: lab, namespace: clinical, uid: pipe-1, labels: {argocd.argoproj.io/instance: hospital}}
spec:
  purpose: Treatment
  sources: [lis]
  schedule: "0 2 * * *"
  steps:
    - deidentify:
        keys: {secretName: lab-keys}
        rules:
          - {identifier: direct, method: cryptoHash}
          - {identifier: quasi, method: keep}
          - {identifier: none, method: keep}
  sink: {tier: curated, dataset: lab/results, format: parquet}
"#;

#[test]
fn a_compliant_scheduled_pipeline_gets_its_children() {
    let p = pipeline(CURATED);
    let d = decide(&p, &[serde_yaml::from_str(POLICY).unwrap()]);
    assert!(d.allowed(), "{:?}", d.violations);
    let children = render(&p, &d, false, None);
    assert_eq!(
        kinds(&children),
        vec![
            "ServiceAccount/medplat-pipeline-lab",
            "NetworkPolicy/medplat-pipeline-lab",
            "ConfigMap/medplat-pipeline-lab",
            "CronJob/medplat-pipeline-lab"
        ]
    );
    let cj = find(&children, "CronJob");
    assert_eq!(cj["spec"]["suspend"], false);
    assert_eq!(cj["spec"]["concurrencyPolicy"], "Forbid");
    let labels = &cj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"];
    assert_eq!(labels["medplat.io/level"], "L4", "the pod handles L4 input");
    assert_eq!(labels["medplat.io/pipeline"], "lab");
    assert_eq!(labels["medplat.io/domain"], "clinical");
    assert_eq!(labels["source.medplat.io/lis"], "read");
    for c in &children {
        let l = &c.object["metadata"]["labels"];
        assert_eq!(
            l["app.kubernetes.io/managed-by"],
            "medplat",
            "{}",
            c.display()
        );
        assert!(
            l.get("argocd.argoproj.io/instance").is_none(),
            "parent labels leak into {}",
            c.display()
        );
        assert_eq!(c.object["metadata"]["ownerReferences"][0]["uid"], "pipe-1");
    }
    let spec = pod_spec(cj);
    let affinity = serde_json::to_value(spec.affinity.as_ref().unwrap()).unwrap();
    assert_eq!(
        affinity.pointer("/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchExpressions/0/key"),
        Some(&Value::from("medplat.io/hardened"))
    );
    let mounts: Vec<String> = spec.containers[0]
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.mount_path.clone())
        .collect();
    assert!(
        mounts.contains(&"/var/run/secrets/medplat/lab-keys".to_string()),
        "{mounts:?}"
    );
    assert!(
        mounts.contains(&"/data/tiers/raw".to_string())
            && mounts.contains(&"/data/tiers/curated".to_string())
    );
    assert_eq!(restricted_violations(&spec), Vec::<String>::new());
}

#[test]
fn a_non_compliant_pipeline_gets_no_job_and_an_existing_cronjob_is_suspended() {
    let p = pipeline(CURATED);
    let d = decide(&p, &[]);
    assert!(!d.allowed());
    let fresh = render(&p, &d, false, None);
    assert!(
        !kinds(&fresh)
            .iter()
            .any(|k| k.starts_with("CronJob") || k.starts_with("Job")),
        "{:?}",
        kinds(&fresh)
    );
    let existing = render(&p, &d, true, None);
    assert_eq!(find(&existing, "CronJob")["spec"]["suspend"], true);
}

#[test]
fn an_on_demand_request_becomes_one_deterministically_named_job() {
    let mut p = pipeline(CURATED);
    p.spec.schedule = None;
    p.spec.parallelism = 4;
    let d = decide(&p, &[serde_yaml::from_str(POLICY).unwrap()]);
    let children = render(&p, &d, false, Some("2026-11-28T10:00:00Z"));
    let job = find(&children, "Job");
    assert_eq!(
        job["metadata"]["name"],
        run_job_name("lab", "2026-11-28T10:00:00Z")
    );
    assert_eq!(job["spec"]["completionMode"], "Indexed");
    assert_eq!(job["spec"]["parallelism"], 4);
    assert_ne!(run_job_name("lab", "a"), run_job_name("lab", "b"));
    assert!(
        !kinds(&render(&p, &d, false, None))
            .iter()
            .any(|k| k.starts_with("Job"))
    );
}

#[test]
fn spec_resources_size_the_worker_and_unset_amounts_keep_the_defaults() {
    let d = |p: &Pipeline| decide(p, &[serde_yaml::from_str(POLICY).unwrap()]);
    let worker_resources = |p: &Pipeline| {
        let children = render(p, &d(p), false, None);
        let spec = pod_spec(find(&children, "CronJob"));
        let r = spec.containers[0].resources.clone().unwrap();
        let amount = |m: &Option<
            BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
        >,
                      k: &str| { m.as_ref().unwrap()[k].0.clone() };
        [
            amount(&r.requests, "cpu"),
            amount(&r.requests, "memory"),
            amount(&r.limits, "cpu"),
            amount(&r.limits, "memory"),
        ]
    };
    assert_eq!(
        worker_resources(&pipeline(CURATED)),
        ["100m", "256Mi", "2", "2Gi"]
    );
    let sized = CURATED.replace(
        "  schedule:",
        "  resources: {requests: {cpu: '1', memory: 6Gi}, limits: {cpu: '4'}}\n  schedule:",
    );
    assert_eq!(
        worker_resources(&pipeline(&sized)),
        ["1", "6Gi", "4", "6Gi"]
    );
}

#[test]
fn low_level_pipelines_need_no_hardened_nodes_and_object_store_sinks_get_egress() {
    let p = pipeline(
        r#"
apiVersion: medplat.io/v1alpha1
kind: Pipeline
metadata: {name: lab, namespace: clinical, uid: pipe-2}
spec:
  purpose: Treatment
  sources: [lis]
  schedule: "@daily"
  steps:
    - deidentify:
        rules: [{identifier: direct, method: redact}, {field: birth, method: generalize, generalize: {to: year}}, {identifier: none, method: keep}]
        privacy: {k: 5}
  sink: {tier: open, dataset: out}
"#,
    );
    let d = decide(&p, &[serde_yaml::from_str(POLICY).unwrap()]);
    assert!(d.allowed(), "{:?}", d.violations);
    let children = render(&p, &d, false, None);
    // The pod still handles L4 input, so it still needs hardened nodes.
    assert!(pod_spec(find(&children, "CronJob")).affinity.is_some());
    let np = find(&children, "NetworkPolicy");
    assert_eq!(
        np["spec"]["policyTypes"],
        serde_json::json!(["Ingress", "Egress"])
    );
    assert_eq!(
        np["spec"]["egress"][1]["to"][0]["ipBlock"]["cidr"],
        "10.9.8.7/32"
    );
    assert_eq!(np["spec"]["egress"][1]["ports"][0]["port"], 9000);
}

#[test]
fn the_complete_pipeline_matches_its_snapshot() {
    let p = pipeline(CURATED);
    let d = decide(&p, &[serde_yaml::from_str(POLICY).unwrap()]);
    let children = render(&p, &d, false, None);
    let mut yaml = String::new();
    for c in &children {
        yaml.push_str("---\n");
        yaml.push_str(&serde_yaml::to_string(&c.object).unwrap());
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots/pipeline_lab_children.yaml");
    if std::env::var_os("MEDPLAT_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &yaml).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        expected == yaml,
        "rendered children differ from {}; rerun with MEDPLAT_UPDATE_SNAPSHOTS=1 and review the diff",
        path.display()
    );
}

#[test]
fn data_source_egress_is_pinned_by_cidr_or_explained() {
    let pinned: DataSource = serde_yaml::from_str(
        r#"
apiVersion: medplat.io/v1alpha1
kind: DataSource
metadata: {name: his, namespace: clinical, uid: ds-1}
spec:
  system: HIS
  connector: {postgres: {host: his-db.local, port: 5432, database: his, table: patient, cidr: 10.20.0.15/32}}
  credentials: {secretName: his-db}
  classification: {level: L4, domain: clinical}
  fields: []
"#,
    )
    .unwrap();
    let out = render_data_source_children(&pinned, &WorkloadSettings::default()).unwrap();
    assert_eq!(
        kinds(&out.children),
        vec![
            "ServiceAccount/medplat-source-his",
            "NetworkPolicy/medplat-source-his"
        ]
    );
    let np = &out.children[1].object;
    assert_eq!(
        np["spec"]["podSelector"]["matchLabels"]["source.medplat.io/his"],
        "read"
    );
    assert_eq!(
        np["spec"]["egress"][1]["to"][0]["ipBlock"]["cidr"],
        "10.20.0.15/32"
    );
    assert!(out.egress_limit.is_none());

    let mut dns = pinned.clone();
    dns.spec.connector.postgres.as_mut().unwrap().cidr = None;
    let out = render_data_source_children(&dns, &WorkloadSettings::default()).unwrap();
    assert!(
        out.egress_limit
            .unwrap()
            .contains("his-db.local is a DNS name")
    );
}

#[test]
fn an_hl7_source_gets_a_restricted_listener_on_hardened_nodes() {
    let ds: DataSource = serde_yaml::from_str(
        r#"
apiVersion: medplat.io/v1alpha1
kind: DataSource
metadata: {name: adt, namespace: clinical, uid: ds-2}
spec:
  system: HIS
  connector: {hl7v2: {port: 2575, charset: GB18030, landing: {tier: raw, path: adt/inbox}, messageTypes: ["ADT^A01"]}}
  classification: {level: L4, domain: clinical}
  fields: []
"#,
    )
    .unwrap();
    let out = render_data_source_children(&ds, &WorkloadSettings::default()).unwrap();
    assert_eq!(
        kinds(&out.children),
        vec![
            "ServiceAccount/medplat-source-adt",
            "Deployment/medplat-source-adt",
            "Service/medplat-source-adt",
            "NetworkPolicy/medplat-source-adt-listener"
        ]
    );
    let deploy = find(&out.children, "Deployment");
    let spec = pod_spec(deploy);
    assert_eq!(restricted_violations(&spec), Vec::<String>::new());
    assert!(spec.affinity.is_some());
    let args = spec.containers[0].args.clone().unwrap();
    assert!(
        args.windows(2).any(|w| w == ["--charset", "GB18030"]),
        "{args:?}"
    );
    assert!(
        args.windows(2)
            .any(|w| w == ["--landing-dir", "/data/tiers/raw/adt/inbox"]),
        "{args:?}"
    );
    assert_eq!(
        find(&out.children, "Service")["spec"]["ports"][0]["port"],
        2575
    );
}

#[test]
fn access_policy_children_follow_the_grants_live_at_the_instant() {
    let policy: AccessPolicy = serde_yaml::from_str(
        r#"
apiVersion: medplat.io/v1alpha1
kind: AccessPolicy
metadata: {name: research, namespace: clinical, uid: pol-2}
spec:
  purpose: Research
  subjects: [{kind: Group, name: researchers}, {kind: ServiceAccount, name: extract}]
  rules:
    - resources: {kind: StorageTier, names: [open]}
      verbs: [read]
      constraints: {deidentifiedOnly: true, validUntil: "2026-12-01T00:00:00Z"}
    - resources: {kind: DataSource, classification: {domains: [clinical], maxLevel: L4}}
      verbs: [read]
      constraints: {validUntil: "2026-11-01T00:00:00Z"}
"#,
    )
    .unwrap();
    let (s, t) = (sources(), tiers());
    let out = render_access_policy_children(&policy, &s, &t, now()).unwrap();
    assert_eq!((out.active, out.expired), (1, 1));
    assert_eq!(out.expiring_soon.len(), 1, "expires in 3 days: warn");
    assert_eq!(
        out.next_expiry,
        Some("2026-12-01T00:00:00Z".parse().unwrap())
    );
    let role = find(&out.children, "Role");
    assert_eq!(
        role["rules"].as_array().unwrap().len(),
        1,
        "the expired DataSource rule is gone"
    );
    assert_eq!(role["rules"][0]["resourceNames"][0], "medplat-tier-open");
    let verbs = role["rules"][0]["verbs"].as_array().unwrap();
    assert!(
        verbs
            .iter()
            .all(|v| ["get", "list", "watch"].contains(&v.as_str().unwrap()))
    );
    let rb = find(&out.children, "RoleBinding");
    assert_eq!(rb["subjects"][1]["namespace"], "clinical");
    let bundle: Value = serde_json::from_str(
        find(&out.children, "ConfigMap")["data"]["bundle.json"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(bundle["grants"].as_array().unwrap().len(), 1);

    let after: Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
    let out = render_access_policy_children(&policy, &s, &t, after).unwrap();
    assert_eq!(out.active, 0);
    assert!(
        !kinds(&out.children)
            .iter()
            .any(|k| k.starts_with("RoleBinding") || k.starts_with("Role/")),
        "{:?}",
        kinds(&out.children)
    );
}

#[test]
fn a_retained_tier_claim_has_no_owner_and_a_deleted_one_is_owned_by_its_tier() {
    let mut tier: StorageTier = serde_yaml::from_str(
        "apiVersion: medplat.io/v1alpha1\nkind: StorageTier\nmetadata: {name: raw, uid: tier-1}\nspec: {domain: clinical, maxLevel: L4, encryption: required, retentionDays: 30, backend: {volume: {storageClassName: enc, size: 10Gi}}}",
    )
    .unwrap();
    let retained = render_tier_claim(&tier, "clinical").unwrap().unwrap();
    assert!(retained.object["metadata"].get("ownerReferences").is_none());
    assert_eq!(retained.object["spec"]["storageClassName"], "enc");
    tier.spec.deletion_policy = medplat::api::storage_tier::DeletionPolicy::Delete;
    let deleted = render_tier_claim(&tier, "clinical").unwrap().unwrap();
    assert_eq!(
        deleted.object["metadata"]["ownerReferences"][0]["uid"],
        "tier-1"
    );
}
