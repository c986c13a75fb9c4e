//! The `deidentify` step: ordered rules, first match wins, fail closed.
//!
//! Each field of a record is decided once: the first rule whose selector names its path (a
//! `field` rule) or its data-dictionary class (`identifier`) or category (`category`) applies
//! its method; a field no rule decides is removed (`unmatched: redact`, the default) or kept.
//! The decision per path is computed when the step is compiled, so each record costs one walk.
//! Methods apply to every scalar under the decided path (a FHIR `name` object, an HL7 `PID.5`).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

/// The hasher of the per-field lookups (one or two per field of every record, where SipHash
/// showed in profiles). The tables are fixed when the step compiles and record field names are
/// only looked up, never inserted, so hash flooding cannot grow them; the seed is random anyway.
type FastHash = foldhash::fast::RandomState;

use serde_json::{Number, Value};

use super::{CompileContext, Outcome, RecordStep, StepError};
use crate::api::deidentify::{
    CryptoHashParams, DeidentifyRule, DeidentifyStep, EncryptParams, Generalization, HashAlgorithm,
    Method, OnError, Unmatched,
};
use crate::worker::crypto::{Cipher, KeyedHash, key_bytes};
use crate::worker::dates::{DateValue, age_on};
use crate::worker::flat::{self, Cell, FlatSchema, FlatStep};
use crate::worker::record::{self, Object, Record};

/// A rule's method with its keys and parameters resolved.
#[derive(Debug)]
enum Action {
    Keep,
    Redact,
    Mask {
        first: usize,
        last: usize,
        ch: char,
    },
    Substitute(Value),
    Hash {
        h: KeyedHash,
        reference_id_only: bool,
    },
    Encrypt(Cipher),
    DateShift {
        h: KeyedHash,
        max_days: u32,
        patient_field: String,
        /// This rule's place among the step's dateShift rules, an index into `Walk::days`.
        ordinal: usize,
    },
    Year,
    AgeBand {
        width: u32,
    },
    RegionPrefix {
        len: usize,
    },
    Perturb {
        max_abs: f64,
        h: Option<KeyedHash>,
    },
}

/// A compiled deidentify step.
#[derive(Debug)]
pub struct Deidentify {
    name: String,
    actions: Vec<(String, Action)>,
    /// Path → index into `actions` of the first rule that decides it.
    decided: HashMap<String, usize, FastHash>,
    /// Every proper prefix of a decided path: where the walk must descend.
    prefixes: HashSet<String, FastHash>,
    unmatched: Unmatched,
    on_error: OnError,
    as_of: jiff::civil::Date,
}

struct Keys<'a> {
    step: &'a str,
    ctx: &'a CompileContext<'a>,
    spec: &'a DeidentifyStep,
}

impl Keys<'_> {
    fn load(
        &self,
        key_of: impl Fn(&crate::api::deidentify::DeidentifyKeys) -> &String,
    ) -> Result<(Vec<u8>, String), StepError> {
        let keys = self.spec.keys.as_ref().ok_or_else(|| StepError::Config {
            step: self.step.to_string(),
            message: "cryptoHash, encrypt and dateShift rules need keys (a Secret reference)"
                .into(),
        })?;
        let key = key_of(keys);
        let value = self
            .ctx
            .secrets
            .read(&keys.secret_name, key)
            .map_err(|source| StepError::Secret {
                step: self.step.to_string(),
                source,
            })?;
        Ok((
            key_bytes(&value),
            format!("key {key} of Secret {}", keys.secret_name),
        ))
    }
}

fn crypto_err(step: &str) -> impl Fn(crate::worker::crypto::CryptoError) -> StepError + '_ {
    move |e| StepError::Config {
        step: step.to_string(),
        message: e.to_string(),
    }
}

