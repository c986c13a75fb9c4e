//! The CEL `x-kubernetes-validations` of every CRD, evaluated locally with kube's CEL support:
//! each rule gets an object that passes and one that fails with the expected message and path.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kube::core::cel::Validator;
use serde_json::Value;

/// The `openAPIV3Schema` of the CRD whose kind is `kind`.
fn schema(kind: &str) -> Value {
    let crd = medplat::api::all_crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap();
    serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

fn yaml(s: &str) -> Value {
    serde_yaml::from_str(s).unwrap()
}

/// Validates `object` and returns `(fieldPath, message)` of each failure.
fn failures(kind: &str, object: &Value) -> Vec<(String, String)> {
    match Validator::new().validate(&schema(kind), object, None) {
        Ok(()) => vec![],
        Err(errs) => errs
            .iter()
            .map(|e| (e.field_path.clone(), e.message.clone()))
            .collect(),
    }
}

const TIER: &str = "apiVersion: medplat.io/v1alpha1\nkind: StorageTier\nmetadata: {name: t}\nspec:\n  domain: clinical\n  maxLevel: L4\n  encryption: required\n  retentionDays: 30\n  backend: {volume: {storageClassName: sc, size: 1Gi}}\n";

const SOURCE: &str = "apiVersion: medplat.io/v1alpha1\nkind: DataSource\nmetadata: {name: s, namespace: n}\nspec:\n  system: LIS\n  connector: {files: {location: {tier: raw, path: lis}, format: csv}}\n  classification: {level: L4, domain: clinical, categories: [HealthStatus]}\n  fields: [{path: a, identifier: direct, category: PersonalAttributes}]\n";

const PIPELINE: &str = "apiVersion: medplat.io/v1alpha1\nkind: Pipeline\nmetadata: {name: p, namespace: n}\nspec:\n  purpose: Research\n  sources: [s]\n  sink: {tier: t, dataset: out}\n  steps: []\n";

const PLATFORM: &str = "apiVersion: medplat.io/v1alpha1\nkind: Platform\nmetadata: {name: default}\nspec:\n  logging: {auditTier: audit}\n";

/// Sets `pointer` (a JSON pointer) in a copy of `base` to the YAML `value` (`~` removes it).
fn with(base: &str, pointer: &str, value: &str) -> Value {
    let mut obj = yaml(base);
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let target = obj.pointer_mut(parent).unwrap();
    if value == "~" {
        target.as_object_mut().unwrap().remove(key);
    } else if let Some(arr) = target.as_array_mut() {
        arr[key.parse::<usize>().unwrap()] = yaml(value);
    } else {
        target[key] = yaml(value);
    }
    obj
}

struct Rule {
    kind: &'static str,
    base: &'static str,
    pointer: &'static str,
    bad: &'static str,
    good: &'static str,
    message: &'static str,
}

fn rules() -> Vec<Rule> {
    let r = |kind, base, pointer, bad, good, message| Rule {
        kind,
        base,
        pointer,
        bad,
        good,
        message,
    };
    vec![
        r(
            "StorageTier",
            TIER,
            "/spec/backend",
            "{volume: {storageClassName: sc, size: 1Gi}, objectStore: {endpoint: 'https://s3', bucket: abc, accessKeyId: {name: s, key: a}, secretAccessKey: {name: s, key: b}}}",
            "{volume: {storageClassName: sc, size: 1Gi}}",
            "exactly one of volume or objectStore",
        ),
        r(
            "StorageTier",
            TIER,
            "/spec/backend",
            "{}",
            "{objectStore: {endpoint: 'https://s3', bucket: abc, accessKeyId: {name: s, key: a}, secretAccessKey: {name: s, key: b}}}",
            "exactly one of volume or objectStore",
        ),
        r(
            "StorageTier",
            TIER,
            "/spec/backend",
            "{objectStore: {endpoint: 'https://s3', bucket: abc, accessKeyId: {name: s, key: a}, secretAccessKey: {name: s, key: b}, caBundle: \"-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----\\n-----BEGIN PRIVATE KEY-----\\nMIIE\\n-----END PRIVATE KEY-----\\n\"}}",
            "{objectStore: {endpoint: 'https://s3', bucket: abc, accessKeyId: {name: s, key: a}, secretAccessKey: {name: s, key: b}, caBundle: \"-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----\\n\"}}",
            "never a private key",
        ),
        r(
            "StorageTier",
            TIER,
            "/spec/encryption",
            "none",
            "required",
            "must set encryption: required",
        ),
        r(
            "DataSource",
            SOURCE,
            "/spec/connector",
            "{files: {location: {tier: raw, path: lis}, format: csv}, hl7v2: {landing: {tier: raw, path: adt}}}",
            "{hl7v2: {landing: {tier: raw, path: adt}}}",
            "exactly one of postgres, mysql, fhir, hl7v2 or files",
        ),
        r(
            "DataSource",
            SOURCE,
            "/spec/connector",
            "{postgres: {host: db, port: 5432, database: his, table: t, query: 'select 1'}}",
            "{files: {location: {tier: raw, path: lis}, format: csv}}",
            "exactly one of table or query",
        ),
        r(
            "DataSource",
            SOURCE,
            "/spec/connector",
            "{postgres: {host: db, port: 5432, database: his, table: t}}",
            "{files: {location: {tier: raw, path: lis}, format: csv}}",
            "need spec.credentials",
        ),
        r(
            "DataSource",
            SOURCE,
            "/spec/fields",
            "[{path: a, identifier: direct, category: PersonalAttributes}, {path: a, identifier: none, category: HealthStatus}]",
            "[{path: a, identifier: direct, category: PersonalAttributes}, {path: b, identifier: none, category: HealthStatus}]",
            "field paths in spec.fields must be unique",
        ),
        r(
            "DataSource",
            SOURCE,
            "/spec/classification/categories",
            "[HealthStatus, HealthStatus]",
            "[HealthStatus, PublicHealth]",
            "categories must not repeat",
        ),
        r(
            "Pipeline",
            PIPELINE,
            "/spec/sources",
            "[s, s]",
            "[s, r]",
            "sources must not repeat",
        ),
        r(
            "Pipeline",
            PIPELINE,
            "/spec/steps",
            "[{map: {fields: [{to: a, from: b}]}, cleanse: {rules: [{field: a}]}}]",
            "[{map: {fields: [{to: a, from: b}]}}]",
            "exactly one of map, cleanse, validate, deidentify, link or dedupe",
        ),
        r(
            "Pipeline",
            PIPELINE,
            "/spec/steps",
            "[{map: {fields: [{to: a, from: b, value: c}]}}]",
            "[{map: {fields: [{to: a, value: c}]}}]",
            "exactly one of from, value or template",
        ),
        r(
            "Pipeline",
            PIPELINE,
            "/spec/steps",
            "[{deidentify: {rules: [{field: a, identifier: direct, method: redact}]}}]",
            "[{deidentify: {rules: [{identifier: direct, method: redact}]}}]",
            "exactly one selector",
        ),
        r(
            "Pipeline",
            PIPELINE,
            "/spec/steps",
            "[{deidentify: {rules: [{identifier: direct, method: keep}]}}]",
            "[{deidentify: {rules: [{identifier: quasi, method: keep}]}}]",
            "direct identifiers may only be",
        ),
        r(
            "Pipeline",
            PIPELINE,
            "/spec/steps",
            "[{deidentify: {rules: [{identifier: quasi, method: perturb, perturb: {maxAbs: 1}}]}}]",
            "[{deidentify: {rules: [{field: age, method: perturb, perturb: {maxAbs: 1}}]}}]",
            "perturb applies to one numeric field",
        ),
        r(
            "Pipeline",
            PIPELINE,
            "/spec/steps",
            "[{deidentify: {rules: [{field: a, method: mask}]}}]",
            "[{deidentify: {rules: [{field: a, method: mask, mask: {keepLast: 4}}]}}]",
            "method mask needs the mask parameters",
        ),
        r(
            "Pipeline",
            PIPELINE,
            "/spec/steps",
            "[{deidentify: {rules: [{field: a, method: redact, mask: {keepLast: 4}}]}}]",
            "[{deidentify: {rules: [{field: a, method: redact}]}}]",
            "only the parameters of the chosen method",
        ),
        r(
            "Pipeline",
            PIPELINE,
            "/spec/steps",
            "[{deidentify: {rules: [{field: a, method: cryptoHash}]}}]",
            "[{deidentify: {keys: {secretName: k}, rules: [{field: a, method: cryptoHash}]}}]",
            "need keys",
        ),
        r(
            "Pipeline",
            PIPELINE,
            "/spec/steps",
            "[{deidentify: {rules: [{field: a, method: generalize, generalize: {to: regionPrefix}}]}}]",
            "[{deidentify: {rules: [{field: a, method: generalize, generalize: {to: regionPrefix, prefixLength: 4}}]}}]",
            "regionPrefix needs prefixLength",
        ),
        r(
            "Platform",
            PLATFORM,
            "/metadata/name",
            "other",
            "default",
            "must be named default",
        ),
        r(
            "Platform",
            PLATFORM,
            "/spec/hardening",
            "{deviations: [{checkId: a, action: Override, reason: 'a long enough reason', ticket: T-1, expiresAt: '2027-01-01T00:00:00Z'}]}",
            "{deviations: [{checkId: a, action: Override, expected: '1', reason: 'a long enough reason', ticket: T-1, expiresAt: '2027-01-01T00:00:00Z'}]}",
            "needs the expected value",
        ),
        r(
            "Platform",
            PLATFORM,
            "/spec/logging",
            "{auditTier: audit, sinks: [{name: a, loki: {url: 'http://l'}, http: {url: 'http://h'}}]}",
            "{auditTier: audit, sinks: [{name: a, loki: {url: 'http://l'}}]}",
            "exactly one of tier, loki, elasticsearch or http",
        ),
        r(
            "AccessPolicy",
            "apiVersion: medplat.io/v1alpha1\nkind: AccessPolicy\nmetadata: {name: a, namespace: n}\nspec:\n  purpose: Research\n  subjects: [{kind: Group, name: g}]\n  rules: [{resources: {kind: StorageTier, names: [t]}, verbs: [read]}]\n",
            "/spec/subjects",
            "[{kind: Group, name: g, namespace: n}]",
            "[{kind: ServiceAccount, name: g, namespace: n}]",
            "namespace applies only to ServiceAccount",
        ),
        r(
            "AccessPolicy",
            "apiVersion: medplat.io/v1alpha1\nkind: AccessPolicy\nmetadata: {name: a, namespace: n}\nspec:\n  purpose: Research\n  subjects: [{kind: Group, name: g}]\n  rules: [{resources: {kind: StorageTier, names: [t]}, verbs: [read]}]\n",
            "/spec/rules",
            "[{resources: {kind: StorageTier, names: []}, verbs: [read]}]",
            "[{resources: {kind: StorageTier, classification: {maxLevel: L2}}, verbs: [read]}]",
            "select resources by names, by classification, or both",
        ),
    ]
}

#[test]
fn every_base_object_passes() {
    for (kind, base) in [
        ("StorageTier", TIER),
        ("DataSource", SOURCE),
        ("Pipeline", PIPELINE),
        ("Platform", PLATFORM),
    ] {
        assert_eq!(failures(kind, &yaml(base)), vec![], "{kind}");
    }
}

#[test]
fn every_rule_rejects_its_bad_object_and_accepts_its_good_one() {
    let mut problems = Vec::new();
    for (i, rule) in rules().iter().enumerate() {
        let good = failures(rule.kind, &with(rule.base, rule.pointer, rule.good));
        if !good.is_empty() {
            problems.push(format!(
                "rule {i} ({}): good object rejected: {good:?}",
                rule.message
            ));
        }
        let bad = failures(rule.kind, &with(rule.base, rule.pointer, rule.bad));
        if !bad.iter().any(|(_, m)| m.contains(rule.message)) {
            problems.push(format!(
                "rule {i}: expected '{}', got {bad:?}",
                rule.message
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn failures_name_the_field_path() {
    let bad = failures("StorageTier", &with(TIER, "/spec/encryption", "none"));
    assert!(
        bad.iter()
            .any(|(path, _)| path.ends_with("spec.encryption")),
        "{bad:?}"
    );
    let bad = failures("Pipeline", &with(PIPELINE, "/spec/sources", "[s, s]"));
    assert!(
        bad.iter().any(|(path, _)| path.ends_with("spec.sources")),
        "{bad:?}"
    );
}

#[test]
fn every_cel_rule_in_every_crd_compiles() {
    for crd in medplat::api::all_crds() {
        let s = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
        let compiled = kube::core::cel::compile_schema(&s["openAPIV3Schema"]);
        assert!(
            !compiled.has_errors(),
            "{}: {:?}",
            crd.spec.names.kind,
            compiled.compilation_errors()
        );
    }
}
