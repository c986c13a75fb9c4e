//! The Platform reconciler: cluster-wide guard rails.
//!
//! dereference (nodes, NodeCompliance objects, pods labelled `medplat.io/level`, StorageTiers,
//! the optional APIs by discovery) → validate and build ([`plan`]: the hardening verdicts and
//! the node-agent, log-collection and alerting children; an invalid group keeps its last good
//! children) → act on nodes ([`nodes`]: the `medplat.io/hardened` label, and evictions in
//! `Enforce` mode) → apply and prune through the shared applier → metrics, Events on
//! transitions, status → requeue at the next instant a verdict can change on its own (a scan
//! going stale, a deviation expiring).
//!
//! Only the Platform named `default` is reconciled; any other gets `Stalled` and nothing else.
//! The cluster-wide watch of sensitive pods lives in [`sensitive_pods`] and runs without a
//! Platform.

pub mod discovery;
pub mod nodes;
pub mod plan;
pub mod sensitive_pods;
pub mod watches;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::context::{Context, patch_status_if_changed, truncate};
use super::error::{Error, Result};
use super::invalid::report_invalid;
use super::status::{Outcome, conditions_for};
use crate::api::conditions::{
    ALERTING_CONFIGURED, Condition, ConditionStatus, LOGGING_CONFIGURED, NODES_HARDENED,
    find_condition,
};
use crate::api::platform::{Platform, PlatformStatus};
use crate::api::storage_tier::StorageTierSpec;
use crate::policy::hardening::{
    EVENT_DEVIATION_EXPIRED, HardeningReport, NodeState, STALE_AFTER_INTERVALS, parse_interval,
};
use crate::render::platform::rules::{RULES_FILE_KEY, RULES_NAME, RulesTarget};
use discovery::{DiscoveryCache, OptionalApis};
use nodes::{publish, state_text};
use plan::{Inputs, Plan};
use watches::PlatformWatches;

/// The controller's name, in metrics.
pub const CONTROLLER: &str = "platform";
/// The field manager of every Platform write (children, node labels, status).
pub const FIELD_MANAGER: &str = "medplat-platform";
/// Event reason (Warning, on the Platform): the logging settings are invalid; the last good
/// configuration stays in force.
pub const EVENT_INVALID_LOGGING: &str = "InvalidLoggingConfig";
/// How soon an eviction a disruption budget refused is retried.
const EVICTION_RETRY: Duration = Duration::from_secs(10);
/// The most nodes named in the `NodesHardened` message.
const NODES_IN_MESSAGE: usize = 10;

/// What the Platform controller keeps between reconciles.
pub struct PlatformState {
    /// The Platform-side watches.
    pub watches: PlatformWatches,
    /// Which optional APIs exist.
    pub discovery: DiscoveryCache,
    /// Nodes with per-node metric series, to remove series of nodes that left.
    exported_nodes: Mutex<BTreeSet<String>>,
    /// Checks with a `deviation_expired` series.
    exported_deviations: Mutex<BTreeSet<String>>,
    /// Transitions already reported by an Event. The status says the same, but the cached
    /// Platform can lag this controller's own status write by a reconcile.
    reported: Mutex<BTreeSet<String>>,
}

impl PlatformState {
    /// State over `watches`, trusting discovery answers for `discovery_ttl`.
    pub fn new(watches: PlatformWatches, discovery_ttl: Duration) -> Self {
        PlatformState {
            watches,
            discovery: DiscoveryCache::new(discovery_ttl),
            exported_nodes: Mutex::new(BTreeSet::new()),
            exported_deviations: Mutex::new(BTreeSet::new()),
            reported: Mutex::new(BTreeSet::new()),
        }
    }
}

