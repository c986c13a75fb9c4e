//! Helpers shared by the integration tests: fixture host trees and real-tool lookup.
#![allow(dead_code)]
// Test helpers: a panic here is a test failure with a location, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The fixture directory of the host trees.
pub fn hosts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hosts")
}

/// A fixture host, copied to a temporary directory with its modes (and, as root, owners)
/// applied from `<name>.modes`.
pub struct FixtureHost {
    /// The temporary root; dropped with the struct.
    pub dir: tempfile::TempDir,
    /// Whether owners from the manifest were applied (only possible as root).
    pub owners_applied: bool,
}

impl FixtureHost {
    /// The host root to scan.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let ft = entry.file_type().unwrap();
        let target = to.join(entry.file_name());
        if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), &target).unwrap();
        } else if ft.is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
}

/// Copies fixture host `name` and applies its manifest: `mode uid gid path` per line.
///
/// Git keeps neither owners nor most mode bits, so the manifest is the truth. Owners can only be
/// set as root; otherwise `owners_applied` is false and callers relax owner-dependent checks.
pub fn fixture_host(name: &str) -> FixtureHost {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&hosts_dir().join(name), dir.path());
    let probe = dir.path().join(".owner-probe");
    std::fs::write(&probe, "").unwrap();
    let as_root = std::fs::metadata(&probe).unwrap().uid() == 0;
    std::fs::remove_file(&probe).unwrap();
    let manifest = std::fs::read_to_string(hosts_dir().join(format!("{name}.modes"))).unwrap();
    for line in manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 4, "bad manifest line {line:?}");
        let path = dir.path().join(f[3]);
        let mode = u32::from_str_radix(f[0], 8).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        if as_root {
            std::os::unix::fs::chown(
                &path,
                Some(f[1].parse().unwrap()),
                Some(f[2].parse().unwrap()),
            )
            .unwrap();
        }
    }
    if !as_root {
        eprintln!(
            "NOTE: not running as root: fixture owners from {name}.modes were not applied; \
             owner-dependent checks are relaxed"
        );
    }
    FixtureHost {
        dir,
        owners_applied: as_root,
    }
}

/// Finds a real tool on PATH. When it is missing: with `MEDPLAT_REQUIRE_REAL_TOOLS=1` the test
/// fails, otherwise it says so loudly and the caller skips.
pub fn real_tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var("MEDPLAT_REQUIRE_REAL_TOOLS").as_deref() == Ok("1") {
            panic!("{name} is required (MEDPLAT_REQUIRE_REAL_TOOLS=1) but not on PATH");
        }
        eprintln!("\n!!! SKIPPED: {name} not found on PATH; install it to run this test !!!\n");
    }
    found
}
