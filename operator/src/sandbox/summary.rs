//! The sandbox's readable summary: every resource, its Ready state, the children it made and
//! the policy decisions. Pure: from the objects as read back from the API server.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

/// One medplat resource as the summary shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The kind.
    pub kind: String,
    /// `namespace/name` or `name`.
    pub name: String,
    /// The object as read from the API server.
    pub object: Value,
    /// Its children, as `Kind name`.
    pub children: Vec<String>,
}

/// The status of condition `type_`, with its reason and message.
pub fn condition(obj: &Value, type_: &str) -> Option<(String, String, String)> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
                c["message"].as_str().unwrap_or_default().to_string(),
            )
        })
}

/// Whether the object reports `Ready` for its current generation (True or not): the
/// operator has reached a verdict on it.
pub fn settled(obj: &Value) -> bool {
    let generation = obj.pointer("/metadata/generation").and_then(Value::as_i64);
    let observed = obj
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64);
    condition(obj, "Ready").is_some() && (generation.is_none() || generation == observed)
}

/// Whether the object is Ready.
pub fn ready(obj: &Value) -> bool {
    condition(obj, "Ready").is_some_and(|c| c.0 == "True")
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("-")
}

fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!(
            "{}…",
            s.chars().take(max.saturating_sub(1)).collect::<String>()
        )
    }
}

fn table(out: &mut String, headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::from("  ");
        for (i, c) in cells.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                let _ = write!(s, "{c:w$}  ");
            }
        }
        s.trim_end().to_string()
    };
    let _ = writeln!(
        out,
        "{}",
        line(headers.iter().map(|h| h.to_string()).collect())
    );
    for r in rows {
        let _ = writeln!(out, "{}", line(r));
    }
}

fn ready_cell(obj: &Value) -> String {
    match condition(obj, "Ready") {
        Some((s, _, _)) if s == "True" => "True".into(),
        Some((s, reason, _)) => format!("{s} ({reason})"),
        None => "-".into(),
    }
}

