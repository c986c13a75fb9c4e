//! Defaulting and the little validation kubesim does for built-in kinds.
//!
//! Only what tests observe is reproduced: defaults that show up in `kubectl get -o yaml` and
//! that controllers depend on (Deployment replicas and strategy, Job completions and selector
//! labels, Service clusterIP, Secret stringData folding, Namespace finalizer and phase, CRD
//! status conditions). It is not the full Go validation of every kind.

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::registry::ResourceType;
use crate::validation::FieldError;

fn set_default(obj: &mut Map<String, Value>, key: &str, v: Value) {
    if !obj.contains_key(key) || obj.get(key).is_some_and(Value::is_null) {
        obj.insert(key.to_string(), v);
    }
}

fn spec_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    if obj.get("spec").is_none() {
        obj["spec"] = json!({});
    }
    obj.get_mut("spec").and_then(Value::as_object_mut)
}

/// Kinds whose `metadata.generation` tracks spec changes (custom resources always do).
pub fn tracks_generation(rt: &ResourceType) -> bool {
    rt.is_custom()
        || matches!(
            rt.group.as_str(),
            "apps" | "batch" | "networking.k8s.io" | "policy" | "apiextensions.k8s.io"
        )
}

/// Fills defaults on create (`old` is None) and update.
pub fn apply_defaults(
    rt: &ResourceType,
    obj: &mut Value,
    old: Option<&Value>,
    cluster_ip: impl FnOnce() -> String,
) {
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "namespaces") => {
            let name = obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                let labels = meta.entry("labels").or_insert_with(|| json!({}));
                if let Some(l) = labels.as_object_mut() {
                    l.insert("kubernetes.io/metadata.name".into(), Value::String(name));
                }
            }
            if let Some(spec) = spec_mut(obj) {
                set_default(spec, "finalizers", json!(["kubernetes"]));
            }
            if old.is_none() {
                obj["status"] = json!({"phase": "Active"});
            }
        }
        ("", "pods") => {
            if let Some(spec) = spec_mut(obj) {
                set_default(spec, "restartPolicy", json!("Always"));
                set_default(spec, "schedulerName", json!("default-scheduler"));
                set_default(spec, "dnsPolicy", json!("ClusterFirst"));
                set_default(spec, "terminationGracePeriodSeconds", json!(30));
                set_default(spec, "serviceAccountName", json!("default"));
                set_default(spec, "securityContext", json!({}));
                set_default(spec, "enableServiceLinks", json!(true));
                if let Some(Value::Array(cs)) = spec.get_mut("containers") {
                    for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                        set_default(c, "imagePullPolicy", json!("IfNotPresent"));
                        set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
                        set_default(c, "terminationMessagePolicy", json!("File"));
                        set_default(c, "resources", json!({}));
                    }
                }
            }
            if old.is_none() {
                obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
            }
        }
        ("", "services") => {
            let assigned = old.and_then(|o| o.pointer("/spec/clusterIP")).cloned();
            if let Some(spec) = spec_mut(obj) {
                set_default(spec, "type", json!("ClusterIP"));
                set_default(spec, "sessionAffinity", json!("None"));
                if spec.get("clusterIP").is_none() {
                    let ip = assigned.unwrap_or_else(|| Value::String(cluster_ip()));
                    spec.insert("clusterIP".into(), ip.clone());
                    spec.insert("clusterIPs".into(), json!([ip]));
                }
                if let Some(Value::Array(ports)) = spec.get_mut("ports") {
                    for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                        set_default(p, "protocol", json!("TCP"));
                        if let Some(port) = p.get("port").cloned() {
                            set_default(p, "targetPort", port);
                        }
                    }
                }
            }
        }
        ("", "secrets") => {
            if let Some(m) = obj.as_object_mut() {
                set_default(m, "type", json!("Opaque"));
                if let Some(Value::Object(sd)) = m.remove("stringData") {
                    let data = m.entry("data").or_insert_with(|| json!({}));
                    if let Some(d) = data.as_object_mut() {
                        for (k, v) in sd {
                            let raw = v.as_str().unwrap_or_default();
                            d.insert(
                                k,
                                Value::String(
                                    base64::engine::general_purpose::STANDARD.encode(raw),
                                ),
                            );
                        }
                    }
                }
            }
        }
        ("apps", "deployments") => {
            if let Some(spec) = spec_mut(obj) {
                set_default(spec, "replicas", json!(1));
                set_default(spec, "revisionHistoryLimit", json!(10));
                set_default(spec, "progressDeadlineSeconds", json!(600));
                set_default(
                    spec,
                    "strategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}),
                );
            }
        }
        ("apps", "statefulsets") | ("apps", "replicasets") => {
            if let Some(spec) = spec_mut(obj) {
                set_default(spec, "replicas", json!(1));
                if rt.plural == "statefulsets" {
                    set_default(spec, "podManagementPolicy", json!("OrderedReady"));
                    set_default(spec, "updateStrategy", json!({"type": "RollingUpdate"}));
                }
            }
        }
        ("apps", "daemonsets") => {
            if let Some(spec) = spec_mut(obj) {
                set_default(spec, "updateStrategy", json!({"type": "RollingUpdate"}));
            }
        }
        ("batch", "jobs") => default_job(obj, old),
        ("batch", "cronjobs") => {
            if let Some(spec) = spec_mut(obj) {
                set_default(spec, "concurrencyPolicy", json!("Allow"));
                set_default(spec, "suspend", json!(false));
                set_default(spec, "successfulJobsHistoryLimit", json!(3));
                set_default(spec, "failedJobsHistoryLimit", json!(1));
            }
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => default_crd_status(obj),
        _ => {}
    }
}

