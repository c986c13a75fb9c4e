//! The record type: a JSON object's top level as a name-sorted list of fields with inline names.
//!
//! Every record of a CSV file starts as a copy of the header's template, and every step looks
//! fields up by name. A `serde_json::Map` (a B-tree of `String` keys) made each copy allocate a
//! node and one string per column, and each lookup walk the tree comparing strings. Here names
//! up to [`INLINE`] bytes (nearly every column and FHIR element name) live inside the field, so a
//! copy is one allocation for the list plus the values, and a lookup is a binary search over a
//! few names. Fields stay sorted by name, so records serialise in the same order a
//! `serde_json::Map` gives, and output is byte-for-byte what it was.
//!
//! Nested objects are still `serde_json::Map`s: only the top level is copied per record.

use std::cmp::Ordering;
use std::fmt;

use arrayvec::ArrayString;
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// The longest name kept inline.
pub const INLINE: usize = 22;

/// A field name: inline when short, so copying it allocates nothing.
#[derive(Clone)]
pub struct FieldName(Name);

/// Inline text is an `ArrayString`, which hands out its `&str` without checking the UTF-8 again
/// (a check on every lookup and every serialised name showed in profiles).
#[derive(Clone)]
enum Name {
    Inline(ArrayString<INLINE>),
    Heap(Box<str>),
}

impl FieldName {
    /// The name's bytes (UTF-8).
    pub fn as_bytes(&self) -> &[u8] {
        self.as_str().as_bytes()
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Name::Inline(s) => s,
            Name::Heap(s) => s,
        }
    }
}

impl From<&str> for FieldName {
    fn from(s: &str) -> Self {
        match ArrayString::from(s) {
            Ok(inline) => FieldName(Name::Inline(inline)),
            Err(_) => FieldName(Name::Heap(s.into())),
        }
    }
}

impl From<String> for FieldName {
    fn from(s: String) -> Self {
        if s.len() <= INLINE {
            FieldName::from(s.as_str())
        } else {
            FieldName(Name::Heap(s.into_boxed_str()))
        }
    }
}

impl From<&String> for FieldName {
    fn from(s: &String) -> Self {
        FieldName::from(s.as_str())
    }
}

impl From<FieldName> for String {
    fn from(n: FieldName) -> Self {
        match n.0 {
            Name::Heap(s) => s.into_string(),
            Name::Inline { .. } => n.as_str().to_string(),
        }
    }
}

impl PartialEq for FieldName {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for FieldName {}

impl fmt::Debug for FieldName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::ops::Deref for FieldName {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

/// One record flowing through a pipeline: the fields of a JSON object, sorted by name (byte
/// order, as `serde_json::Map` sorts), each name once.
#[derive(Clone, Default, PartialEq, Debug)]
pub struct Record {
    fields: Vec<(FieldName, Value)>,
}

impl Record {
    /// An empty record.
    pub fn new() -> Self {
        Record::default()
    }

    /// Where `name` is, or where it would be inserted.
    fn position(&self, name: &str) -> Result<usize, usize> {
        let name = name.as_bytes();
        self.fields.binary_search_by(|(k, _)| {
            let k = k.as_bytes();
            // Most probes differ in the first byte: settle those without a call to `memcmp`.
            match (k.first(), name.first()) {
                (Some(a), Some(b)) if a != b => a.cmp(b),
                _ => k.cmp(name),
            }
        })
    }

    /// A record with this one's names and the values `value` gives for each position in
    /// order, or `None` as soon as it gives none. The names are already in order, so a CSV row
    /// is laid out with one allocation and no sorting.
    pub fn with_values(&self, mut value: impl FnMut(usize) -> Option<Value>) -> Option<Record> {
        let mut fields = Vec::with_capacity(self.fields.len());
        for (i, (name, _)) in self.fields.iter().enumerate() {
            fields.push((name.clone(), value(i)?));
        }
        Some(Record { fields })
    }

    /// The value of field `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.position(name).ok().map(|i| &self.fields[i].1)
    }

    /// The value of field `name`, to change.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Value> {
        self.position(name).ok().map(|i| &mut self.fields[i].1)
    }

    /// Whether the record has field `name`.
    pub fn contains_key(&self, name: &str) -> bool {
        self.position(name).is_ok()
    }