impl Deidentify {
    /// Compiles the step: resolves selectors against the dictionary and loads every key.
    pub fn compile(
        name: String,
        spec: &DeidentifyStep,
        ctx: &CompileContext<'_>,
    ) -> Result<Self, StepError> {
        let keys = Keys {
            step: &name,
            ctx,
            spec,
        };
        let mut actions = Vec::new();
        for (i, rule) in spec.rules.iter().enumerate() {
            let label = rule_label(rule, i);
            let missing = |what: &str| StepError::Config {
                step: name.clone(),
                message: format!(
                    "rule {label}: method {} needs its {what} parameters",
                    rule.method.as_str()
                ),
            };
            let action = match rule.method {
                Method::Keep => Action::Keep,
                Method::Redact => Action::Redact,
                Method::Mask => {
                    let m = rule.mask.as_ref().ok_or_else(|| missing("mask"))?;
                    Action::Mask {
                        first: m.keep_first as usize,
                        last: m.keep_last as usize,
                        ch: m.mask_char.chars().next().unwrap_or('*'),
                    }
                }
                Method::Substitute => {
                    let s = rule
                        .substitute
                        .as_ref()
                        .ok_or_else(|| missing("substitute"))?;
                    Action::Substitute(Value::String(s.value.clone()))
                }
                Method::CryptoHash => {
                    let p = rule
                        .crypto_hash
                        .clone()
                        .unwrap_or(CryptoHashParams::default());
                    let (k, what) = keys.load(|k| &k.hmac_key)?;
                    Action::Hash {
                        h: KeyedHash::new(p.algorithm, &k, &what).map_err(crypto_err(&name))?,
                        reference_id_only: p.reference_id_only,
                    }
                }
                Method::Encrypt => {
                    let p = rule.encrypt.clone().unwrap_or(EncryptParams::default());
                    let (k, what) = keys.load(|k| &k.encryption_key)?;
                    Action::Encrypt(Cipher::new(p.algorithm, &k, &what).map_err(crypto_err(&name))?)
                }
                Method::DateShift => {
                    let p = rule
                        .date_shift
                        .as_ref()
                        .ok_or_else(|| missing("dateShift"))?;
                    let (k, what) = keys.load(|k| &k.date_shift_key)?;
                    Action::DateShift {
                        h: KeyedHash::new(HashAlgorithm::HmacSha256, &k, &what)
                            .map_err(crypto_err(&name))?,
                        max_days: p.max_days,
                        patient_field: p.patient_id_field.clone(),
                        ordinal: actions
                            .iter()
                            .filter(|(_, a)| matches!(a, Action::DateShift { .. }))
                            .count(),
                    }
                }
                Method::Generalize => {
                    let g = rule
                        .generalize
                        .as_ref()
                        .ok_or_else(|| missing("generalize"))?;
                    match g.to {
                        Generalization::Year => Action::Year,
                        Generalization::AgeBand => Action::AgeBand {
                            width: g.band_years.max(1),
                        },
                        Generalization::RegionPrefix => Action::RegionPrefix {
                            len: g
                                .prefix_length
                                .ok_or_else(|| missing("generalize.prefixLength"))?
                                as usize,
                        },
                    }
                }
                Method::Perturb => {
                    let p = rule.perturb.as_ref().ok_or_else(|| missing("perturb"))?;
                    // Keyed noise is reproducible; without keys it is random per run.
                    let h = match &spec.keys {
                        Some(_) => {
                            let (k, what) = keys.load(|k| &k.hmac_key)?;
                            Some(
                                KeyedHash::new(HashAlgorithm::HmacSha256, &k, &what)
                                    .map_err(crypto_err(&name))?,
                            )
                        }
                        None => None,
                    };
                    Action::Perturb {
                        max_abs: p.max_abs,
                        h,
                    }
                }
            };
            actions.push((label, action));
        }

        // First match wins, per path: field rules match their path, identifier and category
        // rules match the dictionary's paths of that class or category.
        let mut candidates: HashSet<String> = ctx.dictionary.paths().cloned().collect();
        candidates.extend(spec.rules.iter().filter_map(|r| r.field.clone()));
        let mut decided = HashMap::with_hasher(FastHash::default());
        for path in candidates {
            let entry = ctx.dictionary.get(&path);
            let first = spec.rules.iter().position(|r| {
                r.field.as_deref() == Some(path.as_str())
                    || (r.identifier.is_some() && entry.map(|e| e.0) == r.identifier)
                    || (r.category.is_some() && entry.map(|e| e.1) == r.category)
            });
            if let Some(i) = first {
                decided.insert(path, i);
            }
        }
        let mut prefixes = HashSet::with_hasher(FastHash::default());
        for path in decided.keys() {
            let mut p = path.as_str();
            while let Some((head, _)) = p.rsplit_once('.') {
                prefixes.insert(head.to_string());
                p = head;
            }
        }
        Ok(Deidentify {
            name,
            actions,
            decided,
            prefixes,
            unmatched: spec.unmatched,
            on_error: spec.on_error,
            as_of: ctx.as_of,
        })
    }
}

