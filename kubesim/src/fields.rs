//! Field sets in the `FieldsV1` format of managedFields, and list semantics (atomic, set, map).
//!
//! See <https://kubernetes.io/docs/reference/using-api/server-side-apply/#field-management> and
//! `#merge-strategy`. List semantics come from a CRD's `x-kubernetes-list-type` /
//! `x-kubernetes-list-map-keys` or, for built-in kinds, from the merge keys the Go types declare.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// How a list merges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListKind {
    /// Replaced whole.
    Atomic,
    /// Scalars merged as a set.
    Set,
    /// Objects merged by these key fields.
    Map(Vec<String>),
}

/// Schema context while walking an object: a CRD schema node, or built-in knowledge.
#[derive(Debug, Clone, Copy)]
pub enum Shape<'a> {
    /// A node of a CRD's `openAPIV3Schema`.
    Schema(&'a Value),
    /// A built-in kind (merge keys known by field name).
    Builtin,
    /// Unknown/preserved: lists are atomic.
    Unknown,
}

impl<'a> Shape<'a> {
    /// The shape of a property.
    pub fn child(self, key: &str, at_root: bool) -> Shape<'a> {
        if at_root && key == "metadata" {
            return Shape::Builtin;
        }
        match self {
            Shape::Schema(s) => match s.get("properties").and_then(|p| p.get(key)) {
                Some(c) => Shape::Schema(c),
                None => match s.get("additionalProperties").filter(|a| a.is_object()) {
                    Some(a) => Shape::Schema(a),
                    None => Shape::Unknown,
                },
            },
            other => other,
        }
    }

    /// The shape of a list's items.
    pub fn items(self) -> Shape<'a> {
        match self {
            Shape::Schema(s) => s.get("items").map(Shape::Schema).unwrap_or(Shape::Unknown),
            other => other,
        }
    }

    /// Whether a map at this node is atomic (`x-kubernetes-map-type: atomic`).
    pub fn atomic_map(self) -> bool {
        matches!(self, Shape::Schema(s) if s.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic"))
    }

    /// How the list at property `key` (holding `items`) merges.
    pub fn list_kind(self, key: &str, items: &[Value]) -> ListKind {
        match self {
            Shape::Schema(s) => match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
                Some("set") => ListKind::Set,
                Some("map") => ListKind::Map(
                    s.get("x-kubernetes-list-map-keys")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_string)
                                .collect()
                        })
                        .unwrap_or_default(),
                ),
                _ => ListKind::Atomic,
            },
            Shape::Builtin => builtin_list_kind(key, items),
            Shape::Unknown => ListKind::Atomic,
        }
    }
}

/// Merge keys of the built-in kinds' lists that tests use (from the Go types' `patchMergeKey`).
pub fn builtin_list_kind(key: &str, items: &[Value]) -> ListKind {
    let map = |keys: &[&str]| ListKind::Map(keys.iter().map(|k| k.to_string()).collect());
    match key {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "hostAliases"
        | "readinessGates"
        | "resourceClaims" => {
            if key == "hostAliases" {
                map(&["ip"])
            } else if key == "readinessGates" {
                map(&["conditionType"])
            } else {
                map(&["name"])
            }
        }
        "volumeMounts" => map(&["mountPath"]),
        "volumeDevices" => map(&["devicePath"]),
        "ports" => {
            if items.iter().any(|i| i.get("containerPort").is_some()) {
                map(&["containerPort", "protocol"])
            } else {
                map(&["port", "protocol"])
            }
        }
        "conditions" => map(&["type"]),
        "ownerReferences" => map(&["uid"]),
        "finalizers" => ListKind::Set,
        "taints" => map(&["key", "effect"]),
        _ => ListKind::Atomic,
    }
}

/// The `k:{...}` path element naming a map-list item.
pub fn item_key(item: &Value, keys: &[String]) -> String {
    let mut m = Map::new();
    for k in keys {
        match item.get(k) {
            Some(v) => {
                m.insert(k.clone(), v.clone());
            }
            // "protocol" defaults to TCP on built-in ports; the server keys on the default too.
            None if k == "protocol" => {
                m.insert(k.clone(), Value::String("TCP".into()));
            }
            None => {}
        }
    }
    format!("k:{}", Value::Object(m))
}

/// Whether an item matches a `k:{...}` element.
pub fn item_matches(item: &Value, keys: &[String], element: &str) -> bool {
    item_key(item, keys) == element
}

/// A set of field paths, as one managedFields entry's `fieldsV1`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    /// This node itself is a member (a leaf, or `"."` on an inner node).
    pub member: bool,
    /// Child path elements (`f:name`, `k:{...}`, `v:...`).
    pub children: BTreeMap<String, FieldSet>,
}