    /// Sets field `name`, returning its old value.
    pub fn insert(&mut self, name: impl Into<FieldName>, value: Value) -> Option<Value> {
        let name = name.into();
        match self.position(name.as_str()) {
            Ok(i) => Some(std::mem::replace(&mut self.fields[i].1, value)),
            Err(i) => {
                self.fields.insert(i, (name, value));
                None
            }
        }
    }

    /// The value of field `name`, inserted from `make` when the record does not have it.
    pub fn get_or_insert_with(&mut self, name: &str, make: impl FnOnce() -> Value) -> &mut Value {
        let i = match self.position(name) {
            Ok(i) => i,
            Err(i) => {
                self.fields.insert(i, (FieldName::from(name), make()));
                i
            }
        };
        &mut self.fields[i].1
    }

    /// Removes field `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        self.position(name).ok().map(|i| self.fields.remove(i).1)
    }

    /// Keeps the fields for which `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &mut Value) -> bool) {
        self.fields.retain_mut(|(k, v)| keep(k.as_str(), v));
    }

    /// How many fields the record has.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether the record has no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The fields in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.fields.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The fields in name order, values to change.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&str, &mut Value)> {
        self.fields.iter_mut().map(|(k, v)| (k.as_str(), v))
    }

    /// The names in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|(k, _)| k.as_str())
    }

    /// The values in name order.
    pub fn values(&self) -> impl Iterator<Item = &Value> {
        self.fields.iter().map(|(_, v)| v)
    }

    /// The values in name order, to change.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Value> {
        self.fields.iter_mut().map(|(_, v)| v)
    }

    /// Builds a record from fields in any order; of two fields with one name the later wins,
    /// as it does when a JSON object repeats a key.
    fn from_unsorted(mut fields: Vec<(FieldName, Value)>) -> Self {
        if !fields.is_sorted_by(|a, b| a.0.as_bytes() < b.0.as_bytes()) {
            // Stable, so equal names keep their input order and the last one can win.
            fields.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            let mut unique: Vec<(FieldName, Value)> = Vec::with_capacity(fields.len());
            for field in fields {
                match unique.last_mut() {
                    Some(last) if last.0 == field.0 => *last = field,
                    _ => unique.push(field),
                }
            }
            fields = unique;
        }
        Record { fields }
    }
}

