//! The alert catalog: every medplat alert with its expression, timing, severity, component and
//! texts, built from the metric catalog ([`crate::api::metrics`]).
//!
//! Conventions (REFERENCE.md "Alerting conventions"): CamelCase `Medplat…` names, groups
//! `medplat-<area>`, labels `severity` and `component` on every alert, `namespace` kept by
//! every expression (aggregations are `by (namespace, …)`), a static `summary`, a templated
//! `description` and `runbook_url = <base>/<AlertName>`. Event data (pod names, check ids)
//! never becomes a label.

use crate::api::metrics as m;
use crate::api::platform::{PlatformSpec, Severity};

/// Group of the node-hardening alerts.
pub const GROUP_HARDENING: &str = "medplat-hardening";
/// Group of the pipeline alerts.
pub const GROUP_PIPELINES: &str = "medplat-pipelines";
/// Group of the data-source alerts.
pub const GROUP_DATASOURCES: &str = "medplat-datasources";
/// Group of the access-policy alerts.
pub const GROUP_ACCESS: &str = "medplat-access";
/// Group of the log-collection alerts.
pub const GROUP_LOGGING: &str = "medplat-logging";
/// Group of the operator's own alerts.
pub const GROUP_OPERATOR: &str = "medplat-operator";

/// Share of quarantined records (of records read) above which a run is suspicious.
pub const QUARANTINE_RATIO_THRESHOLD: f64 = 0.05;
/// How long before a grant's `validUntil` the expiry alert fires.
pub const GRANT_EXPIRY_WARNING_DAYS: u64 = 7;
/// Buffer fill ratio of an audit sink above which the buffer is "filling".
pub const BUFFER_FILL_THRESHOLD: f64 = 0.8;
/// Sinks carrying audit streams are named with this prefix in the Vector config, so the log
/// alerts can single them out.
pub const AUDIT_SINK_PREFIX: &str = "audit_";

/// One alert before overrides.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertDef {
    /// `MedplatSomething`.
    pub name: &'static str,
    /// `medplat-<area>`.
    pub group: &'static str,
    /// The small, stable `component` label.
    pub component: &'static str,
    /// Default severity.
    pub severity: Severity,
    /// Default `for`.
    pub for_: &'static str,
    /// The PromQL expression.
    pub expr: String,
    /// Static one-line summary.
    pub summary: &'static str,
    /// Templated description.
    pub description: &'static str,
}