impl FieldSet {
    /// Whether the set holds nothing.
    pub fn is_empty(&self) -> bool {
        !self.member && self.children.values().all(FieldSet::is_empty)
    }

    /// Parses `fieldsV1` JSON.
    pub fn from_json(v: &Value) -> FieldSet {
        let Some(m) = v.as_object() else {
            return FieldSet::default();
        };
        if m.is_empty() {
            return FieldSet {
                member: true,
                children: BTreeMap::new(),
            };
        }
        let mut fs = FieldSet::default();
        for (k, child) in m {
            if k == "." {
                fs.member = true;
            } else {
                fs.children.insert(k.clone(), FieldSet::from_json(child));
            }
        }
        fs
    }

    /// Renders `fieldsV1` JSON.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        if self.member && !self.children.is_empty() {
            m.insert(".".into(), Value::Object(Map::new()));
        }
        for (k, c) in &self.children {
            if !c.is_empty() {
                m.insert(k.clone(), c.to_json());
            }
        }
        Value::Object(m)
    }

    /// Set union.
    pub fn union(&mut self, other: &FieldSet) {
        self.member |= other.member;
        for (k, c) in &other.children {
            self.children.entry(k.clone()).or_default().union(c);
        }
    }

    /// Set difference.
    pub fn subtract(&mut self, other: &FieldSet) {
        if other.member {
            self.member = false;
        }
        for (k, c) in &other.children {
            if let Some(mine) = self.children.get_mut(k) {
                mine.subtract(c);
            }
        }
        self.children.retain(|_, c| !c.is_empty());
    }

    /// Set intersection.
    pub fn intersect(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && other.member,
            children: BTreeMap::new(),
        };
        for (k, c) in &self.children {
            if let Some(o) = other.children.get(k) {
                let i = c.intersect(o);
                if !i.is_empty() {
                    out.children.insert(k.clone(), i);
                }
            }
        }
        out
    }

    /// Every member path, as element lists.
    pub fn paths(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if self.member {
            out.push(prefix.clone());
        }
        for (k, c) in &self.children {
            prefix.push(k.clone());
            c.collect(prefix, out);
            prefix.pop();
        }
    }

    /// Whether this exact path is a member.
    pub fn contains_member(&self, path: &[String]) -> bool {
        match path.split_first() {
            None => self.member,
            Some((first, rest)) => self
                .children
                .get(first)
                .is_some_and(|c| c.contains_member(rest)),
        }
    }

    /// Whether any member lies at or below this path.
    pub fn contains_prefix(&self, path: &[String]) -> bool {
        match path.split_first() {
            None => !self.is_empty(),
            Some((first, rest)) => self
                .children
                .get(first)
                .is_some_and(|c| c.contains_prefix(rest)),
        }
    }

    /// Keeps only the members that still exist in `obj`.
    pub fn retain_existing(&mut self, obj: &Value, shape: Shape<'_>, at_root: bool) {
        let keys: Vec<String> = self.children.keys().cloned().collect();
        for k in keys {
            match resolve_element(obj, &k, shape, at_root) {
                Some((v, s)) => {
                    if let Some(c) = self.children.get_mut(&k) {
                        c.retain_existing(v, s, false);
                    }
                }
                None => {
                    self.children.remove(&k);
                }
            }
        }
    }
}

/// Finds the value a path element names under `obj`, with its shape.
pub fn resolve_element<'v, 's>(
    obj: &'v Value,
    element: &str,
    shape: Shape<'s>,
    at_root: bool,
) -> Option<(&'v Value, Shape<'s>)> {
    if let Some(name) = element.strip_prefix("f:") {
        let v = obj.get(name)?;
        return Some((v, shape.child(name, at_root)));
    }
    let list = obj.as_array()?;
    if element.starts_with("k:") {
        // The caller holds the list's shape; items carry its item shape.
        let keys = key_names(element);
        let item = list.iter().find(|i| item_key(i, &keys) == element)?;
        return Some((item, shape.items()));
    }
    if let Some(raw) = element.strip_prefix("v:") {
        let want: Value = serde_json::from_str(raw).ok()?;
        let item = list.iter().find(|i| **i == want)?;
        return Some((item, shape.items()));
    }
    None
}

