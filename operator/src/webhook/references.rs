//! What the schema cannot check about a DataSource, AccessPolicy, StorageTier or Platform: the
//! object against the others.
//!
//! The rule is the one of [`super::pipeline`]: an existing object that says no refuses the
//! write (a listener landing L4 data in an L2 tier, an audit tier that keeps logs 90 days);
//! an object that does not exist yet only warns, because GitOps tools apply a directory in an
//! order of their own.

use jiff::Timestamp;
use kube::ResourceExt;

use super::catalog::Catalog;
use super::findings::{Finding, Findings};
use super::impact::{Change, newly_blocked};
use crate::api::access_policy::ResourceKind;
use crate::api::{AccessPolicy, DataSource, Platform, StorageTier};
use crate::policy::placement::{audit_tier_problem, placement_problems, source_placement};
use crate::policy::source_level;

fn tier_not_found(field: &str, tier: &str) -> Finding {
    Finding::new(
        "TierNotFound",
        field,
        format!(
            "StorageTier {tier} does not exist (admitted because it may be applied later; the controller reports it until it does)"
        ),
    )
}

/// Judges a DataSource create or update.
pub fn data_source_findings(
    source: &DataSource,
    old: Option<&DataSource>,
    catalog: &dyn Catalog,
    now: Timestamp,
) -> Findings {
    let mut findings = Findings::default();
    let tiers = catalog.tiers();
    let tier = |name: &str| tiers.iter().find(|t| t.name_any() == name);
    let connector = &source.spec.connector;
    let references = [
        connector
            .hl7v2
            .as_ref()
            .map(|h| ("spec.connector.hl7v2.landing.tier", &h.landing.tier)),
        connector
            .files
            .as_ref()
            .map(|f| ("spec.connector.files.location.tier", &f.location.tier)),
    ];
    for (field, name) in references.into_iter().flatten() {
        if tier(name).is_none() {
            findings.warn(tier_not_found(field, name));
        }
    }
    for p in source_placement(&source.spec, |name| tier(name).map(|t| &t.spec)) {
        if p.blocks {
            findings.deny(Finding::new(p.problem.reason, p.field, p.problem.message));
        } else {
            findings.warn(Finding::new(
                p.problem.reason,
                p.field,
                format!(
                    "{} (the files already rest there; move them)",
                    p.problem.message
                ),
            ));
        }
    }
    if old.is_some_and(|o| o.spec != source.spec) {
        let change = Change::Source { old, new: source };
        findings
            .warnings
            .extend(newly_blocked(catalog, change, now));
    }
    findings
}

/// Judges an AccessPolicy create or update.
pub fn access_policy_findings(
    policy: &AccessPolicy,
    old: Option<&AccessPolicy>,
    catalog: &dyn Catalog,
    now: Timestamp,
) -> Findings {
    let mut findings = Findings::default();
    let ns = policy.namespace().unwrap_or_default();
    let sources: Vec<String> = catalog
        .sources(Some(&ns))
        .iter()
        .map(|s| s.name_any())
        .collect();
    let tiers: Vec<String> = catalog.tiers().iter().map(|t| t.name_any()).collect();
    for (i, rule) in policy.spec.rules.iter().enumerate() {
        let (kind, known, place) = match rule.resources.kind {
            ResourceKind::DataSource => ("DataSource", &sources, format!("{ns}/")),
            ResourceKind::StorageTier => ("StorageTier", &tiers, String::new()),
        };
        for (j, name) in rule.resources.names.iter().enumerate() {
            if !known.contains(name) {
                findings.warn(Finding::new(
                    "ReferenceNotFound",
                    format!("spec.rules[{i}].resources.names[{j}]"),
                    format!("{kind} {place}{name} does not exist yet; this rule grants nothing until it does"),
                ));
            }
        }
    }
    if old.is_none_or(|o| o.spec != policy.spec) {
        let change = Change::Policy { old, new: policy };
        findings
            .warnings
            .extend(newly_blocked(catalog, change, now));
    }
    findings
}

/// Judges a StorageTier create or update: it only warns, about the pipelines and listeners the
/// new tier would stop.
pub fn storage_tier_findings(
    tier: &StorageTier,
    old: Option<&StorageTier>,
    catalog: &dyn Catalog,
    now: Timestamp,
) -> Findings {
    let mut findings = Findings::default();
    let Some(old_tier) = old.filter(|o| o.spec != tier.spec) else {
        return findings;
    };
    let name = tier.name_any();
    for s in catalog.sources(None) {
        let Some(h) = &s.spec.connector.hl7v2 else {
            continue;
        };
        if h.landing.tier != name {
            continue;
        }
        let level = source_level(&s.spec);
        let domain = &s.spec.classification.domain;
        let before = placement_problems(level, domain, &name, &old_tier.spec);
        let after = placement_problems(level, domain, &name, &tier.spec);
        if before.is_empty() && !after.is_empty() {
            let why: Vec<String> = after.into_iter().map(|p| p.message).collect();
            findings.warn(Finding::new(
                "WouldMisplaceListener",
                "spec",
                format!(
                    "the HL7 v2 listener of DataSource {}/{} lands data here: {}",
                    s.namespace().unwrap_or_default(),
                    s.name_any(),
                    why.join("; ")
                ),
            ));
        }
    }
    let change = Change::Tier { old, new: tier };
    findings
        .warnings
        .extend(newly_blocked(catalog, change, now));
    findings
}

/// Judges a Platform create or update: its audit tier must keep logs long enough.
pub fn platform_findings(platform: &Platform, catalog: &dyn Catalog) -> Findings {
    let mut findings = Findings::default();
    let field = "spec.logging.auditTier";
    let audit = &platform.spec.logging.audit_tier;
    match catalog.tiers().iter().find(|t| t.name_any() == *audit) {
        None => findings.warn(tier_not_found(field, audit)),
        Some(t) => {
            if let Some(p) = audit_tier_problem(&platform.spec.logging, audit, &t.spec) {
                findings.deny(Finding::new(p.reason, field, p.message));
            }
        }
    }
    findings
}
