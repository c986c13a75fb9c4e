//! The scheduler's filters: nodeSelector, required node affinity, taints/tolerations, cordon,
//! and the `Unschedulable` message the real scheduler writes.
//!
//! See <https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/> and
//! <https://kubernetes.io/docs/concepts/scheduling-eviction/taint-and-toleration/>.

use std::collections::BTreeMap;

use serde_json::{Value, json};

fn tolerates(tolerations: &[Value], taint: &Value) -> bool {
    tolerations.iter().any(|t| {
        let effect_ok = t["effect"]
            .as_str()
            .is_none_or(|e| e.is_empty() || Some(e) == taint["effect"].as_str());
        let key = t["key"].as_str().unwrap_or_default();
        match t["operator"].as_str().unwrap_or("Equal") {
            "Exists" => effect_ok && (key.is_empty() || Some(key) == taint["key"].as_str()),
            _ => {
                effect_ok
                    && Some(key) == taint["key"].as_str()
                    && t["value"].as_str().unwrap_or_default()
                        == taint["value"].as_str().unwrap_or_default()
            }
        }
    })
}

fn expr_matches(
    expr: &Value,
    labels: &serde_json::Map<String, Value>,
    node_name: &str,
    field: bool,
) -> bool {
    let key = expr["key"].as_str().unwrap_or_default();
    let got = if field {
        (key == "metadata.name").then_some(node_name)
    } else {
        labels.get(key).and_then(Value::as_str)
    };
    let values: Vec<&str> = expr["values"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    match expr["operator"].as_str().unwrap_or_default() {
        "In" => got.is_some_and(|g| values.contains(&g)),
        "NotIn" => got.is_none_or(|g| !values.contains(&g)),
        "Exists" => got.is_some(),
        "DoesNotExist" => got.is_none(),
        "Gt" | "Lt" => {
            let (Some(g), Some(v)) = (
                got.and_then(|g| g.parse::<i64>().ok()),
                values.first().and_then(|v| v.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if expr["operator"] == "Gt" {
                g > v
            } else {
                g < v
            }
        }
        _ => false,
    }
}

/// Why a node does not fit a pod, for the Unschedulable message.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Misfit {
    Affinity,
    Taint(String),
    Unschedulable,
}

pub(crate) fn fit(pod: &Value, node: &Value) -> Result<(), Misfit> {
    let labels = node
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let node_name = node
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let tolerations = pod
        .pointer("/spec/tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true)
        && !tolerates(
            &tolerations,
            &json!({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}),
        )
    {
        return Err(Misfit::Unschedulable);
    }
    if let Some(sel) = pod.pointer("/spec/nodeSelector").and_then(Value::as_object)
        && !sel.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return Err(Misfit::Affinity);
    }
    if let Some(terms) = pod
        .pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")
        .and_then(Value::as_array)
    {
        let any = terms.iter().any(|term| {
            let exprs = term["matchExpressions"].as_array().cloned().unwrap_or_default();
            let fields = term["matchFields"].as_array().cloned().unwrap_or_default();
            (!exprs.is_empty() || !fields.is_empty())
                && exprs.iter().all(|e| expr_matches(e, &labels, node_name, false))
                && fields.iter().all(|e| expr_matches(e, &labels, node_name, true))
        });
        if !any {
            return Err(Misfit::Affinity);
        }
    }
    for taint in node
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        let effect = taint["effect"].as_str().unwrap_or_default();
        if (effect == "NoSchedule" || effect == "NoExecute") && !tolerates(&tolerations, &taint) {
            let k = taint["key"].as_str().unwrap_or_default();
            let v = taint["value"].as_str().unwrap_or_default();
            return Err(Misfit::Taint(if v.is_empty() {
                format!("{{{k}: }}")
            } else {
                format!("{{{k}: {v}}}")
            }));
        }
    }
    Ok(())
}

/// Whether a pod (template) fits a node: selector, required affinity, taints, cordon.
pub fn fits(pod: &Value, node: &Value) -> bool {
    fit(pod, node).is_ok()
}

pub(crate) fn unschedulable_message(total: usize, misfits: &[Misfit]) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for m in misfits {
        let text = match m {
            Misfit::Affinity => "node(s) didn't match Pod's node affinity/selector".to_string(),
            Misfit::Taint(t) => format!("node(s) had untolerated taint {t}"),
            Misfit::Unschedulable => "node(s) were unschedulable".to_string(),
        };
        *counts.entry(text).or_default() += 1;
    }
    let parts: Vec<String> = counts.iter().map(|(t, n)| format!("{n} {t}")).collect();
    if parts.is_empty() {
        format!("0/{total} nodes are available: no nodes registered.")
    } else {
        format!(
            "0/{total} nodes are available: {}. preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling.",
            parts.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::NodeSpec;

    // https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/ and
    // https://kubernetes.io/docs/concepts/scheduling-eviction/taint-and-toleration/
    #[test]
    fn fit_matrix() {
        let hardened = NodeSpec::new("h")
            .label("medplat.io/hardened", "true")
            .taint("dedicated", "medplat", "NoSchedule")
            .to_object(0);
        let plain = NodeSpec::new("p").to_object(1);
        let cordoned = NodeSpec::new("c").unschedulable().to_object(2);
        let tol = json!([{"key": "dedicated", "operator": "Equal", "value": "medplat", "effect": "NoSchedule"}]);
        let affinity = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "medplat.io/hardened", "operator": "In", "values": ["true"]}]}]}}});
        let cases = [
            (json!({"spec": {}}), &plain, Ok(())),
            (
                json!({"spec": {}}),
                &hardened,
                Err(Misfit::Taint("{dedicated: medplat}".into())),
            ),
            (json!({"spec": {"tolerations": tol}}), &hardened, Ok(())),
            (
                json!({"spec": {"tolerations": [{"operator": "Exists"}]}}),
                &hardened,
                Ok(()),
            ),
            (
                json!({"spec": {"nodeSelector": {"medplat.io/hardened": "true"}}}),
                &plain,
                Err(Misfit::Affinity),
            ),
            (
                json!({"spec": {"affinity": affinity, "tolerations": tol}}),
                &hardened,
                Ok(()),
            ),
            (
                json!({"spec": {"affinity": affinity}}),
                &plain,
                Err(Misfit::Affinity),
            ),
            (json!({"spec": {}}), &cordoned, Err(Misfit::Unschedulable)),
        ];
        for (pod, node, want) in cases {
            assert_eq!(fit(&pod, node), want, "{pod}");
        }
        assert_eq!(
            unschedulable_message(2, &[Misfit::Affinity, Misfit::Taint("{a: b}".into())]),
            "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {a: b}. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
        );
    }
}
