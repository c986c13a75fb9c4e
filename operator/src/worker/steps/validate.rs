//! The `validate` step: required, type, range, regex, allowed values and the built-in checks
//! (身份证号 checksum, mobile number). A failing record is quarantined, dropped or fails the
//! run, as `onFail` says. Reasons name the rule and field, never the value.

use regex::Regex;
use serde_json::Value;

use super::map::{cast, casts_to, type_name};
use super::{Outcome, RecordStep, StepError};
use crate::api::steps::{BuiltinCheck, OnFail, ValidateStep, ValidationRule};
use crate::worker::flat::{self, Cell, FlatSchema, FlatStep};
use crate::worker::identifiers::{is_mobile_phone, is_valid_resident_id};
use crate::worker::record::{self, Record};

struct Rule {
    spec: ValidationRule,
    pattern: Option<Regex>,
}

/// A compiled validate step.
pub struct Validate {
    name: String,
    rules: Vec<Rule>,
    on_fail: OnFail,
}

impl Validate {
    /// Compiles the step; an invalid regular expression fails the run before any read.
    pub fn compile(name: String, step: &ValidateStep) -> Result<Self, StepError> {
        let mut rules = Vec::new();
        for r in &step.rules {
            let pattern = match &r.pattern {
                Some(p) => {
                    Some(
                        Regex::new(&format!("^(?:{p})$")).map_err(|e| StepError::Config {
                            step: name.clone(),
                            message: format!("rule {}: invalid pattern: {e}", r.name),
                        })?,
                    )
                }
                None => None,
            };
            rules.push(Rule {
                spec: r.clone(),
                pattern,
            });
        }
        Ok(Validate {
            name,
            rules,
            on_fail: step.on_fail,
        })
    }
}

/// Checks one value against a rule; `Err` is the reason.
fn check(rule: &Rule, v: &Value) -> Result<(), String> {
    // Text, nearly every value checked, is checked where it lies, with nothing copied.
    if let Value::String(s) = v {
        return check_text(rule, s);
    }
    let r = &rule.spec;
    let field = &r.field;
    if let Some(t) = r.r#type
        && cast(v.clone(), t).is_err()
    {
        return Err(format!("{field} is not of type {}", type_name(t)));
    }
    if r.min.is_some() || r.max.is_some() {
        in_range(rule, v.as_f64())?;
    }
    check_as_text(rule, &record::text(v).unwrap_or_default())
}

/// [`check`] of a string value.
fn check_text(rule: &Rule, text: &str) -> Result<(), String> {
    let r = &rule.spec;
    if let Some(t) = r.r#type
        && !casts_to(text, t)
    {
        return Err(format!("{} is not of type {}", r.field, type_name(t)));
    }
    if r.min.is_some() || r.max.is_some() {
        in_range(rule, text.trim().parse::<f64>().ok())?;
    }
    check_as_text(rule, text)
}

fn in_range(rule: &Rule, n: Option<f64>) -> Result<(), String> {
    let r = &rule.spec;
    let field = &r.field;
    let Some(n) = n else {
        return Err(format!("{field} is not a number, so min/max cannot hold"));
    };
    if let Some(min) = r.min
        && n < min
    {
        return Err(format!("{field} is below the minimum {min}"));
    }
    if let Some(max) = r.max
        && n > max
    {
        return Err(format!("{field} is above the maximum {max}"));
    }
    Ok(())
}

/// The rules that read a value as text: pattern, allowed values and the built-in checks.
fn check_as_text(rule: &Rule, text: &str) -> Result<(), String> {
    let r = &rule.spec;
    let field = &r.field;
    if let Some(p) = &rule.pattern
        && !p.is_match(text)
    {
        return Err(format!("{field} does not match the pattern"));
    }
    if !r.allowed_values.is_empty() && !r.allowed_values.iter().any(|a| a == text) {
        return Err(format!("{field} is not one of the allowed values"));
    }
    match r.check {
        Some(BuiltinCheck::ResidentId) if !is_valid_resident_id(text.trim()) => Err(format!(
            "{field} is not a valid resident id (GB 11643 check digit or birth date)"
        )),
        Some(BuiltinCheck::MobilePhone) if !is_mobile_phone(text.trim()) => {
            Err(format!("{field} is not a mainland mobile number"))
        }
        _ => Ok(()),
    }
}

impl RecordStep for Validate {
    fn name(&self) -> &str {
        &self.name
    }

    fn fails_run(&self) -> bool {
        self.on_fail == OnFail::Fail
    }

