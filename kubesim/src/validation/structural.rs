//! Structural-schema pruning, defaulting and OpenAPI value validation of custom resources.
//!
//! Reproduces <https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#field-pruning>,
//! `#defaulting` and `#validation`: unknown fields are pruned, nulls of non-nullable fields are
//! dropped before defaulting, defaults fill absent fields, then values are checked.

use serde_json::{Map, Value};

use super::field_error::{FieldError, FieldErrorKind, go_value, json_type_name};

/// ObjectMeta fields: everything else under a root or embedded `metadata` is pruned.
const OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// Joins a property onto a field path (`spec` + `steps` → `spec.steps`).
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn flag(schema: &Value, name: &str) -> bool {
    schema.get(name).and_then(Value::as_bool) == Some(true)
}

/// Removes unknown fields (recording their paths) and nulls of non-nullable fields.
pub(crate) fn prune(
    schema: &Value,
    value: &mut Value,
    path: &str,
    is_root: bool,
    pruned: &mut Vec<String>,
) {
    match value {
        Value::Object(map) => prune_object(schema, map, path, is_root, pruned),
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune(item_schema, item, &format!("{path}[{i}]"), false, pruned);
                }
            }
        }
        _ => {}
    }
}

fn prune_object(
    schema: &Value,
    map: &mut Map<String, Value>,
    path: &str,
    is_root: bool,
    pruned: &mut Vec<String>,
) {
    let embedded = is_root || flag(schema, "x-kubernetes-embedded-resource");
    let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
    let properties = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties");
    let keys: Vec<String> = map.keys().cloned().collect();
    for key in keys {
        let child_path = join(path, &key);
        if embedded && (key == "apiVersion" || key == "kind") {
            continue;
        }
        if embedded && key == "metadata" {
            if let Some(Value::Object(meta)) = map.get_mut("metadata") {
                meta.retain(|k, _| {
                    let keep = OBJECT_META_FIELDS.contains(&k.as_str());
                    if !keep {
                        pruned.push(join(&child_path, k));
                    }
                    keep
                });
            }
            continue;
        }
        let child_schema = properties
            .and_then(|p| p.get(&key))
            .or_else(|| additional.filter(|a| a.is_object()));
        match child_schema {
            Some(cs) => {
                let is_null = map.get(&key).is_some_and(Value::is_null);
                if is_null && !flag(cs, "nullable") {
                    map.remove(&key);
                    continue;
                }
                if let Some(child) = map.get_mut(&key) {
                    prune(cs, child, &child_path, false, pruned);
                }
            }
            None => {
                let allowed = preserve || additional.and_then(Value::as_bool) == Some(true);
                if !allowed {
                    map.remove(&key);
                    pruned.push(child_path);
                }
            }
        }
    }
}

/// Fills absent fields from their schema's `default`, top-down.
pub(crate) fn apply_defaults(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (key, ps) in props {
                    if !map.contains_key(key)
                        && let Some(d) = ps.get("default")
                    {
                        map.insert(key.clone(), d.clone());
                    }
                    if let Some(child) = map.get_mut(key) {
                        apply_defaults(ps, child);
                    }
                }
            }
            if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                let known = schema.get("properties").and_then(Value::as_object);
                for (key, child) in map.iter_mut() {
                    if known.is_none_or(|k| !k.contains_key(key)) {
                        apply_defaults(additional, child);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    apply_defaults(item_schema, item);
                }
            }
        }
        _ => {}
    }
}

fn is_integer(v: &Value) -> bool {
    match v {
        Value::Number(n) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => false,
    }
}

fn type_matches(expected: &str, v: &Value) -> bool {
    match expected {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => is_integer(v),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => true,
    }
}

