//! ObjectMeta helpers: timestamps, uids, generated names and name validation.
//!
//! Name rules follow <https://kubernetes.io/docs/concepts/overview/working-with-objects/names/>.

use serde_json::{Value, json};

use crate::validation::FieldError;

/// Now, as the API server writes timestamps (RFC 3339, whole seconds, UTC).
pub fn now() -> String {
    let ts = jiff::Timestamp::now();
    match jiff::Timestamp::from_second(ts.as_second()) {
        Ok(t) => t.to_string(),
        Err(_) => ts.to_string(),
    }
}

/// A fresh uid.
pub fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The 5-character suffix `generateName` appends (the same alphabet the server uses).
pub fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .take(5)
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// `TotalAnnotationSizeLimitB` of the API server.
const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// Kinds whose names must be RFC 1123 labels rather than subdomains.
fn needs_label(group: &str, plural: &str) -> bool {
    matches!((group, plural), ("", "namespaces") | ("", "services"))
}

/// RBAC objects accept any name that is a valid path segment (e.g. `system:controller:x`).
fn rbac_name_ok(group: &str, name: &str) -> bool {
    group == "rbac.authorization.k8s.io" && !name.is_empty() && !name.contains('/')
}

/// Validates `metadata.name`, labels and annotations.
pub fn validate_meta(group: &str, plural: &str, obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if needs_label(group, plural) {
        if !is_dns_label(name) {
            errs.push(FieldError::invalid(
                "metadata.name",
                json!(name),
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
            ));
        }
    } else if !(is_dns_subdomain(name) || rbac_name_ok(group, name)) {
        errs.push(FieldError::invalid(
            "metadata.name",
            json!(name),
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        ));
    }
    if let Some(labels) = obj.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            let s = format!("{k}={}", v.as_str().unwrap_or("?"));
            if !v.is_string() || crate::selectors::LabelSelector::parse(&s).is_err() {
                errs.push(FieldError::invalid(
                    "metadata.labels",
                    v.clone(),
                    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
                ));
            }
        }
    }
    if let Some(ann) = obj
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
    {
        // The API server caps the total size of annotations (keys plus values) at 256 KiB,
        // which is why large CRDs need `kubectl apply --server-side`.
        let total: usize = ann
            .iter()
            .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
            .sum();
        if total > TOTAL_ANNOTATION_SIZE_LIMIT {
            errs.push(FieldError::new(
                "metadata.annotations",
                crate::validation::FieldErrorKind::TooLong,
                None,
                format!("must have at most {TOTAL_ANNOTATION_SIZE_LIMIT} bytes"),
            ));
        }
        for (k, v) in ann {
            if !v.is_string() {
                errs.push(FieldError::invalid(
                    &format!("metadata.annotations.{k}"),
                    v.clone(),
                    "must be a string",
                ));
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    // https://kubernetes.io/docs/concepts/overview/working-with-objects/names/#dns-subdomain-names
    #[test]
    fn names_matrix() {
        let cases = [
            ("", "configmaps", "ok.name-1", true),
            ("", "configmaps", "Upper", false),
            ("", "configmaps", "-lead", false),
            ("", "namespaces", "a.b", false),
            ("", "namespaces", "team-a", true),
            ("medplat.io", "pipelines", "x", true),
        ];
        for (g, p, name, ok) in cases {
            let errs = validate_meta(g, p, &json!({"metadata": {"name": name}}));
            assert_eq!(errs.is_empty(), ok, "{p}/{name}: {errs:?}");
        }
        assert_eq!(name_suffix().len(), 5);
        let big = json!({"metadata": {"name": "a", "annotations": {"k": "x".repeat(300_000)}}});
        let errs = validate_meta("", "configmaps", &big);
        assert_eq!(
            errs[0].to_string(),
            "metadata.annotations: Too long: must have at most 262144 bytes"
        );
        assert!(now().ends_with('Z'));
    }
}
