//! Where data may rest: a tier takes data up to its `maxLevel` and of its own domain
//! (DESIGN.md §1, "Where data may flow"), and the audit tier keeps logs at least 180 days
//! (网络安全法 Art. 21; REFERENCE.md). Pure functions shared by `medplat check` and the
//! admission webhook.

use crate::api::classification::Level;
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
