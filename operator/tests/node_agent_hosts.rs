//! The node agent against the fixture host trees: every check, on a hardened host, a default
//! Ubuntu host and a broken one (missing files, unreadable files, garbage in `/proc/sys`).
//!
//! Fixture trees live in `tests/fixtures/hosts/<name>/`; their modes and owners are applied at
//! test time from `<name>.modes` (see `support::fixture_host`). "Unreadable" files are
//! directories where a file belongs, which stays unreadable even for root (who ignores modes).

mod support;

use std::collections::BTreeMap;

use medplat::api::node_compliance::CheckStatus;
use medplat::node_agent::status::build_status;
use medplat::node_agent::{ScanConfig, scan};

const P: CheckStatus = CheckStatus::Pass;
const F: CheckStatus = CheckStatus::Fail;
const W: CheckStatus = CheckStatus::Warn;
const E: CheckStatus = CheckStatus::Error;
const N: CheckStatus = CheckStatus::NotApplicable;

/// Every check of the baseline and its expected result on (hardened, ubuntu-default, broken).
const EXPECTED: &[(&str, CheckStatus, CheckStatus, CheckStatus)] = &[
    ("sysctl.kernel.randomize_va_space", P, P, E),
    ("sysctl.kernel.yama.ptrace_scope", P, P, E),
    ("sysctl.fs.suid_dumpable", P, F, E),
    ("sysctl.kernel.dmesg_restrict", P, P, E),
    ("sysctl.kernel.kptr_restrict", P, P, E),
    ("sysctl.kernel.unprivileged_bpf_disabled", P, P, E),
    ("sysctl.net.core.bpf_jit_harden", P, F, E),
    ("sysctl.net.ipv4.conf.all.send_redirects", P, F, P),
    ("sysctl.net.ipv4.conf.default.send_redirects", P, F, F),
    ("sysctl.net.ipv4.conf.all.accept_redirects", P, F, E),
    ("sysctl.net.ipv4.conf.default.accept_redirects", P, F, E),
    ("sysctl.net.ipv4.conf.all.secure_redirects", P, F, P),
    ("sysctl.net.ipv4.conf.default.secure_redirects", P, F, E),
    ("sysctl.net.ipv4.conf.all.accept_source_route", P, P, F),
    ("sysctl.net.ipv4.conf.default.accept_source_route", P, F, F),
    ("sysctl.net.ipv4.conf.all.log_martians", P, F, P),
    ("sysctl.net.ipv4.conf.default.log_martians", P, F, E),
    ("sysctl.net.ipv4.icmp_echo_ignore_broadcasts", P, P, E),
    ("sysctl.net.ipv4.icmp_ignore_bogus_error_responses", P, P, F),
    ("sysctl.net.ipv4.tcp_syncookies", P, P, F),
    ("sysctl.net.ipv6.conf.all.accept_ra", P, F, N),
    ("sysctl.net.ipv6.conf.default.accept_ra", P, F, N),
    ("sysctl.net.ipv6.conf.all.accept_redirects", P, F, N),
    ("sysctl.net.ipv6.conf.default.accept_redirects", P, F, N),
    ("sysctl.net.ipv4.ip_forward", P, P, W),
    ("sysctl.net.ipv4.conf.all.rp_filter", P, P, N),
    ("sysctl.net.ipv4.conf.default.rp_filter", P, P, E),
    ("sysctl.vm.overcommit_memory", P, P, F),
    ("sysctl.vm.panic_on_oom", P, P, F),
    ("sysctl.kernel.panic", P, P, F),
    ("sysctl.kernel.panic_on_oops", P, P, E),
    ("kmod.cramfs", P, F, E),
    ("kmod.freevxfs", P, F, E),
    ("kmod.hfs", P, F, E),
    ("kmod.hfsplus", P, F, E),
    ("kmod.jffs2", P, F, E),
    ("kmod.squashfs", P, F, E),
    ("kmod.udf", P, F, E),
    ("kmod.usb-storage", P, F, E),
    ("kmod.dccp", P, F, E),
    ("kmod.sctp", P, F, E),
    ("kmod.rds", P, F, E),
    ("kmod.tipc", P, F, E),
    ("boot.audit", P, F, F),
    ("lsm.enforcing", P, P, E),
    ("mount.tmp", P, F, E),
    ("mount.dev_shm", P, F, E),
    ("mount.var_tmp", P, F, E),
    ("auditd.enabled", P, F, F),
    ("auditd.rules.identity", P, F, E),
    ("auditd.rules.time", P, F, E),
    ("auditd.rules.modules", P, F, E),
    ("auditd.rules.privileged", P, F, E),
    ("auditd.rules.perm_mod", P, F, E),
    ("auditd.log_perms", P, W, W),
    ("ssh.permit_root_login", P, F, W),
    ("ssh.permit_empty_passwords", P, P, W),
    ("ssh.max_auth_tries", P, F, W),
    ("ssh.config_perms", P, F, W),
    ("file.etc_passwd", P, P, F),
    ("file.etc_group", P, P, E),
    ("file.etc_shadow", P, P, F),
    ("file.etc_gshadow", P, P, E),
    ("kubelet.config_perms", P, F, W),
    ("kubelet.kubeconfig_perms", P, P, W),
    ("kubelet.client_ca_perms", P, F, W),
    ("kubelet.anonymous_auth", P, P, E),
    ("kubelet.authorization_mode", P, P, E),
    ("kubelet.read_only_port", P, P, E),
    ("kubelet.rotate_certificates", P, P, E),
    ("kubelet.seccomp_default", P, F, E),
];

