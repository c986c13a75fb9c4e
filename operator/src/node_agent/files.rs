//! Permissions of the account databases (REFERENCE.md "Files"): `/etc/passwd` and `/etc/group`
//! 0644, `/etc/shadow` and `/etc/gshadow` 0640 or stricter, all owned by root.

use crate::api::node_compliance::{CheckResult, CheckSeverity, CheckStatus};

use super::check::{CheckDef, Located, PermRule, check_perms};
use super::host::HostRoot;

/// The gid of a group by name, from the host's `/etc/group`.
pub fn group_gid(host: &HostRoot, name: &str) -> Option<u32> {
    let text = host.read_to_string("/etc/group").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then_some(())?;
        f.nth(1)?.trim().parse().ok()
    })
}

/// The account database files and how strict they must be.
struct AccountFile {
    path: &'static str,
    id: &'static str,
    max_mode: u32,
    shadow_group_allowed: bool,
    benchmark_ref: &'static str,
    severity: CheckSeverity,
}

const ACCOUNT_FILES: &[AccountFile] = &[
    AccountFile {
        path: "/etc/passwd",
        id: "file.etc_passwd",
        max_mode: 0o644,
        shadow_group_allowed: false,
        benchmark_ref: "CIS Linux 6.1.2",
        severity: CheckSeverity::Medium,
    },
    AccountFile {
        path: "/etc/group",
        id: "file.etc_group",
        max_mode: 0o644,
        shadow_group_allowed: false,
        benchmark_ref: "CIS Linux 6.1.4",
        severity: CheckSeverity::Medium,
    },
    AccountFile {
        path: "/etc/shadow",
        id: "file.etc_shadow",
        max_mode: 0o640,
        shadow_group_allowed: true,
        benchmark_ref: "CIS Linux 6.1.3",
        severity: CheckSeverity::High,
    },
    AccountFile {
        path: "/etc/gshadow",
        id: "file.etc_gshadow",
        max_mode: 0o640,
        shadow_group_allowed: true,
        benchmark_ref: "CIS Linux 6.1.5",
        severity: CheckSeverity::High,
    },
];

/// Every account-file check. A missing account file is an ERROR: every Linux host has them, so
/// absence means the root is wrong or the host is broken.
pub fn check_all(host: &HostRoot) -> Vec<CheckResult> {
    let shadow_gid = group_gid(host, "shadow");
    ACCOUNT_FILES
        .iter()
        .map(|f| {
            let mut rule = PermRule::root_owned(f.max_mode);
            if f.shadow_group_allowed {
                if let Some(gid) = shadow_gid {
                    rule.gids.push(gid);
                }
                rule.owner_text = "root:root or root:shadow".into();
            }
            let def = CheckDef::new(
                f.id,
                format!(
                    "{} is {:04o} or stricter and owned by root",
                    f.path, f.max_mode
                ),
                f.benchmark_ref,
                f.severity,
                format!(
                    "chown root:{} {p} && chmod {:04o} {p}",
                    if f.shadow_group_allowed {
                        "shadow"
                    } else {
                        "root"
                    },
                    f.max_mode,
                    p = f.path
                ),
            );
            check_perms(
                &def,
                host,
                &Located::find(host, &[f.path.to_string()]),
                f.path,
                &rule,
                CheckStatus::Error,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_lookup_reads_the_hosts_group_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nadm:x:4:syslog\nshadow:x:42:\nbroken\n",
        )
        .unwrap();
        let host = HostRoot::new(dir.path());
        assert_eq!(group_gid(&host, "shadow"), Some(42));
        assert_eq!(group_gid(&host, "adm"), Some(4));
        assert_eq!(group_gid(&host, "nope"), None);
    }
}
