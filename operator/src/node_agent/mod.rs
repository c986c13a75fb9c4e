//! `medplat node-agent`: the hardening scanner run by the node-agent DaemonSet.
//!
//! It reads the host through a read-only root ([`host::HostRoot`], default `/host`), runs the
//! medplat-node-v1 baseline of REFERENCE.md ([`scan`]), turns the results into a bounded
//! NodeCompliance status ([`status`]) and writes it through one narrow writer ([`agent`]) only
//! when something changed or a heartbeat is due. Every check reports PASS, FAIL, WARN, MANUAL,
//! NOTAPPLICABLE or ERROR; missing, unreadable or malformed host files give ERROR or WARN and
//! never stop the scan.

pub mod agent;
pub mod auditd;
pub mod boot;
pub mod check;
pub mod files;
pub mod host;
pub mod kmod;
pub mod kubelet;
pub mod ssh;
pub mod status;
pub mod sysctl;

use std::path::PathBuf;

use crate::api::node_compliance::CheckResult;

/// The baseline this agent checks (`Platform.spec.hardening.baseline`).
pub const BASELINE: &str = "medplat-node-v1";

/// The agent's version, reported in the status.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The default host root inside the DaemonSet's pod.
pub const DEFAULT_ROOT: &str = "/host";

/// What to scan and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanConfig {
    /// Where the host's `/` is mounted.
    pub root: PathBuf,
    /// Kernel modules that must stay off; [`kmod::DEFAULT_DISABLED_MODULES`] when empty.
    pub disabled_kernel_modules: Vec<String>,
    /// Where the kubelet's files may be.
    pub kubelet: kubelet::KubeletPaths,
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig {
            root: PathBuf::from(DEFAULT_ROOT),
            disabled_kernel_modules: Vec::new(),
            kubelet: kubelet::KubeletPaths::default(),
        }
    }
}

impl ScanConfig {
    /// The module list in force.
    pub fn modules(&self) -> Vec<String> {
        if self.disabled_kernel_modules.is_empty() {
            kmod::DEFAULT_DISABLED_MODULES
                .iter()
                .map(|m| m.to_string())
                .collect()
        } else {
            self.disabled_kernel_modules.clone()
        }
    }
}

/// Runs the whole baseline against the host and returns one result per check, in a stable
/// order. Never fails: what cannot be read becomes an ERROR or WARN result.
pub fn scan(cfg: &ScanConfig) -> Vec<CheckResult> {
    let host = host::HostRoot::new(&cfg.root);
    let mut out = sysctl::check_all(&host);
    out.extend(kmod::check_all(&host, &cfg.modules()));
    out.extend(boot::check_all(&host));
    out.extend(auditd::check_all(&host));
    out.extend(ssh::check_all(&host));
    out.extend(files::check_all(&host));
    out.extend(kubelet::check_all(&host, &cfg.kubelet));
    out
}