/// Every alert medplat renders for `spec`, in group order. The spec only parameterises
/// expressions (the audit buffer size); overrides are applied by the renderer.
pub fn catalog(spec: &PlatformSpec) -> Vec<AlertDef> {
    let buffer_bytes = u64::from(spec.logging.buffer.max_size_mib) * 1024 * 1024;
    vec![
        AlertDef {
            name: "MedplatNodeHardeningNonCompliant",
            group: GROUP_HARDENING,
            component: "node-hardening",
            severity: Severity::Warning,
            for_: "15m",
            expr: format!("{} == 0", m::NODE_COMPLIANT),
            summary: "A node fails the medplat hardening baseline.",
            description: "Node {{ $labels.node }} is not compliant with the hardening baseline \
                          (failing checks or no recent scan). It does not carry \
                          medplat.io/hardened=true, so L3+ workloads cannot run there.",
        },
        AlertDef {
            name: "MedplatNodeHardeningScanStale",
            group: GROUP_HARDENING,
            component: "node-hardening",
            severity: Severity::Warning,
            for_: "5m",
            expr: format!(
                "time() - {} > 2 * scalar({})",
                m::NODE_LAST_SCAN_TIMESTAMP_SECONDS,
                m::HARDENING_SCAN_INTERVAL_SECONDS
            ),
            summary: "The node agent has not reported a scan for two intervals.",
            description: "Node {{ $labels.node }} last reported a hardening scan \
                          {{ $value | humanizeDuration }} ago, more than two scan intervals. \
                          The node agent may be down or unable to reach the API server.",
        },
        AlertDef {
            name: "MedplatSensitiveWorkloadOnUnhardenedNode",
            group: GROUP_HARDENING,
            component: "node-hardening",
            severity: Severity::Critical,
            for_: "5m",
            expr: format!("{} > 0", m::SENSITIVE_PODS_ON_UNHARDENED_NODES),
            summary: "Pods holding L3+ data run on nodes that are not hardened.",
            description: "{{ $value }} pod(s) labelled medplat.io/level L3 or above in namespace \
                          {{ $labels.namespace }} run on nodes without medplat.io/hardened=true.",
        },
        AlertDef {
            name: "MedplatHardeningDeviationExpired",
            group: GROUP_HARDENING,
            component: "node-hardening",
            severity: Severity::Warning,
            for_: "15m",
            expr: format!("{} > 0", m::HARDENING_DEVIATION_EXPIRED),
            summary: "A hardening deviation has expired but is still declared.",
            description: "The deviation for check {{ $labels.check }} is past its expiresAt and \
                          no longer applies; renew it with a new ticket or remove it from the \
                          Platform.",
        },
        AlertDef {
            name: "MedplatPipelineBlockedByPolicy",
            group: GROUP_PIPELINES,
            component: "pipeline",
            severity: Severity::Warning,
            for_: "15m",
            expr: format!("{} > 0", m::POLICY_VIOLATIONS),
            summary: "A pipeline is blocked by the classification policy.",
            description: "Pipeline {{ $labels.namespace }}/{{ $labels.pipeline }} has \
                          {{ $value }} policy violation(s) and will not run until they are fixed.",
        },
        AlertDef {
            name: "MedplatPipelineRunFailed",
            group: GROUP_PIPELINES,
            component: "pipeline",
            severity: Severity::Warning,
            for_: "5m",
            expr: format!("{} > 0", m::PIPELINE_RUN_FAILED),
            summary: "The last run of a pipeline failed.",
            description: "The last run of pipeline {{ $labels.namespace }}/{{ $labels.pipeline }} \
                          failed; downstream datasets are not up to date.",
        },
        AlertDef {
            name: "MedplatPipelineQuarantineRateHigh",
            group: GROUP_PIPELINES,
            component: "pipeline",
            severity: Severity::Warning,
            for_: "5m",
            expr: format!(
                "{r}{{{o}=\"{q}\"}} / ignoring({o}) {r}{{{o}=\"{i}\"}} > {t}",
                r = m::PIPELINE_LAST_RUN_RECORDS,
                o = m::LABEL_OUTCOME,
                q = m::OUTCOME_QUARANTINED,
                i = m::OUTCOME_IN,
                t = QUARANTINE_RATIO_THRESHOLD
            ),
            summary: "A pipeline quarantined an unusually large share of its records.",
            description: "Pipeline {{ $labels.namespace }}/{{ $labels.pipeline }} quarantined \
                          {{ $value | humanizePercentage }} of the records of its last run.",
        },
        AlertDef {
            name: "MedplatDataSourceUnreachable",
            group: GROUP_DATASOURCES,
            component: "datasource",
            severity: Severity::Warning,
            for_: "15m",
            expr: format!("{} == 0", m::DATASOURCE_REACHABLE),
            summary: "A hospital data source does not answer.",
            description: "Data source {{ $labels.namespace }}/{{ $labels.datasource }} failed its \
                          reachability probe; pipelines reading it will fail.",
        },
        AlertDef {
            name: "MedplatAccessGrantExpiringSoon",
            group: GROUP_ACCESS,
            component: "access-policy",
            severity: Severity::Warning,
            for_: "15m",
            expr: format!(
                "{g} - time() < {s} and {g} - time() > 0",
                g = m::ACCESS_GRANT_EXPIRY_TIMESTAMP_SECONDS,
                s = GRANT_EXPIRY_WARNING_DAYS * 86_400
            ),
            summary: "An access grant expires within a week.",
            description: "Rule {{ $labels.rule }} of AccessPolicy \
                          {{ $labels.namespace }}/{{ $labels.policy }} expires in \
                          {{ $value | humanizeDuration }}; renew it or let it lapse on purpose.",
        },
        AlertDef {
            name: "MedplatWorkerAccessDenied",
            group: GROUP_ACCESS,
            component: "access-policy",
            severity: Severity::Warning,
            for_: "1m",
            expr: format!(
                "sum by (namespace, pipeline) (increase({}[10m])) > 0",
                m::WORKER_ACCESS_DENIED_TOTAL
            ),
            summary: "A worker was denied access to data: a possible misuse.",
            description: "Pipeline {{ $labels.namespace }}/{{ $labels.pipeline }} was denied \
                          access by its policy bundle {{ $value | printf \"%.0f\" }} time(s) in \
                          the last 10 minutes.",
        },
        AlertDef {
            name: "MedplatAuditLogDeliveryFailing",
            group: GROUP_LOGGING,
            component: "log-collection",
            severity: Severity::Critical,
            for_: "10m",
            expr: format!(
                "sum by (namespace, component_id) (rate({e}{{component_kind=\"sink\",component_id=~\"{p}.*\"}}[5m])) > 0 \
                 or sum by (namespace, component_id) (rate({d}{{intentional=\"false\",component_id=~\"{p}.*\"}}[5m])) > 0",
                e = m::VECTOR_COMPONENT_ERRORS_TOTAL,
                d = m::VECTOR_COMPONENT_DISCARDED_EVENTS_TOTAL,
                p = AUDIT_SINK_PREFIX
            ),
            summary: "Audit logs are not being delivered.",
            description: "Audit sink {{ $labels.component_id }} of the log aggregator in \
                          {{ $labels.namespace }} keeps failing or dropping events; the audit \
                          trail (全程留痕) has a gap until it recovers.",
        },
        AlertDef {
            name: "MedplatAuditLogBufferFilling",
            group: GROUP_LOGGING,
            component: "log-collection",
            severity: Severity::Warning,
            for_: "15m",
            expr: format!(
                "max by (namespace, component_id) ({b}{{component_id=~\"{p}.*\"}}) / {buffer_bytes} > {t}",
                b = m::VECTOR_BUFFER_BYTE_SIZE,
                p = AUDIT_SINK_PREFIX,
                t = BUFFER_FILL_THRESHOLD
            ),
            summary: "An audit log disk buffer is filling up.",
            description: "The disk buffer of audit sink {{ $labels.component_id }} in \
                          {{ $labels.namespace }} is {{ $value | humanizePercentage }} full. When \
                          it is full the aggregator blocks and log agents stop reading.",
        },
        AlertDef {
            name: "MedplatOperatorReconcileErrors",
            group: GROUP_OPERATOR,
            component: "operator",
            severity: Severity::Warning,
            for_: "15m",
            expr: format!(
                "sum by (namespace, controller) (rate({}[5m])) > 0",
                m::RECONCILE_ERRORS_TOTAL
            ),
            summary: "The medplat operator keeps failing to reconcile.",
            description: "The {{ $labels.controller }} controller of the medplat operator in \
                          {{ $labels.namespace }} has returned errors for 15 minutes.",
        },
    ]
}

/// The names of every alert medplat can render, for the runbook test and override checks.
pub fn alert_names() -> Vec<&'static str> {
    catalog(&crate::render::platform::default_platform().spec)
        .iter()
        .map(|a| a.name)
        .collect()
}

/// The severity's label value.
pub fn severity_label(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::Warning => "warning",
        Severity::Info => "info",
    }
}
