//! The admission decision as a table: AdmissionReview requests over the example hospital →
//! allowed or denied, with the exact reasons of every denial and warning.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use jiff::Timestamp;
use serde_json::{Value, json};

use super::catalog::Objects;
use super::review::review_body;

fn hospital() -> Vec<Value> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/hospital");
    crate::manifests::load(&[dir])
        .unwrap()
        .into_iter()
        .map(|o| o.value)
        .collect()
}

fn example(kind: &str, name: &str) -> Value {
    hospital()
        .into_iter()
        .find(|v| v["kind"] == kind && v["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in examples/hospital"))
}

/// `v` with the value at JSON pointer `at` replaced (parents must exist).
fn with(mut v: Value, at: &str, new: Value) -> Value {
    let (parent, key) = at.rsplit_once('/').unwrap();
    let target = if parent.is_empty() {
        &mut v
    } else {
        v.pointer_mut(parent).unwrap()
    };
    match target {
        Value::Object(m) => {
            m.insert(key.into(), new);
        }
        Value::Array(a) => a[key.parse::<usize>().unwrap()] = new,
        other => panic!("{at}: {other} is not a container"),
    }
    v
}

/// A tier that keeps data 90 days, and a Warn-mode policy for a trial pipeline.
fn extras() -> Vec<Value> {
    vec![
        with(
            with(
                example("StorageTier", "audit"),
                "/metadata/name",
                json!("short-audit"),
            ),
            "/spec/retentionDays",
            json!(90),
        ),
        json!({
            "apiVersion": "medplat.io/v1alpha1", "kind": "AccessPolicy",
            "metadata": {"name": "trial-warn", "namespace": "clinical"},
            "spec": {
                "purpose": "Treatment", "mode": "Warn",
                "subjects": [{"kind": "ServiceAccount", "name": "medplat-pipeline-trial"}],
                "rules": [{"resources": {"kind": "DataSource", "names": ["his-patients"]}, "verbs": ["read"], "constraints": {"maxLevel": "L3"}}]
            }
        }),
    ]
}

fn world() -> Objects {
    let mut w = Objects::default();
    for v in hospital().into_iter().chain(extras()) {
        let typed = crate::manifests::LoadedObject {
            file: PathBuf::new(),
            document: 0,
            value: v.clone(),
        };
        match v["kind"].as_str().unwrap() {
            "StorageTier" => w.tiers.push(typed.typed().unwrap()),
            "DataSource" => w.sources.push(typed.typed().unwrap()),
            "AccessPolicy" => w.policies.push(typed.typed().unwrap()),
            "Pipeline" => w.pipelines.push(typed.typed().unwrap()),
            _ => {}
        }
    }
    w
}

fn request(operation: &str, object: &Value, old: Option<&Value>, sub: Option<&str>) -> Value {
    let kind = object["kind"].as_str().unwrap_or("ConfigMap");
    let group = object["apiVersion"]
        .as_str()
        .and_then(|a| a.split_once('/'))
        .map_or("", |(g, _)| g);
    let gvk = json!({"group": group, "version": "v1alpha1", "kind": kind});
    let resource = format!("{}s", kind.to_lowercase());
    let mut req = json!({
        "uid": "0b7e6a34-5d3c-4d2b-9a53-5f1a0c0de001",
        "kind": gvk, "resource": {"group": group, "version": "v1alpha1", "resource": resource},
        "name": object["metadata"]["name"], "operation": operation,
        "userInfo": {"username": "ops@hospital.local"},
        "object": if operation == "DELETE" { Value::Null } else { object.clone() },
        "oldObject": old.cloned().unwrap_or(Value::Null),
        "dryRun": false,
    });
    if let Some(ns) = object["metadata"]["namespace"].as_str() {
        req["namespace"] = json!(ns);
    }
    if let Some(s) = sub {
        req["subResource"] = json!(s);
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req})
}

/// The reasons of findings rendered `Reason (field): message`.
fn reasons(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            l.split_once(" (")
                .map_or(l.as_str(), |(r, _)| r)
                .to_string()
        })
        .collect()
}

/// The reasons listed in a denial message `… is not compliant: R1 (f): m; R2 (f): m`.
fn denial_reasons(message: &str) -> Vec<String> {
    let Some((_, list)) = message.split_once(" is not compliant: ") else {
        return Vec::new();
    };
    // Every finding starts with a CamelCase reason followed by " (".
    let re = regex::Regex::new(r"(?:^|; )([A-Z][A-Za-z]+) \(").unwrap();
    re.captures_iter(list).map(|c| c[1].to_string()).collect()
}