impl<K: Into<FieldName>> FromIterator<(K, Value)> for Record {
    fn from_iter<I: IntoIterator<Item = (K, Value)>>(iter: I) -> Self {
        Record::from_unsorted(iter.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

impl IntoIterator for Record {
    type Item = (String, Value);
    type IntoIter = std::iter::Map<
        std::vec::IntoIter<(FieldName, Value)>,
        fn((FieldName, Value)) -> (String, Value),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.fields.into_iter().map(|(k, v)| (String::from(k), v))
    }
}

impl From<Map<String, Value>> for Record {
    fn from(m: Map<String, Value>) -> Self {
        // A `Map` iterates in name order, so the list is sorted as it is built.
        Record::from_unsorted(m.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

impl From<Record> for Map<String, Value> {
    fn from(r: Record) -> Self {
        r.into_iter().collect()
    }
}

impl From<Record> for Value {
    fn from(r: Record) -> Self {
        Value::Object(r.into())
    }
}

/// `record["name"]`, `Null` when absent, as `serde_json::Map` indexes.
impl std::ops::Index<&str> for Record {
    type Output = Value;
    fn index(&self, name: &str) -> &Value {
        static NULL: Value = Value::Null;
        self.get(name).unwrap_or(&NULL)
    }
}

impl Record {
    /// Appends the record as one compact JSON object: byte for byte what `serde_json` writes
    /// for it, faster. Most strings need no escaping and are copied whole; `serde_json` writes
    /// the rest and every non-string value.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        for (i, (k, v)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_json_str(k.as_str(), out);
            out.push(b':');
            match v {
                Value::String(s) => write_json_str(s, out),
                other => write_json_value(other, out),
            }
        }
        out.push(b'}');
    }
}

/// A JSON string literal of `s`.
pub(crate) fn write_json_str(s: &str, out: &mut Vec<u8>) {
    // No early exit, so the check runs over whole vectors of bytes.
    let plain = s.bytes().fold(true, |plain, b| {
        plain & (b >= 0x20) & (b != b'"') & (b != b'\\')
    });
    if plain {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        write_json_value(s, out);
    }
}

/// A JSON value through `serde_json`, which cannot fail on a `Value` or a `str` written to a
/// `Vec` (every map key is a string and every number finite).
pub(crate) fn write_json_value<T: Serialize + ?Sized>(v: &T, out: &mut Vec<u8>) {
    let _ = serde_json::to_writer(out, v);
}

impl Serialize for Record {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.fields.len()))?;
        for (k, v) in &self.fields {
            map.serialize_entry(k.as_str(), v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Record {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = Record;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Record, A::Error> {
                let mut fields = Vec::with_capacity(access.size_hint().unwrap_or(8).min(256));
                while let Some(field) = access.next_entry::<FieldName, Value>()? {
                    fields.push(field);
                }
                Ok(Record::from_unsorted(fields))
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

impl<'de> Deserialize<'de> for FieldName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameText;
        impl Visitor<'_> for NameText {
            type Value = FieldName;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            // Borrowed or transient text is copied in once, without a `String` in between.
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<FieldName, E> {
                Ok(FieldName::from(s))
            }
            fn visit_string<E: serde::de::Error>(self, s: String) -> Result<FieldName, E> {
                Ok(FieldName::from(s))
            }
        }
        deserializer.deserialize_str(NameText)
    }
}

impl PartialOrd for FieldName {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for FieldName {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn serialises_like_a_serde_json_map_and_round_trips() {
        let long = "a_field_name_longer_than_the_inline_limit";
        assert!(long.len() > INLINE);
        let text = format!(r#"{{"z":1,"{long}":[2],"b":{{"y":1,"x":2}},"名字":"王","a":3,"z":4}}"#);
        let as_map: Map<String, Value> = serde_json::from_str(&text).unwrap();
        let record: Record = serde_json::from_str(&text).unwrap();
        assert_eq!(
            serde_json::to_string(&record).unwrap(),
            serde_json::to_string(&as_map).unwrap(),
            "same order, the later of two equal names wins"
        );
        assert_eq!(Record::from(as_map.clone()), record);
        assert_eq!(Map::from(record.clone()), as_map);
        assert_eq!(record[long], json!([2]));
        assert_eq!(record["missing"], Value::Null);
    }

    #[test]
    fn write_json_matches_serde_json_byte_for_byte() {
        // Every byte that needs escaping (controls, quote, backslash) next to ones that do not
        // (DEL, non-ASCII), in names and values, among values of every type.
        let tricky: String = (0u8..0x20)
            .map(char::from)
            .chain("\"\\/\u{7f}é王\u{2028}".chars())
            .collect();
        let record: Record = [
            ("plain", json!("S000000001")),
            ("tricky", json!(tricky)),
            ("quote\"name", json!("x")),
            ("name_with_\u{1}", json!("")),
            ("number", json!(-1.5e300)),
            ("integer", json!(42)),
            ("bool", json!(true)),
            ("null", json!(null)),
            ("nested", json!({"b": ["a\n", {"c": "\""}], "a": 1})),
            ("a_field_name_longer_than_the_inline_limit", json!("长的")),
        ]
        .into_iter()
        .collect();
        let mut ours = Vec::new();
        record.write_json(&mut ours);
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            serde_json::to_string(&record).unwrap()
        );
        let mut empty = Vec::new();
        Record::default().write_json(&mut empty);
        assert_eq!(empty, b"{}");
    }

    #[test]
    fn lookups_inserts_and_removals_keep_the_order() {
        let mut r: Record = [("b", json!(2)), ("a", json!(1))].into_iter().collect();
        assert_eq!(r.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(r.insert("c", json!(3)), None);
        assert_eq!(r.insert("a", json!(0)), Some(json!(1)));
        *r.get_or_insert_with("aa", || json!([])) = json!("x");
        assert_eq!(r.keys().collect::<Vec<_>>(), ["a", "aa", "b", "c"]);
        assert_eq!(r.remove("b"), Some(json!(2)));
        assert_eq!(r.remove("b"), None);
        r.retain(|k, _| k != "aa");
        assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"a":0,"c":3}"#);
        assert!(r.contains_key("c") && !r.contains_key("cc"));
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn names_compare_by_bytes_inline_or_not() {
        let names = [
            "",
            "a",
            "ab",
            "b",
            &"x".repeat(INLINE),
            &"x".repeat(INLINE + 1),
            "é",
        ];
        for a in names {
            for b in names {
                let (fa, fb) = (FieldName::from(a), FieldName::from(b));
                assert_eq!(fa.cmp(&fb), a.cmp(b), "{a} vs {b}");
                assert_eq!(fa.as_str(), a);
                assert_eq!(String::from(fa), a);
            }
        }
    }
}