    fn apply(&self, rec: &mut Record) -> Outcome {
        for rule in &self.rules {
            let values = record::get_all(rec, &rule.spec.field);
            let missing = values.iter().all(|v| record::is_missing(Some(v)));
            let verdict = if missing {
                if rule.spec.required {
                    Err(format!("{} is required but missing", rule.spec.field))
                } else {
                    Ok(())
                }
            } else {
                values
                    .iter()
                    .filter(|v| !record::is_missing(Some(v)))
                    .try_for_each(|v| check(rule, v))
            };
            if let Err(reason) = verdict {
                return match self.on_fail {
                    OnFail::Drop => Outcome::Drop {
                        rule: rule.spec.name.clone(),
                    },
                    OnFail::Quarantine | OnFail::Fail => Outcome::Quarantine {
                        rule: rule.spec.name.clone(),
                        reason,
                    },
                };
            }
        }
        Outcome::Keep
    }

    fn flat<'a>(&'a self, schema: &mut FlatSchema) -> Option<Box<dyn FlatStep + 'a>> {
        let columns = self
            .rules
            .iter()
            .map(|r| flat::is_plain(&r.spec.field).then(|| schema.column(&r.spec.field)))
            .collect::<Option<Vec<_>>>()?;
        Some(Box::new(FlatValidate {
            step: self,
            columns,
        }))
    }
}

/// The rules bound to the columns they check (`None`: not in the rows, so always missing).
struct FlatValidate<'a> {
    step: &'a Validate,
    columns: Vec<Option<usize>>,
}

impl FlatStep for FlatValidate<'_> {
    fn apply(&self, cells: &mut [Cell<'_>]) -> bool {
        self.step
            .rules
            .iter()
            .zip(&self.columns)
            .all(|(rule, column)| {
                let cell = column.and_then(|c| cells.get(c));
                let missing = match cell {
                    None | Some(Cell::Absent) => true,
                    Some(Cell::Text(t)) => record::is_blank(t),
                    Some(Cell::Value(v)) => record::is_missing(Some(v)),
                };
                if missing {
                    return !rule.spec.required;
                }
                match cell {
                    Some(Cell::Text(t)) => check_text(rule, t).is_ok(),
                    Some(Cell::Value(v)) => check(rule, v).is_ok(),
                    _ => false,
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn validate(yaml: &str, rec: Value) -> Outcome {
        let step: ValidateStep = serde_yaml::from_str(yaml).unwrap();
        let v = Validate::compile("v".into(), &step).unwrap();
        v.apply(&mut rec.as_object().map(|m| Record::from(m.clone())).unwrap())
    }

    #[test]
    fn each_rule_kind_passes_and_fails() {
        let rules = r#"
rules:
  - {name: pid, field: pid, required: true}
  - {name: id, field: id, check: residentId}
  - {name: num, field: v, type: number, min: 0, max: 100}
  - {name: sex, field: sex, allowedValues: [M, F, U]}
  - {name: code, field: code, pattern: "[A-Z]{3}"}
  - {name: tel, field: tel, check: mobilePhone}
"#;
        let good = json!({"pid": "P1", "id": "11010519491231002X", "v": "5.6", "sex": "F", "code": "GLU", "tel": "13812345678"});
        assert_eq!(validate(rules, good.clone()), Outcome::Keep);
        for (field, bad, rule) in [
            ("pid", json!(" "), "pid"),
            ("id", json!("110105194912310021"), "id"),
            ("v", json!("abc"), "num"),
            ("v", json!(101), "num"),
            ("sex", json!("X"), "sex"),
            ("code", json!("GLUC"), "code"),
            ("tel", json!("12345"), "tel"),
        ] {
            let mut r = good.clone();
            r[field] = bad;
            match validate(rules, r) {
                Outcome::Quarantine { rule: got, reason } => {
                    assert_eq!(got, rule);
                    assert!(reason.starts_with(field), "{reason}");
                }
                other => panic!("{field}: {other:?}"),
            }
        }
        // Optional fields may be absent.
        assert_eq!(validate(rules, json!({"pid": "P1"})), Outcome::Keep);
        assert_eq!(
            validate(
                "onFail: drop\nrules: [{name: r, field: x, required: true}]",
                json!({})
            ),
            Outcome::Drop { rule: "r".into() }
        );
    }

    #[test]
    fn a_bad_pattern_fails_compilation() {
        let step: ValidateStep =
            serde_yaml::from_str("rules: [{name: r, field: x, pattern: \"(\"}]").unwrap();
        assert!(Validate::compile("v".into(), &step).is_err());
    }
}
