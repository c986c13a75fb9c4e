//! The pipeline decision: the output classification, and every reason the pipeline may not run.
//!
//! One pure function, [`evaluate_pipeline`], used by the Pipeline controller, `medplat check`,
//! the admission webhook and the worker, so they can never disagree.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;

use super::grants::{
    AccessTarget, AccessedData, Constraint, GrantOutcome, NamedPolicy, ServiceAccountSubject,
    find_cross_domain_grant, find_grant, governing_mode,
};
use super::lowering::{input_fields, lower_through_steps};
use super::violation::{Enforcement, Violation, ViolationReason};
use crate::api::access_policy::{AccessVerb, PolicyMode, ResourceKind};
use crate::api::classification::{Classification, Level};
use crate::api::data_source::DataSourceSpec;
use crate::api::pipeline::PipelineSpec;
use crate::api::storage_tier::{Encryption, StorageTierSpec};

/// Everything the decision looks at, already dereferenced.
#[derive(Clone, Copy, Debug)]
pub struct PipelineContext<'a> {
    /// The pipeline's namespace.
    pub namespace: &'a str,
    /// The pipeline's name.
    pub name: &'a str,
    /// The pipeline's spec.
    pub spec: &'a PipelineSpec,
    /// The ServiceAccount its worker runs as.
    pub service_account: &'a str,
    /// DataSources of the namespace, by name (only those the pipeline names are needed).
    pub sources: &'a BTreeMap<String, DataSourceSpec>,
    /// StorageTiers, by name (only the sink is needed).
    pub tiers: &'a BTreeMap<String, StorageTierSpec>,
    /// AccessPolicies of the pipeline's namespace.
    pub policies: &'a [NamedPolicy<'a>],
}

/// What a deidentify step did to the level, for status and `medplat check`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LoweringReport {
    /// `spec.steps[i]`.
    pub step: String,
    /// Level before the step.
    pub from: Level,
    /// Level after the step.
    pub to: Level,
    /// Why it could not go lower.
    pub blockers: Vec<String>,
}

/// The decision about one pipeline.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineDecision {
    /// The level of the input: the highest of the sources.
    pub input_level: Level,
    /// The classification of the output.
    pub output: Classification,
    /// Whether a deidentify step lowered the level.
    pub deidentified: bool,
    /// Every broken rule, blocking or only reported.
    pub violations: Vec<Violation>,
    /// What each deidentify step did.
    pub lowerings: Vec<LoweringReport>,
    /// Which policies granted which access (`read lis-results: clinical/clinical-pipelines`).
    pub grants: Vec<String>,
}

impl PipelineDecision {
    /// Whether the pipeline may run: no violation blocks.
    pub fn allowed(&self) -> bool {
        !self.violations.iter().any(Violation::blocks)
    }

    /// The violations that block it.
    pub fn blocking(&self) -> impl Iterator<Item = &Violation> {
        self.violations.iter().filter(|v| v.blocks())
    }

    /// The level of the data the worker pod handles: the input's or the output's, whichever is
    /// higher. It decides hardened-node placement and the `medplat.io/level` label.
    pub fn processing_level(&self) -> Level {
        self.input_level.max(self.output.level)
    }
}

/// A DataSource's effective level: its declared level raised by any field's level, and L5 when
/// a special flag is set (就高不就低).
pub fn source_level(spec: &DataSourceSpec) -> Level {
    let fields = spec
        .fields
        .iter()
        .filter_map(|f| f.level)
        .max()
        .unwrap_or(Level::L1);
    spec.classification.effective_level().max(fields)
}

