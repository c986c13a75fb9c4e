//! The `map` step: rename, copy, set and derive fields by path, with optional casts.

use serde_json::{Number, Value};

use super::{Outcome, RecordStep, StepError};
use crate::api::steps::{FieldMapping, MapStep, ValueType};
use crate::worker::dates::DateValue;
use crate::worker::record::{self, Record};

/// A compiled map step.
pub struct MapRecords {
    name: String,
    fields: Vec<FieldMapping>,
    keep_unmapped: bool,
}

impl MapRecords {
    /// Compiles the step; a mapping without a source is a configuration error.
    pub fn compile(name: String, step: &MapStep) -> Result<Self, StepError> {
        for f in &step.fields {
            if [f.from.is_some(), f.value.is_some(), f.template.is_some()]
                .iter()
                .filter(|x| **x)
                .count()
                != 1
            {
                return Err(StepError::Config {
                    step: name,
                    message: format!(
                        "mapping to {} needs exactly one of from, value or template",
                        f.to
                    ),
                });
            }
        }
        Ok(MapRecords {
            name,
            fields: step.fields.clone(),
            keep_unmapped: step.keep_unmapped,
        })
    }
}

/// Renders `${path}` placeholders from the record; missing fields render empty.
pub fn render_template(template: &str, rec: &Record) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let path = after[..end].trim();
                if let Some(v) = record::get(rec, path).and_then(record::text) {
                    out.push_str(&v);
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                return out;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Converts a value to a type; `Err` says why it cannot. Null stays null.
pub fn cast(v: Value, to: ValueType) -> Result<Value, String> {
    if v.is_null() {
        return Ok(v);
    }
    let text = record::text(&v)
        .map(|t| t.trim().to_string())
        .unwrap_or_default();
    let fail = || format!("cannot cast {} to {}", describe(&v), type_name(to));
    match to {
        ValueType::String => Ok(Value::String(match &v {
            Value::String(s) => s.clone(),
            _ => text,
        })),
        ValueType::Integer => match &v {
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(v),
            Value::Number(n) => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Value::from(f as i64)),
                _ => Err(fail()),
            },
            _ => text.parse::<i64>().map(Value::from).map_err(|_| fail()),
        },
        ValueType::Number => match &v {
            Value::Number(_) => Ok(v),
            _ => text
                .parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .map(Value::Number)
                .ok_or_else(fail),
        },
        ValueType::Boolean => match text.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "y" => Ok(Value::Bool(true)),
            "false" | "0" | "no" | "n" => Ok(Value::Bool(false)),
            _ => Err(fail()),
        },
        ValueType::Date => DateValue::parse(&text)
            .map(|d| Value::String(d.date.to_string()))
            .ok_or_else(fail),
        ValueType::DateTime => {
            if text.parse::<jiff::Timestamp>().is_ok()
                || text.parse::<jiff::civil::DateTime>().is_ok()
            {
                Ok(Value::String(text))
            } else {
                Err(fail())
            }
        }
    }
}

/// Whether text casts to `to`, as [`cast`] of a string would, without building the value
/// (validation only asks).
pub fn casts_to(text: &str, to: ValueType) -> bool {
    match to {
        ValueType::String => true,
        ValueType::Integer => text.trim().parse::<i64>().is_ok(),
        ValueType::Number => text.trim().parse::<f64>().is_ok_and(f64::is_finite),
        _ => cast(Value::String(text.to_string()), to).is_ok(),
    }
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a text value",
        Value::Number(_) => "a number",
        Value::Bool(_) => "a boolean",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
        Value::Null => "null",
    }
}

/// The manifest name of a value type.
pub fn type_name(t: ValueType) -> &'static str {
    match t {
        ValueType::String => "string",
        ValueType::Integer => "integer",
        ValueType::Number => "number",
        ValueType::Boolean => "boolean",
        ValueType::Date => "date",
        ValueType::DateTime => "dateTime",
    }
}

impl RecordStep for MapRecords {
    fn name(&self) -> &str {
        &self.name
    }

