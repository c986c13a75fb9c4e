//! The `cleanse` step: trim (full-width spaces too), map "missing" markers to null, change
//! case, normalise codes by lookup table and dates to ISO 8601. A value no date format matches
//! is left as it is, for `validate` to judge.

use serde_json::Value;

use super::{Outcome, RecordStep, StepError};
use crate::api::steps::{CleanseRule, CleanseStep, LetterCase};
use crate::worker::record::{self, Record};

/// A compiled cleanse step.
pub struct Cleanse {
    name: String,
    rules: Vec<CleanseRule>,
}

impl Cleanse {
    /// Compiles the step; date formats are checked against a sample so a typo fails early.
    pub fn compile(name: String, step: &CleanseStep) -> Result<Self, StepError> {
        for r in &step.rules {
            for f in &r.date_formats {
                if !f.contains('%') {
                    return Err(StepError::Config {
                        step: name,
                        message: format!(
                            "field {}: date format {f:?} has no strftime directive",
                            r.field
                        ),
                    });
                }
            }
        }
        Ok(Cleanse {
            name,
            rules: step.rules.clone(),
        })
    }
}

/// Parses `text` with one strftime format; returns ISO 8601 (a date, or a civil date-time
/// when the format has a time of day).
pub fn normalise_date(text: &str, format: &str) -> Option<String> {
    let tm = jiff::fmt::strtime::parse(format, text).ok()?;
    let has_time = format.contains("%H")
        || format.contains("%I")
        || format.contains("%T")
        || format.contains("%R");
    if has_time {
        tm.to_datetime()
            .ok()
            .map(|dt| dt.strftime("%Y-%m-%dT%H:%M:%S").to_string())
    } else {
        tm.to_date().ok().map(|d| d.to_string())
    }
}

fn cleanse_value(v: &mut Value, rule: &CleanseRule) {
    let Value::String(s) = v else { return };
    if rule.trim {
        let t = s.trim();
        if t.len() != s.len() {
            *s = t.to_string();
        }
    }
    if rule.null_values.iter().any(|n| n == s.as_str()) {
        *v = Value::Null;
        return;
    }
    match rule.case {
        Some(LetterCase::Upper) => *s = s.to_uppercase(),
        Some(LetterCase::Lower) => *s = s.to_lowercase(),
        None => {}
    }
    if !rule.lookup.is_empty() {
        match rule.lookup.get(s.as_str()) {
            Some(mapped) => *s = mapped.clone(),
            None => {
                if let Some(d) = &rule.lookup_default {
                    *s = d.clone();
                }
            }
        }
    }
    if let Some(iso) = rule.date_formats.iter().find_map(|f| normalise_date(s, f)) {
        *s = iso;
    }
}

impl RecordStep for Cleanse {
    fn name(&self) -> &str {
        &self.name
    }

    fn apply(&self, rec: &mut Record) -> Outcome {
        for rule in &self.rules {
            record::for_each_mut(rec, &rule.field, &mut |v| cleanse_value(v, rule));
        }
        Outcome::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn trims_nulls_cases_lookups_and_dates() {
        let step: CleanseStep = serde_yaml::from_str(
            r#"
rules:
  - {field: name, trim: true}
  - {field: id, trim: true, case: upper}
  - {field: code, trim: true, lookup: {GLU: "2345-7"}, lookupDefault: UNKNOWN}
  - {field: at, dateFormats: ["%Y%m%d%H%M%S", "%Y/%m/%d"]}
  - {field: born, dateFormats: ["%Y%m%d%H%M%S", "%Y/%m/%d"]}
  - {field: value, trim: true, nullValues: ["", "-", "未测"]}
  - {field: items.v, trim: true}
"#,
        )
        .unwrap();
        let c = Cleanse::compile("c".into(), &step).unwrap();
        let mut r = json!({
            "name": "\u{3000}王小明 ", "id": "11010519491231002x", "code": " GLU", "at": "20261128093000",
            "born": "1949/12/31", "value": "未测", "items": [{"v": " a "}, {"v": "b "}]
        })
        .as_object().map(|m| Record::from(m.clone())).unwrap();
        assert_eq!(c.apply(&mut r), Outcome::Keep);
        assert_eq!(r["name"], "王小明");
        assert_eq!(r["id"], "11010519491231002X");
        assert_eq!(r["code"], "2345-7");
        assert_eq!(r["at"], "2026-11-28T09:30:00");
        assert_eq!(r["born"], "1949-12-31");
        assert_eq!(r["value"], Value::Null);
        assert_eq!(r["items"], json!([{"v": "a"}, {"v": "b"}]));
        let mut other = json!({"code": "XYZ", "at": "not a date"})
            .as_object()
            .map(|m| Record::from(m.clone()))
            .unwrap();
        c.apply(&mut other);
        assert_eq!(other["code"], "UNKNOWN");
        assert_eq!(other["at"], "not a date");
    }
}
