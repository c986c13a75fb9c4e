//! Pure aggregation of node hardening: which nodes are hardened, the `medplat.io/hardened`
//! label each node should carry, which deviations apply, and which sensitive pods must move.
//!
//! The Platform controller gathers Nodes, NodeCompliance objects, pods and the Platform's
//! `spec.hardening`, calls [`evaluate`] with `now`, and applies the [`HardeningReport`]:
//! labels, evictions (Enforce only), status, Events and metrics.
//!
//! Rules:
//! - A node is **hardened** when it is selected by `spec.hardening.nodeSelector`, its
//!   NodeCompliance was scanned within [`STALE_AFTER_INTERVALS`] intervals of `now`, and after
//!   deviations no check is FAIL or ERROR (a check that could not run proves nothing).
//! - **Deviations**: `Disable` makes a check not count; `Override` replaces the expected value,
//!   and the check passes when its reported `actual` equals that value exactly (after trimming)
//!   and fails otherwise (an ERROR stays an ERROR). A deviation whose `expiresAt` is not after
//!   `now` no longer applies and is reported as expired.
//! - **Labels**, in both modes: a hardened node gets `true`, every other node `false` at once
//!   (nodes outside the selector are never hardened). The label is what the scheduling rule for
//!   L3+ pods relies on, so it always tells the truth.
//! - **Evictions** (`Enforce` only): running pods labelled `medplat.io/level` L3..L5 on nodes
//!   that are not hardened. `Audit` only reports them (metric and Warning Event below).
//! - **Sensitive pods on unhardened nodes**: running L3+ pods on nodes not currently labelled
//!   `medplat.io/hardened=true`, whatever the mode (metric
//!   `medplat_sensitive_pods_on_unhardened_nodes` and a Warning Event).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;

use crate::api::classification::Level;
use crate::api::node_compliance::{CheckStatus, NodeComplianceStatus};
use crate::api::platform::{DeviationAction, Hardening, HardeningMode};

/// The node label medplat maintains.
pub const HARDENED_LABEL: &str = "medplat.io/hardened";
/// The pod label carrying the data level of a workload.
pub const LEVEL_LABEL: &str = "medplat.io/level";
/// A node whose last scan is older than this many intervals is not hardened.
pub const STALE_AFTER_INTERVALS: u32 = 2;
/// Event reason (Warning, on the pod): an L3+ pod runs on a node not labelled hardened.
pub const EVENT_SENSITIVE_POD_ON_UNHARDENED_NODE: &str = "SensitivePodOnUnhardenedNode";
/// Event reason (Warning, on the Platform): a deviation passed its `expiresAt`.
pub const EVENT_DEVIATION_EXPIRED: &str = "HardeningDeviationExpired";
/// Event reason (Warning, on the pod): evicted from a node that is not hardened (Enforce).
pub const EVENT_EVICTED_FROM_UNHARDENED_NODE: &str = "EvictedFromUnhardenedNode";

/// What can be wrong with the hardening spec.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HardeningError {
    /// `spec.hardening.interval` is not a duration like `10m` or `1h30m`.
    #[error("spec.hardening.interval {value:?} is not a duration like 10m or 1h30m")]
    BadInterval {
        /// The value.
        value: String,
    },
}

/// Parses a duration of the Platform's interval form: one or more `<n>s|m|h`, e.g. `1h30m`.
/// Zero is refused: an agent cannot scan continuously.
pub fn parse_interval(s: &str) -> Result<Duration, HardeningError> {
    let bad = || HardeningError::BadInterval {
        value: s.to_string(),
    };
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        digits.clear();
    }
    if !digits.is_empty() || total == 0 {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// A node as the aggregation needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's name.
    pub name: String,
    /// Its current labels.
    pub labels: BTreeMap<String, String>,
}

/// A NodeCompliance as the aggregation needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct ComplianceInfo {
    /// `spec.nodeName`.
    pub node_name: String,
    /// Its status, if the agent wrote one.
    pub status: Option<NodeComplianceStatus>,
}

/// A pod as the aggregation needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInfo {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The node it is bound to, if scheduled.
    pub node_name: Option<String>,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Whether it has finished (`Succeeded` or `Failed`) or is already being deleted.
    pub finished_or_terminating: bool,
}