    fn apply(&self, rec: &mut Record) -> Outcome {
        let mut out = if self.keep_unmapped {
            None
        } else {
            Some(Record::new())
        };
        for f in &self.fields {
            let value = if let Some(from) = &f.from {
                let v = if f.copy || out.is_some() {
                    record::get(rec, from).cloned()
                } else {
                    record::remove(rec, from)
                };
                match v {
                    Some(v) => v,
                    None => continue,
                }
            } else if let Some(v) = &f.value {
                Value::String(v.clone())
            } else if let Some(t) = &f.template {
                Value::String(render_template(t, rec))
            } else {
                continue;
            };
            let value = match f.cast {
                Some(t) => match cast(value, t) {
                    Ok(v) => v,
                    Err(reason) => {
                        return Outcome::Quarantine {
                            rule: format!("map {}", f.to),
                            reason: format!("{}: {reason}", f.from.as_deref().unwrap_or(&f.to)),
                        };
                    }
                },
                None => value,
            };
            record::set(out.as_mut().unwrap_or(rec), &f.to, value);
        }
        if let Some(out) = out {
            *rec = out;
        }
        Outcome::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn step(yaml: &str) -> MapRecords {
        MapRecords::compile("m".into(), &serde_yaml::from_str(yaml).unwrap()).unwrap()
    }

    #[test]
    fn casts_to_agrees_with_cast_for_text() {
        use ValueType::*;
        for text in [
            "5.6",
            " 7 ",
            "-3",
            "1e3",
            "inf",
            "NaN",
            "high",
            "",
            "9223372036854775808",
            "2026-11-03",
            "true",
        ] {
            for t in [String, Integer, Number, Boolean, Date, DateTime] {
                assert_eq!(
                    casts_to(text, t),
                    cast(Value::String(text.into()), t).is_ok(),
                    "{text:?} as {t:?}"
                );
            }
        }
    }

    #[test]
    fn renames_copies_sets_derives_and_casts() {
        let s = step(
            r#"
fields:
  - {to: patient.id, from: pid}
  - {to: name_copy, from: name, copy: true}
  - {to: source, value: LIS}
  - {to: full, template: "${family}${given}"}
  - {to: value, from: value, cast: number}
  - {to: admitted, from: admitted, cast: date}
"#,
        );
        let mut r = json!({"pid": "P1", "name": "王", "family": "王", "given": "小明", "value": "5.60", "admitted": "20261128093000"})
            .as_object().map(|m| Record::from(m.clone())).unwrap();
        assert_eq!(s.apply(&mut r), Outcome::Keep);
        assert_eq!(r["patient"]["id"], "P1");
        assert!(r.get("pid").is_none());
        assert_eq!(r["name_copy"], "王");
        assert_eq!(r["name"], "王");
        assert_eq!(r["source"], "LIS");
        assert_eq!(r["full"], "王小明");
        assert_eq!(r["value"], json!(5.6));
        assert_eq!(r["admitted"], "2026-11-28");
    }

    #[test]
    fn unmapped_fields_can_be_dropped_and_bad_casts_quarantine() {
        let s = step("keepUnmapped: false\nfields: [{to: n, from: n, cast: integer}]");
        let mut r = json!({"n": "42", "x": 1})
            .as_object()
            .map(|m| Record::from(m.clone()))
            .unwrap();
        assert_eq!(s.apply(&mut r), Outcome::Keep);
        assert_eq!(serde_json::Value::from(r), json!({"n": 42}));
        let mut bad = json!({"n": "4x"})
            .as_object()
            .map(|m| Record::from(m.clone()))
            .unwrap();
        assert!(
            matches!(s.apply(&mut bad), Outcome::Quarantine { reason, .. } if reason.contains("cannot cast a text value to integer"))
        );
        assert_eq!(cast(json!("yes"), ValueType::Boolean), Ok(json!(true)));
        assert_eq!(cast(json!(3.0), ValueType::Integer), Ok(json!(3)));
        assert!(cast(json!("2026-13-01"), ValueType::Date).is_err());
        assert!(cast(json!("2026-11-28T09:00:00+08:00"), ValueType::DateTime).is_ok());
    }
}
