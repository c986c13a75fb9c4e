//! Where data may rest: a tier takes data up to its `maxLevel` and of its own domain
//! (DESIGN.md §1, "Where data may flow"), and the audit tier keeps logs at least 180 days
//! (网络安全法 Art. 21; REFERENCE.md). Pure functions shared by `medplat check` and the
//! admission webhook.

use super::pipeline::source_level;
use crate::api::classification::Level;
use crate::api::data_source::DataSourceSpec;
use crate::api::platform::Logging;
use crate::api::storage_tier::StorageTierSpec;

/// The shortest retention the audit tier may have, in days (six months of network logs).
pub const MIN_AUDIT_RETENTION_DAYS: u32 = 180;

/// One broken placement rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacementProblem {
    /// A stable CamelCase reason.
    pub reason: &'static str,
    /// What is wrong, naming the tier.
    pub message: String,
}

/// Why data of `level` and `domain` may not rest in StorageTier `tier_name`; empty when it may.
/// (A tier that accepts L3+ requires encryption by its own CEL rule, so the level check covers
/// encryption too.)
pub fn placement_problems(
    level: Level,
    domain: &str,
    tier_name: &str,
    tier: &StorageTierSpec,
) -> Vec<PlacementProblem> {
    let mut out = Vec::new();
    if level > tier.max_level {
        out.push(PlacementProblem {
            reason: "TierLevelTooLow",
            message: format!(
                "the data is {level} but StorageTier {tier_name} accepts at most {}",
                tier.max_level
            ),
        });
    }
    if domain != tier.domain {
        out.push(PlacementProblem {
            reason: "TierDomainMismatch",
            message: format!(
                "the data belongs to domain {domain} but StorageTier {tier_name} serves domain {}",
                tier.domain
            ),
        });
    }
    out
}

/// A placement problem of a DataSource's data in the tier its connector names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourcePlacement {
    /// The field naming the tier.
    pub field: &'static str,
    /// What is wrong.
    pub problem: PlacementProblem,
    /// Whether it must refuse the source: an HL7 v2 listener writes into its landing tier, a
    /// flow medplat itself creates; files already rest in their tier and medplat only reads
    /// them, so a misplacement there is reported, not refused.
    pub blocks: bool,
}

/// Checks where a DataSource's data lands or rests against the tiers `tier` finds by name.
/// Tiers that do not exist are not reported here (a later apply may bring them).
pub fn source_placement<'a>(
    spec: &DataSourceSpec,
    tier: impl Fn(&str) -> Option<&'a StorageTierSpec>,
) -> Vec<SourcePlacement> {
    let level = source_level(spec);
    let domain = &spec.classification.domain;
    let mut places = Vec::new();
    if let Some(h) = &spec.connector.hl7v2 {
        places.push(("spec.connector.hl7v2.landing.tier", &h.landing.tier, true));
    }
    if let Some(f) = &spec.connector.files {
        places.push((
            "spec.connector.files.location.tier",
            &f.location.tier,
            false,
        ));
    }
    let mut out = Vec::new();
    for (field, name, blocks) in places {
        let Some(t) = tier(name) else { continue };
        for problem in placement_problems(level, domain, name, t) {
            out.push(SourcePlacement {
                field,
                problem,
                blocks,
            });
        }
    }
    out
}

/// Why StorageTier `tier_name` cannot keep the Platform's audit logs; `None` when it can.
pub fn audit_tier_problem(
    logging: &Logging,
    tier_name: &str,
    tier: &StorageTierSpec,
) -> Option<PlacementProblem> {
    let keeps = tier.retention_days;
    let wanted = logging.audit_retention_days.max(MIN_AUDIT_RETENTION_DAYS);
    (keeps < wanted).then(|| PlacementProblem {
        reason: "AuditRetentionTooShort",
        message: if keeps < MIN_AUDIT_RETENTION_DAYS {
            format!(
                "StorageTier {tier_name} keeps data {keeps} days; audit logs must be kept at least {MIN_AUDIT_RETENTION_DAYS} days"
            )
        } else {
            format!(
                "StorageTier {tier_name} keeps data {keeps} days but spec.logging.auditRetentionDays asks for {wanted}"
            )
        },
    })
}