fn rule_label(rule: &DeidentifyRule, i: usize) -> String {
    let selector = if let Some(f) = &rule.field {
        f.clone()
    } else if let Some(c) = rule.identifier {
        format!(
            "identifier={}",
            serde_json::to_value(c)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default()
        )
    } else if let Some(c) = rule.category {
        format!("category={c:?}")
    } else {
        "?".into()
    };
    format!("rules[{i}] ({selector}: {})", rule.method.as_str())
}

/// The text that identifies a patient for dateShift: a string, the first component of an HL7
/// composite, or the first element of a list.
fn patient_key(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) => patient_key_text(s).map(Cow::Borrowed),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Object(m) => m.get("1").and_then(patient_key),
        Value::Array(items) => items.first().and_then(patient_key),
        _ => None,
    }
}

/// The patient id in a string: its text without surrounding blanks, if any is left.
fn patient_key_text(s: &str) -> Option<&str> {
    Some(s.trim()).filter(|t| !t.is_empty())
}

/// Applies `f` to every scalar under `v`; nulls are left alone.
fn each_scalar(
    v: &mut Value,
    f: &mut dyn FnMut(&mut Value) -> Result<(), String>,
) -> Result<(), String> {
    match v {
        Value::Object(m) => m.values_mut().try_for_each(|c| each_scalar(c, f)),
        Value::Array(items) => items.iter_mut().try_for_each(|c| each_scalar(c, f)),
        Value::Null => Ok(()),
        _ => f(v),
    }
}

/// Whether `text` is a date whose first four characters are its four-digit year.
fn starts_with_its_year(text: &str) -> bool {
    DateValue::parse(text).is_some_and(|d| {
        let year = d.date.year();
        (1000..=9999).contains(&year)
            && text.as_bytes().get(..4) == Some(itoa::Buffer::new().format(year).as_bytes())
    })
}

fn age_band(age: i64, width: u32) -> String {
    if age >= 90 {
        return "90+".into();
    }
    let w = i64::from(width);
    let lower = age.max(0) / w * w;
    let upper = (lower + w - 1).min(89);
    format!("{lower}-{upper}")
}

/// Why `path` cannot be date-shifted.
fn no_patient_id(path: &str, patient_field: &str) -> String {
    format!("{path}: dateShift needs the patient id field {patient_field}, which is missing")
}

/// `perturb`: the number moved by up to `max_abs`, keyed (the same input moves the same way)
/// or at random. Integers stay integers, strings stay strings.
fn perturb(
    max_abs: f64,
    h: Option<&KeyedHash>,
    path: &str,
    text: &str,
    kind: ScalarKind,
) -> Result<Value, String> {
    let n: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{path} is not a number"))?;
    let unit = match h {
        Some(h) => h.unit(format!("{path}\u{1f}{text}").as_bytes()),
        None => {
            use ring::rand::SecureRandom;
            let mut b = [0u8; 8];
            ring::rand::SystemRandom::new()
                .fill(&mut b)
                .map_err(|_| "random generator failed".to_string())?;
            (u64::from_be_bytes(b) >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        }
    };
    let is_text = matches!(kind, ScalarKind::Text);
    let integral = matches!(kind, ScalarKind::Integer) || (is_text && !text.contains('.'));
    let out = n + unit * max_abs;
    let out = if integral {
        out.round()
    } else {
        (out * 1e6).round() / 1e6
    };
    Ok(match (is_text, integral) {
        (true, true) => Value::String(format!("{}", out as i64)),
        (true, false) => Value::String(format!("{out}")),
        (false, true) => Value::from(out as i64),
        (false, false) => Number::from_f64(out)
            .map(Value::Number)
            .unwrap_or(Value::Null),
    })
}

struct Walk<'a> {
    step: &'a Deidentify,
    /// The day offset of each dateShift rule (by its ordinal), worked out before any rule
    /// ran; `None` when the record has no patient id.
    days: &'a [Option<i64>],
    error: Option<(String, String)>,
}

