//! What a Platform reconcile reports: the node metrics, the Events of transitions (a deviation
//! expiring, the logging settings turning invalid) and the status with its conditions.
//!
//! Condition messages never contain ages or timestamps, so a status built twice from the same
//! cluster state is equal and an idle reconcile writes nothing.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::ObjectReference;

use super::discovery::OptionalApis;
use super::nodes::{publish, state_text};
use super::plan::Plan;
use super::{EVENT_INVALID_LOGGING, NODES_IN_MESSAGE, PlatformState};
use crate::api::conditions::{
    ALERTING_CONFIGURED, Condition, ConditionStatus, LOGGING_CONFIGURED, NODES_HARDENED,
    find_condition,
};
use crate::api::platform::{Platform, PlatformStatus};
use crate::controller::context::{Context, truncate};
use crate::controller::status::{Outcome, conditions_for};
use crate::policy::hardening::{
    EVENT_DEVIATION_EXPIRED, HardeningReport, NodeState, parse_interval,
};
use crate::render::platform::rules::{RULES_FILE_KEY, RULES_NAME, RulesTarget};

/// Sets the node metrics and removes the series of nodes no longer selected.
pub fn export_node_metrics(
    ctx: &Context,
    state: &PlatformState,
    platform: &Platform,
    report: &HardeningReport,
) {
    let m = &ctx.metrics;
    if let Ok(interval) = parse_interval(&platform.spec.hardening.interval) {
        m.scan_interval
            .with_label_values::<&str>(&[])
            .set(interval.as_secs_f64());
    }
    let mut selected = BTreeSet::new();
    for v in report
        .nodes
        .iter()
        .filter(|v| v.state != NodeState::NotSelected)
    {
        let node = [v.node.as_str()];
        m.node_compliant
            .with_label_values(&node)
            .set(if v.hardened() { 1.0 } else { 0.0 });
        m.node_checks_failed
            .with_label_values(&node)
            .set(v.checks_failed as f64);
        match v.last_scan_seconds {
            Some(t) => m.node_last_scan.with_label_values(&node).set(t as f64),
            None => {
                let _ = m.node_last_scan.remove_label_values(&node);
            }
        }
        selected.insert(v.node.clone());
    }
    if let Ok(mut previous) = state.exported_nodes.lock() {
        for gone in previous.difference(&selected) {
            let node = [gone.as_str()];
            let _ = m.node_compliant.remove_label_values(&node);
            let _ = m.node_checks_failed.remove_label_values(&node);
            let _ = m.node_last_scan.remove_label_values(&node);
        }
        *previous = selected;
    }
    let expired: BTreeSet<String> = report
        .expired_deviations
        .iter()
        .map(|d| d.check_id.clone())
        .collect();
    for check in &expired {
        m.deviation_expired
            .with_label_values(&[check.as_str()])
            .set(1.0);
    }
    if let Ok(mut previous) = state.exported_deviations.lock() {
        for gone in previous.difference(&expired) {
            let _ = m.deviation_expired.remove_label_values(&[gone.as_str()]);
        }
        *previous = expired;
    }
}

/// Publishes the Events of what changed since the last status: deviations that expired, and
/// logging settings that became invalid (or invalid differently). A transition counts as
/// reported when the status records it or this process already published it.
pub async fn report_transitions(
    ctx: &Context,
    state: &PlatformState,
    reference: &ObjectReference,
    current: &PlatformStatus,
    plan: &Plan,
) {
    let mut due: Vec<(String, &str, String)> = Vec::new();
    let mut live: BTreeSet<String> = BTreeSet::new();
    if let Ok(report) = &plan.hardening {
        for d in &report.expired_deviations {
            let key = format!("deviation\u{0}{}\u{0}{}", d.check_id, d.expired_at);
            live.insert(key.clone());
            if current.expired_deviations.contains(&d.check_id) {
                continue;
            }
            let note = format!(
                "the deviation for check {} (ticket {}) expired at {}; the check counts against compliance again. Renew it with a new ticket or remove it",
                d.check_id, d.ticket, d.expired_at
            );
            due.push((key, EVENT_DEVIATION_EXPIRED, note));
        }
    }
    if let Err(problem) = &plan.logging.result {
        let message = logging_message(problem);
        let key = format!("logging\u{0}{message}");
        live.insert(key.clone());
        let previous = find_condition(&current.conditions, LOGGING_CONFIGURED);
        let already =
            previous.is_some_and(|c| c.status == ConditionStatus::False && c.message == message);
        if !already {
            due.push((key, EVENT_INVALID_LOGGING, message));
        }
    }
    let fresh: Vec<(String, &str, String)> = match state.reported.lock() {
        Ok(mut reported) => {
            // Forget what no longer holds, so a recurrence is reported again.
            reported.retain(|k| live.contains(k));
            due.into_iter()
                .filter(|(k, _, _)| reported.insert(k.clone()))
                .collect()
        }
        Err(_) => due,
    };
    for (_, reason, note) in fresh {
        publish(ctx, reference, reason, note).await;
    }
}

fn logging_message(problem: &str) -> String {
    truncate(
        &format!(
            "the logging settings are invalid; the last good configuration stays in force: {problem}"
        ),
        4000,
    )
}

