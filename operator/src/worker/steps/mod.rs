//! The governance steps, compiled once per run from the pipeline spec: per-record steps (map,
//! cleanse, validate, deidentify, link) and the two that need the whole dataset (dedupe and the
//! privacy gate), which the engine runs as barriers over a spill file.
//!
//! Compiling loads every key and compiles every pattern, so a missing key or a bad regex fails
//! the run before any record is read.

pub mod cleanse;
pub mod dedupe;
pub mod deidentify;
pub mod link;
pub mod map;
pub mod privacy;
pub mod validate;

use std::collections::BTreeMap;

use super::flat::{FlatSchema, FlatStep};
use super::record::Record;
use super::secrets::{SecretError, SecretStore};
use crate::api::classification::{Category, IdentifierClass};
use crate::api::resolved::ResolvedPipeline;
use crate::api::steps::Step;

/// What a step decided about one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The record goes on.
    Keep,
    /// The record is set aside in `_quarantine/` with the rule and reason.
    Quarantine {
        /// The rule that failed.
        rule: String,
        /// Why (never the value of a secret; field values only where the dataset may hold them).
        reason: String,
    },
    /// The record is dropped and counted (`onFail: drop`).
    Drop {
        /// The rule that failed.
        rule: String,
    },
}

/// A step error that fails the run.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The step's configuration cannot work.
    #[error("step {step}: {message}")]
    Config {
        /// The step's name.
        step: String,
        /// What is wrong.
        message: String,
    },
    /// A key could not be read.
    #[error("step {step}: {source}")]
    Secret {
        /// The step's name.
        step: String,
        /// The cause.
        #[source]
        source: SecretError,
    },
    /// A record failed a rule whose policy is to fail the run.
    #[error(
        "step {step}: rule {rule} failed at {location}: {reason}; the run fails (onFail/onError: fail)"
    )]
    RecordFailed {
        /// The step's name.
        step: String,
        /// The rule.
        rule: String,
        /// Where the record came from.
        location: String,
        /// Why.
        reason: String,
    },
}

/// A step applied to one record at a time.
pub trait RecordStep: Send + Sync {
    /// The step's name (`spec.steps[i].name`, or `<kind>-<i>`).
    fn name(&self) -> &str;
    /// Applies the step. `Err` is a reason under `onFail`/`onError: fail`.
    fn apply(&self, record: &mut Record) -> Outcome;
    /// Whether a failing record fails the run instead of being quarantined or dropped.
    fn fails_run(&self) -> bool {
        false
    }
    /// The step's form for flat rows of `schema`'s columns (adding the columns it writes), when
    /// it has one: it must keep exactly the rows [`RecordStep::apply`] keeps, with the same
    /// values, and decline the rest (see [`crate::worker::flat`]).
    fn flat<'a>(&'a self, schema: &mut FlatSchema) -> Option<Box<dyn FlatStep + 'a>> {
        let _ = schema;
        None
    }
}

/// One compiled step.
pub enum CompiledStep {
    /// Record by record.
    PerRecord(Box<dyn RecordStep>),
    /// Keep one record per key: a barrier.
    Dedupe(dedupe::DedupePlan),
    /// k-anonymity and the leftover-identifier scan: a barrier.
    Privacy(privacy::PrivacyPlan),
}

impl CompiledStep {
    /// The step's name.
    pub fn name(&self) -> &str {
        match self {
            CompiledStep::PerRecord(s) => s.name(),
            CompiledStep::Dedupe(d) => &d.step,
            CompiledStep::Privacy(p) => &p.step,
        }
    }
}

/// The data dictionary of a run: every field path of every source, with how it identifies and
/// its category. Fields are matched by exact path.
#[derive(Clone, Debug, Default)]
pub struct Dictionary {
    fields: BTreeMap<String, (IdentifierClass, Category)>,
}

