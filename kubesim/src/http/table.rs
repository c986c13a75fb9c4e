//! `meta.k8s.io/v1` Table responses, so that `kubectl get` prints printer columns.
//!
//! Reproduces <https://kubernetes.io/docs/reference/using-api/api-concepts/#receiving-resources-as-tables>
//! and CRD `additionalPrinterColumns`
//! (<https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#additional-printer-columns>).

use serde_json::{Value, json};

use crate::registry::ResourceType;

/// Evaluates the JSONPath subset printer columns use: `.a.b`, `.a[0]`, `.a[*].b`,
/// `.a[?(@.k=="v")].b`, optionally wrapped in `{}`.
pub fn jsonpath<'a>(obj: &'a Value, path: &str) -> Vec<&'a Value> {
    let p = path.trim().trim_start_matches('{').trim_end_matches('}');
    let mut current: Vec<&Value> = vec![obj];
    let mut rest = p;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let key = &r[..end];
            rest = &r[end..];
            if key.is_empty() {
                continue;
            }
            current = current.into_iter().filter_map(|v| v.get(key)).collect();
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = find_close(r) else {
                return Vec::new();
            };
            let inner = &r[..end];
            rest = &r[end + 1..];
            current = current.into_iter().flat_map(|v| index(v, inner)).collect();
        } else {
            return Vec::new();
        }
    }
    current
}

fn find_close(s: &str) -> Option<usize> {
    let mut depth = 0;
    let mut in_str = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' | '\'' => in_str = !in_str,
            '[' | '(' if !in_str => depth += 1,
            ')' if !in_str => depth -= 1,
            ']' if !in_str && depth == 0 => return Some(i),
            ']' if !in_str => depth -= 1,
            _ => {}
        }
    }
    None
}

fn index<'a>(v: &'a Value, inner: &str) -> Vec<&'a Value> {
    let Some(arr) = v.as_array() else {
        return Vec::new();
    };
    if inner == "*" {
        return arr.iter().collect();
    }
    if let Ok(i) = inner.parse::<i64>() {
        let idx = if i < 0 { arr.len() as i64 + i } else { i };
        return usize::try_from(idx)
            .ok()
            .and_then(|i| arr.get(i))
            .into_iter()
            .collect();
    }
    if let Some(filter) = inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) {
        let (lhs, op, rhs) = if let Some((l, r)) = filter.split_once("==") {
            (l, true, r)
        } else if let Some((l, r)) = filter.split_once("!=") {
            (l, false, r)
        } else {
            return Vec::new();
        };
        let field = lhs.trim().trim_start_matches('@');
        let want = rhs.trim().trim_matches('"').trim_matches('\'');
        return arr
            .iter()
            .filter(|item| {
                let got = jsonpath(item, field).first().map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                });
                (got.as_deref() == Some(want)) == op
            })
            .collect();
    }
    Vec::new()
}

/// Kubernetes' human-readable age (`5m`, `3h12m`, `4d`).
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{}h", hours / 24, h)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let d = (hours / 24) % 365;
        return if d == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{}d", hours / 24 / 365, d)
        };
    }
    format!("{}y", hours / 24 / 365)
}

fn age(ts: Option<&Value>) -> Value {
    let Some(t) = ts
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
    else {
        return Value::Null;
    };
    let secs = jiff::Timestamp::now().as_second() - t.as_second();
    Value::String(human_duration(secs))
}

struct Column {
    name: &'static str,
    kind: &'static str,
    path: &'static str,
}

const fn col(name: &'static str, kind: &'static str, path: &'static str) -> Column {
    Column { name, kind, path }
}

/// Server-side columns of a few built-in kinds, after the real server's printers (a subset).
/// Paths starting with `#` are computed (see [`computed`]). The bool says whether a Name column
/// comes first (Events have none).
fn builtin_columns(rt: &ResourceType) -> (bool, Vec<Column>) {
    let cols = match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "pods") => vec![
            col("Ready", "string", "#podready"),
            col("Status", "string", "#podstatus"),
            col("Restarts", "integer", "#restarts"),
        ],
        ("", "namespaces") => vec![col("Status", "string", ".status.phase")],
        ("", "nodes") => vec![
            col("Status", "string", "#nodestatus"),
            col("Roles", "string", "#roles"),
        ],
        ("apps", "deployments") | ("apps", "statefulsets") => {
            vec![col("Ready", "string", "#replicasready")]
        }
        ("apps", "daemonsets") => vec![
            col("Desired", "integer", ".status.desiredNumberScheduled"),
            col("Current", "integer", ".status.currentNumberScheduled"),
            col("Ready", "integer", ".status.numberReady"),
        ],
        ("apps", "replicasets") => vec![
            col("Desired", "integer", ".spec.replicas"),
            col("Current", "integer", ".status.replicas"),
            col("Ready", "integer", ".status.readyReplicas"),
        ],
        ("batch", "jobs") => vec![
            col("Status", "string", "#jobstatus"),
            col("Completions", "string", "#completions"),
        ],
        ("batch", "cronjobs") => vec![
            col("Schedule", "string", ".spec.schedule"),
            col("Suspend", "boolean", ".spec.suspend"),
            col("Active", "integer", "#activejobs"),
            col("Last Schedule", "date", ".status.lastScheduleTime"),
        ],
        ("", "events") | ("events.k8s.io", "events") => {
            return (
                false,
                vec![
                    col("Last Seen", "string", "#lastseen"),
                    col("Type", "string", ".type"),
                    col("Reason", "string", ".reason"),
                    col("Object", "string", "#object"),
                    col("Message", "string", "#message"),
                ],
            );
        }
        _ => Vec::new(),
    };
    (true, cols)
}

