//! Label and field selectors, parsed from query strings or `LabelSelector` objects.
//!
//! Reproduces <https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors>
//! and <https://kubernetes.io/docs/concepts/overview/working-with-objects/field-selectors/>.

use std::collections::BTreeMap;

use serde_json::Value;

/// One label requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// `k=v` / `k==v` / `k in (v1,v2)`.
    In(String, Vec<String>),
    /// `k!=v` / `k notin (v1,v2)`.
    NotIn(String, Vec<String>),
    /// `k`.
    Exists(String),
    /// `!k`.
    DoesNotExist(String),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    /// All requirements must hold. `None` means the selector matches nothing.
    pub requirements: Option<Vec<Requirement>>,
}

/// A selector string the API server would reject with 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

fn valid_label_value(v: &str) -> bool {
    v.len() <= 63
        && (v.is_empty()
            || (v
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
                && v.starts_with(|c: char| c.is_ascii_alphanumeric())
                && v.ends_with(|c: char| c.is_ascii_alphanumeric())))
}

fn valid_label_key(k: &str) -> bool {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            })
    });
    prefix_ok && !name.is_empty() && valid_label_value(name)
}

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn check_key(k: &str) -> Result<String, SelectorError> {
    if valid_label_key(k) {
        Ok(k.to_string())
    } else {
        Err(SelectorError(format!(
            "unable to parse requirement: <nil>: Invalid value: \"{k}\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        )))
    }
}

fn check_value(k: &str, v: &str) -> Result<String, SelectorError> {
    if valid_label_value(v) {
        Ok(v.to_string())
    } else {
        Err(SelectorError(format!(
            "unable to parse requirement: values[0][{k}]: Invalid value: \"{v}\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        )))
    }
}

fn parse_set(k: &str, rest: &str) -> Result<Vec<String>, SelectorError> {
    let inner = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| {
            SelectorError(format!(
                "unable to parse requirement: found '{rest}', expected: '('"
            ))
        })?;
    inner.split(',').map(|v| check_value(k, v.trim())).collect()
}

impl LabelSelector {
    /// Parses the `labelSelector` query string form.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(LabelSelector {
                requirements: Some(reqs),
            });
        }
        for part in split_top(s) {
            let part = part.trim();
            if part.is_empty() {
                return Err(SelectorError(
                    "unable to parse requirement: found '', expected: identifier".into(),
                ));
            }
            let req = if let Some(k) = part.strip_prefix('!') {
                Requirement::DoesNotExist(check_key(k.trim())?)
            } else if let Some((k, v)) = part.split_once("!=") {
                let k = check_key(k.trim())?;
                let v = check_value(&k, v.trim())?;
                Requirement::NotIn(k, vec![v])
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                let k = check_key(k.trim())?;
                let v = check_value(&k, v.trim())?;
                Requirement::In(k, vec![v])
            } else if let Some((k, rest)) = part.split_once(" notin ") {
                let k = check_key(k.trim())?;
                let vals = parse_set(&k, rest)?;
                Requirement::NotIn(k, vals)
            } else if let Some((k, rest)) = part.split_once(" in ") {
                let k = check_key(k.trim())?;
                let vals = parse_set(&k, rest)?;
                Requirement::In(k, vals)
            } else {
                Requirement::Exists(check_key(part)?)
            };
            reqs.push(req);
        }
        Ok(LabelSelector {
            requirements: Some(reqs),
        })
    }

    /// Builds a selector from a `metav1.LabelSelector` object; a null/absent one matches nothing
    /// when `null_matches_nothing` (as workload selectors), else everything.
    pub fn from_object(
        v: Option<&Value>,
        null_matches_nothing: bool,
    ) -> Result<Self, SelectorError> {
        let Some(v) = v.filter(|v| !v.is_null()) else {
            return Ok(LabelSelector {
                requirements: if null_matches_nothing {
                    None
                } else {
                    Some(Vec::new())
                },
            });
        };
        let mut reqs = Vec::new();
        if let Some(ml) = v.get("matchLabels").and_then(Value::as_object) {
            for (k, val) in ml {
                reqs.push(Requirement::In(
                    k.clone(),
                    vec![val.as_str().unwrap_or_default().to_string()],
                ));
            }
        }
        if let Some(exprs) = v.get("matchExpressions").and_then(Value::as_array) {
            for e in exprs {
                let key = e["key"].as_str().unwrap_or_default().to_string();
                let values: Vec<String> = e["values"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                reqs.push(match e["operator"].as_str() {
                    Some("In") => Requirement::In(key, values),
                    Some("NotIn") => Requirement::NotIn(key, values),
                    Some("Exists") => Requirement::Exists(key),
                    Some("DoesNotExist") => Requirement::DoesNotExist(key),
                    other => {
                        return Err(SelectorError(format!(
                            "{other:?} is not a valid label selector operator"
                        )));
                    }
                });
            }
        }
        Ok(LabelSelector {
            requirements: Some(reqs),
        })
    }

    /// Whether the selector matches nothing but is not "empty" (null workload selectors).
    pub fn matches(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        let Some(reqs) = &self.requirements else {
            return false;
        };
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        reqs.iter().all(|r| match r {
            Requirement::In(k, vs) => get(k).is_some_and(|v| vs.iter().any(|x| x == v)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|v| !vs.iter().any(|x| x == v)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::DoesNotExist(k) => get(k).is_none(),
        })
    }

    /// Matches an object's `metadata.labels`.
    pub fn matches_object(&self, obj: &Value) -> bool {
        self.matches(obj.pointer("/metadata/labels").and_then(Value::as_object))
    }
}

/// A parsed field selector: `(field, wanted, equal)` terms, all of which must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<(String, String, bool)>,
}

/// Fields each resource can be selected by, beyond `metadata.name` and `metadata.namespace`.
fn extra_fields(group: &str, resource: &str) -> &'static [&'static str] {
    match (group, resource) {
        ("", "pods") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        ("", "events") | ("events.k8s.io", "events") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
            "regarding.kind",
            "regarding.name",
            "regarding.namespace",
            "regarding.uid",
        ],
        ("", "secrets") => &["type"],
        ("", "nodes") => &["spec.unschedulable"],
        ("", "namespaces") => &["status.phase"],
        ("batch", "jobs") => &["status.successful"],
        ("apps", "replicasets") => &["status.replicas"],
        _ => &[],
    }
}