impl PodInfo {
    /// The pod's data level, when labelled with a valid one.
    pub fn level(&self) -> Option<Level> {
        self.labels.get(LEVEL_LABEL).and_then(|l| Level::parse(l))
    }
}

/// A pod, by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PodRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The node it runs on.
    pub node: String,
    /// Its level.
    pub level: Level,
}

/// Why a node is or is not hardened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeState {
    /// Selected, scanned recently, nothing failing.
    Hardened,
    /// Not selected by `spec.hardening.nodeSelector`.
    NotSelected,
    /// No NodeCompliance or no scan yet.
    NoScan,
    /// The last scan is older than [`STALE_AFTER_INTERVALS`] intervals.
    Stale {
        /// Seconds since the last scan.
        age_seconds: i64,
    },
    /// Checks fail or could not run, after deviations.
    Failing {
        /// Ids of the checks that count against the node, sorted.
        checks: Vec<String>,
    },
}

/// The verdict on one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeVerdict {
    /// The node.
    pub node: String,
    /// Why it is or is not hardened.
    pub state: NodeState,
    /// The value `medplat.io/hardened` should have.
    pub desired_label: bool,
    /// The label's current value, if any.
    pub current_label: Option<String>,
    /// Unix seconds of the last scan, for `medplat_node_last_scan_timestamp_seconds`.
    pub last_scan_seconds: Option<i64>,
    /// Checks counting against the node, for `medplat_node_checks_failed`.
    pub checks_failed: i64,
}

impl NodeVerdict {
    /// Whether the node is hardened.
    pub fn hardened(&self) -> bool {
        self.state == NodeState::Hardened
    }

    /// Whether the label must be written.
    pub fn label_needs_update(&self) -> bool {
        self.current_label.as_deref() != Some(if self.desired_label { "true" } else { "false" })
    }

    /// The label value to write.
    pub fn desired_label_value(&self) -> &'static str {
        if self.desired_label { "true" } else { "false" }
    }
}

/// A deviation past its expiry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpiredDeviation {
    /// The check it was for.
    pub check_id: String,
    /// Its ticket, for the Event.
    pub ticket: String,
    /// When it expired (RFC 3339).
    pub expired_at: String,
}

/// Everything the controller applies.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct HardeningReport {
    /// One verdict per node, sorted by name.
    pub nodes: Vec<NodeVerdict>,
    /// Selected nodes that are hardened.
    pub hardened_count: i32,
    /// Selected nodes.
    pub node_count: i32,
    /// Check ids of the deviations in force, sorted.
    pub active_deviations: Vec<String>,
    /// Deviations past `expiresAt`, sorted by check id.
    pub expired_deviations: Vec<ExpiredDeviation>,
    /// Pods to evict (Enforce mode only), sorted.
    pub evictions: Vec<PodRef>,
    /// Running L3+ pods on nodes not labelled hardened now, sorted.
    pub sensitive_on_unhardened: Vec<PodRef>,
    /// [`Self::sensitive_on_unhardened`] counted per namespace, for the metric.
    pub sensitive_on_unhardened_by_namespace: BTreeMap<String, i64>,
}

impl HardeningReport {
    /// `hardened/total`, for `status.hardenedNodes`.
    pub fn hardened_nodes_text(&self) -> String {
        format!("{}/{}", self.hardened_count, self.node_count)
    }
}

enum Applied {
    Disable,
    Override(String),
}

