//! The shape of one check and the helpers every check family shares: building a
//! [`CheckResult`], and judging a file's owner and permission bits.

use crate::api::node_compliance::{CheckResult, CheckSeverity, CheckStatus};

use super::host::{HostError, HostRoot};

/// What a check is, independent of what it found.
#[derive(Clone, Debug)]
pub struct CheckDef {
    /// Stable id, e.g. `sysctl.kernel.randomize_va_space`.
    pub id: String,
    /// What it verifies.
    pub title: String,
    /// The benchmark item it comes from.
    pub benchmark_ref: String,
    /// How bad a failure is.
    pub severity: CheckSeverity,
    /// How to fix a failure.
    pub remediation: String,
}

impl CheckDef {
    /// A check definition.
    pub fn new(
        id: impl Into<String>,
        title: impl Into<String>,
        benchmark_ref: impl Into<String>,
        severity: CheckSeverity,
        remediation: impl Into<String>,
    ) -> Self {
        CheckDef {
            id: id.into(),
            title: title.into(),
            benchmark_ref: benchmark_ref.into(),
            severity,
            remediation: remediation.into(),
        }
    }

    /// The result of running this check.
    pub fn result(
        &self,
        status: CheckStatus,
        expected: impl Into<String>,
        actual: impl Into<String>,
    ) -> CheckResult {
        CheckResult {
            id: self.id.clone(),
            title: self.title.clone(),
            benchmark_ref: self.benchmark_ref.clone(),
            severity: self.severity,
            status,
            expected: expected.into(),
            actual: actual.into(),
            remediation: self.remediation.clone(),
        }
    }

    /// PASS when `ok`, FAIL otherwise.
    pub fn judge(
        &self,
        ok: bool,
        expected: impl Into<String>,
        actual: impl Into<String>,
    ) -> CheckResult {
        let status = if ok {
            CheckStatus::Pass
        } else {
            CheckStatus::Fail
        };
        self.result(status, expected, actual)
    }

    /// ERROR: the input could not be read or understood.
    pub fn error(&self, expected: impl Into<String>, why: impl std::fmt::Display) -> CheckResult {
        self.result(CheckStatus::Error, expected, why.to_string())
    }
}

/// The owner and permission bits a file must have.
#[derive(Clone, Debug)]
pub struct PermRule {
    /// Bits that must NOT be set, e.g. `0o177` for "0600 or stricter".
    pub forbidden_bits: u32,
    /// The loosest mode allowed, for messages (`0600`).
    pub max_mode: u32,
    /// Allowed owner uid.
    pub uid: u32,
    /// Allowed group ids.
    pub gids: Vec<u32>,
    /// The expected owner as a person reads it (`root:root`).
    pub owner_text: String,
}

impl PermRule {
    /// "`max_mode` or stricter, owned by root:root".
    pub fn root_owned(max_mode: u32) -> Self {
        PermRule {
            forbidden_bits: !max_mode & 0o7777,
            max_mode,
            uid: 0,
            gids: vec![0],
            owner_text: "root:root".into(),
        }
    }

    /// The expected value as text.
    pub fn expected(&self) -> String {
        format!("{:04o} or stricter, {}", self.max_mode, self.owner_text)
    }
}

/// Where a file was found, when a check accepts more than one path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Located {
    /// At the expected path.
    Expected(String),
    /// Not at the expected path, but at this other known path.
    Elsewhere(String),
    /// Nowhere.
    Missing,
}

impl Located {
    /// The first of `candidates` that exists; the first candidate is the expected path.
    pub fn find(host: &HostRoot, candidates: &[String]) -> Located {
        for (i, c) in candidates.iter().enumerate() {
            if host.exists(c) {
                return if i == 0 {
                    Located::Expected(c.clone())
                } else {
                    Located::Elsewhere(c.clone())
                };
            }
        }
        Located::Missing
    }

    /// The path found, if any.
    pub fn path(&self) -> Option<&str> {
        match self {
            Located::Expected(p) | Located::Elsewhere(p) => Some(p),
            Located::Missing => None,
        }
    }
}

/// Judges a file's owner and mode against `rule`.
///
/// A missing file gives `missing_status` (WARN for files that may live elsewhere, ERROR for
/// files every Linux host has). A file found only at another known path is judged there, and a
/// pass becomes WARN: the host is fine, but its layout differs from the benchmark's, which a
/// person should confirm (REFERENCE.md: "false failures when a file sits at another path").
pub fn check_perms(
    def: &CheckDef,
    host: &HostRoot,
    located: &Located,
    expected_path: &str,
    rule: &PermRule,
    missing_status: CheckStatus,
) -> CheckResult {
    let expected = format!("{expected_path}: {}", rule.expected());
    let Some(path) = located.path() else {
        return def.result(
            missing_status,
            expected,
            format!("{expected_path} not found"),
        );
    };
    let meta = match host.metadata(path) {
        Ok(m) => m,
        Err(e @ HostError::NotFound { .. }) => {
            return def.result(missing_status, expected, e.to_string());
        }
        Err(e) => return def.error(expected, e),
    };
    if !meta.is_file {
        return def.error(expected, format!("{path} is not a regular file"));
    }
    let ok = meta.mode & rule.forbidden_bits == 0
        && meta.uid == rule.uid
        && rule.gids.contains(&meta.gid);
    let actual = format!(
        "{path}: {:04o} uid={} gid={}",
        meta.mode, meta.uid, meta.gid
    );
    match (ok, located) {
        (true, Located::Elsewhere(_)) => def.result(
            CheckStatus::Warn,
            expected,
            format!("{actual} (not at the expected path)"),
        ),
        _ => def.judge(ok, expected, actual),
    }
}

/// Clips a value read from the host for the `actual` field of a message.
pub fn clip(s: &str, max_chars: usize) -> String {
    let s = s.trim();
    if s.chars().count() <= max_chars {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max_chars).collect();
        out.push('…');
        out
    }
}
