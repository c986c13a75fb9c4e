//! Kernel sysctl checks (REFERENCE.md "Kernel sysctls"), read from the host's `/proc/sys`, with
//! the Kubernetes exemptions built in.
//!
//! The network sysctls under `/proc/sys/net` belong to the network namespace of the reader, so
//! the agent's pod runs with `hostNetwork: true` to see the host's values.

use crate::api::node_compliance::{CheckResult, CheckSeverity, CheckStatus};

use super::check::{CheckDef, clip};
use super::host::HostRoot;

/// What a sysctl must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Exactly this value.
    Equal(i64),
    /// At least this value.
    AtLeast(i64),
    /// Kubernetes needs `net.ipv4.ip_forward=1` although CIS asks for 0: 1 passes, 0 warns
    /// (pod networking breaks, but it is no security weakness).
    KubernetesForwarding,
    /// `rp_filter` may be owned by the CNI (Cilium, Calico eBPF set it to 0 on purpose): 1 or 2
    /// passes, anything else is NOTAPPLICABLE with the value reported.
    CniOwnedReversePath,
}

impl Expect {
    fn text(self) -> String {
        match self {
            Expect::Equal(v) => v.to_string(),
            Expect::AtLeast(v) => format!(">= {v}"),
            Expect::KubernetesForwarding => "1 (Kubernetes node; CIS's 0 is exempt)".into(),
            Expect::CniOwnedReversePath => "1 or 2, unless the CNI owns it".into(),
        }
    }

    fn status(self, value: i64) -> CheckStatus {
        let pass = |ok: bool| {
            if ok {
                CheckStatus::Pass
            } else {
                CheckStatus::Fail
            }
        };
        match self {
            Expect::Equal(v) => pass(value == v),
            Expect::AtLeast(v) => pass(value >= v),
            Expect::KubernetesForwarding if value == 1 => CheckStatus::Pass,
            Expect::KubernetesForwarding => CheckStatus::Warn,
            Expect::CniOwnedReversePath if value == 1 || value == 2 => CheckStatus::Pass,
            Expect::CniOwnedReversePath => CheckStatus::NotApplicable,
        }
    }
}

/// One sysctl rule.
#[derive(Clone, Copy, Debug)]
pub struct SysctlRule {
    /// The sysctl, e.g. `kernel.randomize_va_space`.
    pub key: &'static str,
    /// Its expected value.
    pub expect: Expect,
    /// The benchmark item.
    pub benchmark_ref: &'static str,
    /// How bad a failure is.
    pub severity: CheckSeverity,
    /// What it protects against, for the title.
    pub why: &'static str,
}

const fn rule(
    key: &'static str,
    expect: Expect,
    benchmark_ref: &'static str,
    severity: CheckSeverity,
    why: &'static str,
) -> SysctlRule {
    SysctlRule {
        key,
        expect,
        benchmark_ref,
        severity,
        why,
    }
}

use CheckSeverity::{High, Low, Medium};
use Expect::{AtLeast, CniOwnedReversePath, Equal, KubernetesForwarding};

/// The medplat-node-v1 sysctl baseline, in report order.
#[rustfmt::skip]
pub const RULES: &[SysctlRule] = &[
    rule("kernel.randomize_va_space", Equal(2), "CIS Linux 1.5.3", High, "full address-space layout randomisation"),
    rule("kernel.yama.ptrace_scope", AtLeast(1), "CIS Linux 1.5.2", Medium, "processes cannot ptrace unrelated processes"),
    rule("fs.suid_dumpable", Equal(0), "CIS Linux 1.5.4", Medium, "setuid programs do not dump core"),
    rule("kernel.dmesg_restrict", Equal(1), "KSPP", Low, "only privileged users read the kernel log"),
    rule("kernel.kptr_restrict", AtLeast(1), "KSPP", Medium, "kernel pointers are hidden"),
    rule("kernel.unprivileged_bpf_disabled", AtLeast(1), "KSPP", High, "unprivileged users cannot load BPF"),
    rule("net.core.bpf_jit_harden", Equal(2), "KSPP", Medium, "the BPF JIT is hardened"),
    rule("net.ipv4.conf.all.send_redirects", Equal(0), "CIS Linux 3.2.1", Medium, "no ICMP redirects are sent"),
    rule("net.ipv4.conf.default.send_redirects", Equal(0), "CIS Linux 3.2.1", Medium, "no ICMP redirects are sent"),
    rule("net.ipv4.conf.all.accept_redirects", Equal(0), "CIS Linux 3.3.2", Medium, "ICMP redirects are ignored"),
    rule("net.ipv4.conf.default.accept_redirects", Equal(0), "CIS Linux 3.3.2", Medium, "ICMP redirects are ignored"),
    rule("net.ipv4.conf.all.secure_redirects", Equal(0), "CIS Linux 3.3.3", Medium, "gateway ICMP redirects are ignored"),
    rule("net.ipv4.conf.default.secure_redirects", Equal(0), "CIS Linux 3.3.3", Medium, "gateway ICMP redirects are ignored"),
    rule("net.ipv4.conf.all.accept_source_route", Equal(0), "CIS Linux 3.3.1", Medium, "source-routed packets are refused"),
    rule("net.ipv4.conf.default.accept_source_route", Equal(0), "CIS Linux 3.3.1", Medium, "source-routed packets are refused"),
    rule("net.ipv4.conf.all.log_martians", Equal(1), "CIS Linux 3.3.4", Low, "impossible source addresses are logged"),
    rule("net.ipv4.conf.default.log_martians", Equal(1), "CIS Linux 3.3.4", Low, "impossible source addresses are logged"),
    rule("net.ipv4.icmp_echo_ignore_broadcasts", Equal(1), "CIS Linux 3.3.5", Low, "broadcast pings are ignored"),
    rule("net.ipv4.icmp_ignore_bogus_error_responses", Equal(1), "CIS Linux 3.3.6", Low, "bogus ICMP errors are ignored"),
    rule("net.ipv4.tcp_syncookies", Equal(1), "CIS Linux 3.3.8", Medium, "SYN floods are absorbed by cookies"),
    rule("net.ipv6.conf.all.accept_ra", Equal(0), "CIS Linux 3.3.9", Medium, "IPv6 router advertisements are ignored"),
    rule("net.ipv6.conf.default.accept_ra", Equal(0), "CIS Linux 3.3.9", Medium, "IPv6 router advertisements are ignored"),
    rule("net.ipv6.conf.all.accept_redirects", Equal(0), "CIS Linux 3.3.2", Medium, "IPv6 redirects are ignored"),
    rule("net.ipv6.conf.default.accept_redirects", Equal(0), "CIS Linux 3.3.2", Medium, "IPv6 redirects are ignored"),
    rule("net.ipv4.ip_forward", KubernetesForwarding, "CIS Linux 3.2.2 (Kubernetes exemption)", Low, "pod traffic is forwarded"),
    rule("net.ipv4.conf.all.rp_filter", CniOwnedReversePath, "CIS Linux 3.3.7 (CNI exemption)", Low, "reverse-path filtering"),
    rule("net.ipv4.conf.default.rp_filter", CniOwnedReversePath, "CIS Linux 3.3.7 (CNI exemption)", Low, "reverse-path filtering"),
    rule("vm.overcommit_memory", Equal(1), "CIS Kubernetes 4.2.6 (protectKernelDefaults)", Low, "kubelet protect-kernel-defaults"),
    rule("vm.panic_on_oom", Equal(0), "CIS Kubernetes 4.2.6 (protectKernelDefaults)", Low, "kubelet protect-kernel-defaults"),
    rule("kernel.panic", Equal(10), "CIS Kubernetes 4.2.6 (protectKernelDefaults)", Low, "kubelet protect-kernel-defaults"),
    rule("kernel.panic_on_oops", Equal(1), "CIS Kubernetes 4.2.6 (protectKernelDefaults)", Low, "kubelet protect-kernel-defaults"),
];

