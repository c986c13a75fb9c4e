//! Boot-time and mount checks: `audit=1` on the kernel command line, an enforcing Linux
//! security module (AppArmor or SELinux), and nodev/nosuid/noexec on `/tmp`, `/dev/shm` and
//! `/var/tmp` (REFERENCE.md "Boot and mounts").

use crate::api::node_compliance::{CheckResult, CheckSeverity};

use super::check::{CheckDef, clip};
use super::host::HostRoot;

/// The mount table of the host's init process: `/proc/self/mounts` would be the agent's own.
pub const HOST_MOUNTS: &str = "/proc/1/mounts";

/// `audit=1` on the kernel command line, so processes started before auditd are audited.
pub fn check_audit_cmdline(host: &HostRoot) -> CheckResult {
    let def = CheckDef::new(
        "boot.audit",
        "auditing starts at boot (audit=1 on the kernel command line)",
        "CIS Linux 4.1.1.3",
        CheckSeverity::Medium,
        "Add audit=1 to GRUB_CMDLINE_LINUX in /etc/default/grub, run update-grub, reboot in a \
         maintenance window.",
    );
    let expected = "audit=1";
    match host.read_to_string("/proc/cmdline") {
        Err(e) => def.error(expected, e),
        Ok(cmdline) => {
            // The kernel uses the last occurrence of a parameter.
            let value = cmdline
                .split_whitespace()
                .rev()
                .find_map(|w| w.strip_prefix("audit="));
            match value {
                Some("1") => def.judge(true, expected, "audit=1"),
                Some(v) => def.judge(false, expected, format!("audit={}", clip(v, 32))),
                None => def.judge(false, expected, "audit= not set"),
            }
        }
    }
}

/// What the LSM files say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LsmState {
    /// SELinux in enforcing mode.
    SelinuxEnforcing,
    /// SELinux loaded but permissive.
    SelinuxPermissive,
    /// AppArmor enabled with this many profiles in enforce mode and this many in complain mode.
    AppArmor {
        /// Profiles in enforce mode.
        enforce: usize,
        /// Profiles in complain mode.
        complain: usize,
    },
    /// Neither is active.
    None,
}

/// Counts AppArmor profiles by mode from `/sys/kernel/security/apparmor/profiles`
/// (lines like `/usr/sbin/cupsd (enforce)`).
pub fn parse_apparmor_profiles(text: &str) -> (usize, usize) {
    let mut enforce = 0;
    let mut complain = 0;
    for line in text.lines() {
        let line = line.trim_end();
        if line.ends_with("(enforce)") {
            enforce += 1;
        } else if line.ends_with("(complain)") {
            complain += 1;
        }
    }
    (enforce, complain)
}

/// AppArmor or SELinux is enforcing.
pub fn check_lsm(host: &HostRoot) -> CheckResult {
    let def = CheckDef::new(
        "lsm.enforcing",
        "a mandatory access control module (AppArmor or SELinux) is enforcing",
        "CIS Linux 1.6.1",
        CheckSeverity::High,
        "Enable AppArmor (apparmor=1 security=apparmor) with its profiles in enforce mode \
         (`aa-enforce /etc/apparmor.d/*`), or set SELINUX=enforcing in /etc/selinux/config.",
    );
    let expected = "AppArmor with profiles in enforce mode, or SELinux enforcing";
    match lsm_state(host) {
        Err(why) => def.error(expected, why),
        Ok(state) => {
            let (ok, actual) = match &state {
                LsmState::SelinuxEnforcing => (true, "SELinux enforcing".to_string()),
                LsmState::SelinuxPermissive => (false, "SELinux permissive".to_string()),
                LsmState::AppArmor { enforce, complain } => (
                    *enforce > 0,
                    format!("AppArmor: {enforce} profiles enforce, {complain} complain"),
                ),
                LsmState::None => (false, "no AppArmor or SELinux active".to_string()),
            };
            def.judge(ok, expected, actual)
        }
    }
}

fn lsm_state(host: &HostRoot) -> Result<LsmState, String> {
    if let Some(enforce) = host
        .read_optional("/sys/fs/selinux/enforce")
        .map_err(|e| e.to_string())?
    {
        return match enforce.trim() {
            "1" => Ok(LsmState::SelinuxEnforcing),
            "0" => Ok(LsmState::SelinuxPermissive),
            other => Err(format!(
                "/sys/fs/selinux/enforce holds {:?}",
                clip(other, 32)
            )),
        };
    }
    let enabled = host
        .read_optional("/sys/module/apparmor/parameters/enabled")
        .map_err(|e| e.to_string())?;
    match enabled.as_deref().map(str::trim) {
        Some("Y") => {
            let profiles = host
                .read_to_string("/sys/kernel/security/apparmor/profiles")
                .map_err(|e| e.to_string())?;
            let (enforce, complain) = parse_apparmor_profiles(&profiles);
            Ok(LsmState::AppArmor { enforce, complain })
        }
        Some("N") | None => Ok(LsmState::None),
        Some(other) => Err(format!(
            "/sys/module/apparmor/parameters/enabled holds {:?}",
            clip(other, 32)
        )),
    }
}