/// Renders the summary.
pub fn render(nodes: &[Value], rows: &[Row]) -> String {
    let mut out = String::new();
    let by_kind = |k: &'static str| rows.iter().filter(move |r| r.kind == k);

    let _ = writeln!(out, "Nodes");
    table(
        &mut out,
        &["NAME", "HARDENED"],
        nodes
            .iter()
            .map(|n| {
                vec![
                    str_at(n, "/metadata/name").to_string(),
                    str_at(n, "/metadata/labels/medplat.io~1hardened").to_string(),
                ]
            })
            .collect(),
    );

    let _ = writeln!(out, "\nStorage tiers");
    table(
        &mut out,
        &["NAME", "DOMAIN", "MAX", "ENCRYPTION", "READY", "BACKEND"],
        by_kind("StorageTier")
            .map(|r| {
                vec![
                    r.name.clone(),
                    str_at(&r.object, "/spec/domain").into(),
                    str_at(&r.object, "/spec/maxLevel").into(),
                    str_at(&r.object, "/spec/encryption").into(),
                    ready_cell(&r.object),
                    condition(&r.object, "BackendVerified")
                        .map(|c| short(&c.2, 60))
                        .unwrap_or_default(),
                ]
            })
            .collect(),
    );

    let _ = writeln!(out, "\nData sources");
    table(
        &mut out,
        &[
            "NAME",
            "SYSTEM",
            "CONNECTOR",
            "LEVEL",
            "READY",
            "REACHABLE",
            "CHILDREN",
        ],
        by_kind("DataSource")
            .map(|r| {
                vec![
                    r.name.clone(),
                    str_at(&r.object, "/spec/system").into(),
                    str_at(&r.object, "/status/connector").into(),
                    str_at(&r.object, "/status/level").into(),
                    ready_cell(&r.object),
                    condition(&r.object, "Reachable")
                        .map(|c| {
                            if c.0 == "True" {
                                c.0
                            } else {
                                format!("{} ({})", c.0, c.1)
                            }
                        })
                        .unwrap_or_default(),
                    r.children.join(", "),
                ]
            })
            .collect(),
    );

    let _ = writeln!(out, "\nPipelines");
    table(
        &mut out,
        &[
            "NAME",
            "OUTPUT",
            "SINK",
            "COMPLIANT",
            "READY",
            "LAST RUN",
            "CHILDREN",
        ],
        by_kind("Pipeline")
            .map(|r| {
                vec![
                    r.name.clone(),
                    str_at(&r.object, "/status/outputClassification/level").into(),
                    format!(
                        "{}/{}",
                        str_at(&r.object, "/spec/sink/tier"),
                        str_at(&r.object, "/spec/sink/dataset")
                    ),
                    condition(&r.object, "PolicyCompliant")
                        .map(|c| c.0)
                        .unwrap_or_default(),
                    ready_cell(&r.object),
                    str_at(&r.object, "/status/lastRun/result").into(),
                    r.children.join(", "),
                ]
            })
            .collect(),
    );

    let _ = writeln!(out, "\nAccess policies");
    table(
        &mut out,
        &[
            "NAME",
            "PURPOSE",
            "MODE",
            "GRANTS",
            "NEXT EXPIRY",
            "READY",
            "CHILDREN",
        ],
        by_kind("AccessPolicy")
            .map(|r| {
                vec![
                    r.name.clone(),
                    str_at(&r.object, "/spec/purpose").into(),
                    str_at(&r.object, "/spec/mode").into(),
                    r.object
                        .pointer("/status/activeGrants")
                        .map(Value::to_string)
                        .unwrap_or_else(|| "-".into()),
                    str_at(&r.object, "/status/nextExpiry").into(),
                    ready_cell(&r.object),
                    r.children.join(", "),
                ]
            })
            .collect(),
    );

    let platforms: Vec<&Row> = by_kind("Platform").collect();
    if !platforms.is_empty() {
        let _ = writeln!(out, "\nPlatform");
        table(
            &mut out,
            &["NAME", "HARDENED NODES", "MODE", "RULES", "READY"],
            platforms
                .iter()
                .map(|r| {
                    vec![
                        r.name.clone(),
                        str_at(&r.object, "/status/hardenedNodes").into(),
                        str_at(&r.object, "/spec/hardening/mode").into(),
                        str_at(&r.object, "/status/rulesTarget").into(),
                        ready_cell(&r.object),
                    ]
                })
                .collect(),
        );
    }

    let _ = writeln!(out, "\nPolicy decisions");
    for r in by_kind("Pipeline") {
        let lineage = r.object.pointer("/status/lineage");
        let sources = lineage
            .and_then(|l| l.get("sources"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" + ")
            })
            .unwrap_or_default();
        let sink = lineage
            .and_then(|l| l.get("sink"))
            .and_then(Value::as_str)
            .unwrap_or("-");
        let verdict = match condition(&r.object, "PolicyCompliant") {
            Some((s, _, _)) if s == "True" => "allowed".to_string(),
            Some((_, reason, message)) => format!("BLOCKED {reason}: {}", short(&message, 160)),
            None => "not decided".into(),
        };
        let _ = writeln!(out, "  {}: {sources} → {sink}: {verdict}", r.name);
    }
    out
}

/// Counts rows per Ready state, for the closing line.
pub fn tally(rows: &[Row]) -> BTreeMap<&'static str, usize> {
    let mut t = BTreeMap::new();
    for r in rows {
        *t.entry(if ready(&r.object) {
            "ready"
        } else {
            "not ready"
        })
        .or_insert(0) += 1;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocked_pipeline_says_why_and_tables_align() {
        let p: Value = serde_json::json!({
            "spec": {"sink": {"tier": "research-l2", "dataset": "x"}},
            "metadata": {"generation": 2},
            "status": {"observedGeneration": 2, "outputClassification": {"level": "L4"},
                "conditions": [
                    {"type": "Ready", "status": "False", "reason": "PolicyViolation", "message": "m"},
                    {"type": "PolicyCompliant", "status": "False", "reason": "TierLevelTooLow", "message": "too high"}],
                "lineage": {"sources": ["clinical/lis (L4, clinical)"], "sink": "research-l2/x (L4)"}}
        });
        let rows = vec![Row {
            kind: "Pipeline".into(),
            name: "clinical/leak".into(),
            object: p.clone(),
            children: vec!["ConfigMap medplat-pipeline-leak".into()],
        }];
        let s = render(&[], &rows);
        assert!(s.contains("clinical/leak: clinical/lis (L4, clinical) → research-l2/x (L4): BLOCKED TierLevelTooLow: too high"), "{s}");
        assert!(s.contains("False (PolicyViolation)"), "{s}");
        assert!(settled(&p) && !ready(&p));
        assert_eq!(tally(&rows).get("not ready"), Some(&1));
    }
}
