//! A record is a JSON object; fields are addressed by dot paths (`patient.idCard`, `PID.5.1`).
//!
//! Arrays are transparent to paths: `name.family` reaches the `family` of every element of a
//! FHIR `name` array, so the same rule covers one value or many.

use std::borrow::Cow;

use serde_json::{Map, Value};

pub use super::fields::{FieldName, Record};

/// The top level of a record and a nested object alike, for code that walks both (the path
/// functions here, the de-identification walk).
pub trait Object {
    /// The value of field `name`, to change.
    fn field_mut(&mut self, name: &str) -> Option<&mut Value>;
    /// Sets field `name`.
    fn put(&mut self, name: &str, value: Value);
    /// The field `name`, an empty object put there first when it is absent.
    fn field_or_object(&mut self, name: &str) -> &mut Value;
    /// Removes field `name`, returning its value.
    fn take(&mut self, name: &str) -> Option<Value>;
    /// Keeps the fields for which `keep` returns true.
    fn retain_fields(&mut self, keep: &mut dyn FnMut(&str, &mut Value) -> bool);
}

impl Object for Record {
    fn field_mut(&mut self, name: &str) -> Option<&mut Value> {
        self.get_mut(name)
    }
    fn put(&mut self, name: &str, value: Value) {
        self.insert(name, value);
    }
    fn field_or_object(&mut self, name: &str) -> &mut Value {
        self.get_or_insert_with(name, || Value::Object(Map::new()))
    }
    fn take(&mut self, name: &str) -> Option<Value> {
        self.remove(name)
    }
    fn retain_fields(&mut self, keep: &mut dyn FnMut(&str, &mut Value) -> bool) {
        self.retain(keep);
    }
}

impl Object for Map<String, Value> {
    fn field_mut(&mut self, name: &str) -> Option<&mut Value> {
        self.get_mut(name)
    }
    fn put(&mut self, name: &str, value: Value) {
        self.insert(name.to_string(), value);
    }
    fn field_or_object(&mut self, name: &str) -> &mut Value {
        self.entry(name.to_string())
            .or_insert_with(|| Value::Object(Map::new()))
    }
    fn take(&mut self, name: &str) -> Option<Value> {
        self.remove(name)
    }
    fn retain_fields(&mut self, keep: &mut dyn FnMut(&str, &mut Value) -> bool) {
        self.retain(|k, v| keep(k, v));
    }
}

/// The first value at `path`, descending into the first array element that has it.
pub fn get<'a>(rec: &'a Record, path: &str) -> Option<&'a Value> {
    // Most paths are one field name (every CSV or SQL column): a byte scan, not a splitter.
    if !path.as_bytes().contains(&b'.') {
        return rec.get(path);
    }
    let mut segments = path.split('.');
    let first = segments.next()?;
    let mut cur = rec.get(first)?;
    for seg in segments {
        cur = descend(cur, seg)?;
    }
    Some(cur)
}

fn descend<'a>(v: &'a Value, seg: &str) -> Option<&'a Value> {
    match v {
        Value::Object(m) => m.get(seg),
        Value::Array(items) => items.iter().find_map(|i| descend(i, seg)),
        _ => None,
    }
}

/// Every value at `path`, through arrays, in document order.
pub fn get_all<'a>(rec: &'a Record, path: &str) -> Vec<&'a Value> {
    let mut out = Vec::new();
    let (first, rest) = split_first(path);
    if let Some(v) = rec.get(first) {
        collect(v, rest, &mut out);
    }
    out
}

fn collect<'a>(v: &'a Value, rest: Option<&str>, out: &mut Vec<&'a Value>) {
    match (v, rest) {
        (Value::Array(items), Some(_)) => items.iter().for_each(|i| collect(i, rest, out)),
        (_, None) => out.push(v),
        (Value::Object(m), Some(path)) => {
            let (seg, rest) = split_first(path);
            if let Some(child) = m.get(seg) {
                collect(child, rest, out);
            }
        }
        _ => {}
    }
}

fn split_first(path: &str) -> (&str, Option<&str>) {
    match path.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (path, None),
    }
}

/// Applies `f` to every value at `path`, through arrays. Returns how many values it visited.
pub fn for_each_mut(rec: &mut Record, path: &str, f: &mut dyn FnMut(&mut Value)) -> usize {
    let (first, rest) = split_first(path);
    match rec.get_mut(first) {
        Some(v) => visit_mut(v, rest, f),
        None => 0,
    }
}