const HOSTS: [&str; 3] = ["hardened", "ubuntu-default", "broken"];

fn expected_for(host_index: usize) -> BTreeMap<&'static str, CheckStatus> {
    EXPECTED
        .iter()
        .map(|(id, h, u, b)| (*id, [*h, *u, *b][host_index]))
        .collect()
}

/// Checks whose result depends on file owners, which only root can set on the fixture copy.
fn owner_dependent(id: &str) -> bool {
    id.starts_with("file.") || id.ends_with("_perms")
}

#[test]
fn every_check_matches_the_table_on_every_fixture_host() {
    let mut mismatches = Vec::new();
    for (i, host) in HOSTS.iter().enumerate() {
        let fixture = support::fixture_host(host);
        let cfg = ScanConfig {
            root: fixture.root().to_path_buf(),
            ..ScanConfig::default()
        };
        let results = scan(&cfg);
        let expected = expected_for(i);
        let got: BTreeMap<&str, CheckStatus> =
            results.iter().map(|c| (c.id.as_str(), c.status)).collect();
        assert_eq!(got.len(), results.len(), "{host}: duplicate check ids");
        for (id, want) in &expected {
            match got.get(id) {
                None => mismatches.push(format!("{host} {id}: not reported")),
                Some(have) if have == want => {}
                Some(CheckStatus::Fail) if !fixture.owners_applied && owner_dependent(id) => {}
                Some(have) => {
                    let c = results
                        .iter()
                        .find(|c| c.id == *id)
                        .map(|c| c.actual.clone());
                    mismatches.push(format!("{host} {id}: want {want:?}, got {have:?} ({c:?})"))
                }
            }
        }
        for id in got.keys().filter(|id| !expected.contains_key(*id)) {
            mismatches.push(format!("{host} {id}: reported but not in the test table"));
        }
    }
    assert!(mismatches.is_empty(), "\n{}", mismatches.join("\n"));
}

#[test]
fn every_check_is_exercised_by_a_non_pass_case() {
    // A check that passes on every fixture would have no test that can fail through the tree.
    for (id, h, u, b) in EXPECTED {
        assert!(
            [h, u, b].iter().any(|s| **s != CheckStatus::Pass),
            "{id} passes on every fixture host"
        );
        assert_eq!(*h, CheckStatus::Pass, "{id} must pass on the hardened host");
    }
}

#[test]
fn only_the_hardened_host_is_compliant() {
    for (host, compliant) in [
        ("hardened", true),
        ("ubuntu-default", false),
        ("broken", false),
    ] {
        let fixture = support::fixture_host(host);
        if !fixture.owners_applied && host == "hardened" {
            continue;
        }
        let cfg = ScanConfig {
            root: fixture.root().to_path_buf(),
            ..ScanConfig::default()
        };
        let status = build_status(
            scan(&cfg),
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
            "medplat-node-v1",
            "test",
        );
        assert_eq!(status.compliant, compliant, "{host}: {:?}", status.summary);
        let total = status.summary.pass
            + status.summary.fail
            + status.summary.warn
            + status.summary.manual
            + status.summary.not_applicable
            + status.summary.error;
        assert_eq!(total as usize, EXPECTED.len());
    }
}

#[test]
fn the_module_list_is_configurable() {
    let fixture = support::fixture_host("hardened");
    let cfg = ScanConfig {
        root: fixture.root().to_path_buf(),
        disabled_kernel_modules: vec!["br-netfilter".into(), "cramfs".into()],
        ..ScanConfig::default()
    };
    let results = scan(&cfg);
    let modules: Vec<_> = results
        .iter()
        .filter(|c| c.id.starts_with("kmod."))
        .map(|c| (c.id.as_str(), c.status))
        .collect();
    assert_eq!(modules, vec![("kmod.br-netfilter", F), ("kmod.cramfs", P)]);
}

#[test]
fn a_missing_root_gives_errors_not_a_panic() {
    let cfg = ScanConfig {
        root: "/nonexistent/medplat-host-root".into(),
        ..ScanConfig::default()
    };
    let results = scan(&cfg);
    assert_eq!(results.len(), EXPECTED.len());
    assert!(
        results.iter().all(|c| c.status != CheckStatus::Pass),
        "nothing can pass without a host"
    );
}

#[test]
fn cli_once_prints_the_status_as_json_without_an_api_server() {
    let fixture = support::fixture_host("ubuntu-default");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_medplat"))
        .args(["node-agent", "--once", "--output", "json", "--root"])
        .arg(fixture.root())
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: medplat::api::NodeComplianceStatus = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status.baseline, "medplat-node-v1");
    assert!(!status.compliant);
    assert_eq!(status.checks.len(), EXPECTED.len());
    assert!(status.last_scan.is_some());
}

#[test]
fn cli_rejects_a_bad_interval_and_a_missing_node_name() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_medplat"))
            .args(args)
            .env_remove("NODE_NAME")
            .output()
            .unwrap()
    };
    let out = run(&["node-agent", "--once", "--interval", "soon"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--interval"));
    let out = run(&["node-agent", "--root", "/nonexistent"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--node-name"));
}