/// Decides whether the pipeline may run and what its output is.
pub fn evaluate_pipeline(ctx: &PipelineContext<'_>, now: Timestamp) -> PipelineDecision {
    let mut violations = Vec::new();
    let mut grants = Vec::new();

    let mut found = Vec::new();
    for (i, name) in ctx.spec.sources.iter().enumerate() {
        match ctx.sources.get(name) {
            Some(s) => found.push((i, name.as_str(), s)),
            None => violations.push(Violation::blocking(
                ViolationReason::SourceNotFound,
                format!("spec.sources[{i}]"),
                format!("DataSource {}/{name} does not exist", ctx.namespace),
            )),
        }
    }

    let input_level = found
        .iter()
        .map(|(_, _, s)| source_level(s))
        .max()
        .unwrap_or(Level::L1);
    let mut fields = input_fields(found.iter().flat_map(|(_, _, s)| s.fields.iter()));
    let (lowered, step_lowerings) = lower_through_steps(&mut fields, &ctx.spec.steps, input_level);
    let lowerings: Vec<LoweringReport> = step_lowerings
        .into_iter()
        .map(|(i, l)| LoweringReport {
            step: format!("spec.steps[{i}]"),
            from: l.from,
            to: l.to,
            blockers: l.blockers,
        })
        .collect();
    let deidentified = lowered < input_level;

    let tier = ctx.tiers.get(&ctx.spec.sink.tier);
    let source_domain = found
        .first()
        .map(|(_, _, s)| s.classification.domain.clone());
    let mut output = Classification {
        level: lowered,
        categories: {
            let mut c: Vec<_> = found
                .iter()
                .flat_map(|(_, _, s)| s.classification.categories.iter().copied())
                .collect();
            c.sort();
            c.dedup();
            c
        },
        domain: tier
            .map(|t| t.domain.clone())
            .or(source_domain)
            .unwrap_or_default(),
        flags: {
            let mut f: Vec<_> = found
                .iter()
                .flat_map(|(_, _, s)| s.classification.flags.iter().copied())
                .collect();
            f.sort();
            f.dedup();
            f
        },
    };
    if !output.flags.is_empty() {
        output.level = Level::L5;
    }

    let sa = ServiceAccountSubject {
        namespace: ctx.namespace,
        name: ctx.service_account,
    };
    let grant_enforcement = match governing_mode(ctx.policies, sa) {
        PolicyMode::Enforce => Enforcement::Block,
        PolicyMode::Warn => Enforcement::Warn,
        PolicyMode::Audit => Enforcement::Audit,
    };
    let grant_violation = |reason, field: String, message: String| Violation {
        reason,
        enforcement: grant_enforcement,
        field,
        message,
    };

    for (i, name, s) in &found {
        let level = source_level(s);
        let target = AccessTarget {
            kind: ResourceKind::DataSource,
            name,
            domain: &s.classification.domain,
            level,
            categories: &s.classification.categories,
        };
        let data = AccessedData {
            level,
            deidentified: level <= Level::L2,
        };
        let outcome = find_grant(
            ctx.policies,
            sa,
            ctx.spec.purpose,
            AccessVerb::Read,
            &target,
            data,
            now,
        );
        match outcome {
            GrantOutcome::Granted { policy } => {
                grants.push(format!("read DataSource {name}: {policy}"))
            }
            other => violations.push(denial(
                &grant_violation,
                other,
                ViolationReason::ReadNotGranted,
                format!("spec.sources[{i}]"),
                format!(
                    "ServiceAccount {}/{} has no {} grant to read DataSource {name}",
                    ctx.namespace, ctx.service_account, ctx.spec.purpose
                ),
            )),
        }
    }

    match tier {
        None => violations.push(Violation::blocking(
            ViolationReason::TierNotFound,
            "spec.sink.tier",
            format!("StorageTier {} does not exist", ctx.spec.sink.tier),
        )),
        Some(t) => {
            let tier_name = &ctx.spec.sink.tier;
            if output.level > t.max_level {
                violations.push(Violation::blocking(
                    ViolationReason::TierLevelTooLow,
                    "spec.sink.tier",
                    format!(
                        "the output is {} but StorageTier {tier_name} accepts at most {}{}",
                        output.level,
                        t.max_level,
                        lowering_hint(&lowerings)
                    ),
                ));
            }
            if output.level.is_sensitive() && t.encryption != Encryption::Required {
                violations.push(Violation::blocking(
                    ViolationReason::TierNotEncrypted,
                    "spec.sink.tier",
                    format!(
                        "{} output needs a tier with encryption: required; StorageTier {tier_name} has encryption: none",
                        output.level
                    ),
                ));
            }
            let mut crossed: Vec<&str> = found
                .iter()
                .map(|(_, _, s)| s.classification.domain.as_str())
                .filter(|d| *d != t.domain)
                .collect();
            crossed.sort();
            crossed.dedup();
            for from in crossed {
                match find_cross_domain_grant(ctx.policies, sa, ctx.spec.purpose, from, &t.domain) {
                    Some(policy) => grants.push(format!("cross-domain {from}→{}: {policy}", t.domain)),
                    None => violations.push(grant_violation(
                        ViolationReason::CrossDomainNotGranted,
                        "spec.sink.tier".into(),
                        format!(
                            "data flows from domain {from} to domain {} (StorageTier {tier_name}) without an AccessPolicy crossDomain grant for purpose {} to ServiceAccount {}/{}",
                            t.domain, ctx.spec.purpose, ctx.namespace, ctx.service_account
                        ),
                    )),
                }
            }
            let target = AccessTarget {
                kind: ResourceKind::StorageTier,
                name: tier_name,
                domain: &t.domain,
                level: t.max_level,
                categories: &[],
            };
            let data = AccessedData {
                level: output.level,
                deidentified,
            };
            match find_grant(
                ctx.policies,
                sa,
                ctx.spec.purpose,
                AccessVerb::Write,
                &target,
                data,
                now,
            ) {
                GrantOutcome::Granted { policy } => {
                    grants.push(format!("write StorageTier {tier_name}: {policy}"))
                }
                other => violations.push(denial(
                    &grant_violation,
                    other,
                    ViolationReason::WriteNotGranted,
                    "spec.sink.tier".into(),
                    format!(
                        "ServiceAccount {}/{} has no {} grant to write StorageTier {tier_name}",
                        ctx.namespace, ctx.service_account, ctx.spec.purpose
                    ),
                )),
            }
        }
    }

    PipelineDecision {
        input_level,
        output,
        deidentified,
        violations,
        lowerings,
        grants,
    }
}

