//! Shared helpers of the packaging tests: paths, YAML streams, the Helm and kubectl runners.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::rbac::v1::PolicyRule;
use serde::Deserialize;
use serde_json::Value;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every document of a YAML stream, skipping empty ones.
pub fn yaml_docs(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// `kind/namespace/name` of an object.
pub fn key(v: &Value) -> String {
    format!(
        "{}/{}/{}",
        v["kind"].as_str().unwrap_or_default(),
        v["metadata"]["namespace"].as_str().unwrap_or_default(),
        v["metadata"]["name"].as_str().unwrap_or_default()
    )
}

/// Whether a test must fail instead of skipping when a real tool is missing.
pub fn tools_required() -> bool {
    std::env::var("MEDPLAT_REQUIRE_REAL_TOOLS").as_deref() == Ok("1")
}

/// Says loudly that a test is skipped, or fails it when real tools are required.
pub fn skip(what: &str) {
    assert!(
        !tools_required(),
        "{what} is required (MEDPLAT_REQUIRE_REAL_TOOLS=1) but missing"
    );
    eprintln!("\n!!! SKIPPED: {what} is missing; install it to run this test !!!\n");
}

/// The result of `scripts/helm-chart.py`: `None` when helm-python-sdk is not installed.
pub fn helm(args: &[&str]) -> Option<(bool, String, String)> {
    let out = Command::new("python3")
        .arg(repo().join("scripts/helm-chart.py"))
        .args(args)
        .output()
        .ok()?;
    if out.status.code() == Some(3) {
        skip("helm-python-sdk (pip install helm-python-sdk; Helm's engine for tests)");
        return None;
    }
    Some((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// The chart directory.
pub fn chart() -> String {
    repo().join("charts/medplat").display().to_string()
}

/// Renders the chart with `values` (JSON) in `namespace`; `None` when Helm's engine is missing.
/// Panics with Helm's message when rendering fails.
pub fn helm_template(values: &Value, namespace: &str) -> Option<Vec<(String, String)>> {
    match try_helm_template(values, namespace)? {
        Ok(t) => Some(t),
        Err(e) => panic!("helm template failed: {e}"),
    }
}

/// Renders the chart; `Err` holds Helm's message.
pub fn try_helm_template(
    values: &Value,
    namespace: &str,
) -> Option<Result<Vec<(String, String)>, String>> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("values.json");
    std::fs::write(&file, values.to_string()).unwrap();
    let (ok, out, err) = helm(&[
        "template",
        &chart(),
        "--name",
        "medplat",
        "--namespace",
        namespace,
        "--values",
        file.to_str().unwrap(),
    ])?;
    if !ok {
        return Some(Err(err));
    }
    let map: std::collections::BTreeMap<String, String> = serde_json::from_str(&out).unwrap();
    Some(Ok(map.into_iter().collect()))
}

/// The objects of a rendered chart (templates only, NOTES.txt left out).
pub fn rendered_objects(templates: &[(String, String)]) -> Vec<Value> {
    templates
        .iter()
        .filter(|(path, _)| path.ends_with(".yaml"))
        .flat_map(|(_, text)| yaml_docs(text))
        .collect()
}

/// One granted permission: (apiGroup, resource, resourceNames, verb).
pub type Permission = (String, String, Vec<String>, String);

/// Flattens rules into single permissions.
pub fn flatten(rules: &[PolicyRule]) -> BTreeSet<Permission> {
    let mut out = BTreeSet::new();
    for r in rules {
        let names = r.resource_names.clone().unwrap_or_default();
        for g in r.api_groups.iter().flatten() {
            for res in r.resources.iter().flatten() {
                for v in &r.verbs {
                    out.insert((g.clone(), res.clone(), names.clone(), v.clone()));
                }
            }
        }
    }
    out
}

/// The rules of the first object of `kind` among `objects`.
pub fn rules_of(objects: &[Value], kind: &str) -> Vec<PolicyRule> {
    let obj = objects
        .iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} among the objects"));
    serde_json::from_value(obj["rules"].clone()).unwrap()
}

/// Reads every file of a kustomize directory's output with `kubectl kustomize`.
pub fn kustomize(dir: &Path) -> Vec<Value> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl must be installed (it is on every medplat machine)");
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    yaml_docs(&String::from_utf8_lossy(&out.stdout))
}