struct Case {
    name: &'static str,
    now: &'static str,
    operation: &'static str,
    object: Value,
    old: Option<Value>,
    allowed: bool,
    denials: &'static [&'static str],
    warnings: &'static [&'static str],
}

const NOW: &str = "2026-12-01T00:00:00Z";

fn leak() -> Value {
    let p = example("Pipeline", "his-patients-sync");
    let p = with(p, "/metadata/name", json!("leak"));
    with(p, "/spec/sink/tier", json!("research-l2"))
}

fn cases() -> Vec<Case> {
    let sync = example("Pipeline", "his-patients-sync");
    let his = example("DataSource", "his-patients");
    let adt = example("DataSource", "adt-feed");
    let clinical = example("AccessPolicy", "clinical-pipelines");
    let raw = example("StorageTier", "raw-l4");
    let platform = example("Platform", "default");
    let c = |name, operation, object, old, allowed, denials, warnings| Case {
        name,
        now: NOW,
        operation,
        object,
        old,
        allowed,
        denials,
        warnings,
    };
    vec![
        c(
            "a compliant pipeline",
            "CREATE",
            sync.clone(),
            None,
            true,
            &[],
            &[],
        ),
        c(
            "a worker request above its limit",
            "CREATE",
            with(
                sync.clone(),
                "/spec/resources",
                json!({"requests": {"cpu": "4"}, "limits": {"cpu": "2"}}),
            ),
            None,
            false,
            &["InvalidResources"],
            &[],
        ),
        c(
            "L4 into an L2 unencrypted research tier",
            "CREATE",
            leak(),
            None,
            false,
            &["TierLevelTooLow", "TierNotEncrypted"],
            &["ReadNotGranted", "CrossDomainNotGranted", "WriteNotGranted"],
        ),
        c(
            "an update that moves a compliant pipeline's sink",
            "UPDATE",
            with(sync.clone(), "/spec/sink/tier", json!("research-l2")),
            Some(sync.clone()),
            false,
            &["TierLevelTooLow", "TierNotEncrypted"],
            &["CrossDomainNotGranted", "WriteNotGranted"],
        ),
        c(
            "a label change on a pipeline a policy change has blocked",
            "UPDATE",
            with(leak(), "/metadata/labels", json!({"team": "his"})),
            Some(leak()),
            true,
            &[],
            &[
                "ReadNotGranted",
                "CrossDomainNotGranted",
                "WriteNotGranted",
                "TierLevelTooLow",
                "TierNotEncrypted",
            ],
        ),
        c(
            "references applied later only warn",
            "CREATE",
            with(
                with(leak(), "/spec/sources", json!(["ghost"])),
                "/spec/sink/tier",
                json!("nowhere"),
            ),
            None,
            true,
            &[],
            &["SourceNotFound", "TierNotFound"],
        ),
        c(
            "Warn-mode policy findings are warnings",
            "CREATE",
            with(
                with(sync.clone(), "/metadata/name", json!("trial")),
                "/spec/sink/tier",
                json!("raw-l4"),
            ),
            None,
            true,
            &[],
            &["GrantLevelTooLow", "WriteNotGranted"],
        ),
        Case {
            now: "2028-01-15T00:00:00Z",
            ..c(
                "expired grants in force refuse",
                "CREATE",
                example("Pipeline", "research-extract"),
                None,
                false,
                &["GrantExpired", "GrantExpired"],
                &[],
            )
        },
        c(
            "deleting is never judged",
            "DELETE",
            leak(),
            Some(leak()),
            true,
            &[],
            &[],
        ),
        c(
            "a listener landing L4 clinical data in the research tier",
            "CREATE",
            with(
                adt.clone(),
                "/spec/connector/hl7v2/landing/tier",
                json!("research-l2"),
            ),
            None,
            false,
            &["TierLevelTooLow", "TierDomainMismatch"],
            &[],
        ),
        c(
            "files in a tier not applied yet",
            "CREATE",
            with(
                example("DataSource", "lis-results"),
                "/spec/connector/files/location/tier",
                json!("later"),
            ),
            None,
            true,
            &[],
            &["TierNotFound"],
        ),
        c(
            "files already resting in the wrong tier",
            "CREATE",
            with(
                example("DataSource", "lis-results"),
                "/spec/connector/files/location/tier",
                json!("research-l2"),
            ),
            None,
            true,
            &[],
            &["TierLevelTooLow", "TierDomainMismatch"],
        ),
        c(
            "a source raised to L5 blocks the pipeline that reads it",
            "UPDATE",
            with(
                his.clone(),
                "/spec/classification/flags",
                json!(["MentalHealth"]),
            ),
            Some(his.clone()),
            true,
            &[],
            &["WouldBlockPipeline"],
        ),
        c(
            "a policy that stops granting a source",
            "UPDATE",
            with(
                clinical.clone(),
                "/spec/rules/0/resources/names",
                json!(["lis-results", "adt-feed"]),
            ),
            Some(clinical.clone()),
            true,
            &[],
            &["WouldBlockPipeline"],
        ),
        c(
            "a policy naming a source that does not exist",
            "CREATE",
            with(
                with(clinical.clone(), "/metadata/name", json!("typo")),
                "/spec/rules/0/resources/names",
                json!(["his-patient"]),
            ),
            None,
            true,
            &[],
            &["ReferenceNotFound"],
        ),
        c(
            "a tier lowered under the data it holds",
            "UPDATE",
            with(raw.clone(), "/spec/maxLevel", json!("L3")),
            Some(raw.clone()),
            true,
            &[],
            &["WouldMisplaceListener", "WouldBlockPipeline"],
        ),
        c(
            "an audit tier that keeps 90 days",
            "CREATE",
            with(
                platform.clone(),
                "/spec/logging/auditTier",
                json!("short-audit"),
            ),
            None,
            false,
            &["AuditRetentionTooShort"],
            &[],
        ),
        c(
            "an audit tier shorter than the declared retention",
            "UPDATE",
            with(
                platform.clone(),
                "/spec/logging/auditRetentionDays",
                json!(730),
            ),
            Some(platform.clone()),
            false,
            &["AuditRetentionTooShort"],
            &[],
        ),
        c(
            "an audit tier applied later",
            "CREATE",
            with(
                platform.clone(),
                "/spec/logging/auditTier",
                json!("audit-2027"),
            ),
            None,
            true,
            &[],
            &["TierNotFound"],
        ),
        c(
            "other kinds pass",
            "CREATE",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "clinical"}}),
            None,
            true,
            &[],
            &[],
        ),
    ]
}