impl Dictionary {
    /// The dictionary of a resolved document (the union of its sources' fields; the first
    /// declaration of a path wins).
    pub fn of(doc: &ResolvedPipeline) -> Self {
        let mut fields = BTreeMap::new();
        for s in doc.sources.values() {
            for f in &s.fields {
                fields
                    .entry(f.path.clone())
                    .or_insert((f.identifier, f.category));
            }
        }
        Dictionary { fields }
    }

    /// The class and category of a path, if declared.
    pub fn get(&self, path: &str) -> Option<(IdentifierClass, Category)> {
        self.fields.get(path).copied()
    }

    /// Every declared path.
    pub fn paths(&self) -> impl Iterator<Item = &String> {
        self.fields.keys()
    }

    /// The paths declared `quasi`.
    pub fn quasi(&self) -> Vec<String> {
        self.fields
            .iter()
            .filter(|(_, (c, _))| *c == IdentifierClass::Quasi)
            .map(|(p, _)| p.clone())
            .collect()
    }
}

/// What compiling needs besides the step itself.
pub struct CompileContext<'a> {
    /// The data dictionary.
    pub dictionary: &'a Dictionary,
    /// Where keys come from.
    pub secrets: &'a SecretStore,
    /// The logical date of the run, for ages computed from birth dates.
    pub as_of: jiff::civil::Date,
}

/// The display name of step `i`.
pub fn step_name(step: &Step, i: usize) -> String {
    step.name
        .clone()
        .unwrap_or_else(|| format!("{}-{i}", step.kind()))
}

/// Compiles every step in order.
pub fn compile(steps: &[Step], ctx: &CompileContext<'_>) -> Result<Vec<CompiledStep>, StepError> {
    let mut out = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let name = step_name(step, i);
        if let Some(m) = &step.map {
            out.push(CompiledStep::PerRecord(Box::new(map::MapRecords::compile(
                name, m,
            )?)));
        } else if let Some(c) = &step.cleanse {
            out.push(CompiledStep::PerRecord(Box::new(
                cleanse::Cleanse::compile(name, c)?,
            )));
        } else if let Some(v) = &step.validate {
            out.push(CompiledStep::PerRecord(Box::new(
                validate::Validate::compile(name, v)?,
            )));
        } else if let Some(d) = &step.deidentify {
            out.push(CompiledStep::PerRecord(Box::new(
                deidentify::Deidentify::compile(name.clone(), d, ctx)?,
            )));
            if let Some(gate) = &d.privacy {
                out.push(CompiledStep::Privacy(privacy::PrivacyPlan::new(
                    name,
                    gate,
                    ctx.dictionary,
                )));
            }
        } else if let Some(l) = &step.link {
            out.push(CompiledStep::PerRecord(Box::new(link::Link::compile(
                name,
                l,
                ctx.secrets,
            )?)));
        } else if let Some(d) = &step.dedupe {
            out.push(CompiledStep::Dedupe(dedupe::DedupePlan::new(name, d)));
        } else {
            return Err(StepError::Config {
                step: name,
                message: "sets none of map, cleanse, validate, deidentify, link, dedupe".into(),
            });
        }
    }
    Ok(out)
}

/// A barrier step that has started: it takes every record, then replays the survivors.
pub trait BarrierRun {
    /// Takes one record.
    fn push(&mut self, record: &Record, location: &str) -> Result<(), BarrierError>;
    /// Ends the first pass; the replay yields the records that go on.
    fn finish(self: Box<Self>) -> Result<Box<dyn Replay>, BarrierError>;
}

/// The second pass of a barrier.
pub trait Replay {
    /// The next surviving record with its location.
    fn next_record(&mut self) -> Result<Option<(Record, String)>, BarrierError>;
    /// Records removed so far by this barrier.
    fn removed(&self) -> u64;
}

/// A barrier that fails the run.
#[derive(Debug, thiserror::Error)]
pub enum BarrierError {
    /// The spill file failed.
    #[error(transparent)]
    Spill(#[from] crate::worker::spill::SpillError),
    /// The privacy gate refused the output.
    #[error("step {step}: privacy gate: {message}")]
    Privacy {
        /// The deidentify step.
        step: String,
        /// Why (never a value).
        message: String,
    },
}