/// What kind of scalar a rewritten value was: `perturb` keeps numbers numbers and strings
/// strings.
#[derive(Clone, Copy)]
enum ScalarKind {
    Text,
    /// A number stored as an integer.
    Integer,
    /// Any other number, a boolean.
    Other,
}

impl ScalarKind {
    fn of(v: &Value) -> ScalarKind {
        match v {
            Value::String(_) => ScalarKind::Text,
            Value::Number(n) if !n.is_f64() => ScalarKind::Integer,
            _ => ScalarKind::Other,
        }
    }
}

impl Walk<'_> {
    fn apply(&mut self, rule: usize, path: &str, v: &mut Value) -> bool {
        let step = self.step;
        let (label, action) = &step.actions[rule];
        let result = match action {
            Action::Keep => Ok(()),
            Action::Redact => return false,
            Action::Substitute(value) => {
                *v = value.clone();
                Ok(())
            }
            Action::DateShift { .. } if self.missing_patient(label, action, path) => return true,
            _ => each_scalar(v, &mut |s| {
                // `1987-06-05` and `19870605` keep their first four characters: cut the string
                // in place rather than writing the year anew.
                if let (Action::Year, Value::String(st)) = (action, &mut *s)
                    && starts_with_its_year(st)
                {
                    st.truncate(4);
                    return Ok(());
                }
                let kind = ScalarKind::of(s);
                let text = record::text(s).unwrap_or_default();
                *s = self.rewrite(action, path, &text, kind)?;
                Ok(())
            }),
        };
        if let Err(reason) = result
            && self.error.is_none()
        {
            self.error = Some((label.clone(), reason));
        }
        true
    }

    /// Applies `rule` to a string where it lies, in a flat row: the value it becomes, or
    /// `None` when the rule removes it. An error is kept in the walk, as in [`Walk::apply`].
    fn apply_text(&mut self, rule: usize, path: &str, text: &str) -> Option<Value> {
        let step = self.step;
        let (label, action) = &step.actions[rule];
        let result = match action {
            Action::Keep => Ok(Value::String(text.to_string())),
            Action::Redact => return None,
            Action::Substitute(value) => Ok(value.clone()),
            Action::DateShift { .. } if self.missing_patient(label, action, path) => return None,
            _ => self.rewrite(action, path, text, ScalarKind::Text),
        };
        match result {
            Ok(v) => Some(v),
            Err(reason) => {
                self.error.get_or_insert_with(|| (label.clone(), reason));
                Some(Value::Null)
            }
        }
    }

    /// Whether a dateShift rule has no patient id to shift by, which is then the walk's error
    /// (over any earlier one: the record cannot be shifted at all).
    fn missing_patient(&mut self, label: &str, action: &Action, path: &str) -> bool {
        let Action::DateShift {
            patient_field,
            ordinal,
            ..
        } = action
        else {
            return false;
        };
        if matches!(self.days.get(*ordinal), Some(Some(_))) {
            return false;
        }
        self.error = Some((label.to_string(), no_patient_id(path, patient_field)));
        true
    }

    /// The new value of one scalar, from its text, under a method that rewrites values
    /// (`Err` is why it cannot). `kind` is what the scalar was.
    fn rewrite(
        &self,
        action: &Action,
        path: &str,
        text: &str,
        kind: ScalarKind,
    ) -> Result<Value, String> {
        let rewritten = match action {
            Action::Mask { first, last, ch } => {
                let chars: Vec<char> = text.chars().collect();
                let n = chars.len();
                if first + last >= n {
                    std::iter::repeat_n(*ch, n).collect()
                } else {
                    chars[..*first]
                        .iter()
                        .copied()
                        .chain(std::iter::repeat_n(*ch, n - first - last))
                        .chain(chars[n - last..].iter().copied())
                        .collect()
                }
            }
            Action::Hash {
                h,
                reference_id_only,
            } => {
                let mut hashed = String::with_capacity(text.len().min(64) + 64);
                // Only a reference-id-only rule looks for the `/`.
                let reference = reference_id_only.then(|| text.split_once('/')).flatten();
                match reference {
                    Some((kind, id))
                        if kind.chars().next().is_some_and(|c| c.is_ascii_uppercase()) =>
                    {
                        hashed.push_str(kind);
                        hashed.push('/');
                        h.push_hex_tag(id.as_bytes(), &mut hashed);
                    }
                    _ => h.push_hex_tag(text.as_bytes(), &mut hashed),
                }
                hashed
            }
            Action::Encrypt(c) => c.encrypt(text.as_bytes()).map_err(|e| e.to_string())?,
            Action::DateShift {
                patient_field,
                ordinal,
                ..
            } => {
                let Some(&Some(days)) = self.days.get(*ordinal) else {
                    return Err(no_patient_id(path, patient_field));
                };
                DateValue::parse(text)
                    .and_then(|d| d.shifted(days))
                    .ok_or_else(|| format!("{path} is not a date"))?
                    .render()
            }
            Action::Year => match DateValue::parse(text) {
                Some(d) => d.date.year().to_string(),
                None if text.len() == 4 && text.bytes().all(|b| b.is_ascii_digit()) => {
                    text.to_string()
                }
                None => return Err(format!("{path} is not a date")),
            },
            Action::AgeBand { width } => {
                let age = match text.trim().parse::<f64>() {
                    Ok(a) if (0.0..200.0).contains(&a) => a.floor() as i64,
                    _ => match DateValue::parse(text) {
                        Some(d) => age_on(d.date, self.step.as_of),
                        None => {
                            return Err(format!("{path} is neither an age nor a birth date"));
                        }
                    },
                };
                age_band(age, *width)
            }
            Action::RegionPrefix { len } => text.chars().take(*len).collect(),
            Action::Perturb { max_abs, h } => {
                return perturb(*max_abs, h.as_ref(), path, text, kind);
            }
            Action::Keep | Action::Redact | Action::Substitute(_) => {
                return Err(format!("{path}: this method does not rewrite a value"));
            }
        };
        Ok(Value::String(rewritten))
    }

    /// Walks an object (the record or one nested in it), removing what must go.
    fn object(&mut self, m: &mut impl Object, path: &mut String) {
        let base = path.len();
        m.retain_fields(&mut |k, v| {
            // A top-level field's name is its path: when a rule decides it (every field of a
            // flat record), no path is built.
            if base == 0
                && let Some(&rule) = self.step.decided.get(k)
            {
                return self.apply(rule, k, v);
            }
            if base > 0 {
                path.push('.');
            }
            path.push_str(k);
            let keep = self.node(v, path);
            path.truncate(base);
            keep
        });
    }

    /// Decides one node; `false` removes it.
    fn node(&mut self, v: &mut Value, path: &mut String) -> bool {
        if let Some(&rule) = self.step.decided.get(path.as_str()) {
            return self.apply(rule, path, v);
        }
        if self.step.prefixes.contains(path.as_str()) {
            match v {
                Value::Object(m) => {
                    self.object(m, path);
                    return self.step.unmatched == Unmatched::Keep || !m.is_empty();
                }
                Value::Array(items) => {
                    items.retain_mut(|item| match item {
                        Value::Object(m) => {
                            self.object(m, path);
                            self.step.unmatched == Unmatched::Keep || !m.is_empty()
                        }
                        _ => self.step.unmatched == Unmatched::Keep,
                    });
                    return self.step.unmatched == Unmatched::Keep || !items.is_empty();
                }
                _ => {}
            }
        }
        self.step.unmatched == Unmatched::Keep
    }
}

