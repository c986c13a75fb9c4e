//! NodeCompliance (cluster-scoped, one per node): the node agent's latest hardening scan.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The most checks one NodeCompliance holds, so the object stays well under etcd's limits.
pub const MAX_CHECKS: usize = 256;

/// One node's hardening scan results. Written by the node agent on that node; named after it.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "medplat.io",
    version = "v1alpha1",
    kind = "NodeCompliance",
    doc = "The hardening scan of one node, written by the medplat node agent running on it.",
    plural = "nodecompliances",
    shortname = "mnc",
    category = "medplat",
    status = "NodeComplianceStatus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Compliant","type":"boolean","jsonPath":".status.compliant"}"#,
    printcolumn = r#"{"name":"Pass","type":"integer","jsonPath":".status.summary.pass"}"#,
    printcolumn = r#"{"name":"Fail","type":"integer","jsonPath":".status.summary.fail"}"#,
    printcolumn = r#"{"name":"Last Scan","type":"date","jsonPath":".status.lastScan"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct NodeComplianceSpec {
    /// The node this scan describes.
    #[schemars(length(min = 1, max = 253))]
    pub node_name: String,
}

/// The result of one scan.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NodeComplianceStatus {
    /// The baseline checked, e.g. `medplat-node-v1`.
    #[serde(default)]
    pub baseline: String,
    /// The agent's version.
    #[serde(default)]
    pub agent_version: String,
    /// When the scan that produced these results ran. Moves only when the results change or a
    /// heartbeat is due, so an unchanged node does not write every interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scan: Option<Time>,
    /// Whether no check failed (after deviations, which the operator applies).
    #[serde(default)]
    pub compliant: bool,
    /// Counts per result.
    #[serde(default)]
    pub summary: CheckSummary,
    /// Per-check results, at most 256.
    #[serde(default)]
    #[schemars(length(max = 256))]
    pub checks: Vec<CheckResult>,
}

/// Counts of check results.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CheckSummary {
    /// Checks that passed.
    pub pass: i32,
    /// Checks that failed.
    pub fail: i32,
    /// Checks that need attention but are not failures (e.g. a file at another path).
    pub warn: i32,
    /// Checks a human must verify.
    pub manual: i32,
    /// Checks that do not apply to this node.
    pub not_applicable: i32,
    /// Checks that could not run (unreadable or malformed input).
    pub error: i32,
}

/// The result of one check.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CheckResult {
    /// A stable id, e.g. `sysctl.kernel.randomize_va_space`.
    #[schemars(length(max = 128))]
    pub id: String,
    /// What the check verifies.
    #[schemars(length(max = 256))]
    pub title: String,
    /// The benchmark item it comes from, e.g. `CIS Ubuntu 22.04 1.5.3`.
    #[schemars(length(max = 128))]
    pub benchmark_ref: String,
    /// How bad a failure is.
    pub severity: CheckSeverity,
    /// PASS, FAIL, WARN, MANUAL, NOTAPPLICABLE or ERROR.
    pub status: CheckStatus,
    /// The expected value.
    #[schemars(length(max = 256))]
    pub expected: String,
    /// The value found on the host.
    #[schemars(length(max = 256))]
    pub actual: String,
    /// How to fix a failure.
    #[schemars(length(max = 512))]
    pub remediation: String,
}

/// The result of a check.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "UPPERCASE")]
pub enum CheckStatus {
    /// The host meets the check.
    Pass,
    /// The host does not meet the check.
    Fail,
    /// Attention needed, not a failure (e.g. the file sits at another path).
    Warn,
    /// A human must verify it.
    Manual,
    /// The check does not apply (e.g. no SSH server).
    #[serde(rename = "NOTAPPLICABLE")]
    NotApplicable,
    /// The check could not run: unreadable or malformed input.
    Error,
}

/// How bad a failed check is.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
#[serde(rename_all = "camelCase")]
pub enum CheckSeverity {
    /// Minor weakening.
    Low,
    /// A real weakness an attacker can use with other steps.
    Medium,
    /// Directly exploitable or disables a key control.
    High,
}
