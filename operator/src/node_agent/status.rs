//! Turning a scan into a bounded NodeCompliance status, and deciding whether it is worth a
//! write.
//!
//! # The write rule
//! The agent checks the host twice per interval ([`WritePolicy::scan_period`]) and writes its
//! status only when
//! - there is no status yet, or
//! - the results differ from the stored ones in anything but `lastScan` ([`differs`]), or
//! - a heartbeat is due: the stored `lastScan` is at least ¾ of an interval old (or lies in the
//!   future, after a clock fix).
//!
//! So an unchanged node writes at most once per interval, a change shows up within half an
//! interval, and a healthy agent's `lastScan` is never much more than one interval old. The
//! operator calls a node stale when `lastScan` is older than two intervals
//! ([`crate::policy::hardening::STALE_AFTER_INTERVALS`]), which leaves a whole interval of
//! slack for a failed write before a live node is wrongly unlabelled.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::node_compliance::{
    CheckResult, CheckStatus, CheckSummary, MAX_CHECKS, NodeComplianceStatus,
};

/// Schema maxLengths of [`CheckResult`]'s strings (see `api/node_compliance.rs`).
pub mod limits {
    /// `id`.
    pub const ID: usize = 128;
    /// `title`.
    pub const TITLE: usize = 256;
    /// `benchmarkRef`.
    pub const BENCHMARK_REF: usize = 128;
    /// `expected`.
    pub const EXPECTED: usize = 256;
    /// `actual`.
    pub const ACTUAL: usize = 256;
    /// `remediation`.
    pub const REMEDIATION: usize = 512;
}

/// Cuts `s` to at most `max` characters (the unit of JSON Schema's maxLength), marking the cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn bound(mut c: CheckResult) -> CheckResult {
    c.id = truncate(&c.id, limits::ID);
    c.title = truncate(&c.title, limits::TITLE);
    c.benchmark_ref = truncate(&c.benchmark_ref, limits::BENCHMARK_REF);
    c.expected = truncate(&c.expected, limits::EXPECTED);
    c.actual = truncate(&c.actual, limits::ACTUAL);
    c.remediation = truncate(&c.remediation, limits::REMEDIATION);
    c
}

/// Counts results by status.
pub fn summarise(checks: &[CheckResult]) -> CheckSummary {
    let mut s = CheckSummary::default();
    for c in checks {
        let n = match c.status {
            CheckStatus::Pass => &mut s.pass,
            CheckStatus::Fail => &mut s.fail,
            CheckStatus::Warn => &mut s.warn,
            CheckStatus::Manual => &mut s.manual,
            CheckStatus::NotApplicable => &mut s.not_applicable,
            CheckStatus::Error => &mut s.error,
        };
        *n = n.saturating_add(1);
    }
    s
}

/// Builds the status of one scan.
///
/// The summary counts every check. When there are more than [`MAX_CHECKS`], the list keeps the
/// ones that need attention (everything but PASS and NOTAPPLICABLE) first, in scan order, so a
/// truncated status never hides a failure. `compliant` means no FAIL and no ERROR: a check that
/// could not run proves nothing. The operator recomputes compliance with deviations applied.
pub fn build_status(
    checks: Vec<CheckResult>,
    now: Time,
    baseline: &str,
    agent_version: &str,
) -> NodeComplianceStatus {
    let summary = summarise(&checks);
    let compliant = summary.fail == 0 && summary.error == 0;
    let checks = if checks.len() > MAX_CHECKS {
        let quiet =
            |c: &CheckResult| matches!(c.status, CheckStatus::Pass | CheckStatus::NotApplicable);
        let mut keep: Vec<(usize, CheckResult)> =
            checks.into_iter().enumerate().collect::<Vec<_>>();
        keep.sort_by_key(|(i, c)| (quiet(c), *i));
        keep.truncate(MAX_CHECKS);
        keep.sort_by_key(|(i, _)| *i);
        keep.into_iter().map(|(_, c)| c).collect()
    } else {
        checks
    };
    NodeComplianceStatus {
        baseline: baseline.to_string(),
        agent_version: agent_version.to_string(),
        last_scan: Some(now),
        compliant,
        summary,
        checks: checks.into_iter().map(bound).collect(),
    }
}

/// Whether two statuses differ in anything but `lastScan`.
pub fn differs(a: &NodeComplianceStatus, b: &NodeComplianceStatus) -> bool {
    a.baseline != b.baseline
        || a.agent_version != b.agent_version
        || a.compliant != b.compliant
        || a.summary != b.summary
        || a.checks != b.checks
}

/// What the agent should do with a fresh scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteDecision {
    /// Nothing changed and no heartbeat is due: write nothing.
    Skip,
    /// Nothing changed, but `lastScan` must move so the node does not look stale.
    Heartbeat,
    /// No status yet, or the results changed.
    Changed,
}

/// The agent's timing, derived from the Platform's scan interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WritePolicy {
    /// `spec.hardening.interval`.
    pub interval: Duration,
}

impl WritePolicy {
    /// How often the agent checks the host: twice per interval, at least every second.
    pub fn scan_period(&self) -> Duration {
        (self.interval / 2).max(Duration::from_secs(1))
    }

    /// How old `lastScan` may get before an unchanged scan still writes.
    pub fn heartbeat_after(&self) -> Duration {
        self.interval.mul_f64(0.75)
    }

