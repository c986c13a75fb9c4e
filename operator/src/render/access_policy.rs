//! The desired children of an AccessPolicy at an instant: a Role and RoleBinding over the
//! granted objects by name (no Secret access), a NetworkPolicy opening granted source endpoints
//! to ServiceAccount subjects, and the compiled policy bundle the workers enforce.
//!
//! Only grants live at `now` are rendered: an expired grant disappears from every child.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicySpec};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject as RbacSubject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use serde::Serialize;

use super::common::{Child, Owner, RenderError, SERVICE_ACCOUNT, child_name, truncate_label};
use super::network::{host_egress, parse_url};
use super::tier_claim::tier_claim_name;
use crate::api::access_policy::{AccessPolicy, AccessRule, AccessVerb, ResourceKind, SubjectKind};
use crate::api::data_source::DataSourceSpec;
use crate::api::storage_tier::StorageTierSpec;
use crate::policy::grants::{AccessTarget, rule_covers};
use crate::policy::source_level;

/// Warnings go out this long before a grant expires.
pub const EXPIRY_WARNING: jiff::SignedDuration = jiff::SignedDuration::from_hours(7 * 24);

/// One rule resolved to concrete object names.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CompiledGrant {
    /// `spec.rules[i]`.
    pub rule: String,
    /// DataSource or StorageTier.
    pub kind: String,
    /// The objects it covers now.
    pub names: Vec<String>,
    /// read and/or write.
    pub verbs: Vec<String>,
    /// Only de-identified data.
    pub deidentified_only: bool,
    /// The highest level covered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_level: Option<String>,
    /// When it ends (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<String>,
}

/// The compiled policy bundle (the ConfigMap's `bundle.json`).
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyBundle {
    /// Bundle format version.
    pub version: u32,
    /// `namespace/name` of the policy.
    pub policy: String,
    /// The purpose.
    pub purpose: String,
    /// Audit, Warn or Enforce.
    pub mode: String,
    /// `Kind:namespace/name` or `Kind:name` of each subject.
    pub subjects: Vec<String>,
    /// `from→to` domain flows.
    pub cross_domain: Vec<String>,
    /// Live grants.
    pub grants: Vec<CompiledGrant>,
}

/// Children plus what the status needs.
#[derive(Clone, Debug, PartialEq)]
pub struct AccessPolicyChildren {
    /// The children to apply.
    pub children: Vec<Child>,
    /// Rules live at `now`.
    pub active: usize,
    /// Rules past `validUntil`.
    pub expired: usize,
    /// The earliest future `validUntil`.
    pub next_expiry: Option<Timestamp>,
    /// `spec.rules[i]` of live rules expiring within [`EXPIRY_WARNING`], with their expiry.
    pub expiring_soon: Vec<(String, Timestamp)>,
}

/// The name of the policy's Role, RoleBinding, NetworkPolicy and bundle ConfigMap.
pub fn access_child_name(policy: &str) -> String {
    child_name("medplat-access", policy, 63)
}

fn live(rule: &AccessRule, now: Timestamp) -> bool {
    rule.constraints
        .valid_until
        .as_ref()
        .is_none_or(|t| t.0 > now)
}

