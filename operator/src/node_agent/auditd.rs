//! auditd checks (REFERENCE.md "auditd"): the service is enabled, its rules watch identity
//! files, time changes, module loading, privileged commands and permission changes, and its
//! log is 0640 or stricter.

use crate::api::node_compliance::{CheckResult, CheckSeverity, CheckStatus};

use super::check::{CheckDef, Located, PermRule, check_perms};
use super::host::{HostError, HostRoot};

/// Where systemd records that auditd starts at boot.
const ENABLED_LINKS: &[&str] = &[
    "/etc/systemd/system/multi-user.target.wants/auditd.service",
    "/etc/systemd/system/sysinit.target.wants/auditd.service",
];

/// Where the unit file lives when auditd is installed.
const UNIT_FILES: &[&str] = &[
    "/lib/systemd/system/auditd.service",
    "/usr/lib/systemd/system/auditd.service",
];

/// The audit log's default path.
pub const AUDIT_LOG: &str = "/var/log/audit/audit.log";

/// auditd is enabled at boot.
pub fn check_enabled(host: &HostRoot) -> CheckResult {
    let def = CheckDef::new(
        "auditd.enabled",
        "auditd is installed and enabled",
        "CIS Linux 4.1.1.1-2",
        CheckSeverity::High,
        "apt-get install auditd audispd-plugins && systemctl enable --now auditd",
    );
    let expected = "auditd.service enabled";
    if ENABLED_LINKS.iter().any(|p| host.exists(p)) {
        def.judge(true, expected, "enabled")
    } else if UNIT_FILES.iter().any(|p| host.exists(p)) {
        def.judge(false, expected, "installed, not enabled")
    } else {
        def.judge(false, expected, "not installed")
    }
}

/// The audit rules in force at boot: `/etc/audit/rules.d/*.rules`, or `audit.rules` that
/// augenrules compiles from them.
pub fn load_rules(host: &HostRoot) -> Result<Vec<String>, HostError> {
    let mut lines = Vec::new();
    for name in host.list_dir("/etc/audit/rules.d")? {
        if name.ends_with(".rules") {
            lines.extend(rule_lines(
                &host.read_to_string(&format!("/etc/audit/rules.d/{name}"))?,
            ));
        }
    }
    if let Some(compiled) = host.read_optional("/etc/audit/audit.rules")? {
        lines.extend(rule_lines(&compiled));
    }
    Ok(lines)
}

fn rule_lines(text: &str) -> impl Iterator<Item = String> + '_ {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
}

/// One audit rule requirement: each group must be matched by at least one rule line.
pub struct RuleRequirement {
    /// Check id suffix.
    pub id: &'static str,
    /// What is audited.
    pub what: &'static str,
    /// CIS item.
    pub benchmark_ref: &'static str,
    /// Each inner list is one need; a rule line satisfies a need when it contains any of the
    /// tokens. Every need must be satisfied.
    pub needs: &'static [&'static [&'static str]],
    /// A sample rule for the remediation.
    pub sample: &'static str,
}

/// The rule requirements of the baseline.
pub const RULE_REQUIREMENTS: &[RuleRequirement] = &[
    RuleRequirement {
        id: "identity",
        what: "changes to identity files",
        benchmark_ref: "CIS Linux 4.1.3.8",
        needs: &[
            &["-w /etc/passwd"],
            &["-w /etc/group"],
            &["-w /etc/shadow"],
            &["-w /etc/gshadow"],
        ],
        sample: "-w /etc/passwd -p wa -k identity",
    },
    RuleRequirement {
        id: "time",
        what: "changes to the system time",
        benchmark_ref: "CIS Linux 4.1.3.4",
        needs: &[&["adjtimex", "settimeofday", "clock_settime"]],
        sample: "-a always,exit -F arch=b64 -S adjtimex,settimeofday,clock_settime -k time-change",
    },
    RuleRequirement {
        id: "modules",
        what: "kernel module loading and unloading",
        benchmark_ref: "CIS Linux 4.1.3.19",
        needs: &[&["init_module", "finit_module"], &["delete_module"]],
        sample: "-a always,exit -F arch=b64 -S init_module,finit_module,delete_module -k kernel_modules",
    },
    RuleRequirement {
        id: "privileged",
        what: "use of privileged commands",
        benchmark_ref: "CIS Linux 4.1.3.6",
        needs: &[&["perm=x", "-p x"]],
        sample: "-a always,exit -F path=/usr/bin/sudo -F perm=x -F auid>=1000 -F auid!=unset -k privileged",
    },
    RuleRequirement {
        id: "perm_mod",
        what: "permission and ownership changes",
        benchmark_ref: "CIS Linux 4.1.3.9",
        needs: &[&["chmod"], &["chown"]],
        sample: "-a always,exit -F arch=b64 -S chmod,fchmod,fchmodat,chown,fchown,lchown,fchownat -k perm_mod",
    },
];

/// Which needs of `req` no rule line satisfies.
pub fn unmet_needs<'a>(req: &'a RuleRequirement, lines: &[String]) -> Vec<&'a [&'a str]> {
    req.needs
        .iter()
        .copied()
        .filter(|need| {
            !lines
                .iter()
                .any(|l| need.iter().any(|token| contains_token(l, token)))
        })
        .collect()
}

