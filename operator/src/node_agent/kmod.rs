//! Kernel modules that must stay off (REFERENCE.md "Other checks"): not loaded now, and not
//! loadable later because modprobe is told `install <module> /bin/false`.

use std::collections::BTreeSet;

use crate::api::node_compliance::{CheckResult, CheckSeverity, CheckStatus};

use super::check::CheckDef;
use super::host::{HostError, HostRoot};

/// The REFERENCE.md list, used when the Platform names none.
pub const DEFAULT_DISABLED_MODULES: &[&str] = &[
    "cramfs",
    "freevxfs",
    "hfs",
    "hfsplus",
    "jffs2",
    "squashfs",
    "udf",
    "usb-storage",
    "dccp",
    "sctp",
    "rds",
    "tipc",
];

/// Where modprobe reads its configuration, in its own precedence order.
const MODPROBE_DIRS: &[&str] = &[
    "/etc/modprobe.d",
    "/run/modprobe.d",
    "/usr/local/lib/modprobe.d",
    "/lib/modprobe.d",
    "/usr/lib/modprobe.d",
];

/// The kernel treats `-` and `_` in module names alike; `/proc/modules` shows `_`.
pub fn normalise(name: &str) -> String {
    name.trim().replace('-', "_")
}

/// What modprobe's configuration says about modules.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ModprobeConfig {
    /// Modules whose `install` command is a no-op (`/bin/false`, `/bin/true`): they never load.
    pub install_disabled: BTreeSet<String>,
    /// Modules only blacklisted: not loaded by alias, but `modprobe <name>` still loads them.
    pub blacklisted: BTreeSet<String>,
}

impl ModprobeConfig {
    /// Parses the lines of modprobe.d files.
    pub fn parse_into(&mut self, content: &str) {
        for line in content.lines() {
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("install"), Some(module)) => {
                    let cmd: Vec<&str> = words.collect();
                    if matches!(
                        cmd.first().copied(),
                        Some("/bin/false" | "/bin/true" | "/usr/bin/false" | "/usr/bin/true")
                    ) {
                        self.install_disabled.insert(normalise(module));
                    }
                }
                (Some("blacklist"), Some(module)) => {
                    self.blacklisted.insert(normalise(module));
                }
                _ => {}
            }
        }
    }

    /// Reads every `*.conf` in the modprobe directories. Unreadable files are returned so the
    /// caller can report them; the rest is still used.
    pub fn load(host: &HostRoot) -> (ModprobeConfig, Vec<HostError>) {
        let mut cfg = ModprobeConfig::default();
        let mut errors = Vec::new();
        for dir in MODPROBE_DIRS {
            let names = match host.list_dir(dir) {
                Ok(n) => n,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            for name in names.iter().filter(|n| n.ends_with(".conf")) {
                match host.read_to_string(&format!("{dir}/{name}")) {
                    Ok(content) => cfg.parse_into(&content),
                    Err(e) => errors.push(e),
                }
            }
        }
        (cfg, errors)
    }
}

/// The names of loaded modules, from `/proc/modules`.
pub fn parse_loaded(proc_modules: &str) -> BTreeSet<String> {
    proc_modules
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(normalise)
        .collect()
}

/// Checks each module in `modules`.
pub fn check_all(host: &HostRoot, modules: &[String]) -> Vec<CheckResult> {
    let loaded = host
        .read_to_string("/proc/modules")
        .map(|s| parse_loaded(&s));
    let (cfg, cfg_errors) = ModprobeConfig::load(host);
    modules
        .iter()
        .map(|m| check_module(m, &loaded, &cfg, &cfg_errors))
        .collect()
}

fn check_module(
    module: &str,
    loaded: &Result<BTreeSet<String>, HostError>,
    cfg: &ModprobeConfig,
    cfg_errors: &[HostError],
) -> CheckResult {
    let name = normalise(module);
    let def = CheckDef::new(
        format!("kmod.{module}"),
        format!("kernel module {module} is disabled"),
        "CIS Linux 1.1.1 / 3.4 (unused filesystems and protocols)",
        CheckSeverity::Medium,
        format!(
            "Add `install {module} /bin/false` and `blacklist {module}` to \
             /etc/modprobe.d/medplat.conf, then `modprobe -r {module}` or reboot."
        ),
    );
    let expected = "not loaded; install -> /bin/false";
    let loaded = match loaded {
        Ok(set) => set.contains(&name),
        Err(e) => return def.error(expected, e),
    };
    if loaded {
        return def.result(CheckStatus::Fail, expected, "loaded");
    }
    if cfg.install_disabled.contains(&name) {
        return def.result(CheckStatus::Pass, expected, "not loaded; install disabled");
    }
    if let Some(e) = cfg_errors.first() {
        // A modprobe file we could not read might hold the rule: do not call it a failure.
        return def.error(expected, format!("not loaded; {e}"));
    }
    if cfg.blacklisted.contains(&name) {
        return def.result(
            CheckStatus::Warn,
            expected,
            "not loaded; blacklisted only, `modprobe` still loads it",
        );
    }
    def.result(
        CheckStatus::Fail,
        expected,
        "not loaded, but loadable (no install rule)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_rules_and_blacklists_parse() {
        let mut cfg = ModprobeConfig::default();
        cfg.parse_into(
            "# comment\ninstall usb-storage /bin/false\ninstall sctp /usr/bin/true\n\
             install dccp /sbin/modprobe --ignore-install dccp\nblacklist udf\n",
        );
        assert!(cfg.install_disabled.contains("usb_storage"));
        assert!(cfg.install_disabled.contains("sctp"));
        assert!(!cfg.install_disabled.contains("dccp"));
        assert!(cfg.blacklisted.contains("udf"));
    }

    #[test]
    fn loaded_names_are_normalised() {
        let set = parse_loaded("usb_storage 77824 0 - Live 0x0\nsctp 1 0 - Live 0x0\n");
        assert!(set.contains("usb_storage") && set.contains("sctp"));
    }

    #[test]
    fn decision_table() {
        let mut cfg = ModprobeConfig::default();
        cfg.parse_into("install hfs /bin/false\nblacklist udf\n");
        let loaded = Ok(parse_loaded("sctp 1 0 - Live 0x0\n"));
        let status = |m: &str| check_module(m, &loaded, &cfg, &[]).status;
        assert_eq!(status("sctp"), CheckStatus::Fail);
        assert_eq!(status("hfs"), CheckStatus::Pass);
        assert_eq!(status("udf"), CheckStatus::Warn);
        assert_eq!(status("tipc"), CheckStatus::Fail);
        let unreadable = Err(HostError::NotFound {
            path: "/proc/modules".into(),
        });
        assert_eq!(
            check_module("hfs", &unreadable, &cfg, &[]).status,
            CheckStatus::Error
        );
    }
}