/// The status for `plan`, built from the current one so unchanged conditions stay equal.
pub fn build_status(
    platform: &Platform,
    current: &PlatformStatus,
    plan: &Plan,
    apis: OptionalApis,
    ns: &str,
) -> PlatformStatus {
    let generation = platform.metadata.generation;
    let mut problems: Vec<(&str, String)> = Vec::new();
    let mut extra = Vec::new();

    let (hardened, total, active, expired) = match &plan.hardening {
        Ok(r) => {
            let not_hardened: Vec<String> = r
                .nodes
                .iter()
                .filter(|v| !v.hardened() && v.state != NodeState::NotSelected)
                .map(|v| format!("{}: {}", v.node, state_text(&v.state)))
                .collect();
            let all = r.node_count > 0 && not_hardened.is_empty();
            let message = if r.node_count == 0 {
                "no node is selected by spec.hardening.nodeSelector".to_string()
            } else if all {
                format!("{} nodes hardened", r.hardened_nodes_text())
            } else {
                let shown = not_hardened.len().min(NODES_IN_MESSAGE);
                let mut m = format!(
                    "{} nodes hardened; {}",
                    r.hardened_nodes_text(),
                    not_hardened[..shown].join("; ")
                );
                if not_hardened.len() > shown {
                    m.push_str(&format!("; and {} more", not_hardened.len() - shown));
                }
                m
            };
            let reason = if all {
                "AllNodesHardened"
            } else {
                "NodesNotHardened"
            };
            extra.push((NODES_HARDENED.to_string(), all, reason.to_string(), message));
            (
                Some(r.hardened_count),
                Some(r.node_count),
                r.active_deviations.len(),
                r.expired_deviations
                    .iter()
                    .map(|d| d.check_id.clone())
                    .collect(),
            )
        }
        Err(e) => {
            problems.push(("InvalidHardening", e.clone()));
            extra.push((
                NODES_HARDENED.to_string(),
                false,
                "InvalidHardening".to_string(),
                e.clone(),
            ));
            (None, None, 0, current.expired_deviations.clone())
        }
    };
    if let Err(e) = &plan.node_agent.result
        && !problems.iter().any(|(_, m)| m == e)
    {
        problems.push(("InvalidHardening", e.clone()));
    }

    let logging_hash = match &plan.logging.result {
        Ok(hash) => {
            extra.push((
                LOGGING_CONFIGURED.to_string(),
                true,
                "ConfigValid".to_string(),
                format!("log agent and aggregator run configuration {hash}"),
            ));
            Some(hash.clone())
        }
        Err(problem) => {
            problems.push(("InvalidLogging", problem.clone()));
            extra.push((
                LOGGING_CONFIGURED.to_string(),
                false,
                "InvalidConfig".to_string(),
                logging_message(problem),
            ));
            current.logging_config_hash.clone()
        }
    };

    let rules_target = match &plan.alerting.result {
        Ok(target) => {
            let (reason, message) = match target {
                RulesTarget::PrometheusRule => (
                    "PrometheusRule",
                    format!(
                        "alert rules are in PrometheusRule {ns}/{RULES_NAME}: discovery found the Prometheus operator's monitoring.coreos.com/v1 API"
                    ),
                ),
                RulesTarget::ConfigMap => (
                    "RulesConfigMap",
                    format!(
                        "alert rules are in ConfigMap {ns}/{RULES_NAME} (key {RULES_FILE_KEY}): discovery found no PrometheusRule API, so mount it as a Prometheus rule file"
                    ),
                ),
            };
            extra.push((
                ALERTING_CONFIGURED.to_string(),
                true,
                reason.to_string(),
                message,
            ));
            Some(target.as_str().to_string())
        }
        Err(problem) => {
            problems.push(("InvalidAlerting", problem.clone()));
            extra.push((
                ALERTING_CONFIGURED.to_string(),
                false,
                "InvalidAlerting".to_string(),
                format!("the alerting settings are invalid; the last good rules stay in force: {problem}"),
            ));
            current.rules_target.clone()
        }
    };

    let outcome = match problems.first() {
        Some((reason, _)) => Outcome::stalled(
            reason,
            problems
                .iter()
                .map(|(_, m)| m.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        ),
        None => {
            let mut message =
                "the node agent, log collection and alert rules are in place".to_string();
            if !apis.admission_policies {
                message.push_str(
                    "; the API server serves no ValidatingAdmissionPolicy (Kubernetes < 1.30), so node agents are not limited to their own node's NodeCompliance",
                );
            }
            Outcome::ready("Reconciled", message)
        }
    };
    let conditions: Vec<Condition> =
        conditions_for(&current.conditions, generation, &outcome, extra);
    PlatformStatus {
        observed_generation: generation,
        conditions,
        hardened_nodes: match (hardened, total) {
            (Some(h), Some(t)) => Some(format!("{h}/{t}")),
            _ => current.hardened_nodes.clone(),
        },
        hardened_count: hardened.unwrap_or(current.hardened_count),
        node_count: total.unwrap_or(current.node_count),
        rules_target,
        active_deviations: i32::try_from(active).unwrap_or(i32::MAX),
        expired_deviations: expired,
        logging_config_hash: logging_hash,
    }
}