fn s<'a>(o: &'a Value, ptr: &str) -> &'a str {
    o.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

/// Computed cells, worded as the real server's printers word them.
fn computed(o: &Value, what: &str) -> Value {
    match what {
        "#podready" => {
            let total = o
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let ready = o
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .map_or(0, |cs| cs.iter().filter(|c| c["ready"] == true).count());
            json!(format!("{ready}/{total}"))
        }
        "#podstatus" => {
            if o.pointer("/metadata/deletionTimestamp").is_some() {
                return json!("Terminating");
            }
            let waiting = o
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .and_then(|cs| {
                    cs.iter()
                        .find_map(|c| c.pointer("/state/waiting/reason").and_then(Value::as_str))
                });
            let terminated = o
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .and_then(|cs| {
                    cs.iter().find_map(|c| {
                        c.pointer("/state/terminated/reason")
                            .and_then(Value::as_str)
                    })
                });
            json!(
                waiting
                    .or(terminated)
                    .unwrap_or(match s(o, "/status/phase") {
                        "" => "Pending",
                        p => p,
                    })
            )
        }
        "#restarts" => json!(
            o.pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .map_or(0, |cs| cs
                    .iter()
                    .filter_map(|c| c["restartCount"].as_i64())
                    .sum::<i64>())
        ),
        "#nodestatus" => {
            let ready = o
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
                .is_some_and(|c| c["status"] == "True");
            let mut st = if ready {
                "Ready".to_string()
            } else {
                "NotReady".to_string()
            };
            if o.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
                st.push_str(",SchedulingDisabled");
            }
            json!(st)
        }
        "#roles" => {
            let roles: Vec<&str> = o
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .map(|l| {
                    l.keys()
                        .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                        .collect()
                })
                .unwrap_or_default();
            json!(if roles.is_empty() {
                "<none>".to_string()
            } else {
                roles.join(",")
            })
        }
        "#replicasready" => json!(format!(
            "{}/{}",
            o.pointer("/status/readyReplicas")
                .and_then(Value::as_i64)
                .unwrap_or(0),
            o.pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1)
        )),
        "#jobstatus" => {
            let conds = o
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let has = |t: &str| {
                conds
                    .iter()
                    .any(|c| c["type"] == t && c["status"] == "True")
            };
            json!(if has("Complete") {
                "Complete"
            } else if has("Failed") {
                "Failed"
            } else if has("Suspended") {
                "Suspended"
            } else {
                "Running"
            })
        }
        "#completions" => json!(format!(
            "{}/{}",
            o.pointer("/status/succeeded")
                .and_then(Value::as_i64)
                .unwrap_or(0),
            o.pointer("/spec/completions")
                .and_then(Value::as_i64)
                .unwrap_or(1)
        )),
        "#activejobs" => json!(
            o.pointer("/status/active")
                .and_then(Value::as_array)
                .map_or(0, Vec::len)
        ),
        "#lastseen" => {
            let t = [
                "/series/lastObservedTime",
                "/lastTimestamp",
                "/deprecatedLastTimestamp",
                "/eventTime",
                "/metadata/creationTimestamp",
            ]
            .iter()
            .find_map(|p| o.pointer(p).filter(|v| v.is_string()));
            age(t)
        }
        "#object" => {
            let inv = o
                .get("involvedObject")
                .or_else(|| o.get("regarding"))
                .cloned()
                .unwrap_or(json!({}));
            let kind = inv["kind"].as_str().unwrap_or_default().to_lowercase();
            match inv["name"].as_str() {
                Some(n) if !n.is_empty() => json!(format!("{kind}/{n}")),
                _ => json!(kind),
            }
        }
        "#message" => json!(
            o.get("message")
                .or_else(|| o.get("note"))
                .and_then(Value::as_str)
                .unwrap_or_default()
        ),
        _ => Value::Null,
    }
}