impl FieldSelector {
    /// Parses `a=b,c!=d` for a resource, rejecting fields the real server does not index.
    pub fn parse(s: &str, group: &str, resource: &str) -> Result<Self, SelectorError> {
        let mut terms = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, value, equal) = if let Some((f, v)) = part.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (f, v, true)
            } else {
                return Err(SelectorError(format!(
                    "invalid selector: '{part}'; can't understand '{part}'"
                )));
            };
            let field = field.trim();
            if field != "metadata.name"
                && field != "metadata.namespace"
                && !extra_fields(group, resource).contains(&field)
            {
                return Err(SelectorError(format!("field label not supported: {field}")));
            }
            terms.push((field.to_string(), value.trim().to_string(), equal));
        }
        Ok(FieldSelector { terms })
    }

    /// Whether an object (in its served form) matches.
    pub fn matches(&self, obj: &Value) -> bool {
        self.terms.iter().all(|(field, want, equal)| {
            let got = field_value(obj, field);
            (got == *want) == *equal
        })
    }

    /// The name a `metadata.name=x` term pins, used to answer single-object watches quickly.
    pub fn pinned_name(&self) -> Option<&str> {
        self.terms
            .iter()
            .find(|(f, _, eq)| f == "metadata.name" && *eq)
            .map(|(_, v, _)| v.as_str())
    }
}

fn field_value(obj: &Value, field: &str) -> String {
    let mut cur = obj;
    if field == "source" {
        return obj
            .pointer("/source/component")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
    }
    for part in field.split('.') {
        match cur.get(part) {
            Some(v) => cur = v,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Labels of an object as a sorted map (for tests and printing).
pub fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors
    #[test]
    fn label_selector_matrix() {
        let obj = json!({"metadata": {"labels": {"app": "web", "tier": "front"}}});
        let cases = [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app in (web,db)", true),
            ("app notin (web)", false),
            ("tier", true),
            ("!tier", false),
            ("!missing", true),
            ("app=web,tier=back", false),
            ("missing!=x", true),
        ];
        for (sel, want) in cases {
            let s = LabelSelector::parse(sel).expect(sel);
            assert_eq!(s.matches_object(&obj), want, "{sel}");
        }
    }

    #[test]
    fn invalid_label_selectors_are_rejected() {
        for bad in ["a=(b", "app in web", "Bad Key=x", ",", "a=b,"] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad}");
        }
    }

    // https://kubernetes.io/docs/concepts/overview/working-with-objects/field-selectors/#supported-fields
    #[test]
    fn field_selectors_accept_only_indexed_fields() {
        let pod = json!({"metadata": {"name": "p", "namespace": "n"}, "spec": {"nodeName": "a"}, "status": {"phase": "Running"}});
        let s = FieldSelector::parse("spec.nodeName=a,status.phase!=Failed", "", "pods")
            .expect("valid");
        assert!(s.matches(&pod));
        assert!(FieldSelector::parse("spec.nodeName=a", "medplat.io", "pipelines").is_err());
        let e = FieldSelector::parse("spec.foo=a", "", "configmaps").expect_err("unsupported");
        assert_eq!(e.0, "field label not supported: spec.foo");
        assert_eq!(
            FieldSelector::parse("metadata.name=p", "", "pods")
                .expect("ok")
                .pinned_name(),
            Some("p")
        );
    }

    #[test]
    fn workload_selector_objects() {
        let s = LabelSelector::from_object(
            Some(&json!({"matchLabels": {"a": "1"}, "matchExpressions": [{"key": "b", "operator": "Exists"}]})),
            true,
        )
        .expect("valid");
        assert!(s.matches_object(&json!({"metadata": {"labels": {"a": "1", "b": ""}}})));
        assert!(!s.matches_object(&json!({"metadata": {"labels": {"a": "1"}}})));
        assert!(
            !LabelSelector::from_object(None, true)
                .expect("ok")
                .matches_object(&json!({}))
        );
    }
}