/// Turns a failed grant lookup into a violation: the constraint that failed when a rule covered
/// the access, else the plain "not granted".
fn denial(
    make: &dyn Fn(ViolationReason, String, String) -> Violation,
    outcome: GrantOutcome,
    not_granted: ViolationReason,
    field: String,
    message: String,
) -> Violation {
    match outcome {
        GrantOutcome::Constrained(failures) => {
            let reason = match failures.first().map(|f| f.constraint) {
                Some(Constraint::Expired) => ViolationReason::GrantExpired,
                Some(Constraint::MaxLevel) => ViolationReason::GrantLevelTooLow,
                Some(Constraint::DeidentifiedOnly) => ViolationReason::GrantRequiresDeidentified,
                None => not_granted,
            };
            let detail: Vec<String> = failures
                .iter()
                .map(|f| format!("{}: {}", f.policy, f.message))
                .collect();
            make(reason, field, format!("{message} ({})", detail.join("; ")))
        }
        _ => make(not_granted, field, message),
    }
}

/// Explains, for a level mismatch, why de-identification did not lower the level.
fn lowering_hint(lowerings: &[LoweringReport]) -> String {
    match lowerings.last() {
        None => " (no deidentify step lowers it)".into(),
        Some(l) if l.blockers.is_empty() => String::new(),
        Some(l) => format!("; {} stops at {}: {}", l.step, l.to, l.blockers.join("; ")),
    }
}
