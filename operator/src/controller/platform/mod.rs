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
pub mod report;
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

use super::context::{Context, patch_status_if_changed};
use super::error::{Error, Result};
use super::invalid::report_invalid;
use super::status::{Outcome, conditions_for};
use crate::api::platform::{Platform, PlatformStatus};
use crate::api::storage_tier::StorageTierSpec;
use crate::policy::hardening::{HardeningReport, NodeState, STALE_AFTER_INTERVALS, parse_interval};
use discovery::DiscoveryCache;
use plan::Inputs;
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
pub(crate) const NODES_IN_MESSAGE: usize = 10;

/// What the Platform controller keeps between reconciles.
pub struct PlatformState {
    /// The Platform-side watches.
    pub watches: Arc<PlatformWatches>,
    /// Which optional APIs exist.
    pub discovery: DiscoveryCache,
    /// Nodes with per-node metric series, to remove series of nodes that left.
    pub(crate) exported_nodes: Mutex<BTreeSet<String>>,
    /// Checks with a `deviation_expired` series.
    pub(crate) exported_deviations: Mutex<BTreeSet<String>>,
    /// Transitions already reported by an Event. The status says the same, but the cached
    /// Platform can lag this controller's own status write by a reconcile.
    pub(crate) reported: Mutex<BTreeSet<String>>,
}

impl PlatformState {
    /// State over `watches`, trusting discovery answers for `discovery_ttl`.
    pub fn new(watches: Arc<PlatformWatches>, discovery_ttl: Duration) -> Self {
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
        report::export_node_metrics(&ctx, &state, platform, report);
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
    report::report_transitions(&ctx, &state, &reference, &current, &plan).await;
    let status = report::build_status(
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
    Ok(Action::requeue(outcome.requeue_within(wait)))
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