/// Checks a value against its schema, appending one error per violated constraint.
pub(crate) fn validate(schema: &Value, v: &Value, path: &str, errors: &mut Vec<FieldError>) {
    if v.is_null() {
        if !flag(schema, "nullable") && schema.get("type").is_some() {
            let t = schema
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("object");
            errors.push(FieldError::new(
                path,
                FieldErrorKind::TypeInvalid,
                Some(Value::String("null".into())),
                format!("{path} in body must be of type {t}: \"null\""),
            ));
        }
        return;
    }
    if flag(schema, "x-kubernetes-int-or-string") {
        if !(is_integer(v) || v.is_string()) {
            let actual = json_type_name(v);
            errors.push(FieldError::new(
                path,
                FieldErrorKind::TypeInvalid,
                Some(Value::String(actual.into())),
                format!("{path} in body must be of type integer,string: \"{actual}\""),
            ));
            return;
        }
    } else if let Some(t) = schema.get("type").and_then(Value::as_str)
        && !type_matches(t, v)
    {
        let actual = json_type_name(v);
        errors.push(FieldError::new(
            path,
            FieldErrorKind::TypeInvalid,
            Some(Value::String(actual.into())),
            format!("{path} in body must be of type {t}: \"{actual}\""),
        ));
        return;
    }
    if let Some(choices) = schema.get("enum").and_then(Value::as_array)
        && !choices.contains(v)
    {
        let supported: Vec<String> = choices.iter().map(go_value).collect();
        errors.push(FieldError::new(
            path,
            FieldErrorKind::NotSupported,
            Some(v.clone()),
            format!("supported values: {}", supported.join(", ")),
        ));
    }
    match v {
        Value::String(s) => validate_string(schema, s, v, path, errors),
        Value::Number(_) => validate_number(schema, v, path, errors),
        Value::Array(items) => validate_array(schema, items, path, errors),
        Value::Object(map) => validate_object(schema, map, path, errors),
        _ => {}
    }
    validate_combinators(schema, v, path, errors);
}

fn validate_string(schema: &Value, s: &str, v: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let len = s.chars().count() as u64;
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && len > max
    {
        errors.push(FieldError::new(
            path,
            FieldErrorKind::TooLong,
            None,
            format!("may not be more than {max} bytes"),
        ));
    }
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && len < min
    {
        errors.push(FieldError::invalid(
            path,
            v.clone(),
            format!("{path} in body should be at least {min} chars long"),
        ));
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        match regex::Regex::new(pattern) {
            Ok(re) if !re.is_match(s) => errors.push(FieldError::invalid(
                path,
                v.clone(),
                format!("{path} in body should match '{pattern}'"),
            )),
            Ok(_) => {}
            Err(e) => errors.push(FieldError::invalid(
                path,
                v.clone(),
                format!("the schema's pattern {pattern:?} does not compile: {e}"),
            )),
        }
    }
    if let Some(format) = schema.get("format").and_then(Value::as_str) {
        let ok = match format {
            "date-time" => s.parse::<jiff::Timestamp>().is_ok(),
            "date" => s.parse::<jiff::civil::Date>().is_ok(),
            "byte" => {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.decode(s).is_ok()
            }
            _ => true,
        };
        if !ok {
            errors.push(FieldError::invalid(
                path,
                v.clone(),
                format!("{path} in body must be of type {format}: {s:?}"),
            ));
        }
    }
}

fn validate_number(schema: &Value, v: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let Some(n) = v.as_f64() else { return };
    let exclusive_min = flag(schema, "exclusiveMinimum");
    let exclusive_max = flag(schema, "exclusiveMaximum");
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
        let bad = if exclusive_min { n <= min } else { n < min };
        if bad {
            let rel = if exclusive_min {
                "greater than"
            } else {
                "greater than or equal to"
            };
            errors.push(FieldError::invalid(
                path,
                v.clone(),
                format!("{path} in body should be {rel} {}", schema["minimum"]),
            ));
        }
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
        let bad = if exclusive_max { n >= max } else { n > max };
        if bad {
            let rel = if exclusive_max {
                "less than"
            } else {
                "less than or equal to"
            };
            errors.push(FieldError::invalid(
                path,
                v.clone(),
                format!("{path} in body should be {rel} {}", schema["maximum"]),
            ));
        }
    }
    if let Some(m) = schema.get("multipleOf").and_then(Value::as_f64)
        && m > 0.0
        && (n / m).fract() != 0.0
    {
        errors.push(FieldError::invalid(
            path,
            v.clone(),
            format!(
                "{path} in body should be a multiple of {}",
                schema["multipleOf"]
            ),
        ));
    }
}

