//! AccessPolicy (namespaced): who may use which data, for what purpose, until when.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::classification::{Category, Level, Purpose};
use super::conditions::Condition;

/// Grants subjects read or write access to data sources and tiers, for one purpose.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "medplat.io",
    version = "v1alpha1",
    kind = "AccessPolicy",
    doc = "Who may read or write which data sources and tiers, for which purpose, until when.",
    plural = "accesspolicies",
    shortname = "mpol",
    category = "medplat",
    namespaced,
    status = "AccessPolicyStatus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Purpose","type":"string","jsonPath":".spec.purpose"}"#,
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Grants","type":"integer","jsonPath":".status.activeGrants"}"#,
    printcolumn = r#"{"name":"Next Expiry","type":"date","jsonPath":".status.nextExpiry"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AccessPolicySpec {
    /// Who is granted access: users, groups or service accounts.
    #[schemars(length(min = 1, max = 64))]
    pub subjects: Vec<Subject>,
    /// Why: Treatment, Research, Operations, PublicHealth or QualityImprovement.
    pub purpose: Purpose,
    /// What may be read or written.
    #[schemars(length(min = 1, max = 64))]
    pub rules: Vec<AccessRule>,
    /// Flows between data domains (分域) this policy authorises for its purpose.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cross_domain: Vec<DomainFlow>,
    /// `Enforce` (default) blocks what the policy does not allow; `Warn` and `Audit` report it
    /// but let it run.
    #[serde(default)]
    pub mode: PolicyMode,
}

/// A subject of a policy.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.kind == 'ServiceAccount' || !has(self.__namespace__)").message("namespace applies only to ServiceAccount subjects"))]
pub struct Subject {
    /// `User`, `Group` or `ServiceAccount`.
    pub kind: SubjectKind,
    /// The user, group or service account name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The service account's namespace; the policy's namespace when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// The kind of a subject, as in RBAC.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubjectKind {
    /// A user known to the cluster's authenticator.
    User,
    /// A group known to the cluster's authenticator.
    Group,
    /// A Kubernetes ServiceAccount (pipelines run as one).
    ServiceAccount,
}

/// One grant: which resources, which verbs, and under which constraints.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AccessRule {
    /// The data sources and tiers this rule covers.
    pub resources: ResourceSelector,
    /// `read`, `write` or both.
    #[schemars(length(min = 1, max = 2))]
    pub verbs: Vec<AccessVerb>,
    /// Limits on the grant.
    #[serde(default)]
    pub constraints: Constraints,
}

/// Which data sources or tiers a rule covers: by name, by classification, or both.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("size(self.names) > 0 || has(self.classification)").message("select resources by names, by classification, or both"))]
pub struct ResourceSelector {
    /// `DataSource` or `StorageTier`.
    pub kind: ResourceKind,
    /// Names of the selected objects.
    #[serde(default)]
    #[schemars(length(max = 128))]
    pub names: Vec<String>,
    /// Select objects by their classification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<ClassificationSelector>,
}

/// The kind of object a rule covers.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceKind {
    /// A DataSource (read).
    DataSource,
    /// A StorageTier (read or write).
    StorageTier,
}

/// Select objects by classification; every set field must match.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ClassificationSelector {
    /// Objects in one of these domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    /// Objects whose level is at most this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_level: Option<Level>,
    /// Objects that hold at least one of these categories.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<Category>,
}

/// An access verb.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum AccessVerb {
    /// Read the data.
    Read,
    /// Write data.
    Write,
}

/// Limits on a grant.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Constraints {
    /// Only de-identified data (a pipeline output lowered by a deidentify step) may be used.
    #[serde(default)]
    pub deidentified_only: bool,
    /// The highest level the grant covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_level: Option<Level>,
    /// The grant ends at this instant (RFC 3339). medplat removes it on time and warns 7 days
    /// before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<Time>,
}

/// A flow from one data domain to another.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DomainFlow {
    /// The source domain.
    pub from: String,
    /// The destination domain.
    pub to: String,
}

/// How a policy acts on what it does not allow.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PolicyMode {
    /// Record it in status and metrics only.
    Audit,
    /// Record it and raise a Warning Event, but allow it.
    Warn,
    /// Block it. The default.
    #[default]
    Enforce,
}

/// The observed state of an AccessPolicy.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AccessPolicyStatus {
    /// The generation this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Rules in force now.
    #[serde(default)]
    pub active_grants: i32,
    /// Rules whose `validUntil` has passed.
    #[serde(default)]
    pub expired_grants: i32,
    /// The earliest `validUntil` still in the future.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_expiry: Option<Time>,
}