/// Reconciles one Platform.
pub async fn reconcile(
    guard: Arc<DeserializeGuard<Platform>>,
    ctx: Arc<Context>,
    state: Arc<PlatformState>,
) -> Result<Action> {
    let platform = match &guard.0 {
        Ok(p) => p,
        Err(invalid) => {
            report_invalid::<Platform>(&ctx, invalid, FIELD_MANAGER).await?;
            return Ok(Action::requeue(ctx.settings.resync));
        }
    };
    let name = platform.name_any();
    if name != crate::api::PLATFORM_NAME {
        return not_the_default(&ctx, platform).await;
    }
    let uid = platform.uid().ok_or_else(|| Error::MissingMetadata {
        object: format!("Platform {name}"),
        what: "uid",
    })?;
    state.watches.wait_until_ready().await;
    let now = Timestamp::now();

    // dereference
    let tiers: BTreeMap<String, StorageTierSpec> = ctx
        .parents
        .tiers
        .state()
        .iter()
        .filter_map(|g| g.0.as_ref().ok())
        .map(|t| (t.name_any(), t.spec.clone()))
        .collect();
    let apis = state
        .discovery
        .get(&ctx.client)
        .await
        .map_err(|e| Error::kube("discover", e.group_version, e.source))?;
    let nodes = state.watches.node_infos();
    let compliances = state.watches.compliance_infos();
    let pods = state.watches.pod_infos();

    // validate + build
    let plan = plan::plan(&Inputs {
        platform,
        namespace: &ctx.settings.operator_namespace,
        tiers: &tiers,
        apis,
        nodes: &nodes,
        compliances: &compliances,
        pods: &pods,
        now,
    });

    // act on nodes first: the label is what keeps L3+ pods off unhardened nodes
    let mut retry_evictions = false;
    if let Ok(report) = &plan.hardening {
        nodes::label_nodes(&ctx, &report.nodes).await?;
        if !report.evictions.is_empty() {
            let done = nodes::evict(&ctx, &report.evictions, &report.nodes).await?;
            retry_evictions = !done.blocked.is_empty();
        }
        export_node_metrics(&ctx, &state, platform, report);
    }

    // apply
    let outcome = match ctx
        .applier(FIELD_MANAGER)
        .apply_keeping(&uid, plan.children(), &plan.prune_kinds, |c| plan.keeps(c))
        .await
    {
        Ok(o) => o,
        Err(e) => {
            // An optional API may have gone since discovery was cached: ask again next time.
            state.discovery.invalidate();
            return Err(e);
        }
    };
    if !outcome.applied.is_empty() || !outcome.pruned.is_empty() {
        tracing::info!(applied = ?outcome.applied, pruned = ?outcome.pruned, "platform children changed");
    }

    // events on transitions, then status
    let current = platform.status.clone().unwrap_or_default();
    let reference: ObjectReference = platform.object_ref(&());
    report_transitions(&ctx, &state, &reference, &current, &plan).await;
    let status = build_status(
        platform,
        &current,
        &plan,
        apis,
        &ctx.settings.operator_namespace,
    );
    let api: Api<Platform> = Api::all(ctx.client.clone());
    patch_status_if_changed(
        &api,
        &name,
        FIELD_MANAGER,
        platform.status.as_ref(),
        &status,
    )
    .await?;

    let mut wait = ctx.settings.resync;
    if let Some(next) = next_change(platform, plan.hardening.as_ref().ok(), now) {
        wait = wait.min(next);
    }
    if retry_evictions {
        wait = wait.min(EVICTION_RETRY);
    }
    Ok(Action::requeue(wait))
}