fn cell(obj: &Value, path: &str, kind: &str) -> Value {
    if path.starts_with('#') {
        return computed(obj, path);
    }
    let found = jsonpath(obj, path);
    match found.as_slice() {
        [] => Value::Null,
        [one] if kind == "date" => age(Some(one)),
        [one] => (*one).clone(),
        many => Value::String(
            many.iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
        ),
    }
}

/// How much of each object a Table row embeds (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    /// Nothing.
    None,
    /// `PartialObjectMetadata` (the default).
    Metadata,
    /// The whole object.
    Object,
}

/// Renders objects as a Table.
pub fn table(
    rt: &ResourceType,
    objects: &[Value],
    resource_version: &str,
    continue_token: Option<&str>,
    include: IncludeObject,
) -> Value {
    let custom: Vec<(String, String, String, i64)> = rt
        .printer_columns
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_string(),
                c["type"].as_str().unwrap_or("string").to_string(),
                c["jsonPath"].as_str().unwrap_or_default().to_string(),
                c["priority"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    let (with_name, columns) = if rt.is_custom() && !custom.is_empty() {
        (true, custom)
    } else {
        let (with_name, builtin) = builtin_columns(rt);
        let mut cols: Vec<(String, String, String, i64)> = builtin
            .into_iter()
            .map(|c| {
                (
                    c.name.to_string(),
                    c.kind.to_string(),
                    c.path.to_string(),
                    0,
                )
            })
            .collect();
        if with_name {
            cols.push((
                "Age".into(),
                "date".into(),
                ".metadata.creationTimestamp".into(),
                0,
            ));
        }
        (with_name, cols)
    };
    let mut defs = Vec::new();
    if with_name {
        defs.push(json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}));
    }
    for (name, kind, _, priority) in &columns {
        let (ty, format) = if kind == "date" {
            ("string", "date")
        } else {
            (kind.as_str(), "")
        };
        defs.push(json!({"name": name, "type": ty, "format": format, "description": "", "priority": priority}));
    }
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut cells = Vec::new();
            if with_name {
                cells.push(o.pointer("/metadata/name").cloned().unwrap_or(Value::Null));
            }
            for (_, kind, path, _) in &columns {
                cells.push(cell(o, path, kind));
            }
            let mut row = json!({"cells": cells});
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    let mut meta = o.get("metadata").cloned().unwrap_or(json!({}));
                    if let Some(m) = meta.as_object_mut() {
                        m.remove("managedFields");
                    }
                    row["object"] = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta});
                }
                IncludeObject::Object => row["object"] = o.clone(),
            }
            row
        })
        .collect();
    let mut meta = json!({"resourceVersion": resource_version});
    if let Some(c) = continue_token {
        meta["continue"] = json!(c);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": defs,
        "rows": rows,
    })
}

/// Whether an `Accept` header asks for metadata only (`PartialObjectMetadata[List]`), as
/// kube's `metadata_watcher` and `Api::get_metadata` do.
pub fn wants_metadata(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=PartialObjectMetadata"))
}

/// An object's `PartialObjectMetadata` form.
pub fn partial(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
    })
}

/// Whether an `Accept` header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

#[cfg(test)]
mod tests {
    use super::*;

    // https://kubernetes.io/docs/reference/kubectl/jsonpath/
    #[test]
    fn jsonpath_matrix() {
        let o = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Stalled", "status": "False"}]}, "spec": {"a": [1, 2]}});
        let cases = [
            (
                ".status.conditions[?(@.type==\"Ready\")].status",
                vec![json!("True")],
            ),
            (
                ".status.conditions[?(@.type!=\"Ready\")].type",
                vec![json!("Stalled")],
            ),
            (".spec.a[*]", vec![json!(1), json!(2)]),
            (".spec.a[-1]", vec![json!(2)]),
            ("{.spec.a[0]}", vec![json!(1)]),
            (".missing.x", vec![]),
            (".spec.a[", vec![]),
        ];
        for (p, want) in cases {
            let got: Vec<Value> = jsonpath(&o, p).into_iter().cloned().collect();
            assert_eq!(got, want, "{p}");
        }
    }

    #[test]
    fn human_durations() {
        for (s, want) in [
            (5, "5s"),
            (125, "2m5s"),
            (600, "10m"),
            (3 * 3600 + 60, "3h1m"),
            (50 * 3600, "2d2h"),
            (800 * 86400, "2y70d"),
        ] {
            assert_eq!(human_duration(s), want);
        }
        assert!(wants_table(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        ));
        assert!(!wants_table("application/json"));
    }
}