fn default_job(obj: &mut Value, old: Option<&Value>) {
    let uid = obj
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let manual = obj.pointer("/spec/manualSelector").and_then(Value::as_bool) == Some(true);
    if let Some(spec) = spec_mut(obj) {
        set_default(spec, "parallelism", json!(1));
        set_default(spec, "backoffLimit", json!(6));
        set_default(spec, "completionMode", json!("NonIndexed"));
        set_default(spec, "suspend", json!(false));
        set_default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
        if spec.get("completions").is_none()
            && spec.get("completionMode") == Some(&json!("Indexed"))
        {
            spec.insert("completions".into(), json!(1));
        }
        set_default(spec, "completions", json!(1));
        if old.is_none() && !manual {
            let sel = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
            spec.insert("selector".into(), sel);
            let tmpl = spec.entry("template").or_insert_with(|| json!({}));
            if tmpl.get("metadata").is_none() {
                tmpl["metadata"] = json!({});
            }
            if let Some(meta) = tmpl.get_mut("metadata").and_then(Value::as_object_mut) {
                let labels = meta.entry("labels").or_insert_with(|| json!({}));
                if let Some(l) = labels.as_object_mut() {
                    for k in ["batch.kubernetes.io/controller-uid", "controller-uid"] {
                        l.insert(k.into(), Value::String(uid.clone()));
                    }
                    for k in ["batch.kubernetes.io/job-name", "job-name"] {
                        l.insert(k.into(), Value::String(name.clone()));
                    }
                }
            }
        }
    }
}

