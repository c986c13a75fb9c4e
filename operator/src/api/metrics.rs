//! The metric-name catalog: every Prometheus metric medplat exports or alerts on, in one place.
//!
//! The operator, the worker and the alert rules import these constants, so a renamed metric
//! breaks the build instead of silently breaking an alert. Each constant's doc gives the type,
//! the labels and the meaning. Label names are constants too (`LABEL_*`).
//!
//! The Vector constants at the end are not exported by medplat: they are the log collector's own
//! `internal_metrics`, exposed by its `prometheus_exporter` sink under the default `vector`
//! namespace, which the logging alerts read.

// ---- label names ------------------------------------------------------------------------------

/// Label: the controller (kind) that reconciled, e.g. `pipeline`.
pub const LABEL_CONTROLLER: &str = "controller";
/// Label: a short CamelCase error reason, e.g. `ApplyFailed` (never free text).
pub const LABEL_REASON: &str = "reason";
/// Label: the object's namespace.
pub const LABEL_NAMESPACE: &str = "namespace";
/// Label: a Pipeline's name.
pub const LABEL_PIPELINE: &str = "pipeline";
/// Label: a DataSource's name.
pub const LABEL_DATASOURCE: &str = "datasource";
/// Label: an AccessPolicy's name.
pub const LABEL_POLICY: &str = "policy";
/// Label: the index or name of a rule inside an AccessPolicy.
pub const LABEL_RULE: &str = "rule";
/// Label: a node's name.
pub const LABEL_NODE: &str = "node";
/// Label: a hardening check id, e.g. `sysctl.kernel.dmesg_restrict`.
pub const LABEL_CHECK: &str = "check";
/// Label: which records a run count is about: [`OUTCOME_IN`], [`OUTCOME_OUT`] or
/// [`OUTCOME_QUARANTINED`].
pub const LABEL_OUTCOME: &str = "outcome";

/// `outcome` value: records read from the sources.
pub const OUTCOME_IN: &str = "in";
/// `outcome` value: records written to the sink.
pub const OUTCOME_OUT: &str = "out";
/// `outcome` value: records set aside by a `validate` step, with a reason.
pub const OUTCOME_QUARANTINED: &str = "quarantined";

// ---- operator: reconcile loop -----------------------------------------------------------------

/// Counter `medplat_reconcile_total{controller}`: reconciles run, successful or not.
pub const RECONCILE_TOTAL: &str = "medplat_reconcile_total";
/// Counter `medplat_reconcile_errors_total{controller,reason}`: reconciles that returned an
/// error. `reason` is a short CamelCase code, never an error message.
pub const RECONCILE_ERRORS_TOTAL: &str = "medplat_reconcile_errors_total";
/// Histogram `medplat_reconcile_duration_seconds{controller}`: wall time of one reconcile.
pub const RECONCILE_DURATION_SECONDS: &str = "medplat_reconcile_duration_seconds";

// ---- operator: pipelines, sources, access -----------------------------------------------------

/// Gauge `medplat_policy_violations{namespace,pipeline}`: the number of reasons currently
/// blocking the pipeline (condition `PolicyCompliant=False`); 0 when it is compliant.
pub const POLICY_VIOLATIONS: &str = "medplat_policy_violations";
/// Gauge `medplat_pipeline_run_failed{namespace,pipeline}`: 1 when the pipeline's last run
/// failed, 0 otherwise.
pub const PIPELINE_RUN_FAILED: &str = "medplat_pipeline_run_failed";
/// Gauge `medplat_pipeline_last_run_records{namespace,pipeline,outcome}`: records of the last
/// run, with `outcome` one of `in`, `out`, `quarantined`.
pub const PIPELINE_LAST_RUN_RECORDS: &str = "medplat_pipeline_last_run_records";
/// Gauge `medplat_datasource_reachable{namespace,datasource}`: 1 when the source answered its
/// last probe, 0 when it did not.
pub const DATASOURCE_REACHABLE: &str = "medplat_datasource_reachable";
/// Gauge `medplat_access_grant_expiry_timestamp_seconds{namespace,policy,rule}`: the unix time
/// (seconds) of `validUntil` of each live grant. Grants without `validUntil` are not exported.
pub const ACCESS_GRANT_EXPIRY_TIMESTAMP_SECONDS: &str =
    "medplat_access_grant_expiry_timestamp_seconds";
/// Counter `medplat_worker_access_denied_total{namespace,pipeline}`: accesses the worker refused
/// under the compiled policy bundle. The operator reads it from the worker's run summary.
pub const WORKER_ACCESS_DENIED_TOTAL: &str = "medplat_worker_access_denied_total";

// ---- operator: node hardening -----------------------------------------------------------------