impl RecordStep for Deidentify {
    fn name(&self) -> &str {
        &self.name
    }

    fn fails_run(&self) -> bool {
        self.on_error == OnError::Fail
    }

    fn apply(&self, rec: &mut Record) -> Outcome {
        // dateShift reads patient ids before any rule can hash or remove them; the offsets
        // are in the rules' order, which is their ordinals.
        let days = self
            .date_shifts(|_, patient_field| record::get(rec, patient_field).and_then(patient_key));
        let mut walk = Walk {
            step: self,
            days: &days,
            error: None,
        };
        walk.object(rec, &mut String::new());
        match walk.error {
            None => Outcome::Keep,
            Some((rule, reason)) => Outcome::Quarantine { rule, reason },
        }
    }

    fn flat<'a>(&'a self, schema: &mut FlatSchema) -> Option<Box<dyn FlatStep + 'a>> {
        // The column of each dateShift rule's patient id, by ordinal; a path declines.
        let patient_columns = self
            .date_shift_rules()
            .map(|(_, _, field)| flat::is_plain(field).then(|| schema.column(field)))
            .collect::<Option<Vec<_>>>()?;
        // A top-level field's path is its name; a string under a name that is only a prefix of
        // decided paths is unmatched, as in the walk.
        let columns = (0..schema.len())
            .map(|i| match self.decided.get(schema.name(i)) {
                Some(&rule) => match self.actions.get(rule).map(|(_, a)| a) {
                    Some(Action::Keep) => FlatAction::Keep,
                    Some(Action::Redact) => FlatAction::Redact,
                    _ => FlatAction::Rule(rule, schema.name(i).to_string()),
                },
                None if self.unmatched == Unmatched::Keep => FlatAction::Keep,
                None => FlatAction::Redact,
            })
            .collect();
        Some(Box::new(FlatDeidentify {
            step: self,
            columns,
            patient_columns,
        }))
    }
}

