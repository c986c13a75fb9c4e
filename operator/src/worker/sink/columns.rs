//! The columns of a tabular output (CSV, Parquet): every top-level field seen, in order of
//! first appearance, with the narrowest type that holds all its values.

use std::collections::HashMap;

use serde_json::Value;

use crate::worker::record::Record;

/// The type of a column, from what its values were.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnKind {
    /// Only nulls so far.
    Null,
    /// Booleans.
    Boolean,
    /// Whole numbers that fit in i64.
    Integer,
    /// Any numbers.
    Float,
    /// Anything else (text; lists and objects as JSON text).
    Text,
}

impl ColumnKind {
    fn of(v: &Value) -> ColumnKind {
        match v {
            Value::Null => ColumnKind::Null,
            Value::Bool(_) => ColumnKind::Boolean,
            Value::Number(n) if n.is_i64() => ColumnKind::Integer,
            Value::Number(_) => ColumnKind::Float,
            _ => ColumnKind::Text,
        }
    }

    fn merge(self, other: ColumnKind) -> ColumnKind {
        use ColumnKind::*;
        match (self, other) {
            (a, b) if a == b => a,
            (Null, x) | (x, Null) => x,
            (Integer, Float) | (Float, Integer) => Float,
            _ => Text,
        }
    }
}

/// The column set of one output file.
#[derive(Clone, Debug, Default)]
pub struct ColumnSet {
    names: Vec<String>,
    kinds: Vec<ColumnKind>,
    index: HashMap<String, usize>,
}

impl ColumnSet {
    /// Learns from one record.
    pub fn observe(&mut self, rec: &Record) {
        for (k, v) in rec.iter() {
            let kind = ColumnKind::of(v);
            match self.index.get(k) {
                Some(&i) => self.kinds[i] = self.kinds[i].merge(kind),
                None => {
                    self.index.insert(k.to_string(), self.names.len());
                    self.names.push(k.to_string());
                    self.kinds.push(kind);
                }
            }
        }
    }

    /// The column names in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The column kinds, parallel to [`ColumnSet::names`].
    pub fn kinds(&self) -> &[ColumnKind] {
        &self.kinds
    }

    /// The number of columns.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether no column was seen.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds_widen_as_values_arrive() {
        let mut c = ColumnSet::default();
        for r in [
            json!({"i": 1, "f": 1, "t": 1, "n": null, "b": true}),
            json!({"i": null, "f": 1.5, "t": "x", "b": false, "z": [1]}),
        ] {
            c.observe(&Record::from(r.as_object().unwrap().clone()));
        }
        assert_eq!(c.names(), ["b", "f", "i", "n", "t", "z"]);
        use ColumnKind::*;
        assert_eq!(c.kinds(), [Boolean, Float, Integer, Null, Text, Text]);
    }
}