/// One line of a mount table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// The mount point, with octal escapes decoded.
    pub mount_point: String,
    /// The filesystem type.
    pub fs_type: String,
    /// The mount options.
    pub options: Vec<String>,
}

/// Parses `/proc/<pid>/mounts`; malformed lines are counted and skipped.
pub fn parse_mounts(text: &str) -> (Vec<MountEntry>, usize) {
    let mut entries = Vec::new();
    let mut malformed = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 4 {
            malformed += 1;
            continue;
        }
        entries.push(MountEntry {
            mount_point: unescape_octal(fields[1]),
            fs_type: fields[2].to_string(),
            options: fields[3].split(',').map(str::to_string).collect(),
        });
    }
    (entries, malformed)
}

/// Decodes the `\040`-style escapes the kernel uses for spaces and tabs in mount points.
fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') as u32 * 64
                + (bytes[i + 2] - b'0') as u32 * 8
                + (bytes[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount points that must be nodev, nosuid and noexec, with their check ids.
pub const HARDENED_MOUNTS: &[(&str, &str, &str)] = &[
    ("/tmp", "mount.tmp", "CIS Linux 1.1.2"),
    ("/dev/shm", "mount.dev_shm", "CIS Linux 1.1.8"),
    ("/var/tmp", "mount.var_tmp", "CIS Linux 1.1.3"),
];

/// The options every hardened mount needs.
pub const REQUIRED_OPTIONS: &[&str] = &["nodev", "nosuid", "noexec"];

/// Checks the hardened mounts against the host's mount table.
pub fn check_mounts(host: &HostRoot) -> Vec<CheckResult> {
    let table = host.read_to_string(HOST_MOUNTS);
    HARDENED_MOUNTS
        .iter()
        .map(|(point, id, bench)| {
            let def = CheckDef::new(
                *id,
                format!("{point} is mounted nodev,nosuid,noexec"),
                *bench,
                CheckSeverity::Medium,
                format!(
                    "Mount {point} as a separate filesystem (e.g. tmpfs) with \
                     nodev,nosuid,noexec in /etc/fstab, then `mount -o remount {point}`."
                ),
            );
            let expected = format!("{point} mounted with nodev,nosuid,noexec");
            let text = match &table {
                Ok(t) => t,
                Err(e) => return def.error(expected, e),
            };
            let (entries, malformed) = parse_mounts(text);
            // The last mount on a point is the one in effect.
            match entries.iter().rev().find(|m| m.mount_point == *point) {
                Some(m) => {
                    let missing: Vec<&str> = REQUIRED_OPTIONS
                        .iter()
                        .copied()
                        .filter(|o| !m.options.iter().any(|x| x == o))
                        .collect();
                    let actual = format!("{} {}", m.fs_type, clip(&m.options.join(","), 200));
                    if missing.is_empty() {
                        def.judge(true, expected, actual)
                    } else {
                        def.judge(
                            false,
                            expected,
                            format!("{actual}; missing {}", missing.join(",")),
                        )
                    }
                }
                None if entries.is_empty() && malformed > 0 => {
                    def.error(expected, format!("{HOST_MOUNTS} is malformed"))
                }
                None => def.judge(false, expected, format!("{point} is not a separate mount")),
            }
        })
        .collect()
}

/// Every boot and mount check.
pub fn check_all(host: &HostRoot) -> Vec<CheckResult> {
    let mut out = vec![check_audit_cmdline(host), check_lsm(host)];
    out.extend(check_mounts(host));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_table_parses_with_escapes_and_skips_garbage() {
        let (m, bad) = parse_mounts(
            "tmpfs /tmp tmpfs rw,nosuid,nodev,noexec 0 0\ngarbage\n\
             /dev/sda1 /mnt/with\\040space ext4 rw 0 0\n",
        );
        assert_eq!(bad, 1);
        assert_eq!(m[0].mount_point, "/tmp");
        assert_eq!(m[1].mount_point, "/mnt/with space");
        assert!(m[0].options.contains(&"noexec".to_string()));
    }

    #[test]
    fn apparmor_profiles_count_by_mode() {
        let (e, c) = parse_apparmor_profiles(
            "/usr/sbin/cupsd (enforce)\nlsb_release (complain)\nman_filter (enforce)\n",
        );
        assert_eq!((e, c), (2, 1));
    }
}