impl Deidentify {
    /// The day offset of each dateShift rule, in the rules' order (their ordinals), from the
    /// patient ids `patient(ordinal, field)` gives.
    fn date_shifts<'r>(
        &self,
        mut patient: impl FnMut(usize, &str) -> Option<Cow<'r, str>>,
    ) -> Vec<Option<i64>> {
        self.date_shift_rules()
            .enumerate()
            .map(|(ordinal, (h, max_days, field))| {
                patient(ordinal, field).map(|p| h.offset(p.as_bytes(), max_days))
            })
            .collect()
    }

    /// The key, the largest shift and the patient id field of each dateShift rule, in order.
    fn date_shift_rules(&self) -> impl Iterator<Item = (&KeyedHash, u32, &str)> {
        self.actions.iter().filter_map(|(_, a)| match a {
            Action::DateShift {
                h,
                max_days,
                patient_field,
                ..
            } => Some((h, *max_days, patient_field.as_str())),
            _ => None,
        })
    }
}

/// What happens to one column of a flat row.
enum FlatAction {
    Keep,
    Redact,
    /// The rule (an index into the actions) and the column's name, which is its path.
    Rule(usize, String),
}

/// The step bound to a schema: each column's action, and the column of each patient id field.
struct FlatDeidentify<'a> {
    step: &'a Deidentify,
    columns: Vec<FlatAction>,
    /// By dateShift ordinal; `None`: not in the rows.
    patient_columns: Vec<Option<usize>>,
}

