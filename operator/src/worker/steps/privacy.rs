//! The privacy gate of a `deidentify` step, run before anything is committed:
//! - k-anonymity over the quasi identifiers: records of groups smaller than k are suppressed,
//!   and the run fails when more than `maxSuppressionPercent` of the records would be;
//! - the leftover-identifier scan: a valid 身份证号, a mobile number or an e-mail address in any
//!   output value fails the run.
//!
//! Memory holds one counter per distinct quasi-identifier combination (the one thing that must
//! grow with the input); the records themselves wait in a spill file.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use super::{BarrierError, BarrierRun, Dictionary, Replay};
use crate::api::deidentify::PrivacyGate;
use crate::worker::identifiers::scan_text;
use crate::worker::record::{self, Record};
use crate::worker::spill::{SpillReader, SpillWriter};

/// A compiled privacy gate.
#[derive(Debug, Clone)]
pub struct PrivacyPlan {
    /// The deidentify step it belongs to.
    pub step: String,
    k: u32,
    quasi: Vec<String>,
    max_suppression_percent: f64,
    leftover_scan: bool,
}

impl PrivacyPlan {
    /// Compiles the gate; without listed quasi identifiers, the dictionary's `quasi` fields.
    pub fn new(step: String, gate: &PrivacyGate, dictionary: &Dictionary) -> Self {
        let quasi = if gate.quasi_identifiers.is_empty() {
            dictionary.quasi()
        } else {
            gate.quasi_identifiers.clone()
        };
        PrivacyPlan {
            step,
            k: gate.k,
            quasi,
            max_suppression_percent: gate.max_suppression_percent,
            leftover_scan: gate.leftover_scan,
        }
    }

    /// Starts the first pass.
    pub fn begin(&self, spill: &Path) -> Result<Box<dyn BarrierRun>, BarrierError> {
        Ok(Box::new(PrivacyRun {
            plan: self.clone(),
            writer: SpillWriter::create(spill)?,
            groups: HashMap::new(),
        }))
    }

    fn group_key(&self, rec: &Record) -> String {
        let mut key = String::new();
        for q in &self.quasi {
            match record::get(rec, q).and_then(record::text) {
                Some(t) => key.push_str(&t),
                None => key.push('\u{0}'),
            }
            key.push('\u{1f}');
        }
        key
    }
}

struct PrivacyRun {
    plan: PrivacyPlan,
    writer: SpillWriter,
    groups: HashMap<String, u32>,
}

impl BarrierRun for PrivacyRun {
    fn push(&mut self, rec: &Record, location: &str) -> Result<(), BarrierError> {
        self.writer.push(rec, location)?;
        *self.groups.entry(self.plan.group_key(rec)).or_insert(0) += 1;
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<Box<dyn Replay>, BarrierError> {
        let total = self.writer.count();
        let k = self.plan.k;
        let small: u64 = self
            .groups
            .values()
            .filter(|c| **c < k)
            .map(|c| u64::from(*c))
            .sum();
        if total > 0 {
            let percent = small as f64 * 100.0 / total as f64;
            if percent > self.plan.max_suppression_percent {
                return Err(BarrierError::Privacy {
                    step: self.plan.step.clone(),
                    message: format!(
                        "k-anonymity (k={k}) over [{}] would suppress {small} of {total} records ({percent:.1}%), above the limit of {}%",
                        self.plan.quasi.join(", "),
                        self.plan.max_suppression_percent
                    ),
                });
            }
        }
        Ok(Box::new(PrivacyReplay {
            reader: self.writer.finish()?,
            plan: self.plan,
            groups: self.groups,
            removed: 0,
        }))
    }
}

struct PrivacyReplay {
    reader: SpillReader,
    plan: PrivacyPlan,
    groups: HashMap<String, u32>,
    removed: u64,
}

/// The path of the first leftover identifier in a value, with its kind.
fn find_leftover(v: &Value, path: &mut String) -> Option<(String, &'static str)> {
    match v {
        Value::String(s) => scan_text(s).first().map(|k| (path.clone(), k.as_str())),
        Value::Number(n) => scan_text(&n.to_string())
            .first()
            .map(|k| (path.clone(), k.as_str())),
        Value::Array(items) => items.iter().find_map(|i| find_leftover(i, path)),
        Value::Object(m) => {
            let base = path.len();
            for (k, child) in m {
                if base > 0 {
                    path.push('.');
                }
                path.push_str(k);
                let found = find_leftover(child, path);
                path.truncate(base);
                if found.is_some() {
                    return found;
                }
            }
            None
        }
        _ => None,
    }
}

impl Replay for PrivacyReplay {
    fn next_record(&mut self) -> Result<Option<(Record, String)>, BarrierError> {
        while let Some((rec, location)) = self.reader.next_record()? {
            let count = self
                .groups
                .get(&self.plan.group_key(&rec))
                .copied()
                .unwrap_or(0);
            if count < self.plan.k {
                self.removed += 1;
                continue;
            }
            if self.plan.leftover_scan {
                let mut path = String::new();
                let found = rec.iter().find_map(|(k, v)| {
                    path.clear();
                    path.push_str(k);
                    find_leftover(v, &mut path)
                });
                if let Some((field, kind)) = found {
                    return Err(BarrierError::Privacy {
                        step: self.plan.step.clone(),
                        message: format!(
                            "leftover identifier: a {kind} in field {field} of the record from {location}"
                        ),
                    });
                }
            }
            return Ok(Some((rec, location)));
        }
        Ok(None)
    }

