//! SSH server checks, where sshd is installed (REFERENCE.md "SSH"): no root login, no empty
//! passwords, at most 4 authentication tries, and `/etc/ssh/sshd_config` 0600 root:root.
//!
//! sshd takes the first value it reads for a keyword, follows `Include` in place, and
//! applies `Match` blocks only to matching connections; the parser mirrors that for the global
//! section.

use crate::api::node_compliance::{CheckResult, CheckSeverity, CheckStatus};

use super::check::{CheckDef, Located, PermRule, check_perms, clip};
use super::host::{HostError, HostRoot};

/// The main sshd configuration file.
pub const SSHD_CONFIG: &str = "/etc/ssh/sshd_config";

/// How deep `Include` may nest before the parser stops (sshd itself allows 16).
const MAX_INCLUDE_DEPTH: usize = 16;

/// The global settings of an sshd configuration, lowercased keyword → first value.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SshdSettings {
    values: std::collections::BTreeMap<String, String>,
}

impl SshdSettings {
    /// The effective value of a keyword (case-insensitive), if set.
    pub fn get(&self, keyword: &str) -> Option<&str> {
        self.values
            .get(&keyword.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// Parses sshd_config from the host, following `Include`.
pub fn load(host: &HostRoot) -> Result<SshdSettings, HostError> {
    let mut settings = SshdSettings::default();
    let text = host.read_to_string(SSHD_CONFIG)?;
    let mut in_match = false;
    parse_into(host, &text, &mut settings, &mut in_match, 0)?;
    Ok(settings)
}

fn parse_into(
    host: &HostRoot,
    text: &str,
    settings: &mut SshdSettings,
    in_match: &mut bool,
    depth: usize,
) -> Result<(), HostError> {
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.split_once(|c: char| c.is_whitespace() || c == '=') {
            Some((k, v)) => (
                k.to_ascii_lowercase(),
                v.trim_start_matches(['=', ' ', '\t']),
            ),
            None => (line.to_ascii_lowercase(), ""),
        };
        if key == "match" {
            *in_match = true;
        }
        if *in_match {
            continue;
        }
        if key == "include" {
            if depth >= MAX_INCLUDE_DEPTH {
                continue;
            }
            for pattern in value.split_whitespace() {
                for path in expand_include(host, pattern)? {
                    let included = host.read_to_string(&path)?;
                    parse_into(host, &included, settings, in_match, depth + 1)?;
                }
            }
            continue;
        }
        settings
            .values
            .entry(key)
            .or_insert_with(|| value.trim().to_string());
    }
    Ok(())
}

/// Expands an `Include` pattern: relative to `/etc/ssh`, with `*` globs in the file name.
fn expand_include(host: &HostRoot, pattern: &str) -> Result<Vec<String>, HostError> {
    let full = if pattern.starts_with('/') {
        pattern.to_string()
    } else {
        format!("/etc/ssh/{pattern}")
    };
    let Some((dir, file_pattern)) = full.rsplit_once('/') else {
        return Ok(Vec::new());
    };
    if !file_pattern.contains('*') {
        return Ok(if host.exists(&full) {
            vec![full]
        } else {
            Vec::new()
        });
    }
    let (prefix, suffix) = file_pattern.split_once('*').unwrap_or((file_pattern, ""));
    Ok(host
        .list_dir(dir)?
        .into_iter()
        .filter(|n| {
            n.starts_with(prefix) && n.ends_with(suffix) && n.len() >= prefix.len() + suffix.len()
        })
        .map(|n| format!("{dir}/{n}"))
        .collect())
}

fn sshd_installed(host: &HostRoot) -> bool {
    ["/usr/sbin/sshd", "/usr/bin/sshd", SSHD_CONFIG]
        .iter()
        .any(|p| host.exists(p))
}

struct SshSetting {
    id: &'static str,
    keyword: &'static str,
    benchmark_ref: &'static str,
    severity: CheckSeverity,
    expected: &'static str,
    /// sshd's built-in default.
    default: &'static str,
    ok: fn(&str) -> Result<bool, String>,
    fix: &'static str,
}

fn is_no(v: &str) -> Result<bool, String> {
    Ok(v.eq_ignore_ascii_case("no"))
}

fn at_most_4(v: &str) -> Result<bool, String> {
    v.parse::<u32>()
        .map(|n| n <= 4)
        .map_err(|_| format!("MaxAuthTries is not a number: {:?}", clip(v, 32)))
}

const SETTINGS: &[SshSetting] = &[
    SshSetting {
        id: "ssh.permit_root_login",
        keyword: "PermitRootLogin",
        benchmark_ref: "CIS Linux 5.2.10",
        severity: CheckSeverity::High,
        expected: "no",
        default: "prohibit-password",
        ok: is_no,
        fix: "PermitRootLogin no",
    },
    SshSetting {
        id: "ssh.permit_empty_passwords",
        keyword: "PermitEmptyPasswords",
        benchmark_ref: "CIS Linux 5.2.11",
        severity: CheckSeverity::High,
        expected: "no",
        default: "no",
        ok: is_no,
        fix: "PermitEmptyPasswords no",
    },
    SshSetting {
        id: "ssh.max_auth_tries",
        keyword: "MaxAuthTries",
        benchmark_ref: "CIS Linux 5.2.7",
        severity: CheckSeverity::Medium,
        expected: "<= 4",
        default: "6",
        ok: at_most_4,
        fix: "MaxAuthTries 4",
    },
];

/// Every SSH check; NOTAPPLICABLE when sshd is not installed.
pub fn check_all(host: &HostRoot) -> Vec<CheckResult> {
    let installed = sshd_installed(host);
    let parsed = if installed { Some(load(host)) } else { None };
    let mut out: Vec<CheckResult> = SETTINGS
        .iter()
        .map(|s| {
            let def = CheckDef::new(
                s.id,
                format!("sshd {} is {}", s.keyword, s.expected),
                s.benchmark_ref,
                s.severity,
                format!(
                    "Set `{}` at the top of /etc/ssh/sshd_config (before any Include or Match), \
                     then `systemctl reload ssh`.",
                    s.fix
                ),
            );
            match &parsed {
                None => def.result(CheckStatus::NotApplicable, s.expected, "sshd not installed"),
                Some(Err(e)) if e.is_not_found() => def.result(
                    CheckStatus::Warn,
                    s.expected,
                    format!("sshd installed but {e}"),
                ),
                Some(Err(e)) => def.error(s.expected, e),
                Some(Ok(settings)) => {
                    let (value, shown) = match settings.get(s.keyword) {
                        Some(v) => (v, v.to_string()),
                        None => (s.default, format!("unset (sshd default {})", s.default)),
                    };
                    match (s.ok)(value) {
                        Ok(ok) => def.judge(ok, s.expected, shown),
                        Err(why) => def.error(s.expected, why),
                    }
                }
            }
        })
        .collect();
    let perm_def = CheckDef::new(
        "ssh.config_perms",
        "/etc/ssh/sshd_config is 0600 root:root",
        "CIS Linux 5.2.1",
        CheckSeverity::Medium,
        "chown root:root /etc/ssh/sshd_config && chmod 0600 /etc/ssh/sshd_config",
    );
    let rule = PermRule::root_owned(0o600);
    out.push(if installed {
        check_perms(
            &perm_def,
            host,
            &Located::find(host, &[SSHD_CONFIG.to_string()]),
            SSHD_CONFIG,
            &rule,
            CheckStatus::Warn,
        )
    } else {
        perm_def.result(
            CheckStatus::NotApplicable,
            rule.expected(),
            "sshd not installed",
        )
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_with(files: &[(&str, &str)]) -> (tempfile::TempDir, HostRoot) {
        let dir = tempfile::tempdir().unwrap();
        for (p, c) in files {
            let path = dir.path().join(p.trim_start_matches('/'));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, c).unwrap();
        }
        let host = HostRoot::new(dir.path());
        (dir, host)
    }

    #[test]
    fn first_value_wins_includes_in_place_and_match_ends_globals() {
        let (_d, host) = host_with(&[
            (
                "/etc/ssh/sshd_config",
                "Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin yes\nMaxAuthTries=3\n\
                 Match User backup\n  PermitEmptyPasswords yes\n",
            ),
            (
                "/etc/ssh/sshd_config.d/10-medplat.conf",
                "permitrootlogin no\n",
            ),
            ("/etc/ssh/sshd_config.d/ignored.txt", "MaxAuthTries 9\n"),
        ]);
        let s = load(&host).unwrap();
        assert_eq!(s.get("PermitRootLogin"), Some("no"));
        assert_eq!(s.get("maxauthtries"), Some("3"));
        assert_eq!(s.get("PermitEmptyPasswords"), None);
    }

    #[test]
    fn include_cycles_terminate() {
        let (_d, host) = host_with(&[("/etc/ssh/sshd_config", "Include sshd_config\n")]);
        assert!(load(&host).is_ok());
    }
}