impl FlatStep for FlatDeidentify<'_> {
    fn apply(&self, cells: &mut [Cell<'_>]) -> bool {
        let days = {
            let cells = &*cells;
            self.step.date_shifts(|ordinal, _| {
                let cell = cells.get((*self.patient_columns.get(ordinal)?)?)?;
                match cell {
                    Cell::Text(t) => patient_key_text(t).map(Cow::Borrowed),
                    Cell::Value(v) => patient_key(v),
                    Cell::Absent => None,
                }
            })
        };
        let mut walk = Walk {
            step: self.step,
            days: &days,
            error: None,
        };
        for (cell, action) in cells.iter_mut().zip(&self.columns) {
            match action {
                FlatAction::Keep => {}
                FlatAction::Redact => *cell = Cell::Absent,
                FlatAction::Rule(rule, path) => {
                    let rewritten = match cell {
                        Cell::Absent => continue,
                        Cell::Text(t) => walk.apply_text(*rule, path, t),
                        Cell::Value(v) => {
                            let mut v = std::mem::take(v);
                            walk.apply(*rule, path, &mut v).then_some(v)
                        }
                    };
                    *cell = rewritten.map_or(Cell::Absent, Cell::Value);
                    if walk.error.is_some() {
                        return false;
                    }
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::secrets::SecretStore;
    use crate::worker::steps::Dictionary;
    use serde_json::json;

    fn dict(fields: &[(&str, &str, &str)]) -> Dictionary {
        let doc = json!({
            "version": 1, "namespace": "n", "name": "p", "serviceAccount": "sa",
            "spec": {"purpose": "Research", "sources": ["s"], "sink": {"tier": "t", "dataset": "d"}},
            "sources": {"s": {
                "system": "EMR", "connector": {"files": {"location": {"tier": "t", "path": "x"}, "format": "ndjson"}},
                "classification": {"level": "L4", "domain": "clinical"},
                "fields": fields.iter().map(|(p, i, c)| json!({"path": p, "identifier": i, "category": c})).collect::<Vec<_>>()
            }},
            "tiers": {}, "policies": [], "secrets": {}
        });
        Dictionary::of(&serde_json::from_value(doc).unwrap())
    }

    fn compile(yaml: &str, d: &Dictionary) -> Deidentify {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("k")).unwrap();
        std::fs::write(dir.path().join("k/hmac-key"), "aa".repeat(32)).unwrap();
        std::fs::write(dir.path().join("k/encryption-key"), "bb".repeat(32)).unwrap();
        std::fs::write(dir.path().join("k/date-shift-key"), "cc".repeat(32)).unwrap();
        let secrets = SecretStore::under_root(dir.path(), &["k"]);
        let ctx = CompileContext {
            dictionary: d,
            secrets: &secrets,
            as_of: jiff::civil::date(2026, 11, 28),
        };
        Deidentify::compile("d".into(), &serde_yaml::from_str(yaml).unwrap(), &ctx).unwrap()
    }

    fn run(d: &Deidentify, v: Value) -> (Value, Outcome) {
        let mut r = v.as_object().map(|m| Record::from(m.clone())).unwrap();
        let o = d.apply(&mut r);
        (Value::from(r), o)
    }

    #[test]
    fn first_match_wins_and_unmatched_fields_are_removed() {
        let d = dict(&[
            ("name", "direct", "PersonalAttributes"),
            ("phone", "direct", "PersonalAttributes"),
            ("dx", "none", "HealthStatus"),
        ]);
        let step = compile(
            r#"
keys: {secretName: k}
rules:
  - {field: phone, method: mask, mask: {keepLast: 4}}
  - {identifier: direct, method: redact}
  - {category: HealthStatus, method: keep}
"#,
            &d,
        );
        let (out, o) = run(
            &step,
            json!({"name": "王小明", "phone": "13812345678", "dx": "I21.9", "extra": "x", "nested": {"a": 1}}),
        );
        assert_eq!(o, Outcome::Keep);
        assert_eq!(out, json!({"phone": "*******5678", "dx": "I21.9"}));
    }

    #[test]
    fn methods_do_what_they_say() {
        let d = dict(&[]);
        let step = compile(
            r#"
keys: {secretName: k}
unmatched: keep
rules:
  - {field: pid, method: cryptoHash}
  - {field: pid_sm3, method: cryptoHash, cryptoHash: {algorithm: HMAC-SM3}}
  - {field: ref, method: cryptoHash, cryptoHash: {referenceIdOnly: true}}
  - {field: secret, method: encrypt}
  - {field: admitted, method: dateShift, dateShift: {maxDays: 30, patientIdField: pid}}
  - {field: discharged, method: dateShift, dateShift: {maxDays: 30, patientIdField: pid}}
  - {field: born, method: generalize, generalize: {to: year}}
  - {field: age, method: generalize, generalize: {to: ageBand}}
  - {field: old, method: generalize, generalize: {to: ageBand}}
  - {field: birth_for_band, method: generalize, generalize: {to: ageBand, bandYears: 10}}
  - {field: region, method: generalize, generalize: {to: regionPrefix, prefixLength: 4}}
  - {field: weight, method: perturb, perturb: {maxAbs: 2}}
  - {field: name, method: substitute, substitute: {value: "***"}}
  - {field: name.family, method: redact}
"#,
            &d,
        );
        let input = json!({
            "pid": "P1", "pid_sm3": "P1", "ref": "Patient/123", "secret": "秘密", "admitted": "2026-03-01T08:00:00+08:00",
            "discharged": "20260310", "born": "19491231", "age": 37, "old": "93", "birth_for_band": "1990-06-15",
            "region": "110105", "weight": 70, "name": {"family": "王"}, "other": "kept"
        });
        let (out, o) = run(&step, input.clone());
        assert_eq!(o, Outcome::Keep, "{out}");
        assert_eq!(out["pid"].as_str().unwrap().len(), 64);
        assert_ne!(out["pid"], out["pid_sm3"]);
        assert!(out["ref"].as_str().unwrap().starts_with("Patient/"));
        assert_eq!(out["born"], "1949");
        assert_eq!(out["age"], "35-39");
        assert_eq!(out["old"], "90+");
        assert_eq!(out["birth_for_band"], "30-39");
        assert_eq!(out["region"], "1101");
        assert_eq!(out["name"], "***");
        assert_eq!(out["other"], "kept");
        let w = out["weight"].as_i64().unwrap();
        assert!((68..=72).contains(&w));
        // Intervals survive the shift: 9 days apart before and after.
        let a = DateValue::parse(out["admitted"].as_str().unwrap()).unwrap();
        let b = DateValue::parse(out["discharged"].as_str().unwrap()).unwrap();
        assert_eq!((b.date - a.date).get_days(), 9);
        assert!(
            out["admitted"]
                .as_str()
                .unwrap()
                .ends_with("T08:00:00+08:00")
        );
        assert_ne!(out["admitted"], input["admitted"]);
        // Deterministic except encrypt.
        let (again, _) = run(&step, input);
        assert_eq!(again["pid"], out["pid"]);
        assert_eq!(again["admitted"], out["admitted"]);
        assert_eq!(again["weight"], out["weight"]);
        assert_ne!(again["secret"], out["secret"]);
    }

    #[test]
    fn errors_quarantine_with_the_rule() {
        let d = dict(&[]);
        let step = compile(
            "keys: {secretName: k}\nunmatched: keep\nrules: [{field: d, method: dateShift, dateShift: {maxDays: 3, patientIdField: pid}}]",
            &d,
        );
        let (_, o) = run(&step, json!({"pid": "P1", "d": "yesterday"}));
        assert!(
            matches!(&o, Outcome::Quarantine { rule, reason } if rule.contains("rules[0]") && reason.contains("d is not a date")),
            "{o:?}"
        );
        let (_, o) = run(&step, json!({"d": "2026-01-01"}));
        assert!(
            matches!(&o, Outcome::Quarantine { reason, .. } if reason.contains("patient id field pid")),
            "{o:?}"
        );
    }

    #[test]
    fn nested_paths_and_arrays_follow_the_dictionary() {
        let d = dict(&[
            ("name.family", "direct", "PersonalAttributes"),
            ("PID.3", "direct", "PersonalAttributes"),
        ]);
        let step = compile(
            "keys: {secretName: k}\nrules:\n  - {field: PID.3, method: cryptoHash}\n  - {field: resourceType, method: keep}\n  - {field: name.given, method: keep}\n",
            &d,
        );
        let (out, _) = run(
            &step,
            json!({"resourceType": "Patient", "name": [{"family": "王", "given": ["小明"]}, {"family": "李"}], "PID": {"3": {"1": "P1", "4": "HIS"}, "5": "x"}}),
        );
        assert_eq!(out["name"], json!([{"given": ["小明"]}]));
        assert_eq!(out["PID"]["3"]["1"].as_str().unwrap().len(), 64);
        assert!(out["PID"].get("5").is_none());
    }

    #[test]
    fn missing_keys_fail_compilation_naming_the_secret() {
        let d = dict(&[]);
        let secrets = SecretStore::under_root(std::path::Path::new("/nonexistent"), &["k"]);
        let ctx = CompileContext {
            dictionary: &d,
            secrets: &secrets,
            as_of: jiff::civil::date(2026, 1, 1),
        };
        let spec: DeidentifyStep =
            serde_yaml::from_str("keys: {secretName: k}\nrules: [{field: a, method: cryptoHash}]")
                .unwrap();
        let err = Deidentify::compile("d".into(), &spec, &ctx)
            .unwrap_err()
            .to_string();
        assert!(err.contains("key hmac-key of Secret k"), "{err}");
    }
}
