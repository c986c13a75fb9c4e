//! Does an AccessPolicy grant a subject an access? Matching of subjects, purposes, resources
//! and constraints (`validUntil`, `maxLevel`, `deidentifiedOnly`).

use jiff::Timestamp;

use crate::api::access_policy::{
    AccessPolicySpec, AccessRule, AccessVerb, PolicyMode, ResourceKind, SubjectKind,
};
use crate::api::classification::{Category, Level, Purpose};

/// An AccessPolicy with the metadata the rules need.
#[derive(Clone, Copy, Debug)]
pub struct NamedPolicy<'a> {
    /// The policy's namespace.
    pub namespace: &'a str,
    /// The policy's name.
    pub name: &'a str,
    /// The policy's spec.
    pub spec: &'a AccessPolicySpec,
}

/// The subject asking for access: a ServiceAccount in a namespace.
#[derive(Clone, Copy, Debug)]
pub struct ServiceAccountSubject<'a> {
    /// The ServiceAccount's namespace.
    pub namespace: &'a str,
    /// The ServiceAccount's name.
    pub name: &'a str,
}

/// The object an access is about, with what the selectors look at.
#[derive(Clone, Debug)]
pub struct AccessTarget<'a> {
    /// DataSource or StorageTier.
    pub kind: ResourceKind,
    /// The object's name.
    pub name: &'a str,
    /// The object's domain.
    pub domain: &'a str,
    /// The level selectors compare with: a source's effective level, a tier's `maxLevel`.
    pub level: Level,
    /// The categories of a source (empty for a tier).
    pub categories: &'a [Category],
}

/// The data an access moves: its level and whether a deidentify step lowered it.
#[derive(Clone, Copy, Debug)]
pub struct AccessedData {
    /// The level of the data read or written.
    pub level: Level,
    /// Whether the data counts as de-identified.
    pub deidentified: bool,
}

/// The outcome of looking for a grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GrantOutcome {
    /// A live rule grants it; names the policy.
    Granted {
        /// `namespace/name` of the granting policy.
        policy: String,
    },
    /// Rules would grant it but every one fails a constraint; one line per failing rule.
    Constrained(Vec<ConstraintFailure>),
    /// No rule covers it.
    NotGranted,
}

/// A rule that covers an access but fails one of its constraints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConstraintFailure {
    /// Which constraint.
    pub constraint: Constraint,
    /// `namespace/name` of the policy and the rule index.
    pub policy: String,
    /// Human explanation.
    pub message: String,
}

/// The constraints a grant can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Constraint {
    /// `validUntil` has passed.
    Expired,
    /// `maxLevel` is below the data's level.
    MaxLevel,
    /// `deidentifiedOnly` and the data is not de-identified.
    DeidentifiedOnly,
}

/// Whether `policy` names `sa` among its subjects.
pub fn names_service_account(policy: &NamedPolicy<'_>, sa: ServiceAccountSubject<'_>) -> bool {
    policy.spec.subjects.iter().any(|s| {
        s.kind == SubjectKind::ServiceAccount
            && s.name == sa.name
            && s.namespace.as_deref().unwrap_or(policy.namespace) == sa.namespace
    })
}

/// Whether a rule's resource selector covers `target`.
pub fn rule_covers(rule: &AccessRule, target: &AccessTarget<'_>) -> bool {
    let sel = &rule.resources;
    if sel.kind != target.kind {
        return false;
    }
    if !sel.names.is_empty() && !sel.names.iter().any(|n| n == target.name) {
        return false;
    }
    match &sel.classification {
        None => true,
        Some(c) => {
            (c.domains.is_empty() || c.domains.iter().any(|d| d == target.domain))
                && c.max_level.is_none_or(|m| target.level <= m)
                && (c.categories.is_empty()
                    || target.kind == ResourceKind::StorageTier
                    || c.categories
                        .iter()
                        .any(|cat| target.categories.contains(cat)))
        }
    }
}

/// Looks for a live grant of `verb` on `target` for `sa` and `purpose` among `policies`.
pub fn find_grant(
    policies: &[NamedPolicy<'_>],
    sa: ServiceAccountSubject<'_>,
    purpose: Purpose,
    verb: AccessVerb,
    target: &AccessTarget<'_>,
    data: AccessedData,
    now: Timestamp,
) -> GrantOutcome {
    let mut failures = Vec::new();
    for p in policies {
        if p.spec.purpose != purpose || !names_service_account(p, sa) {
            continue;
        }
        for (i, rule) in p.spec.rules.iter().enumerate() {
            if !rule.verbs.contains(&verb) || !rule_covers(rule, target) {
                continue;
            }
            let id = format!("{}/{} rule {}", p.namespace, p.name, i);
            match constraint_failure(rule, data, now) {
                None => {
                    return GrantOutcome::Granted {
                        policy: format!("{}/{}", p.namespace, p.name),
                    };
                }
                Some((constraint, message)) => failures.push(ConstraintFailure {
                    constraint,
                    policy: id,
                    message,
                }),
            }
        }
    }
    if failures.is_empty() {
        GrantOutcome::NotGranted
    } else {
        GrantOutcome::Constrained(failures)
    }
}

fn constraint_failure(
    rule: &AccessRule,
    data: AccessedData,
    now: Timestamp,
) -> Option<(Constraint, String)> {
    let c = &rule.constraints;
    if let Some(until) = &c.valid_until
        && until.0 <= now
    {
        return Some((
            Constraint::Expired,
            format!("the grant expired at {}", until.0),
        ));
    }
    if let Some(max) = c.max_level
        && data.level > max
    {
        return Some((
            Constraint::MaxLevel,
            format!(
                "the grant covers data up to {max}, the data is {}",
                data.level
            ),
        ));
    }
    if c.deidentified_only && !data.deidentified {
        return Some((
            Constraint::DeidentifiedOnly,
            "the grant covers de-identified data only".to_string(),
        ));
    }
    None
}

/// Whether a policy with `purpose` authorises `from` → `to` for `sa`.
pub fn find_cross_domain_grant(
    policies: &[NamedPolicy<'_>],
    sa: ServiceAccountSubject<'_>,
    purpose: Purpose,
    from: &str,
    to: &str,
) -> Option<String> {
    policies
        .iter()
        .find(|p| {
            p.spec.purpose == purpose
                && names_service_account(p, sa)
                && p.spec
                    .cross_domain
                    .iter()
                    .any(|f| f.from == from && f.to == to)
        })
        .map(|p| format!("{}/{}", p.namespace, p.name))
}

/// The strictest mode among policies naming `sa`; `Enforce` when none does (default deny).
pub fn governing_mode(policies: &[NamedPolicy<'_>], sa: ServiceAccountSubject<'_>) -> PolicyMode {
    let modes: Vec<PolicyMode> = policies
        .iter()
        .filter(|p| names_service_account(p, sa))
        .map(|p| p.spec.mode)
        .collect();
    if modes.is_empty() || modes.contains(&PolicyMode::Enforce) {
        PolicyMode::Enforce
    } else if modes.contains(&PolicyMode::Warn) {
        PolicyMode::Warn
    } else {
        PolicyMode::Audit
    }
}

/// The next instant a live grant among `policies` expires after `now`.
pub fn next_expiry(spec: &AccessPolicySpec, now: Timestamp) -> Option<Timestamp> {
    spec.rules
        .iter()
        .filter_map(|r| r.constraints.valid_until.as_ref().map(|t| t.0))
        .filter(|t| *t > now)
        .min()
}