/// Evaluates the hardening of every node. Pure: same input, same output.
pub fn evaluate(
    nodes: &[NodeInfo],
    compliances: &[ComplianceInfo],
    pods: &[PodInfo],
    spec: &Hardening,
    now: Timestamp,
) -> Result<HardeningReport, HardeningError> {
    let interval = parse_interval(&spec.interval)?;
    let stale_after = interval.as_secs() as i64 * i64::from(STALE_AFTER_INTERVALS);

    let mut report = HardeningReport::default();
    let mut applied: BTreeMap<&str, Applied> = BTreeMap::new();
    for d in &spec.deviations {
        if d.expires_at.0 > now {
            let a = match (d.action, &d.expected) {
                (DeviationAction::Disable, _) => Applied::Disable,
                (DeviationAction::Override, Some(e)) => Applied::Override(e.trim().to_string()),
                // The schema requires `expected` for Override; without it nothing is overridden.
                (DeviationAction::Override, None) => continue,
            };
            applied.insert(d.check_id.as_str(), a);
            report.active_deviations.push(d.check_id.clone());
        } else {
            report.expired_deviations.push(ExpiredDeviation {
                check_id: d.check_id.clone(),
                ticket: d.ticket.clone(),
                expired_at: d.expires_at.0.to_string(),
            });
        }
    }
    report.active_deviations.sort();
    report
        .expired_deviations
        .sort_by(|a, b| a.check_id.cmp(&b.check_id));

    let by_node: BTreeMap<&str, &ComplianceInfo> = compliances
        .iter()
        .map(|c| (c.node_name.as_str(), c))
        .collect();
    let mut sorted_nodes: Vec<&NodeInfo> = nodes.iter().collect();
    sorted_nodes.sort_by(|a, b| a.name.cmp(&b.name));

    for node in sorted_nodes {
        let selected = spec
            .node_selector
            .iter()
            .all(|(k, v)| node.labels.get(k) == Some(v));
        let status = by_node
            .get(node.name.as_str())
            .and_then(|c| c.status.as_ref());
        let last_scan_seconds = status
            .and_then(|s| s.last_scan.as_ref())
            .map(|t| t.0.as_second());
        let failing = status
            .map(|s| counting_failures(s, &applied))
            .unwrap_or_default();
        let state = if !selected {
            NodeState::NotSelected
        } else {
            match last_scan_seconds {
                None => NodeState::NoScan,
                Some(t) if now.as_second() - t > stale_after => NodeState::Stale {
                    age_seconds: now.as_second() - t,
                },
                Some(_) if !failing.is_empty() => NodeState::Failing {
                    checks: failing.clone(),
                },
                Some(_) => NodeState::Hardened,
            }
        };
        let current_label = node.labels.get(HARDENED_LABEL).cloned();
        let hardened = state == NodeState::Hardened;
        let desired_label = hardened;
        if selected {
            report.node_count += 1;
            report.hardened_count += i32::from(hardened);
        }
        report.nodes.push(NodeVerdict {
            node: node.name.clone(),
            state,
            desired_label,
            current_label,
            last_scan_seconds,
            checks_failed: failing.len() as i64,
        });
    }

    let verdicts: BTreeMap<&str, &NodeVerdict> =
        report.nodes.iter().map(|v| (v.node.as_str(), v)).collect();
    report.sensitive_on_unhardened = sensitive_pods_on_unhardened(nodes, pods);
    for p in &report.sensitive_on_unhardened {
        *report
            .sensitive_on_unhardened_by_namespace
            .entry(p.namespace.clone())
            .or_default() += 1;
    }
    if spec.mode == HardeningMode::Enforce {
        report.evictions = pods
            .iter()
            .filter_map(sensitive_running)
            .filter(|p| !verdicts.get(p.node.as_str()).is_some_and(|v| v.hardened()))
            .collect();
        report.evictions.sort();
    }
    Ok(report)
}

/// The pod as a [`PodRef`] when it is bound, not finished or terminating, and labelled L3+.
fn sensitive_running(pod: &PodInfo) -> Option<PodRef> {
    if pod.finished_or_terminating {
        return None;
    }
    let level = pod.level().filter(|l| l.is_sensitive())?;
    Some(PodRef {
        namespace: pod.namespace.clone(),
        name: pod.name.clone(),
        node: pod.node_name.clone()?,
        level,
    })
}

/// Running L3+ pods on nodes not labelled `medplat.io/hardened=true` now (or on nodes that do
/// not exist), sorted. This depends on the labels alone, so the cluster-wide pod watch reports
/// it whether or not a Platform exists.
pub fn sensitive_pods_on_unhardened(nodes: &[NodeInfo], pods: &[PodInfo]) -> Vec<PodRef> {
    let labelled: BTreeSet<&str> = nodes
        .iter()
        .filter(|n| n.labels.get(HARDENED_LABEL).map(String::as_str) == Some("true"))
        .map(|n| n.name.as_str())
        .collect();
    let mut out: Vec<PodRef> = pods
        .iter()
        .filter_map(sensitive_running)
        .filter(|p| !labelled.contains(p.node.as_str()))
        .collect();
    out.sort();
    out
}