    /// Decides whether `next` (stamped `now`) is worth writing over `prev`.
    pub fn decide(
        &self,
        prev: Option<&NodeComplianceStatus>,
        next: &NodeComplianceStatus,
        now: &Time,
    ) -> WriteDecision {
        let Some(prev) = prev else {
            return WriteDecision::Changed;
        };
        if differs(prev, next) {
            return WriteDecision::Changed;
        }
        let Some(last) = &prev.last_scan else {
            return WriteDecision::Heartbeat;
        };
        let age = now.0.duration_since(last.0);
        let due = age.is_negative() || age.unsigned_abs() >= self.heartbeat_after();
        if due {
            WriteDecision::Heartbeat
        } else {
            WriteDecision::Skip
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::node_compliance::CheckSeverity;

    fn at(secs: i64) -> Time {
        Time(jiff::Timestamp::from_second(secs).unwrap())
    }

    fn check(i: usize, status: CheckStatus) -> CheckResult {
        CheckResult {
            id: format!("c{i}"),
            title: "t".into(),
            benchmark_ref: "b".into(),
            severity: CheckSeverity::Low,
            status,
            expected: "e".into(),
            actual: "a".into(),
            remediation: "r".into(),
        }
    }

    #[test]
    fn oversized_scans_keep_failures_and_count_everything() {
        let mut checks: Vec<_> = (0..300).map(|i| check(i, CheckStatus::Pass)).collect();
        checks[299].status = CheckStatus::Fail;
        checks[5].status = CheckStatus::Error;
        let s = build_status(checks, at(0), "b", "v");
        assert_eq!(s.checks.len(), MAX_CHECKS);
        assert_eq!(s.summary.pass, 298);
        assert_eq!(s.summary.fail, 1);
        assert!(s.checks.iter().any(|c| c.id == "c299"));
        assert!(s.checks.windows(2).all(|w| {
            w[0].id[1..].parse::<usize>().unwrap() < w[1].id[1..].parse::<usize>().unwrap()
        }));
        assert!(!s.compliant);
    }

    #[test]
    fn long_strings_are_cut_to_the_schema_limits_by_characters() {
        let mut c = check(0, CheckStatus::Fail);
        c.actual = "值".repeat(1000);
        c.remediation = "x".repeat(2000);
        let s = build_status(vec![c], at(0), "b", "v");
        assert_eq!(s.checks[0].actual.chars().count(), limits::ACTUAL);
        assert_eq!(s.checks[0].remediation.chars().count(), limits::REMEDIATION);
        assert!(s.checks[0].actual.ends_with('…'));
    }

    #[test]
    fn errors_make_a_node_non_compliant_but_warnings_do_not() {
        let s = |st| build_status(vec![check(0, st)], at(0), "b", "v").compliant;
        assert!(s(CheckStatus::Pass));
        assert!(s(CheckStatus::Warn));
        assert!(s(CheckStatus::NotApplicable));
        assert!(s(CheckStatus::Manual));
        assert!(!s(CheckStatus::Fail));
        assert!(!s(CheckStatus::Error));
    }

    #[test]
    fn write_rule_table() {
        let policy = WritePolicy {
            interval: Duration::from_secs(600),
        };
        let base = build_status(vec![check(0, CheckStatus::Pass)], at(1000), "b", "v");
        let same_at = |t| build_status(vec![check(0, CheckStatus::Pass)], at(t), "b", "v");
        let failed = build_status(vec![check(0, CheckStatus::Fail)], at(1100), "b", "v");
        let cases = [
            (None, same_at(1000), 1000, WriteDecision::Changed),
            (Some(&base), failed.clone(), 1100, WriteDecision::Changed),
            (Some(&base), same_at(1300), 1300, WriteDecision::Skip),
            (Some(&base), same_at(1449), 1449, WriteDecision::Skip),
            (Some(&base), same_at(1450), 1450, WriteDecision::Heartbeat),
            (Some(&base), same_at(1600), 1600, WriteDecision::Heartbeat),
            (Some(&base), same_at(500), 500, WriteDecision::Heartbeat),
        ];
        for (prev, next, now, want) in cases {
            assert_eq!(policy.decide(prev, &next, &at(now)), want, "now={now}");
        }
        assert_eq!(policy.scan_period(), Duration::from_secs(300));
    }

    #[test]
    fn a_healthy_agent_never_looks_stale() {
        // Simulate an unchanged node for many periods: the stored lastScan must always stay
        // younger than the operator's staleness threshold.
        use crate::policy::hardening::STALE_AFTER_INTERVALS;
        for interval in [60u64, 600, 3600] {
            let policy = WritePolicy {
                interval: Duration::from_secs(interval),
            };
            let period = policy.scan_period().as_secs() as i64;
            let mut stored: Option<NodeComplianceStatus> = None;
            let mut writes = 0;
            for k in 0..40 {
                let now = at(k * period);
                let next = build_status(vec![check(0, CheckStatus::Pass)], now.clone(), "b", "v");
                if let Some(prev) = &stored {
                    let age = now.0.as_second() - prev.last_scan.as_ref().unwrap().0.as_second();
                    assert!(age < (STALE_AFTER_INTERVALS as i64) * interval as i64);
                }
                if policy.decide(stored.as_ref(), &next, &now) != WriteDecision::Skip {
                    stored = Some(next);
                    writes += 1;
                }
            }
            // Half the scans of an unchanged node write nothing.
            assert_eq!(writes, 20, "interval {interval}");
        }
    }
}