    fn removed(&self) -> u64 {
        self.removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(gate: &str, rows: &[Value]) -> Result<(Vec<Value>, u64), String> {
        let dir = tempfile::tempdir().unwrap();
        let plan = PrivacyPlan::new(
            "d".into(),
            &serde_yaml::from_str(gate).unwrap(),
            &Dictionary::default(),
        );
        let mut r = plan.begin(&dir.path().join("s")).unwrap();
        for (i, row) in rows.iter().enumerate() {
            r.push(
                &Record::from(row.as_object().unwrap().clone()),
                &format!("f:{i}"),
            )
            .unwrap();
        }
        let mut replay = r.finish().map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        while let Some((rec, _)) = replay.next_record().map_err(|e| e.to_string())? {
            out.push(Value::from(rec));
        }
        Ok((out, replay.removed()))
    }

    fn rows(groups: &[(&str, usize)]) -> Vec<Value> {
        groups
            .iter()
            .flat_map(|(g, n)| (0..*n).map(move |i| json!({"sex": g, "n": i})))
            .collect()
    }

    #[test]
    fn small_groups_are_suppressed_within_the_limit() {
        let (out, removed) = run(
            "k: 3\nquasiIdentifiers: [sex]\nmaxSuppressionPercent: 20",
            &rows(&[("M", 5), ("F", 4), ("U", 1)]),
        )
        .unwrap();
        assert_eq!(out.len(), 9);
        assert_eq!(removed, 1);
        assert!(out.iter().all(|r| r["sex"] != "U"));
    }

    #[test]
    fn too_much_suppression_fails_the_run() {
        let err = run(
            "k: 5\nquasiIdentifiers: [sex]\nmaxSuppressionPercent: 10",
            &rows(&[("M", 5), ("F", 2)]),
        )
        .unwrap_err();
        assert!(
            err.contains("would suppress 2 of 7 records (28.6%)"),
            "{err}"
        );
    }

    #[test]
    fn leftover_identifiers_fail_the_run_without_showing_the_value() {
        let mut data = rows(&[("M", 3)]);
        data[1]["note"] = json!({"text": "联系 13812345678"});
        let err = run("k: 2\nquasiIdentifiers: [sex]", &data).unwrap_err();
        assert!(
            err.contains("a mobile number in field note.text of the record from f:1"),
            "{err}"
        );
        assert!(!err.contains("13812345678"));
        assert!(run("k: 2\nquasiIdentifiers: [sex]\nleftoverScan: false", &data).is_ok());
    }
}
