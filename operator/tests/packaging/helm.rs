//! The Helm chart, linted and rendered by Helm's own engine (helm-python-sdk binds the Helm v4
//! Go SDK: text/template, sprig, values coalescing and values.schema.json validation), and
//! compared object by object with what `medplat install-manifests` generates for the same
//! options.

use medplat::install::{FailurePolicy, InstallOptions, documents};
use serde_json::{Value, json};

use super::common::{
    chart, helm, helm_template, key, rendered_objects, repo, try_helm_template, yaml_docs,
};

/// Labels Helm adds that the plain manifests do not carry.
const HELM_LABELS: &[&str] = &[
    "app.kubernetes.io/instance",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
];

fn without_helm_labels(mut v: Value) -> Value {
    if let Some(labels) = v
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        for l in HELM_LABELS {
            labels.remove(*l);
        }
    }
    v
}

fn binary_objects(opts: &InstallOptions) -> Vec<Value> {
    documents(opts)
        .unwrap()
        .iter()
        .flat_map(|d| yaml_docs(&d.yaml))
        // Helm does not create its release namespace (helm install --create-namespace does).
        .filter(|v| v["kind"] != "Namespace")
        .collect()
}

/// Renders the chart with `values` and compares every object with the binary's for `opts`.
fn assert_chart_equals_binary(values: Value, opts: &InstallOptions) {
    let Some(templates) = helm_template(&values, &opts.namespace) else {
        return;
    };
    let mut chart: Vec<Value> = rendered_objects(&templates)
        .into_iter()
        .map(without_helm_labels)
        .collect();
    let mut binary = binary_objects(opts);
    chart.sort_by_key(key);
    binary.sort_by_key(key);
    let chart_keys: Vec<String> = chart.iter().map(key).collect();
    let binary_keys: Vec<String> = binary.iter().map(key).collect();
    assert_eq!(
        chart_keys, binary_keys,
        "the chart ({values}) renders other objects than the binary"
    );
    for (c, b) in chart.iter().zip(&binary) {
        assert_eq!(
            c,
            b,
            "{} differs between the chart ({values}) and the binary",
            key(b)
        );
    }
}

#[test]
fn the_chart_lints_clean() {
    let Some((ok, out, err)) = helm(&["lint", &chart(), "--strict"]) else {
        return;
    };
    assert!(ok, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["errors"], json!([]), "{report}");
    // Severity 1 is info (e.g. "icon is recommended"); warnings and errors fail.
    let serious: Vec<&Value> = report["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["severity"].as_i64() > Some(1))
        .collect();
    assert!(serious.is_empty(), "helm lint --strict: {serious:?}");
}

#[test]
fn default_values_render_exactly_what_the_binary_generates() {
    assert_chart_equals_binary(json!({}), &InstallOptions::default());
}

#[test]
fn every_value_renders_what_the_binary_generates_for_the_same_option() {
    let cases: Vec<(Value, InstallOptions)> = vec![
        (
            json!({"webhook": {"failurePolicy": "Fail"}}),
            InstallOptions {
                failure_policy: FailurePolicy::Fail,
                ..Default::default()
            },
        ),
        (
            json!({"replicas": 1, "leaderElection": false, "watchNamespace": "clinical"}),
            InstallOptions {
                replicas: 1,
                leader_election: false,
                watch_namespace: Some("clinical".into()),
                ..Default::default()
            },
        ),
        (
            json!({"image": {"repository": "registry.hospital.local/medplat", "tag": "1.2.3", "pullPolicy": "Always"}}),
            InstallOptions {
                image: "registry.hospital.local/medplat:1.2.3".into(),
                image_pull_policy: "Always".into(),
                ..Default::default()
            },
        ),
        (
            json!({"networkPolicy": {"enabled": true, "monitoringNamespace": "obs", "apiServerCidrs": ["10.0.0.1/32"], "probeCidrs": []},
                   "serviceMonitor": {"enabled": true}, "prometheusRule": {"enabled": true}}),
            InstallOptions {
                monitoring_namespace: "obs".into(),
                api_server_cidrs: vec!["10.0.0.1/32".into()],
                probe_cidrs: vec![],
                service_monitor: true,
                prometheus_rule: true,
                namespace: "hospital-medplat".into(),
                ..Default::default()
            },
        ),
    ];
    for (values, opts) in cases {
        assert_chart_equals_binary(values, &opts);
    }
}

#[test]
fn the_chart_refuses_bad_values_with_the_key_named() {
    // values.yaml itself passes the schema (rendering with no overrides validates it).
    if try_helm_template(&json!({}), "medplat-system").is_none() {
        return;
    }
    let cases = [
        (
            json!({"webhook": {"failurePolicy": "Sometimes"}}),
            "failurePolicy",
        ),
        (json!({"replicas": 0}), "replicas"),
        (
            json!({"networkPolicy": {"probeCidrs": ["clinical-net"]}}),
            "probeCidrs",
        ),
        (json!({"image": {"pullPolicy": "Sometimes"}}), "pullPolicy"),
        (json!({"replica": 2}), "replica"),
        (
            json!({"replicas": 2, "leaderElection": false}),
            "leaderElection",
        ),
    ];
    for (values, named) in cases {
        let err = try_helm_template(&values, "medplat-system")
            .unwrap()
            .unwrap_err();
        assert!(err.contains(named), "{values}: {err}");
    }
}

#[test]
fn the_clusterrole_template_keeps_every_reason_as_a_comment() {
    let Some(templates) = helm_template(&json!({}), "medplat-system") else {
        return;
    };
    let text = &templates
        .iter()
        .find(|(p, _)| p.ends_with("templates/clusterrole.yaml"))
        .unwrap()
        .1;
    let comments: String = text
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("# "))
        .collect::<Vec<_>>()
        .join(" ");
    for (_, why) in medplat::install::rbac::cluster_rules() {
        assert!(
            comments.contains(why),
            "the rendered ClusterRole lost the reason {why:?}"
        );
    }
    let notes = &templates
        .iter()
        .find(|(p, _)| p.ends_with("NOTES.txt"))
        .unwrap()
        .1;
    assert!(
        notes.contains("failurePolicy Ignore") && notes.contains("medplat-system"),
        "{notes}"
    );
    let readme = std::fs::read_to_string(repo().join("charts/medplat/README.md")).unwrap();
    assert!(readme.contains("helm lint") && readme.contains("helm template"));
}
