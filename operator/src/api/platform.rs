//! Platform (cluster-scoped, exactly one, named `default`): cluster-wide guard rails for node
//! hardening, log collection and security alerting.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::conditions::Condition;

/// The single cluster-wide configuration of medplat's guard rails. It must be named `default`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "medplat.io",
    version = "v1alpha1",
    kind = "Platform",
    doc = "Cluster-wide guard rails: node hardening, log collection and security alerting. Exactly one, named default.",
    plural = "platforms",
    shortname = "mplat",
    category = "medplat",
    status = "PlatformStatus",
    derive = "PartialEq",
    validation = Rule::new("self.metadata.name == 'default'").message("the Platform must be named default: there is exactly one per cluster"),
    printcolumn = r#"{"name":"Hardened","type":"string","jsonPath":".status.hardenedNodes"}"#,
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.hardening.mode"}"#,
    printcolumn = r#"{"name":"Rules","type":"string","jsonPath":".status.rulesTarget"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PlatformSpec {
    /// Node hardening: which nodes, which baseline, how often, and Audit or Enforce.
    #[serde(default)]
    pub hardening: Hardening,
    /// Log collection: collector images, the audit tier, sinks and buffering.
    pub logging: Logging,
    /// Security alerting: rule labels, routing labels, runbooks and per-alert overrides.
    #[serde(default)]
    pub alerting: Alerting,
}

/// Node hardening settings.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.deviations.all(d, self.deviations.exists_one(e, e.checkId == d.checkId))").message("at most one deviation per check").field_path(".deviations"))]
pub struct Hardening {
    /// Labels selecting the nodes to scan; every node when empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// The baseline to check against.
    #[serde(default)]
    pub baseline: Baseline,
    /// How often each node is scanned, as a duration (`10m`, `1h`).
    #[serde(default = "default_interval")]
    #[schemars(regex(pattern = r"^([0-9]+(s|m|h))+$"))]
    pub interval: String,
    /// `Audit` (default) only reports; `Enforce` unlabels non-compliant nodes at once and evicts
    /// L3+ pods from them.
    #[serde(default)]
    pub mode: HardeningMode,
    /// Kernel modules that must stay off; the REFERENCE baseline list when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disabled_kernel_modules: Vec<String>,
    /// Checks turned off or changed, each with a reason, a ticket and an expiry.
    #[serde(default)]
    #[schemars(length(max = 128))]
    pub deviations: Vec<Deviation>,
    /// The node agent's container image.
    #[serde(default = "default_agent_image")]
    pub agent_image: String,
}

impl Default for Hardening {
    fn default() -> Self {
        Hardening {
            node_selector: BTreeMap::new(),
            baseline: Baseline::default(),
            interval: default_interval(),
            mode: HardeningMode::default(),
            disabled_kernel_modules: Vec::new(),
            deviations: Vec::new(),
            agent_image: default_agent_image(),
        }
    }
}

fn default_interval() -> String {
    "10m".into()
}

fn default_agent_image() -> String {
    "ghcr.io/medplat/medplat:0.1.0".into()
}

/// A hardening baseline.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Baseline {
    /// medplat's baseline: CIS Linux and CIS Kubernetes worker checks, with the Kubernetes
    /// exemptions built in.
    #[default]
    #[serde(rename = "medplat-node-v1")]
    MedplatNodeV1,
}

/// Whether hardening findings only report or also act.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HardeningMode {
    /// Report and label only.
    #[default]
    Audit,
    /// Also unlabel non-compliant nodes at once and evict sensitive pods from them.
    Enforce,
}

/// A check turned off or changed. It stops applying at `expiresAt`.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.action != 'Override' || has(self.expected)").message("an Override deviation needs the expected value").field_path(".expected"))]
pub struct Deviation {
    /// The check's id, e.g. `sysctl.kernel.dmesg_restrict`.
    #[schemars(length(min = 1, max = 128))]
    pub check_id: String,
    /// `Disable` the check, or `Override` its expected value.
    pub action: DeviationAction,
    /// The accepted value, for `Override`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// Why the deviation is accepted.
    #[schemars(length(min = 10, max = 1024))]
    pub reason: String,
    /// The change or risk ticket that approved it.
    #[schemars(length(min = 1, max = 128))]
    pub ticket: String,
    /// When the deviation stops applying; after it, the check counts again and an Event fires.
    pub expires_at: Time,
}

/// What a deviation does.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviationAction {
    /// The check is reported but does not count against compliance.
    Disable,
    /// The check expects another value.
    Override,
}

/// Log collection settings.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.sinks.all(s, self.sinks.exists_one(t, t.name == s.name))").message("sink names must be unique").field_path(".sinks"))]
pub struct Logging {
    /// The collector; only `vector` is supported.
    #[serde(default)]
    pub collector: Collector,
    /// The log agent (DaemonSet) image.
    #[serde(default = "default_vector_image")]
    pub agent_image: String,
    /// The aggregator (StatefulSet) image.
    #[serde(default = "default_vector_image")]
    pub aggregator_image: String,
    /// The StorageTier that keeps audit logs.
    #[schemars(length(min = 1, max = 253))]
    pub audit_tier: String,
    /// Days audit logs are kept: at least 180 (网络安全法 Art. 21).
    #[serde(default = "default_audit_retention")]
    #[schemars(range(min = 180, max = 36500))]
    pub audit_retention_days: u32,
    /// Where logs are shipped, besides the audit tier.
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub sinks: Vec<LogSink>,
    /// Disk buffering of the aggregator.
    #[serde(default)]
    pub buffer: Buffer,
    /// The aggregator's persistent volume.
    #[serde(default)]
    pub aggregator_storage: AggregatorStorage,
}