#[test]
fn decisions_over_the_example_hospital() {
    let world = world();
    let mut failures = Vec::new();
    for case in cases() {
        let body = request(case.operation, &case.object, case.old.as_ref(), None);
        let now: Timestamp = case.now.parse().unwrap();
        let review = review_body(&serde_json::to_vec(&body).unwrap(), &world, now);
        let r = review.response.expect("a response");
        assert_eq!(
            r.uid, "0b7e6a34-5d3c-4d2b-9a53-5f1a0c0de001",
            "{}",
            case.name
        );
        let got_denials = denial_reasons(&r.result.message);
        let got_warnings = reasons(r.warnings.as_deref().unwrap_or_default());
        if r.allowed != case.allowed || got_denials != case.denials || got_warnings != case.warnings
        {
            failures.push(format!(
                "{}: allowed {} (want {}), denials {got_denials:?} (want {:?}), warnings {got_warnings:?} (want {:?})\n  message: {}\n  warnings: {:?}",
                case.name, r.allowed, case.allowed, case.denials, case.warnings, r.result.message, r.warnings
            ));
        }
        if !r.allowed {
            assert_eq!(r.result.code, 403, "{}", case.name);
            assert_eq!(r.result.reason, "Forbidden", "{}", case.name);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_denial_lists_every_reason_with_its_field_and_message() {
    let body = request("CREATE", &leak(), None, None);
    let review = review_body(
        &serde_json::to_vec(&body).unwrap(),
        &world(),
        NOW.parse().unwrap(),
    );
    let r = review.response.unwrap();
    assert_eq!(
        r.result.message,
        "Pipeline clinical/leak is not compliant: \
         TierLevelTooLow (spec.sink.tier): the output is L4 but StorageTier research-l2 accepts at most L2 (no deidentify step lowers it); \
         TierNotEncrypted (spec.sink.tier): L4 output needs a tier with encryption: required; StorageTier research-l2 has encryption: none"
    );
    let warnings = r.warnings.unwrap();
    assert_eq!(
        warnings[0],
        "ReadNotGranted (spec.sources[0]): ServiceAccount clinical/medplat-pipeline-leak has no Treatment grant to read DataSource his-patients (admitted because it may be applied later; nothing runs until it is resolved)"
    );
}

#[test]
fn the_impact_warning_names_the_pipeline_and_why() {
    let his = example("DataSource", "his-patients");
    let raised = with(
        his.clone(),
        "/spec/classification/flags",
        json!(["MentalHealth"]),
    );
    let body = request("UPDATE", &raised, Some(&his), None);
    let review = review_body(
        &serde_json::to_vec(&body).unwrap(),
        &world(),
        NOW.parse().unwrap(),
    );
    let warnings = review.response.unwrap().warnings.unwrap();
    assert_eq!(
        warnings,
        vec![
            "WouldBlockPipeline (spec): Pipeline clinical/his-patients-sync is compliant now and would be blocked: \
             TierLevelTooLow (spec.sink.tier): the output is L5 but StorageTier raw-l4 accepts at most L4 (no deidentify step lowers it)"
                .to_string()
        ]
    );
}

#[test]
fn unreadable_requests_are_refused_not_panicked_on() {
    let world = world();
    let now = NOW.parse().unwrap();
    // Not JSON at all.
    let r = review_body(b"\x00not json", &world, now).response.unwrap();
    assert!(!r.allowed);
    assert!(
        r.result
            .message
            .starts_with("the request body is not an AdmissionReview"),
        "{}",
        r.result.message
    );
    // An AdmissionReview without a request.
    let r = review_body(
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
        &world,
        now,
    )
    .response
    .unwrap();
    assert!(!r.allowed);
    assert_eq!(r.result.message, "the AdmissionReview carries no request");
    // A Pipeline whose spec does not read: refused with the field path, code 400.
    let broken = with(leak(), "/spec/sources", json!("his-patients"));
    let body = request("CREATE", &broken, None, None);
    let r = review_body(&serde_json::to_vec(&body).unwrap(), &world, now)
        .response
        .unwrap();
    assert!(!r.allowed);
    assert_eq!(r.result.code, 400);
    assert!(
        r.result
            .message
            .starts_with("Pipeline clinical/leak cannot be read: spec.sources: invalid type"),
        "{}",
        r.result.message
    );
    // The status subresource is never judged.
    let body = request("UPDATE", &leak(), Some(&leak()), Some("status"));
    let r = review_body(&serde_json::to_vec(&body).unwrap(), &world, now)
        .response
        .unwrap();
    assert!(r.allowed);
}

#[test]
fn the_rendered_configuration_never_locks_the_cluster() {
    use super::config::*;
    let mut opts = WebhookConfigOptions::in_cluster("medplat", "medplat-webhook", "medplat-system");
    opts.ca_bundle_pem =
        Some("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into());
    let cfg = serde_json::to_value(validating_webhook_configuration(&opts)).unwrap();
    let hooks = cfg["webhooks"].as_array().unwrap();
    let names: Vec<_> = hooks.iter().map(|h| h["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "pipelines.medplat.io",
            "datasources.medplat.io",
            "accesspolicies.medplat.io",
            "storagetiers.medplat.io",
            "platforms.medplat.io"
        ]
    );
    for h in hooks {
        assert_eq!(h["failurePolicy"], "Ignore");
        assert_eq!(h["sideEffects"], "None");
        assert_eq!(h["rules"][0]["operations"], json!(["CREATE", "UPDATE"]));
        assert_eq!(h["clientConfig"]["service"]["name"], "medplat-webhook");
        assert_eq!(h["clientConfig"]["service"]["path"], "/validate");
        // base64 of the PEM, as the API stores caBundle.
        assert_eq!(
            h["clientConfig"]["caBundle"],
            "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCkFBQUEKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo="
        );
        if h["rules"][0]["scope"] == "Namespaced" {
            assert_eq!(
                h["namespaceSelector"]["matchExpressions"],
                json!([{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", "medplat-system"]}])
            );
        } else {
            assert!(h.get("namespaceSelector").is_none());
        }
    }
    opts.failure_policy = FailurePolicy::Fail;
    opts.target = WebhookTarget::Url("https://127.0.0.1:9443/validate".into());
    opts.watch_namespace = Some("clinical".into());
    let cfg = serde_json::to_value(validating_webhook_configuration(&opts)).unwrap();
    let h = &cfg["webhooks"][0];
    assert_eq!(h["failurePolicy"], "Fail");
    assert_eq!(h["clientConfig"]["url"], "https://127.0.0.1:9443/validate");
    assert!(h["clientConfig"].get("service").is_none());
    assert_eq!(
        h["namespaceSelector"]["matchExpressions"][1]["values"],
        json!(["clinical"])
    );
}