fn default_crd_status(obj: &mut Value) {
    let names = obj.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let mut accepted = names.clone();
    if accepted.get("singular").is_none() {
        let singular = names["kind"].as_str().unwrap_or_default().to_lowercase();
        accepted["singular"] = json!(singular);
    }
    if accepted.get("listKind").is_none() {
        accepted["listKind"] = json!(format!(
            "{}List",
            names["kind"].as_str().unwrap_or_default()
        ));
    }
    let stored: Vec<Value> = obj
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v["storage"].as_bool() == Some(true))
                .map(|v| v["name"].clone())
                .collect()
        })
        .unwrap_or_default();
    let now = crate::meta::now();
    let existing = obj.get("status").cloned().unwrap_or(json!({}));
    let terminating = obj.pointer("/metadata/deletionTimestamp").is_some();
    let mut conditions = vec![
        json!({"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now}),
        json!({"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now}),
    ];
    if terminating {
        conditions.push(json!({"type": "Terminating", "status": "True", "reason": "InstanceDeletionInProgress", "message": "CustomResource deletion is in progress", "lastTransitionTime": now}));
    }
    // Keep transition times stable across updates so that unchanged CRDs stay unchanged.
    if let Some(old) = existing.get("conditions").and_then(Value::as_array) {
        for c in conditions.iter_mut() {
            if let Some(prev) = old
                .iter()
                .find(|p| p["type"] == c["type"] && p["status"] == c["status"])
            {
                c["lastTransitionTime"] = prev["lastTransitionTime"].clone();
            }
        }
    }
    let mut stored_versions: Vec<Value> = existing
        .get("storedVersions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for s in stored {
        if !stored_versions.contains(&s) {
            stored_versions.push(s);
        }
    }
    obj["status"] = json!({
        "acceptedNames": accepted,
        "conditions": conditions,
        "storedVersions": stored_versions,
    });
}

/// Checks a built-in object; returns the field errors the real server would report first.
pub fn validate(rt: &ResourceType, obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "pods")
            if obj
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty) =>
        {
            errs.push(FieldError::required("spec.containers", ""));
        }
        ("apps", "deployments")
        | ("apps", "replicasets")
        | ("apps", "statefulsets")
        | ("apps", "daemonsets") => {
            let sel = obj.pointer("/spec/selector");
            if sel.is_none() {
                errs.push(FieldError::required("spec.selector", ""));
            } else if let Ok(s) = crate::selectors::LabelSelector::from_object(sel, true) {
                let tmpl = obj.pointer("/spec/template").cloned().unwrap_or(json!({}));
                if !s.matches_object(&tmpl) {
                    errs.push(FieldError::invalid(
                        "spec.template.metadata.labels",
                        obj.pointer("/spec/template/metadata/labels")
                            .cloned()
                            .unwrap_or(json!({})),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        }
        ("batch", "cronjobs") => {
            if obj
                .pointer("/spec/schedule")
                .and_then(Value::as_str)
                .is_none()
            {
                errs.push(FieldError::required("spec.schedule", ""));
            } else if let Some(s) = obj.pointer("/spec/schedule").and_then(Value::as_str)
                && crate::cron::Schedule::parse(s).is_err()
            {
                errs.push(FieldError::invalid(
                    "spec.schedule",
                    json!(s),
                    "unparseable cron schedule",
                ));
            }
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => validate_crd(obj, &mut errs),
        _ => {}
    }
    errs
}

fn validate_crd(obj: &Value, errs: &mut Vec<FieldError>) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let group = obj
        .pointer("/spec/group")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let plural = obj
        .pointer("/spec/names/plural")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if group.is_empty() {
        errs.push(FieldError::required("spec.group", ""));
    }
    if plural.is_empty() {
        errs.push(FieldError::required("spec.names.plural", ""));
    }
    if obj
        .pointer("/spec/names/kind")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        errs.push(FieldError::required("spec.names.kind", ""));
    }
    if !matches!(
        obj.pointer("/spec/scope").and_then(Value::as_str),
        Some("Namespaced" | "Cluster")
    ) {
        errs.push(FieldError::new(
            "spec.scope",
            crate::validation::FieldErrorKind::NotSupported,
            Some(obj.pointer("/spec/scope").cloned().unwrap_or(json!(""))),
            "supported values: \"Cluster\", \"Namespaced\"",
        ));
    }
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        errs.push(FieldError::invalid(
            "metadata.name",
            json!(name),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    let versions = obj
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        errs.push(FieldError::invalid(
            "spec.versions",
            json!([]),
            "must have exactly one version marked as storage version",
        ));
    } else if versions
        .iter()
        .filter(|v| v["storage"].as_bool() == Some(true))
        .count()
        != 1
    {
        errs.push(FieldError::invalid(
            "spec.versions",
            Value::Array(versions.clone()),
            "must have exactly one version marked as storage version",
        ));
    }
    for (i, v) in versions.iter().enumerate() {
        let vname = v["name"].as_str().unwrap_or_default();
        if let Ok(sv) = crate::validation::SchemaValidator::from_crd(obj, Some(vname)) {
            for e in sv.rule_compile_errors() {
                errs.push(FieldError::invalid(
                    &format!("spec.versions[{i}].schema.openAPIV3Schema"),
                    json!("object"),
                    format!("compilation failed: {e}"),
                ));
            }
        }
    }
}