/// The ids of checks that count against the node after deviations, sorted.
///
/// When the agent truncated its list, failures it could not include still count: they are
/// added as `(N more not listed)` so a truncated report never looks clean.
fn counting_failures(
    status: &NodeComplianceStatus,
    applied: &BTreeMap<&str, Applied>,
) -> Vec<String> {
    let mut out = BTreeSet::new();
    let mut listed_bad = 0i64;
    for c in &status.checks {
        let bad = matches!(c.status, CheckStatus::Fail | CheckStatus::Error);
        listed_bad += i64::from(bad);
        let counts = match applied.get(c.id.as_str()) {
            Some(Applied::Disable) => false,
            Some(Applied::Override(_)) if c.status == CheckStatus::Error => true,
            Some(Applied::Override(expected)) => c.actual.trim() != expected,
            None => bad,
        };
        if counts {
            out.insert(c.id.clone());
        }
    }
    let reported_bad = i64::from(status.summary.fail) + i64::from(status.summary.error);
    let mut out: Vec<String> = out.into_iter().collect();
    if reported_bad > listed_bad {
        out.push(format!("({} more not listed)", reported_bad - listed_bad));
    }
    out
}

/// The per-check deviation state for metrics: `check id → 1` for each expired deviation
/// (`medplat_hardening_deviation_expired`).
pub fn expired_deviation_gauges(report: &HardeningReport) -> BTreeMap<String, i64> {
    report
        .expired_deviations
        .iter()
        .map(|d| (d.check_id.clone(), 1))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::node_compliance::{CheckResult, CheckSeverity, CheckSummary};
    use crate::api::platform::Deviation;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    const NOW: i64 = 1_000_000;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn node(name: &str, labels: &[(&str, &str)]) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn check(id: &str, status: CheckStatus, actual: &str) -> CheckResult {
        CheckResult {
            id: id.into(),
            title: String::new(),
            benchmark_ref: String::new(),
            severity: CheckSeverity::Medium,
            status,
            expected: String::new(),
            actual: actual.into(),
            remediation: String::new(),
        }
    }

    fn scanned(node: &str, age: i64, checks: Vec<CheckResult>) -> ComplianceInfo {
        let mut summary = CheckSummary::default();
        for c in &checks {
            match c.status {
                CheckStatus::Fail => summary.fail += 1,
                CheckStatus::Error => summary.error += 1,
                _ => summary.pass += 1,
            }
        }
        ComplianceInfo {
            node_name: node.into(),
            status: Some(NodeComplianceStatus {
                last_scan: Some(Time(ts(NOW - age))),
                summary,
                checks,
                ..NodeComplianceStatus::default()
            }),
        }
    }

    fn pod(ns: &str, name: &str, node: &str, level: Option<&str>) -> PodInfo {
        PodInfo {
            namespace: ns.into(),
            name: name.into(),
            node_name: Some(node.into()),
            labels: level
                .map(|l| [(LEVEL_LABEL.to_string(), l.to_string())].into())
                .unwrap_or_default(),
            finished_or_terminating: false,
        }
    }

    fn deviation(
        check: &str,
        action: DeviationAction,
        expected: Option<&str>,
        expires: i64,
    ) -> Deviation {
        Deviation {
            check_id: check.into(),
            action,
            expected: expected.map(str::to_string),
            reason: "accepted by the security board".into(),
            ticket: "SEC-1".into(),
            expires_at: Time(ts(expires)),
        }
    }

    fn spec(mode: HardeningMode, deviations: Vec<Deviation>) -> Hardening {
        Hardening {
            mode,
            deviations,
            interval: "10m".into(),
            ..Hardening::default()
        }
    }

    #[test]
    fn intervals_parse() {
        assert_eq!(parse_interval("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_interval("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_interval("45s"), Ok(Duration::from_secs(45)));
        for bad in [
            "",
            "10",
            "m",
            "0m",
            "10d",
            "1.5h",
            "-1m",
            "99999999999999999999h",
        ] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn node_state_table() {
        use CheckStatus::*;
        // (scan, expected state) with a 10m interval: stale after 1200 s.
        let cases: Vec<(Option<ComplianceInfo>, NodeState)> = vec![
            (None, NodeState::NoScan),
            (
                Some(ComplianceInfo {
                    node_name: "n".into(),
                    status: None,
                }),
                NodeState::NoScan,
            ),
            (
                Some(scanned("n", 0, vec![check("a", Pass, "1")])),
                NodeState::Hardened,
            ),
            (
                Some(scanned("n", 1200, vec![check("a", Pass, "1")])),
                NodeState::Hardened,
            ),
            (
                Some(scanned("n", 1201, vec![check("a", Pass, "1")])),
                NodeState::Stale { age_seconds: 1201 },
            ),
            (
                Some(scanned(
                    "n",
                    0,
                    vec![check("a", Fail, "0"), check("b", Warn, "")],
                )),
                NodeState::Failing {
                    checks: vec!["a".into()],
                },
            ),
            (
                Some(scanned("n", 0, vec![check("e", Error, "unreadable")])),
                NodeState::Failing {
                    checks: vec!["e".into()],
                },
            ),
            // A scan from the future (clock skew) is fresh, not stale.
            (Some(scanned("n", -300, vec![])), NodeState::Hardened),
        ];
        for (c, want) in cases {
            let r = evaluate(
                &[node("n", &[])],
                &c.into_iter().collect::<Vec<_>>(),
                &[],
                &spec(HardeningMode::Enforce, vec![]),
                ts(NOW),
            )
            .unwrap();
            assert_eq!(r.nodes[0].state, want);
            assert_eq!(r.hardened_count, i32::from(want == NodeState::Hardened));
            assert_eq!(r.nodes[0].desired_label, want == NodeState::Hardened);
        }
    }

    #[test]
    fn truncated_failures_still_count() {
        let mut c = scanned("n", 0, vec![check("a", CheckStatus::Pass, "1")]);
        if let Some(s) = c.status.as_mut() {
            s.summary.fail = 3;
        }
        let r = evaluate(
            &[node("n", &[])],
            &[c],
            &[],
            &spec(HardeningMode::Audit, vec![]),
            ts(NOW),
        )
        .unwrap();
        assert_eq!(
            r.nodes[0].state,
            NodeState::Failing {
                checks: vec!["(3 more not listed)".into()]
            }
        );
    }

    #[test]
    fn deviation_table() {
        use CheckStatus::*;
        use DeviationAction::*;
        let live = NOW + 86_400;
        let dead = NOW;
        // (check, deviation, counts against the node?)
        let cases = [
            (check("x", Fail, "0"), None, true),
            (check("x", Fail, "0"), Some((Disable, None, live)), false),
            (check("x", Error, "?"), Some((Disable, None, live)), false),
            (check("x", Fail, "0"), Some((Disable, None, dead)), true),
            (
                check("x", Fail, "0"),
                Some((Override, Some("0"), live)),
                false,
            ),
            (
                check("x", Fail, " 0 "),
                Some((Override, Some("0 "), live)),
                false,
            ),
            (
                check("x", Pass, "1"),
                Some((Override, Some("0"), live)),
                true,
            ),
            (
                check("x", Error, "0"),
                Some((Override, Some("0"), live)),
                true,
            ),
            (
                check("x", Fail, "0"),
                Some((Override, Some("0"), dead)),
                true,
            ),
            (check("x", Fail, "0"), Some((Override, None, live)), true),
        ];
        for (i, (c, dev, counts)) in cases.into_iter().enumerate() {
            let devs = dev
                .map(|(a, e, x)| vec![deviation("x", a, e, x)])
                .unwrap_or_default();
            let r = evaluate(
                &[node("n", &[])],
                &[scanned("n", 0, vec![c])],
                &[],
                &spec(HardeningMode::Enforce, devs),
                ts(NOW),
            )
            .unwrap();
            assert_eq!(r.nodes[0].checks_failed == 1, counts, "case {i}");
        }
    }

    #[test]
    fn expired_deviations_are_reported_and_live_ones_counted() {
        let r = evaluate(
            &[],
            &[],
            &[],
            &spec(
                HardeningMode::Audit,
                vec![
                    deviation("b", DeviationAction::Disable, None, NOW - 1),
                    deviation("a", DeviationAction::Disable, None, NOW + 1),
                ],
            ),
            ts(NOW),
        )
        .unwrap();
        assert_eq!(r.active_deviations, vec!["a".to_string()]);
        assert_eq!(r.expired_deviations.len(), 1);
        assert_eq!(r.expired_deviations[0].check_id, "b");
        assert_eq!(r.expired_deviations[0].ticket, "SEC-1");
        assert_eq!(expired_deviation_gauges(&r).get("b"), Some(&1));
    }

    #[test]
    fn labels_and_selection_by_mode() {
        use HardeningMode::*;
        let nodes = [
            node("good", &[("pool", "data")]),
            node("drifted", &[("pool", "data"), (HARDENED_LABEL, "true")]),
            node("new", &[("pool", "data")]),
            node("other", &[(HARDENED_LABEL, "true")]),
        ];
        let scans = [
            scanned("good", 0, vec![check("a", CheckStatus::Pass, "")]),
            scanned("drifted", 0, vec![check("a", CheckStatus::Fail, "")]),
            scanned("other", 0, vec![check("a", CheckStatus::Pass, "")]),
        ];
        for mode in [Audit, Enforce] {
            let mut s = spec(mode, vec![]);
            s.node_selector = [("pool".to_string(), "data".to_string())].into();
            let r = evaluate(&nodes, &scans, &[], &s, ts(NOW)).unwrap();
            let label: BTreeMap<_, _> = r
                .nodes
                .iter()
                .map(|v| (v.node.as_str(), v.desired_label))
                .collect();
            assert!(label["good"]);
            assert!(
                !label["drifted"],
                "{mode:?}: a failing node loses its label at once"
            );
            assert!(!label["new"]);
            assert!(!label["other"], "unselected nodes are never hardened");
            assert_eq!((r.hardened_count, r.node_count), (1, 3));
            assert_eq!(r.hardened_nodes_text(), "1/3");
            let updates: Vec<_> = r
                .nodes
                .iter()
                .filter(|v| v.label_needs_update())
                .map(|v| v.node.as_str())
                .collect();
            assert_eq!(updates, vec!["drifted", "good", "new", "other"]);
        }
    }

    #[test]
    fn evictions_only_in_enforce_and_sensitive_pods_by_current_label() {
        let nodes = [
            node("hard", &[(HARDENED_LABEL, "true")]),
            node("soft", &[(HARDENED_LABEL, "false")]),
            node("falling", &[(HARDENED_LABEL, "true")]),
        ];
        let scans = [
            scanned("hard", 0, vec![]),
            scanned("soft", 0, vec![check("a", CheckStatus::Fail, "")]),
            scanned("falling", 0, vec![check("a", CheckStatus::Fail, "")]),
        ];
        let mut done = pod("icu", "finished", "soft", Some("L5"));
        done.finished_or_terminating = true;
        let pods = [
            pod("icu", "p-hard", "hard", Some("L4")),
            pod("icu", "p-soft", "soft", Some("L3")),
            pod("lab", "p-soft-l2", "soft", Some("L2")),
            pod("lab", "p-soft-none", "soft", None),
            pod("lab", "p-soft-bad", "soft", Some("l4")),
            pod("lab", "p-falling", "falling", Some("L5")),
            pod("lab", "p-unknown-node", "ghost", Some("L4")),
            done,
        ];
        let names = |v: &[PodRef]| v.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
        let audit = evaluate(
            &nodes,
            &scans,
            &pods,
            &spec(HardeningMode::Audit, vec![]),
            ts(NOW),
        )
        .unwrap();
        assert!(audit.evictions.is_empty());
        assert_eq!(
            names(&audit.sensitive_on_unhardened),
            vec!["p-soft", "p-unknown-node"]
        );
        assert_eq!(
            audit.sensitive_on_unhardened_by_namespace.get("icu"),
            Some(&1)
        );
        assert_eq!(
            audit.sensitive_on_unhardened_by_namespace.get("lab"),
            Some(&1)
        );
        let enforce = evaluate(
            &nodes,
            &scans,
            &pods,
            &spec(HardeningMode::Enforce, vec![]),
            ts(NOW),
        )
        .unwrap();
        assert_eq!(
            names(&enforce.evictions),
            vec!["p-soft", "p-falling", "p-unknown-node"]
        );
    }

    #[test]
    fn bad_interval_is_an_error_naming_the_field() {
        let mut s = spec(HardeningMode::Audit, vec![]);
        s.interval = "soon".into();
        let e = evaluate(&[], &[], &[], &s, ts(NOW)).unwrap_err();
        assert!(e.to_string().contains("spec.hardening.interval"));
    }
}