fn default_vector_image() -> String {
    "timberio/vector:0.41.1-distroless-libc".into()
}

fn default_audit_retention() -> u32 {
    180
}

/// The log collector.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum Collector {
    /// Vector (agent DaemonSet plus aggregator StatefulSet).
    #[default]
    Vector,
}

/// A log destination: exactly one of `tier`, `loki`, `elasticsearch` or `http`.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.tier), has(self.loki), has(self.elasticsearch), has(self.http)].filter(x, x).size() == 1").message("exactly one of tier, loki, elasticsearch or http must be set"))]
pub struct LogSink {
    /// The sink's name, used in the generated config.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Which streams go here: `audit`, `platform`, or both (the default).
    #[serde(default = "default_streams")]
    #[schemars(length(min = 1, max = 2))]
    pub streams: Vec<LogStream>,
    /// A StorageTier path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<super::refs::TierPathRef>,
    /// A Grafana Loki push endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loki: Option<EndpointSink>,
    /// An Elasticsearch endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elasticsearch: Option<EndpointSink>,
    /// A generic HTTP endpoint receiving NDJSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<EndpointSink>,
}

fn default_streams() -> Vec<LogStream> {
    vec![LogStream::Audit, LogStream::Platform]
}

/// A log stream.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum LogStream {
    /// Audit events (who read or wrote which data) and host audit logs.
    Audit,
    /// Platform logs of medplat workloads and the operator.
    Platform,
}

/// An HTTP(S) log endpoint.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSink {
    /// The endpoint URL.
    #[schemars(regex(pattern = r"^https?://[^\s]+$"))]
    pub url: String,
    /// The Elasticsearch index or Loki tenant, where it applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
}

/// Aggregator disk buffering.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Buffer {
    /// The disk buffer size per sink, in MiB.
    #[serde(default = "default_buffer_mib", rename = "maxSizeMiB")]
    #[schemars(range(min = 256, max = 1048576))]
    pub max_size_mib: u32,
    /// What platform streams do when the buffer is full. Audit streams always block.
    #[serde(default)]
    pub when_full: WhenFull,
}

impl Default for Buffer {
    fn default() -> Self {
        Buffer {
            max_size_mib: default_buffer_mib(),
            when_full: WhenFull::default(),
        }
    }
}

fn default_buffer_mib() -> u32 {
    1024
}

/// Buffer behaviour when full.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum WhenFull {
    /// Apply back-pressure; nothing is lost.
    #[default]
    Block,
    /// Drop the newest events (platform streams only).
    DropNewest,
}

/// The aggregator's persistent volume.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AggregatorStorage {
    /// The StorageClass; the cluster default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// The volume size.
    #[serde(default = "default_aggregator_size")]
    pub size: String,
}

impl Default for AggregatorStorage {
    fn default() -> Self {
        AggregatorStorage {
            storage_class_name: None,
            size: default_aggregator_size(),
        }
    }
}

fn default_aggregator_size() -> String {
    "20Gi".into()
}

/// Security alerting settings.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.overrides.all(o, self.overrides.exists_one(p, p.alert == o.alert))").message("at most one override per alert").field_path(".overrides"))]
pub struct Alerting {
    /// Labels put on the PrometheusRule so the Prometheus operator's `ruleSelector` picks it up
    /// (e.g. `release: kube-prometheus-stack`). A mismatch is why rules never load.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rule_labels: BTreeMap<String, String>,
    /// Extra labels on every alert, for Alertmanager routing (e.g. `team: platform`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub routing_labels: BTreeMap<String, String>,
    /// The base URL of the runbooks; each alert links to `<base>/<AlertName>.md`.
    #[serde(default = "default_runbook_base")]
    #[schemars(regex(pattern = r"^https?://[^\s]+$"))]
    pub runbook_base_url: String,
    /// Per-alert changes: disable, `for`, severity, extra labels.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub overrides: Vec<AlertOverride>,
}

impl Default for Alerting {
    fn default() -> Self {
        Alerting {
            rule_labels: BTreeMap::new(),
            routing_labels: BTreeMap::new(),
            runbook_base_url: default_runbook_base(),
            overrides: Vec::new(),
        }
    }
}

fn default_runbook_base() -> String {
    "https://medplat.example/runbooks".into()
}

/// A change to one alert.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AlertOverride {
    /// The alert name, e.g. `MedplatNodeHardeningNonCompliant`.
    #[schemars(regex(pattern = r"^Medplat[A-Za-z0-9]+$"))]
    pub alert: String,
    /// Do not render this alert.
    #[serde(default)]
    pub disabled: bool,
    /// How long the condition must hold before firing, e.g. `15m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h|d|w|y))+$"))]
    pub r#for: Option<String>,
    /// `critical`, `warning` or `info`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// Extra labels on this alert.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Alert severity (kube-prometheus conventions).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Severity {
    /// Pages someone.
    Critical,
    /// Makes a ticket.
    Warning,
    /// Context only.
    Info,
}

/// The observed state of the Platform.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PlatformStatus {
    /// The generation this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled`, `NodesHardened`, `LoggingConfigured`, `AlertingConfigured`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Hardened nodes over selected nodes, as `hardened/total`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardened_nodes: Option<String>,
    /// Nodes that passed their last scan within two intervals.
    #[serde(default)]
    pub hardened_count: i32,
    /// Nodes selected for hardening.
    #[serde(default)]
    pub node_count: i32,
    /// Where the alert rules went: `PrometheusRule` or `ConfigMap`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules_target: Option<String>,
    /// Deviations in force.
    #[serde(default)]
    pub active_deviations: i32,
    /// Deviations past `expiresAt`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expired_deviations: Vec<String>,
    /// The hash of the log configuration in force (the last good one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging_config_hash: Option<String>,
}