/// The key field names inside a `k:{...}` element.
pub fn key_names(element: &str) -> Vec<String> {
    element
        .strip_prefix("k:")
        .and_then(|raw| serde_json::from_str::<Map<String, Value>>(raw).ok())
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// Fields the server never tracks in managedFields.
fn ignored_at_root(key: &str) -> bool {
    matches!(key, "apiVersion" | "kind")
}

fn ignored_in_metadata(key: &str) -> bool {
    !matches!(
        key,
        "labels" | "annotations" | "finalizers" | "ownerReferences"
    )
}

/// The set of fields an object (or applied configuration) specifies.
pub fn field_set_of(obj: &Value, shape: Shape<'_>) -> FieldSet {
    let mut fs = FieldSet::default();
    let Some(map) = obj.as_object() else {
        return fs;
    };
    for (k, v) in map {
        if ignored_at_root(k) {
            continue;
        }
        if k == "metadata" {
            let mut meta = FieldSet::default();
            if let Some(m) = v.as_object() {
                for (mk, mv) in m {
                    if ignored_in_metadata(mk) {
                        continue;
                    }
                    meta.children
                        .insert(format!("f:{mk}"), value_set(mk, mv, Shape::Builtin));
                }
            }
            if !meta.children.is_empty() {
                fs.children.insert("f:metadata".into(), meta);
            }
            continue;
        }
        fs.children
            .insert(format!("f:{k}"), value_set(k, v, shape.child(k, true)));
    }
    fs
}

fn value_set(key: &str, v: &Value, shape: Shape<'_>) -> FieldSet {
    let leaf = FieldSet {
        member: true,
        children: BTreeMap::new(),
    };
    match v {
        Value::Object(m) if !m.is_empty() && !shape.atomic_map() => {
            let mut fs = FieldSet::default();
            for (k, c) in m {
                fs.children
                    .insert(format!("f:{k}"), value_set(k, c, shape.child(k, false)));
            }
            fs
        }
        Value::Array(items) if !items.is_empty() => match shape.list_kind(key, items) {
            ListKind::Atomic => leaf,
            ListKind::Set => {
                let mut fs = FieldSet::default();
                for i in items {
                    fs.children.insert(format!("v:{i}"), leaf.clone());
                }
                fs
            }
            ListKind::Map(keys) => {
                let mut fs = FieldSet::default();
                let item_shape = shape.items();
                for i in items {
                    let mut item = value_set("", i, item_shape);
                    item.member = true;
                    fs.children.insert(item_key(i, &keys), item);
                }
                fs
            }
        },
        _ => leaf,
    }
}

/// Renders a path like `.spec.containers[name="app"].image` for conflict messages.
pub fn display_path(path: &[String]) -> String {
    let mut out = String::new();
    for el in path {
        if let Some(f) = el.strip_prefix("f:") {
            out.push('.');
            out.push_str(f);
        } else if let Some(k) = el.strip_prefix("k:") {
            let m: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = el.strip_prefix("v:") {
            out.push_str(&format!("[={v}]"));
        }
    }
    out
}

/// The value at a field-set path in an object, if present.
pub fn value_at_path<'v>(obj: &'v Value, path: &[String], shape: Shape<'_>) -> Option<&'v Value> {
    let mut cur = obj;
    let mut sh = shape;
    for (i, el) in path.iter().enumerate() {
        let (v, s) = resolve_element(cur, el, sh, i == 0)?;
        cur = v;
        sh = s;
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // https://kubernetes.io/docs/reference/using-api/server-side-apply/#field-management
    #[test]
    fn fields_v1_round_trip_and_shape() {
        let obj = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "labels": {"a": "1"}, "finalizers": ["x"]},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}]}]}}}
        });
        let fs = field_set_of(&obj, Shape::Builtin);
        let j = fs.to_json();
        assert_eq!(
            j,
            json!({
                "f:metadata": {"f:labels": {"f:a": {}}, "f:finalizers": {"v:\"x\"": {}}},
                "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {
                    ".": {}, "f:image": {}, "f:name": {},
                    "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}
                }}}}}
            })
        );
        assert_eq!(FieldSet::from_json(&j), fs);
        let image = vec![
            "f:spec".to_string(),
            "f:template".into(),
            "f:spec".into(),
            "f:containers".into(),
            "k:{\"name\":\"c\"}".into(),
            "f:image".into(),
        ];
        assert_eq!(
            value_at_path(&obj, &image, Shape::Builtin),
            Some(&json!("i"))
        );
        assert_eq!(
            display_path(&image),
            ".spec.template.spec.containers[name=\"c\"].image"
        );
    }

    #[test]
    fn set_algebra() {
        let a = FieldSet::from_json(&json!({"f:a": {}, "f:b": {"f:c": {}}}));
        let b = FieldSet::from_json(&json!({"f:b": {"f:c": {}}, "f:d": {}}));
        assert_eq!(a.intersect(&b).to_json(), json!({"f:b": {"f:c": {}}}));
        let mut c = a.clone();
        c.subtract(&b);
        assert_eq!(c.to_json(), json!({"f:a": {}}));
        c.union(&b);
        assert_eq!(
            c.to_json(),
            json!({"f:a": {}, "f:b": {"f:c": {}}, "f:d": {}})
        );
    }
}