/// A Platform not named `default` (only possible when the schema was bypassed): reported,
/// never acted on.
async fn not_the_default(ctx: &Context, platform: &Platform) -> Result<Action> {
    let name = platform.name_any();
    let current = platform.status.clone().unwrap_or_default();
    let outcome = Outcome::stalled(
        "NotTheDefaultPlatform",
        format!(
            "only the Platform named {} is reconciled; delete {name} and put its settings in Platform {}",
            crate::api::PLATFORM_NAME,
            crate::api::PLATFORM_NAME
        ),
    );
    let status = PlatformStatus {
        observed_generation: platform.metadata.generation,
        conditions: conditions_for(
            &current.conditions,
            platform.metadata.generation,
            &outcome,
            vec![],
        ),
        ..PlatformStatus::default()
    };
    let api: Api<Platform> = Api::all(ctx.client.clone());
    patch_status_if_changed(
        &api,
        &name,
        FIELD_MANAGER,
        platform.status.as_ref(),
        &status,
    )
    .await?;
    Ok(Action::requeue(ctx.settings.resync))
}

/// Sets the node metrics and removes the series of nodes no longer selected.
fn export_node_metrics(
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
async fn report_transitions(
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
fn build_status(
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

/// How long until a verdict can change with no event: a fresh scan going stale, or a
/// deviation expiring. `None` when nothing is pending.
pub fn next_change(
    platform: &Platform,
    report: Option<&HardeningReport>,
    now: Timestamp,
) -> Option<Duration> {
    let interval = parse_interval(&platform.spec.hardening.interval).ok()?;
    let stale_after = interval.as_secs() as i64 * i64::from(STALE_AFTER_INTERVALS);
    let now_s = now.as_second();
    let stale_deadlines = report
        .into_iter()
        .flat_map(|r| r.nodes.iter())
        .filter(|v| matches!(v.state, NodeState::Hardened | NodeState::Failing { .. }))
        .filter_map(|v| v.last_scan_seconds)
        // One second past the deadline: at the deadline itself the scan is still fresh.
        .map(|t| t.saturating_add(stale_after).saturating_add(1));
    let expiries = platform
        .spec
        .hardening
        .deviations
        .iter()
        .map(|d| d.expires_at.0.as_second().saturating_add(1));
    stale_deadlines
        .chain(expiries)
        .filter(|t| *t > now_s)
        .min()
        .map(|t| Duration::from_secs(u64::try_from(t - now_s).unwrap_or(1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::platform::{Deviation, DeviationAction};
    use crate::policy::hardening::NodeVerdict;
    use crate::render::platform::default_platform;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn verdict(node: &str, state: NodeState, last: Option<i64>) -> NodeVerdict {
        NodeVerdict {
            node: node.into(),
            desired_label: state == NodeState::Hardened,
            state,
            current_label: None,
            last_scan_seconds: last,
            checks_failed: 0,
        }
    }

    #[test]
    fn the_next_change_is_the_earliest_staleness_or_expiry() {
        let now = Timestamp::from_second(10_000).unwrap();
        let mut p = default_platform();
        p.spec.hardening.interval = "60s".into();
        let report = HardeningReport {
            nodes: vec![
                verdict("fresh", NodeState::Hardened, Some(9_990)),
                verdict(
                    "failing",
                    NodeState::Failing { checks: vec![] },
                    Some(9_950),
                ),
                verdict("stale", NodeState::Stale { age_seconds: 500 }, Some(9_500)),
                verdict("none", NodeState::NoScan, None),
            ],
            ..HardeningReport::default()
        };
        // failing: 9950 + 120 + 1 = 10071 → 71 s; fresh: 10111 → 111 s.
        assert_eq!(
            next_change(&p, Some(&report), now),
            Some(Duration::from_secs(71))
        );
        p.spec.hardening.deviations.push(Deviation {
            check_id: "x".into(),
            action: DeviationAction::Disable,
            expected: None,
            reason: "accepted by the board".into(),
            ticket: "T-1".into(),
            expires_at: Time(Timestamp::from_second(10_030).unwrap()),
        });
        assert_eq!(
            next_change(&p, Some(&report), now),
            Some(Duration::from_secs(31))
        );
        assert_eq!(next_change(&p, None, now), Some(Duration::from_secs(31)));
        p.spec.hardening.deviations.clear();
        assert_eq!(next_change(&p, None, now), None);
    }
}