/// Gauge `medplat_node_compliant{node}`: 1 when the node's last scan passed (after
/// deviations) and is recent, 0 otherwise.
pub const NODE_COMPLIANT: &str = "medplat_node_compliant";
/// Gauge `medplat_node_last_scan_timestamp_seconds{node}`: unix time of the node's last scan
/// (`NodeCompliance.status.lastScan`).
pub const NODE_LAST_SCAN_TIMESTAMP_SECONDS: &str = "medplat_node_last_scan_timestamp_seconds";
/// Gauge `medplat_node_checks_failed{node}`: checks that count against compliance on the node
/// (FAIL and ERROR after deviations).
pub const NODE_CHECKS_FAILED: &str = "medplat_node_checks_failed";
/// Gauge `medplat_hardening_scan_interval_seconds` (no labels): the Platform's
/// `spec.hardening.interval`, so staleness rules can compare against it.
pub const HARDENING_SCAN_INTERVAL_SECONDS: &str = "medplat_hardening_scan_interval_seconds";
/// Gauge `medplat_sensitive_pods_on_unhardened_nodes{namespace}`: pods labelled
/// `medplat.io/level` L3..L5 running on nodes not labelled `medplat.io/hardened=true`.
pub const SENSITIVE_PODS_ON_UNHARDENED_NODES: &str = "medplat_sensitive_pods_on_unhardened_nodes";
/// Gauge `medplat_hardening_deviation_expired{check}`: 1 while a deviation past its
/// `expiresAt` is still declared in the Platform.
pub const HARDENING_DEVIATION_EXPIRED: &str = "medplat_hardening_deviation_expired";

// ---- log collection: Vector's own internal metrics ---------------------------------------------
//
// Vector 0.41 (the default image) names these as below. Vector 0.4x later renamed the buffer
// gauges (`vector_buffer_size_bytes`); the rules then need updating with the image. The buffer
// fill ratio is computed against the configured `spec.logging.buffer.maxSizeMiB`, which medplat
// renders into the rule, so it does not depend on Vector exporting a "max size" gauge.

/// Gauge `vector_buffer_byte_size{component_id,component_kind,component_type,buffer_type}`:
/// bytes currently held in a component's buffer (Vector `internal_metrics`).
pub const VECTOR_BUFFER_BYTE_SIZE: &str = "vector_buffer_byte_size";
/// Counter `vector_buffer_discarded_events_total{component_id,...}`: events a buffer dropped
/// because it was full (only `when_full: drop_newest` buffers drop).
pub const VECTOR_BUFFER_DISCARDED_EVENTS_TOTAL: &str = "vector_buffer_discarded_events_total";
/// Counter `vector_component_errors_total{component_id,component_kind,error_type,stage}`:
/// errors a component hit, e.g. a sink's failed requests.
pub const VECTOR_COMPONENT_ERRORS_TOTAL: &str = "vector_component_errors_total";
/// Counter `vector_component_discarded_events_total{component_id,intentional}`: events a
/// component dropped; `intentional="false"` means data loss.
pub const VECTOR_COMPONENT_DISCARDED_EVENTS_TOTAL: &str = "vector_component_discarded_events_total";
/// Counter `vector_component_sent_events_total{component_id,...}`: events a component sent on.
pub const VECTOR_COMPONENT_SENT_EVENTS_TOTAL: &str = "vector_component_sent_events_total";

/// Every metric medplat itself exports, for tests that check the catalog is used consistently.
pub const MEDPLAT_METRICS: &[&str] = &[
    RECONCILE_TOTAL,
    RECONCILE_ERRORS_TOTAL,
    RECONCILE_DURATION_SECONDS,
    POLICY_VIOLATIONS,
    PIPELINE_RUN_FAILED,
    PIPELINE_LAST_RUN_RECORDS,
    DATASOURCE_REACHABLE,
    ACCESS_GRANT_EXPIRY_TIMESTAMP_SECONDS,
    WORKER_ACCESS_DENIED_TOTAL,
    NODE_COMPLIANT,
    NODE_LAST_SCAN_TIMESTAMP_SECONDS,
    NODE_CHECKS_FAILED,
    HARDENING_SCAN_INTERVAL_SECONDS,
    SENSITIVE_PODS_ON_UNHARDENED_NODES,
    HARDENING_DEVIATION_EXPIRED,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medplat_metric_names_are_prefixed_unique_and_valid() {
        let mut seen = std::collections::BTreeSet::new();
        for name in MEDPLAT_METRICS {
            assert!(name.starts_with("medplat_"), "{name}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{name}"
            );
            assert!(seen.insert(*name), "duplicate {name}");
        }
    }

    #[test]
    fn counters_end_in_total_and_others_do_not() {
        let counters = [
            RECONCILE_TOTAL,
            RECONCILE_ERRORS_TOTAL,
            WORKER_ACCESS_DENIED_TOTAL,
        ];
        for name in MEDPLAT_METRICS {
            assert_eq!(name.ends_with("_total"), counters.contains(name), "{name}");
        }
    }
}
