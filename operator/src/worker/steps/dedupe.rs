//! The `dedupe` step: one record per key, the one with the greatest `keepLatestBy` value (the
//! last one read on a tie or without that field). Memory holds one entry per distinct key;
//! records wait in a spill file.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde_json::Value;

use super::{BarrierError, BarrierRun, Replay};
use crate::api::steps::DedupeStep;
use crate::worker::record::{self, Record};
use crate::worker::spill::{SpillReader, SpillWriter};

/// A compiled dedupe step.
#[derive(Debug, Clone)]
pub struct DedupePlan {
    /// The step's name.
    pub step: String,
    key: Vec<String>,
    by: Option<String>,
}

impl DedupePlan {
    /// Compiles the step.
    pub fn new(step: String, spec: &DedupeStep) -> Self {
        DedupePlan {
            step,
            key: spec.key.clone(),
            by: spec.keep_latest_by.clone(),
        }
    }

    /// Starts the first pass, spilling to `spill`.
    pub fn begin(&self, spill: &Path) -> Result<Box<dyn BarrierRun>, BarrierError> {
        Ok(Box::new(DedupeRun {
            plan: self.clone(),
            writer: SpillWriter::create(spill)?,
            winners: HashMap::new(),
            keyless: HashSet::new(),
        }))
    }
}

/// An ordering value: numbers compare as numbers, anything else as text (ISO dates sort right).
#[derive(Debug, Clone, PartialEq)]
enum Order {
    Number(f64),
    Text(String),
}

impl Order {
    fn of(v: Option<&Value>) -> Option<Order> {
        match v? {
            Value::Null => None,
            Value::Number(n) => n.as_f64().map(Order::Number),
            other => {
                let t = record::text(other)?.trim().to_string();
                match t.parse::<f64>() {
                    Ok(n) => Some(Order::Number(n)),
                    Err(_) => Some(Order::Text(t)),
                }
            }
        }
    }

    /// Whether `self` is at least `other` (later records win ties).
    fn at_least(&self, other: &Order) -> bool {
        match (self, other) {
            (Order::Number(a), Order::Number(b)) => a >= b,
            (Order::Number(a), Order::Text(b)) => a.to_string().as_str() >= b.as_str(),
            (Order::Text(a), Order::Number(b)) => a.as_str() >= b.to_string().as_str(),
            (Order::Text(a), Order::Text(b)) => a >= b,
        }
    }
}

struct DedupeRun {
    plan: DedupePlan,
    writer: SpillWriter,
    winners: HashMap<String, (Option<Order>, u64)>,
    keyless: HashSet<u64>,
}

impl BarrierRun for DedupeRun {
    fn push(&mut self, rec: &Record, location: &str) -> Result<(), BarrierError> {
        let index = self.writer.count();
        self.writer.push(rec, location)?;
        let parts: Vec<Option<String>> = self
            .plan
            .key
            .iter()
            .map(|k| {
                record::get(rec, k)
                    .and_then(record::text)
                    .map(|t| t.into_owned())
            })
            .collect();
        if parts.iter().all(Option::is_none) {
            // Nothing to compare on: such records are all kept.
            self.keyless.insert(index);
            return Ok(());
        }
        let key = parts
            .into_iter()
            .map(|p| p.unwrap_or_else(|| "\u{0}".into()))
            .collect::<Vec<_>>()
            .join("\u{1f}");
        let order = self
            .plan
            .by
            .as_deref()
            .and_then(|b| Order::of(record::get(rec, b)));
        match self.winners.get_mut(&key) {
            Some(current) => {
                let wins = match (&order, &current.0) {
                    (Some(new), Some(old)) => new.at_least(old),
                    (Some(_), None) => true,
                    (None, Some(_)) => false,
                    (None, None) => true,
                };
                if wins {
                    *current = (order, index);
                }
            }
            None => {
                self.winners.insert(key, (order, index));
            }
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<Box<dyn Replay>, BarrierError> {
        let mut keep: HashSet<u64> = self.winners.into_values().map(|(_, i)| i).collect();
        keep.extend(self.keyless);
        Ok(Box::new(DedupeReplay {
            reader: self.writer.finish()?,
            keep,
            index: 0,
            removed: 0,
        }))
    }
}

struct DedupeReplay {
    reader: SpillReader,
    keep: HashSet<u64>,
    index: u64,
    removed: u64,
}

impl Replay for DedupeReplay {
    fn next_record(&mut self) -> Result<Option<(Record, String)>, BarrierError> {
        while let Some(item) = self.reader.next_record()? {
            let i = self.index;
            self.index += 1;
            if self.keep.contains(&i) {
                return Ok(Some(item));
            }
            self.removed += 1;
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

    #[test]
    fn keeps_the_latest_per_key_in_input_order() {
        let dir = tempfile::tempdir().unwrap();
        let spec: DedupeStep = serde_yaml::from_str("key: [s, t]\nkeepLatestBy: at").unwrap();
        let plan = DedupePlan::new("d".into(), &spec);
        let mut run = plan.begin(&dir.path().join("spill")).unwrap();
        let rows = [
            json!({"s": "1", "t": "GLU", "at": "2026-01-02", "v": "old"}),
            json!({"s": "1", "t": "HGB", "at": "2026-01-01", "v": "only"}),
            json!({"s": "1", "t": "GLU", "at": "2026-01-03", "v": "new"}),
            json!({"s": "1", "t": "GLU", "at": "2026-01-01", "v": "older"}),
            json!({"x": 1}),
            json!({"x": 2}),
        ];
        for (i, r) in rows.iter().enumerate() {
            run.push(
                &Record::from(r.as_object().unwrap().clone()),
                &format!("l{i}"),
            )
            .unwrap();
        }
        let mut replay = run.finish().unwrap();
        let mut out = Vec::new();
        while let Some((r, loc)) = replay.next_record().unwrap() {
            out.push((r.get("v").cloned().unwrap_or(Value::Null), loc));
        }
        assert_eq!(
            out,
            vec![
                (json!("only"), "l1".to_string()),
                (json!("new"), "l2".to_string()),
                (Value::Null, "l4".to_string()),
                (Value::Null, "l5".to_string())
            ]
        );
        assert_eq!(replay.removed(), 2);
    }
}