/// Renders the children of `policy` as they should be at `now`.
pub fn render_access_policy_children(
    policy: &AccessPolicy,
    sources: &BTreeMap<String, DataSourceSpec>,
    tiers: &BTreeMap<String, StorageTierSpec>,
    now: Timestamp,
) -> Result<AccessPolicyChildren, RenderError> {
    let name = policy
        .metadata
        .name
        .clone()
        .ok_or_else(|| RenderError::Missing("the AccessPolicy has no name".into()))?;
    let namespace = policy.metadata.namespace.clone().unwrap_or_default();
    let owner = Owner {
        api_version: crate::api::API_VERSION.into(),
        kind: "AccessPolicy".into(),
        name: name.clone(),
        namespace: Some(namespace.clone()),
        uid: policy.metadata.uid.clone().unwrap_or_default(),
    };
    let child = access_child_name(&name);

    let mut grants = Vec::new();
    let mut expired = 0;
    let mut expiring_soon = Vec::new();
    for (i, rule) in policy.spec.rules.iter().enumerate() {
        if !live(rule, now) {
            expired += 1;
            continue;
        }
        if let Some(t) = &rule.constraints.valid_until
            && t.0 <= now.saturating_add(EXPIRY_WARNING).unwrap_or(now)
        {
            expiring_soon.push((format!("spec.rules[{i}]"), t.0));
        }
        grants.push((i, rule, resolve_names(rule, sources, tiers)));
    }
    let next_expiry = crate::policy::grants::next_expiry(&policy.spec, now);

    let bundle = PolicyBundle {
        version: 1,
        policy: format!("{namespace}/{name}"),
        purpose: policy.spec.purpose.to_string(),
        mode: format!("{:?}", policy.spec.mode),
        subjects: policy
            .spec
            .subjects
            .iter()
            .map(|s| match (s.kind, &s.namespace) {
                (SubjectKind::ServiceAccount, ns) => {
                    format!(
                        "ServiceAccount:{}/{}",
                        ns.as_deref().unwrap_or(&namespace),
                        s.name
                    )
                }
                (k, _) => format!("{k:?}:{}", s.name),
            })
            .collect(),
        cross_domain: policy
            .spec
            .cross_domain
            .iter()
            .map(|f| format!("{}→{}", f.from, f.to))
            .collect(),
        grants: grants
            .iter()
            .map(|(i, rule, names)| CompiledGrant {
                rule: format!("spec.rules[{i}]"),
                kind: format!("{:?}", rule.resources.kind),
                names: names.clone(),
                verbs: rule
                    .verbs
                    .iter()
                    .map(|v| format!("{v:?}").to_lowercase())
                    .collect(),
                deidentified_only: rule.constraints.deidentified_only,
                max_level: rule.constraints.max_level.map(|l| l.to_string()),
                valid_until: rule
                    .constraints
                    .valid_until
                    .as_ref()
                    .map(|t| t.0.to_string()),
            })
            .collect(),
    };
    let bundle_json =
        serde_json::to_string_pretty(&bundle).map_err(|source| RenderError::Serialise {
            kind: "PolicyBundle".into(),
            name: name.clone(),
            source,
        })?;
    let mut children = vec![Child::from_typed(&ConfigMap {
        metadata: owner.child_meta(&format!("{child}-bundle"), "access-policy"),
        data: Some(BTreeMap::from([("bundle.json".to_string(), bundle_json)])),
        ..ConfigMap::default()
    })?];

    let mut role_rules = Vec::new();
    for (_, rule, names) in &grants {
        if names.is_empty() {
            continue;
        }
        let (group, resource, names) = match rule.resources.kind {
            ResourceKind::DataSource => ("medplat.io", "datasources", names.clone()),
            // Tiers are cluster-scoped; in this namespace a tier is its claim.
            ResourceKind::StorageTier => (
                "",
                "persistentvolumeclaims",
                names.iter().map(|n| tier_claim_name(n)).collect(),
            ),
        };
        role_rules.push(PolicyRule {
            api_groups: Some(vec![group.into()]),
            resources: Some(vec![resource.into()]),
            resource_names: Some(names),
            verbs: vec!["get".into(), "list".into(), "watch".into()],
            non_resource_urls: None,
        });
    }
    if !role_rules.is_empty() {
        children.push(Child::from_typed(&Role {
            metadata: owner.child_meta(&child, "access-policy"),
            rules: Some(role_rules),
        })?);
        children.push(Child::from_typed(&RoleBinding {
            metadata: owner.child_meta(&child, "access-policy"),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "Role".into(),
                name: child.clone(),
            },
            subjects: Some(
                policy
                    .spec
                    .subjects
                    .iter()
                    .map(|s| RbacSubject {
                        kind: format!("{:?}", s.kind),
                        name: s.name.clone(),
                        namespace: (s.kind == SubjectKind::ServiceAccount)
                            .then(|| s.namespace.clone().unwrap_or_else(|| namespace.clone())),
                        api_group: (s.kind != SubjectKind::ServiceAccount)
                            .then(|| "rbac.authorization.k8s.io".into()),
                    })
                    .collect(),
            ),
        })?);
    }

    let service_accounts: Vec<String> = policy
        .spec
        .subjects
        .iter()
        .filter(|s| {
            s.kind == SubjectKind::ServiceAccount
                && s.namespace.as_deref().is_none_or(|n| n == namespace)
        })
        .map(|s| truncate_label(&s.name))
        .collect();
    let mut egress = Vec::new();
    for (_, rule, names) in &grants {
        if rule.resources.kind != ResourceKind::DataSource
            || !rule.verbs.contains(&AccessVerb::Read)
        {
            continue;
        }
        for n in names {
            let Some(src) = sources.get(n) else { continue };
            let c = &src.connector;
            if let Some(sql) = c.postgres.as_ref().or(c.mysql.as_ref()) {
                egress.push(host_egress(&sql.host, sql.port, sql.cidr.as_deref()).rule);
            } else if let Some(f) = &c.fhir
                && let Some(e) = parse_url(&f.base_url)
            {
                egress.push(host_egress(&e.host, e.port, f.cidr.as_deref()).rule);
            }
        }
    }
    if !service_accounts.is_empty() && !egress.is_empty() {
        children.push(Child::from_typed(&NetworkPolicy {
            metadata: owner.child_meta(&child, "access-policy"),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(LabelSelector {
                    match_expressions: Some(vec![LabelSelectorRequirement {
                        key: SERVICE_ACCOUNT.into(),
                        operator: "In".into(),
                        values: Some(service_accounts),
                    }]),
                    ..LabelSelector::default()
                }),
                policy_types: Some(vec!["Egress".into()]),
                egress: Some(egress),
                ingress: None,
            }),
        })?);
    }

    Ok(AccessPolicyChildren {
        children,
        active: grants.len(),
        expired,
        next_expiry,
        expiring_soon,
    })
}

/// The names of the objects a rule covers now: its listed names, or everything its
/// classification selector matches.
fn resolve_names(
    rule: &AccessRule,
    sources: &BTreeMap<String, DataSourceSpec>,
    tiers: &BTreeMap<String, StorageTierSpec>,
) -> Vec<String> {
    match rule.resources.kind {
        ResourceKind::DataSource => sources
            .iter()
            .filter(|(n, s)| {
                rule_covers(
                    rule,
                    &AccessTarget {
                        kind: ResourceKind::DataSource,
                        name: n,
                        domain: &s.classification.domain,
                        level: source_level(s),
                        categories: &s.classification.categories,
                    },
                )
            })
            .map(|(n, _)| n.clone())
            .chain(
                rule.resources
                    .names
                    .iter()
                    .filter(|n| !sources.contains_key(*n))
                    .cloned(),
            )
            .collect(),
        ResourceKind::StorageTier => tiers
            .iter()
            .filter(|(n, t)| {
                rule_covers(
                    rule,
                    &AccessTarget {
                        kind: ResourceKind::StorageTier,
                        name: n,
                        domain: &t.domain,
                        level: t.max_level,
                        categories: &[],
                    },
                )
            })
            .map(|(n, _)| n.clone())
            .chain(
                rule.resources
                    .names
                    .iter()
                    .filter(|n| !tiers.contains_key(*n))
                    .cloned(),
            )
            .collect(),
    }
}