fn validate_array(schema: &Value, items: &[Value], path: &str, errors: &mut Vec<FieldError>) {
    let len = items.len() as u64;
    if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
        && len > max
    {
        errors.push(FieldError::new(
            path,
            FieldErrorKind::TooMany,
            Some(Value::from(len)),
            format!("must have at most {max} items"),
        ));
    }
    if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
        && len < min
    {
        errors.push(FieldError::invalid(
            path,
            Value::from(len),
            format!("{path} in body should have at least {min} items"),
        ));
    }
    match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => {
            for (i, item) in items.iter().enumerate() {
                if items[..i].contains(item) {
                    errors.push(FieldError::new(
                        &format!("{path}[{i}]"),
                        FieldErrorKind::Duplicate,
                        Some(item.clone()),
                        "",
                    ));
                }
            }
        }
        Some("map") => {
            let keys: Vec<&str> = schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|k| k.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let key_of = |item: &Value| -> Vec<Value> {
                keys.iter()
                    .map(|k| item.get(*k).cloned().unwrap_or(Value::Null))
                    .collect()
            };
            for (i, item) in items.iter().enumerate() {
                let k = key_of(item);
                if items[..i].iter().any(|earlier| key_of(earlier) == k) {
                    let shown: Map<String, Value> = keys
                        .iter()
                        .zip(k.iter())
                        .map(|(n, v)| (n.to_string(), v.clone()))
                        .collect();
                    errors.push(FieldError::new(
                        &format!("{path}[{i}]"),
                        FieldErrorKind::Duplicate,
                        Some(Value::String(Value::Object(shown).to_string())),
                        "",
                    ));
                }
            }
        }
        _ => {}
    }
    if let Some(item_schema) = schema.get("items") {
        for (i, item) in items.iter().enumerate() {
            validate(item_schema, item, &format!("{path}[{i}]"), errors);
        }
    }
}

fn validate_object(
    schema: &Value,
    map: &Map<String, Value>,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for r in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(r) {
                errors.push(FieldError::required(&join(path, r), ""));
            }
        }
    }
    let count = map.len() as u64;
    if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
        && count > max
    {
        errors.push(FieldError::new(
            path,
            FieldErrorKind::TooMany,
            Some(Value::from(count)),
            format!("must have at most {max} items"),
        ));
    }
    if let Some(min) = schema.get("minProperties").and_then(Value::as_u64)
        && count < min
    {
        errors.push(FieldError::invalid(
            path,
            Value::from(count),
            format!("{path} in body should have at least {min} properties"),
        ));
    }
    let props = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    for (key, child) in map {
        let child_path = join(path, key);
        if path.is_empty() && key == "metadata" {
            continue;
        }
        if let Some(ps) = props.and_then(|p| p.get(key)) {
            validate(ps, child, &child_path, errors);
        } else if let Some(a) = additional {
            validate(a, child, &child_path, errors);
        }
    }
}

/// Value-validation-only combinators allowed in structural schemas.
fn validate_combinators(schema: &Value, v: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let passes = |s: &Value| {
        let mut e = Vec::new();
        validate(s, v, path, &mut e);
        e.is_empty()
    };
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for s in all {
            validate(s, v, path, errors);
        }
    }
    if let Some(any) = schema.get("anyOf").and_then(Value::as_array)
        && !any.iter().any(passes)
    {
        errors.push(FieldError::invalid(
            path,
            Value::String(json_type_name(v).into()),
            format!("{path} in body must validate at least one schema (anyOf)"),
        ));
    }
    if let Some(one) = schema.get("oneOf").and_then(Value::as_array)
        && one.iter().filter(|s| passes(s)).count() != 1
    {
        errors.push(FieldError::invalid(
            path,
            Value::String(json_type_name(v).into()),
            format!("{path} in body must validate one and only one schema (oneOf)"),
        ));
    }
    if let Some(not) = schema.get("not")
        && passes(not)
    {
        errors.push(FieldError::invalid(
            path,
            Value::String(json_type_name(v).into()),
            format!("{path} in body should not be valid against the schema (not)"),
        ));
    }
}