/// The host path of a sysctl: `kernel.yama.ptrace_scope` → `/proc/sys/kernel/yama/ptrace_scope`.
pub fn sysctl_path(key: &str) -> String {
    format!("/proc/sys/{}", key.replace('.', "/"))
}

/// Parses a sysctl file's content: one integer, surrounded by whitespace at most.
pub fn parse_value(raw: &str) -> Option<i64> {
    raw.trim().parse().ok()
}

/// Runs one sysctl rule against the host.
pub fn check_rule(host: &HostRoot, rule: &SysctlRule) -> CheckResult {
    let def = CheckDef::new(
        format!("sysctl.{}", rule.key),
        format!("{} = {} ({})", rule.key, rule.expect.text(), rule.why),
        rule.benchmark_ref,
        rule.severity,
        format!(
            "Set `{} = {}` in /etc/sysctl.d/60-medplat.conf and run `sysctl --system`.",
            rule.key,
            match rule.expect {
                Expect::Equal(v) | Expect::AtLeast(v) => v,
                Expect::KubernetesForwarding | Expect::CniOwnedReversePath => 1,
            }
        ),
    );
    let expected = rule.expect.text();
    // With IPv6 disabled on the kernel command line the whole tree is absent: nothing to check.
    if rule.key.starts_with("net.ipv6.") && !host.exists("/proc/sys/net/ipv6") {
        return def.result(
            CheckStatus::NotApplicable,
            expected,
            "IPv6 is disabled (/proc/sys/net/ipv6 absent)",
        );
    }
    match host.read_to_string(&sysctl_path(rule.key)) {
        Err(e) => def.error(expected, e),
        Ok(raw) => match parse_value(&raw) {
            None => def.error(expected, format!("not an integer: {:?}", clip(&raw, 64))),
            Some(v) => def.result(rule.expect.status(v), expected, v.to_string()),
        },
    }
}

/// Runs every sysctl rule.
pub fn check_all(host: &HostRoot) -> Vec<CheckResult> {
    RULES.iter().map(|r| check_rule(host, r)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exemptions_never_fail() {
        for v in [-1, 0, 1, 2, 3] {
            assert_ne!(KubernetesForwarding.status(v), CheckStatus::Fail);
            assert_ne!(CniOwnedReversePath.status(v), CheckStatus::Fail);
        }
        assert_eq!(KubernetesForwarding.status(1), CheckStatus::Pass);
        assert_eq!(KubernetesForwarding.status(0), CheckStatus::Warn);
        assert_eq!(CniOwnedReversePath.status(2), CheckStatus::Pass);
        assert_eq!(CniOwnedReversePath.status(0), CheckStatus::NotApplicable);
    }

    #[test]
    fn comparisons() {
        assert_eq!(Equal(2).status(2), CheckStatus::Pass);
        assert_eq!(Equal(2).status(1), CheckStatus::Fail);
        assert_eq!(AtLeast(1).status(3), CheckStatus::Pass);
        assert_eq!(AtLeast(1).status(0), CheckStatus::Fail);
    }

    #[test]
    fn values_parse_strictly() {
        assert_eq!(parse_value("2\n"), Some(2));
        assert_eq!(parse_value(" 0 "), Some(0));
        for bad in ["", "abc", "1 2", "0x1", "\u{0}"] {
            assert_eq!(parse_value(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn every_rule_has_a_unique_key() {
        let mut keys: Vec<_> = RULES.iter().map(|r| r.key).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), RULES.len());
    }
}