fn visit_mut(v: &mut Value, rest: Option<&str>, f: &mut dyn FnMut(&mut Value)) -> usize {
    match (v, rest) {
        (Value::Array(items), Some(_)) => items.iter_mut().map(|i| visit_mut(i, rest, f)).sum(),
        (v, None) => {
            f(v);
            1
        }
        (Value::Object(m), Some(path)) => {
            let (seg, rest) = split_first(path);
            match m.get_mut(seg) {
                Some(child) => visit_mut(child, rest, f),
                None => 0,
            }
        }
        _ => 0,
    }
}

/// Sets `path` to `value`, creating intermediate objects (not through arrays).
pub fn set(rec: &mut Record, path: &str, value: Value) {
    set_in(rec, path, value);
}

fn set_in(obj: &mut impl Object, path: &str, value: Value) {
    let (first, rest) = split_first(path);
    match rest {
        None => obj.put(first, value),
        Some(rest) => {
            let child = obj.field_or_object(first);
            if !child.is_object() {
                *child = Value::Object(Map::new());
            }
            if let Value::Object(m) = child {
                set_in(m, rest, value);
            }
        }
    }
}

/// Removes the value at `path` (the first, through arrays: every element's) and returns the
/// first removed value.
pub fn remove(rec: &mut Record, path: &str) -> Option<Value> {
    remove_in(rec, path)
}

fn remove_in(obj: &mut impl Object, path: &str) -> Option<Value> {
    let (first, rest) = split_first(path);
    match rest {
        None => obj.take(first),
        Some(rest) => match obj.field_mut(first)? {
            Value::Object(m) => remove_in(m, rest),
            Value::Array(items) => {
                let mut found = None;
                for item in items.iter_mut() {
                    if let Value::Object(m) = item
                        && let Some(v) = remove_in(m, rest)
                    {
                        found.get_or_insert(v);
                    }
                }
                found
            }
            _ => None,
        },
    }
}

/// A value as text: strings as they are, numbers and booleans printed, objects and arrays as
/// compact JSON; `None` for null.
pub fn text(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        other => Some(Cow::Owned(other.to_string())),
    }
}

/// Whether text counts as missing: empty or only whitespace.
pub fn is_blank(s: &str) -> bool {
    s.trim().is_empty()
}

/// Whether a value counts as missing: absent, null or an empty (or blank) string.
pub fn is_missing(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => is_blank(s),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(v: Value) -> Record {
        v.as_object().unwrap().clone().into()
    }

    #[test]
    fn paths_reach_nested_fields_and_through_arrays() {
        let r = rec(
            json!({"a": {"b": 1}, "name": [{"family": "王"}, {"family": "李", "given": ["伟"]}]}),
        );
        assert_eq!(get(&r, "a.b"), Some(&json!(1)));
        assert_eq!(get(&r, "name.family"), Some(&json!("王")));
        assert_eq!(get(&r, "name.given"), Some(&json!(["伟"])));
        assert_eq!(get_all(&r, "name.family"), vec![&json!("王"), &json!("李")]);
        assert_eq!(get(&r, "a.c"), None);
        assert_eq!(get(&r, "a.b.c"), None);
    }

    #[test]
    fn set_remove_and_visit() {
        let mut r = rec(json!({"name": [{"family": "王"}, {"family": "李"}], "x": 1}));
        set(&mut r, "p.q", json!("v"));
        assert_eq!(get(&r, "p.q"), Some(&json!("v")));
        set(&mut r, "x.y", json!(2));
        assert_eq!(get(&r, "x.y"), Some(&json!(2)));
        let n = for_each_mut(&mut r, "name.family", &mut |v| *v = json!("*"));
        assert_eq!(n, 2);
        assert_eq!(remove(&mut r, "name.family"), Some(json!("*")));
        assert_eq!(get(&r, "name.family"), None);
        assert_eq!(remove(&mut r, "nope"), None);
    }

    #[test]
    fn text_and_missing() {
        assert_eq!(text(&json!(1.5)).as_deref(), Some("1.5"));
        assert_eq!(text(&json!({"a": 1})).as_deref(), Some(r#"{"a":1}"#));
        assert_eq!(text(&Value::Null), None);
        assert!(is_missing(Some(&json!("  "))));
        assert!(!is_missing(Some(&json!(0))));
    }
}
