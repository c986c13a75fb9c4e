//! The operator's Prometheus metrics, named by the catalog in [`crate::api::metrics`].

use std::time::Duration;

use prometheus::{CounterVec, GaugeVec, HistogramOpts, HistogramVec, Opts, Registry, TextEncoder};

use crate::api::metrics as names;

/// Errors building or encoding metrics.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A metric could not be created or registered.
    #[error("cannot register metric {name}: {source}")]
    Register {
        /// The metric.
        name: &'static str,
        /// The cause.
        #[source]
        source: prometheus::Error,
    },
    /// The registry could not be encoded.
    #[error("cannot encode metrics: {0}")]
    Encode(#[source] prometheus::Error),
}

/// Every metric the operator exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Reconciles per controller.
    pub reconciles: CounterVec,
    /// Reconcile errors per controller and reason.
    pub errors: CounterVec,
    /// Reconcile duration per controller.
    pub duration: HistogramVec,
    /// Reasons currently blocking each pipeline.
    pub policy_violations: GaugeVec,
    /// 1 when a pipeline's last run failed.
    pub pipeline_run_failed: GaugeVec,
    /// Records of a pipeline's last run, by outcome.
    pub pipeline_last_run_records: GaugeVec,
    /// 1 when a data source answered its probe.
    pub datasource_reachable: GaugeVec,
    /// Expiry of live grants, unix seconds.
    pub grant_expiry: GaugeVec,
    /// Access denials reported by workers.
    pub worker_access_denied: CounterVec,
    /// 1 when a node passed its last scan.
    pub node_compliant: GaugeVec,
    /// Unix seconds of a node's last scan.
    pub node_last_scan: GaugeVec,
    /// Failed checks of a node's last scan.
    pub node_checks_failed: GaugeVec,
    /// The configured scan interval.
    pub scan_interval: GaugeVec,
    /// Sensitive pods running on unhardened nodes, per namespace.
    pub sensitive_pods_on_unhardened: GaugeVec,
    /// 1 while an expired deviation is still declared.
    pub deviation_expired: GaugeVec,
}

fn gauge(
    r: &Registry,
    name: &'static str,
    help: &str,
    labels: &[&str],
) -> Result<GaugeVec, MetricsError> {
    let g = GaugeVec::new(Opts::new(name, help), labels)
        .map_err(|source| MetricsError::Register { name, source })?;
    r.register(Box::new(g.clone()))
        .map_err(|source| MetricsError::Register { name, source })?;
    Ok(g)
}

fn counter(
    r: &Registry,
    name: &'static str,
    help: &str,
    labels: &[&str],
) -> Result<CounterVec, MetricsError> {
    let c = CounterVec::new(Opts::new(name, help), labels)
        .map_err(|source| MetricsError::Register { name, source })?;
    r.register(Box::new(c.clone()))
        .map_err(|source| MetricsError::Register { name, source })?;
    Ok(c)
}

impl Metrics {
    /// Creates and registers every metric in a fresh registry.
    pub fn new() -> Result<Metrics, MetricsError> {
        use names::*;
        let r = Registry::new();
        let duration = HistogramVec::new(
            HistogramOpts::new(
                RECONCILE_DURATION_SECONDS,
                "Reconcile duration per controller.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &[LABEL_CONTROLLER],
        )
        .map_err(|source| MetricsError::Register {
            name: RECONCILE_DURATION_SECONDS,
            source,
        })?;
        r.register(Box::new(duration.clone()))
            .map_err(|source| MetricsError::Register {
                name: RECONCILE_DURATION_SECONDS,
                source,
            })?;
        Ok(Metrics {
            reconciles: counter(
                &r,
                RECONCILE_TOTAL,
                "Reconciles per controller.",
                &[LABEL_CONTROLLER],
            )?,
            errors: counter(
                &r,
                RECONCILE_ERRORS_TOTAL,
                "Reconcile errors per controller and reason.",
                &[LABEL_CONTROLLER, LABEL_REASON],
            )?,
            duration,
            policy_violations: gauge(
                &r,
                POLICY_VIOLATIONS,
                "Reasons currently blocking a pipeline (0 when compliant).",
                &[LABEL_NAMESPACE, LABEL_PIPELINE],
            )?,
            pipeline_run_failed: gauge(
                &r,
                PIPELINE_RUN_FAILED,
                "1 when the pipeline's last run failed.",
                &[LABEL_NAMESPACE, LABEL_PIPELINE],
            )?,
            pipeline_last_run_records: gauge(
                &r,
                PIPELINE_LAST_RUN_RECORDS,
                "Records of the pipeline's last run, by outcome.",
                &[LABEL_NAMESPACE, LABEL_PIPELINE, LABEL_OUTCOME],
            )?,
            datasource_reachable: gauge(
                &r,
                DATASOURCE_REACHABLE,
                "1 when the data source answered its probe.",
                &[LABEL_NAMESPACE, LABEL_DATASOURCE],
            )?,
            grant_expiry: gauge(
                &r,
                ACCESS_GRANT_EXPIRY_TIMESTAMP_SECONDS,
                "Unix time at which a live access grant expires.",
                &[LABEL_NAMESPACE, LABEL_POLICY, LABEL_RULE],
            )?,
            worker_access_denied: counter(
                &r,
                WORKER_ACCESS_DENIED_TOTAL,
                "Accesses the worker refused, from run summaries.",
                &[LABEL_NAMESPACE, LABEL_PIPELINE],
            )?,
            node_compliant: gauge(
                &r,
                NODE_COMPLIANT,
                "1 when the node passed its last scan.",
                &[LABEL_NODE],
            )?,
            node_last_scan: gauge(
                &r,
                NODE_LAST_SCAN_TIMESTAMP_SECONDS,
                "Unix time of the node's last hardening scan.",
                &[LABEL_NODE],
            )?,
            node_checks_failed: gauge(
                &r,
                NODE_CHECKS_FAILED,
                "Failed checks of the node's last scan.",
                &[LABEL_NODE],
            )?,
            scan_interval: gauge(
                &r,
                HARDENING_SCAN_INTERVAL_SECONDS,
                "The configured hardening scan interval.",
                &[],
            )?,
            sensitive_pods_on_unhardened: gauge(
                &r,
                SENSITIVE_PODS_ON_UNHARDENED_NODES,
                "Pods labelled L3 or above running on nodes not labelled hardened.",
                &[LABEL_NAMESPACE],
            )?,
            deviation_expired: gauge(
                &r,
                HARDENING_DEVIATION_EXPIRED,
                "1 while an expired hardening deviation is still declared.",
                &[LABEL_CHECK],
            )?,
            registry: r,
        })
    }

    /// Counts one reconcile and its duration.
    pub fn observe_reconcile(&self, controller: &str, elapsed: Duration) {
        self.reconciles.with_label_values(&[controller]).inc();
        self.duration
            .with_label_values(&[controller])
            .observe(elapsed.as_secs_f64());
    }

    /// Counts one failed reconcile.
    pub fn observe_error(&self, controller: &str, reason: &str) {
        self.errors.with_label_values(&[controller, reason]).inc();
    }

    /// The exposition text for `/metrics`.
    pub fn encode(&self) -> Result<String, MetricsError> {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .map_err(MetricsError::Encode)
    }
}