/// Whether `token` occurs in `line` as a whole word (so `-w /etc/group` does not match
/// `-w /etc/groups`, and `chmod` matches `-S chmod,fchmod`).
fn contains_token(line: &str, token: &str) -> bool {
    let mut start = 0;
    while let Some(pos) = line[start..].find(token) {
        let begin = start + pos;
        let end = begin + token.len();
        let before_ok = begin == 0
            || !line[..begin]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '/');
        let after_ok = !line[end..]
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '/');
        if before_ok && after_ok {
            return true;
        }
        start = end;
    }
    false
}

/// Checks every rule requirement.
pub fn check_rules(host: &HostRoot) -> Vec<CheckResult> {
    let lines = load_rules(host);
    RULE_REQUIREMENTS
        .iter()
        .map(|req| {
            let def = CheckDef::new(
                format!("auditd.rules.{}", req.id),
                format!("audit rules record {}", req.what),
                req.benchmark_ref,
                CheckSeverity::Medium,
                format!(
                    "Add to /etc/audit/rules.d/50-medplat.rules e.g. `{}`, then `augenrules --load`.",
                    req.sample
                ),
            );
            let expected = req
                .needs
                .iter()
                .map(|n| n.join(" or "))
                .collect::<Vec<_>>()
                .join("; ");
            match &lines {
                Err(e) => def.error(expected, e),
                Ok(lines) if lines.is_empty() => def.judge(false, expected, "no audit rules found"),
                Ok(lines) => {
                    let unmet = unmet_needs(req, lines);
                    let actual = if unmet.is_empty() {
                        format!("present in {} rules", lines.len())
                    } else {
                        format!(
                            "missing: {}",
                            unmet.iter().map(|n| n.join(" or ")).collect::<Vec<_>>().join("; ")
                        )
                    };
                    def.judge(unmet.is_empty(), expected, actual)
                }
            }
        })
        .collect()
}

/// The audit log's path: `log_file` in auditd.conf, else the default.
fn configured_log_path(host: &HostRoot) -> Option<String> {
    let conf = host.read_optional("/etc/audit/auditd.conf").ok()??;
    conf.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == "log_file").then(|| v.trim().to_string())
    })
}

/// The audit log is 0640 or stricter and owned by root.
pub fn check_log_perms(host: &HostRoot) -> CheckResult {
    let def = CheckDef::new(
        "auditd.log_perms",
        "the audit log is mode 0640 or stricter",
        "CIS Linux 4.1.4.1",
        CheckSeverity::Medium,
        "chmod 0640 /var/log/audit/audit.log; set log_group = root in /etc/audit/auditd.conf.",
    );
    let mut candidates = vec![AUDIT_LOG.to_string()];
    if let Some(p) = configured_log_path(host).filter(|p| p != AUDIT_LOG) {
        candidates.push(p);
    }
    let rule = PermRule {
        gids: vec![0, adm_gid(host).unwrap_or(0)],
        owner_text: "root:root or root:adm".into(),
        ..PermRule::root_owned(0o640)
    };
    // No log usually means auditd is not running; `auditd.enabled` already fails for that.
    check_perms(
        &def,
        host,
        &Located::find(host, &candidates),
        AUDIT_LOG,
        &rule,
        CheckStatus::Warn,
    )
}

/// The gid of the `adm` group, which Debian and Ubuntu use for log readers.
fn adm_gid(host: &HostRoot) -> Option<u32> {
    super::files::group_gid(host, "adm")
}

/// Every auditd check.
pub fn check_all(host: &HostRoot) -> Vec<CheckResult> {
    let mut out = vec![check_enabled(host)];
    out.extend(check_rules(host));
    out.push(check_log_perms(host));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_whole_words_only() {
        assert!(contains_token(
            "-a always,exit -S chmod,fchmod -k x",
            "chmod"
        ));
        assert!(!contains_token("-a always,exit -S fchmod -k x", "chmod"));
        assert!(contains_token("-w /etc/group -p wa", "-w /etc/group"));
        assert!(!contains_token("-w /etc/groups -p wa", "-w /etc/group"));
        assert!(contains_token("-w /usr/bin/sudo -p x -k priv", "-p x"));
        assert!(!contains_token("-w /etc/x -p xa", "-p x"));
    }

    #[test]
    fn each_requirement_detects_its_own_absence() {
        let full: Vec<String> = RULE_REQUIREMENTS
            .iter()
            .flat_map(|r| r.needs.iter().map(|n| n[0].to_string()))
            .collect();
        for req in RULE_REQUIREMENTS {
            assert!(unmet_needs(req, &full).is_empty(), "{}", req.id);
            let without: Vec<String> = full
                .iter()
                .filter(|l| !req.needs.iter().any(|n| n.contains(&l.as_str())))
                .cloned()
                .collect();
            assert!(!unmet_needs(req, &without).is_empty(), "{}", req.id);
        }
    }
}
