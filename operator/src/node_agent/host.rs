//! Read-only access to the host's files through a configurable root (default `/host`).
//!
//! Every path the checks use is an absolute host path (`/etc/passwd`); [`HostRoot`] maps it
//! under the root. Symlinks are resolved inside the root, never against the container's own
//! filesystem, because an absolute link on the host (`/etc/mtab -> /proc/self/mounts`) means
//! a host path. Reads are bounded so that a huge or endless file cannot exhaust the agent.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

/// The largest host file the agent reads; audit rule sets and configs are far smaller.
pub const MAX_READ_BYTES: u64 = 4 * 1024 * 1024;

/// How many symlinks one lookup may follow before it is treated as a loop.
const MAX_SYMLINK_HOPS: usize = 16;

/// What can go wrong reading the host.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The file does not exist on the host.
    #[error("{path} does not exist")]
    NotFound {
        /// The host path.
        path: String,
    },
    /// The file exists but could not be read (permissions, a directory, an I/O error).
    #[error("{path} is unreadable: {source}")]
    Unreadable {
        /// The host path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a regular file where one was expected (a directory, a device, a FIFO).
    #[error("{path} is not a regular file")]
    NotAFile {
        /// The host path.
        path: String,
    },
    /// The file is larger than [`MAX_READ_BYTES`].
    #[error("{path} is larger than {MAX_READ_BYTES} bytes")]
    TooLarge {
        /// The host path.
        path: String,
    },
    /// The file is not UTF-8 text.
    #[error("{path} is not UTF-8 text")]
    NotText {
        /// The host path.
        path: String,
    },
    /// Following symlinks did not end (a loop) or left the host root.
    #[error("{path}: too many symlinks")]
    SymlinkLoop {
        /// The host path.
        path: String,
    },
}

impl HostError {
    /// Whether the error only says that the file is absent.
    pub fn is_not_found(&self) -> bool {
        matches!(self, HostError::NotFound { .. })
    }
}

/// Owner and permission bits of a host file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileMeta {
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Whether it is a regular file.
    pub is_file: bool,
}

/// The host's filesystem, seen through a root directory.
#[derive(Clone, Debug)]
pub struct HostRoot {
    root: PathBuf,
}

impl HostRoot {
    /// A view of the host mounted at `root` (`/` to scan the machine the agent runs on).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        HostRoot { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Maps a host path under the root, lexically (no symlinks followed).
    fn lexical(&self, host_path: &str) -> PathBuf {
        let mut out = self.root.clone();
        for c in Path::new(host_path).components() {
            if let Component::Normal(part) = c {
                out.push(part);
            }
        }
        out
    }

    /// Resolves a host path to a path under the root, following symlinks inside the root.
    fn resolve(&self, host_path: &str) -> Result<PathBuf, HostError> {
        let mut current: Vec<String> = Vec::new();
        let mut pending: Vec<String> = split(host_path).into_iter().rev().collect();
        let mut hops = 0;
        while let Some(part) = pending.pop() {
            if part == ".." {
                current.pop();
                continue;
            }
            current.push(part);
            let candidate = self.lexical(&current.join("/"));
            let Ok(meta) = std::fs::symlink_metadata(&candidate) else {
                continue; // missing: later lookups report NotFound with the full path
            };
            if !meta.file_type().is_symlink() {
                continue;
            }
            hops += 1;
            if hops > MAX_SYMLINK_HOPS {
                return Err(HostError::SymlinkLoop {
                    path: host_path.to_string(),
                });
            }
            let target =
                std::fs::read_link(&candidate).map_err(|source| HostError::Unreadable {
                    path: host_path.to_string(),
                    source,
                })?;
            current.pop();
            let target = target.to_string_lossy().into_owned();
            if target.starts_with('/') {
                current.clear();
            }
            pending.extend(split(&target).into_iter().rev());
        }
        Ok(self.lexical(&current.join("/")))
    }

    /// Whether anything (a file, a directory, a dangling symlink) exists at the host path.
    pub fn exists(&self, host_path: &str) -> bool {
        std::fs::symlink_metadata(self.lexical(host_path)).is_ok()
    }

    /// Reads a host text file, bounded by [`MAX_READ_BYTES`].
    pub fn read_to_string(&self, host_path: &str) -> Result<String, HostError> {
        let path = self.resolve(host_path)?;
        let meta = std::fs::metadata(&path).map_err(|e| io_error(host_path, e))?;
        let ft = meta.file_type();
        if ft.is_dir() || ft.is_fifo() || ft.is_socket() || ft.is_block_device() {
            // A FIFO would block the scan for ever; directories cannot be read as text.
            return Err(HostError::NotAFile {
                path: host_path.to_string(),
            });
        }
        let file = std::fs::File::open(&path).map_err(|e| io_error(host_path, e))?;
        let mut bytes = Vec::new();
        file.take(MAX_READ_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| io_error(host_path, e))?;
        if bytes.len() as u64 > MAX_READ_BYTES {
            return Err(HostError::TooLarge {
                path: host_path.to_string(),
            });
        }
        String::from_utf8(bytes).map_err(|_| HostError::NotText {
            path: host_path.to_string(),
        })
    }

    /// Reads a host text file, or `None` when it does not exist.
    pub fn read_optional(&self, host_path: &str) -> Result<Option<String>, HostError> {
        match self.read_to_string(host_path) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Owner and mode of a host file, following symlinks inside the root.
    pub fn metadata(&self, host_path: &str) -> Result<FileMeta, HostError> {
        let path = self.resolve(host_path)?;
        let meta = std::fs::metadata(&path).map_err(|e| io_error(host_path, e))?;
        Ok(FileMeta {
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            is_file: meta.is_file(),
        })
    }

    /// The names in a host directory, sorted; an empty list when it does not exist.
    pub fn list_dir(&self, host_path: &str) -> Result<Vec<String>, HostError> {
        let path = self.resolve(host_path)?;
        let entries = match std::fs::read_dir(&path) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(host_path, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error(host_path, e))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }
}

fn split(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .map(str::to_string)
        .collect()
}

fn io_error(host_path: &str, source: std::io::Error) -> HostError {
    match source.kind() {
        std::io::ErrorKind::NotFound => HostError::NotFound {
            path: host_path.to_string(),
        },
        _ => HostError::Unreadable {
            path: host_path.to_string(),
            source,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, HostRoot) {
        let dir = tempfile::tempdir().unwrap();
        let root = HostRoot::new(dir.path());
        (dir, root)
    }

    #[test]
    fn absolute_symlinks_resolve_inside_the_root() {
        let (dir, host) = tree();
        std::fs::create_dir_all(dir.path().join("real")).unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("real/f"), "inside").unwrap();
        std::os::unix::fs::symlink("/real/f", dir.path().join("etc/link")).unwrap();
        assert_eq!(host.read_to_string("/etc/link").unwrap(), "inside");
        std::os::unix::fs::symlink("../real", dir.path().join("etc/rel")).unwrap();
        assert_eq!(host.read_to_string("/etc/rel/f").unwrap(), "inside");
    }

    #[test]
    fn dotdot_cannot_escape_the_root() {
        let (dir, host) = tree();
        std::fs::write(dir.path().join("f"), "x").unwrap();
        std::os::unix::fs::symlink("/../../../../f", dir.path().join("up")).unwrap();
        assert_eq!(host.read_to_string("/up").unwrap(), "x");
    }

    #[test]
    fn symlink_loops_are_an_error_not_a_hang() {
        let (dir, host) = tree();
        std::os::unix::fs::symlink("/b", dir.path().join("a")).unwrap();
        std::os::unix::fs::symlink("/a", dir.path().join("b")).unwrap();
        assert!(matches!(
            host.read_to_string("/a"),
            Err(HostError::SymlinkLoop { .. })
        ));
    }

    #[test]
    fn directories_fifos_and_binary_are_typed_errors() {
        let (dir, host) = tree();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("bin"), [0xff, 0xfe, 0x00]).unwrap();
        assert!(matches!(
            host.read_to_string("/d"),
            Err(HostError::NotAFile { .. })
        ));
        assert!(matches!(
            host.read_to_string("/bin"),
            Err(HostError::NotText { .. })
        ));
        assert!(host.read_to_string("/nope").unwrap_err().is_not_found());
        assert_eq!(host.read_optional("/nope").unwrap(), None);
        assert_eq!(host.list_dir("/nope").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn oversized_files_are_refused() {
        let (dir, host) = tree();
        let f = std::fs::File::create(dir.path().join("big")).unwrap();
        f.set_len(MAX_READ_BYTES + 1).unwrap();
        assert!(matches!(
            host.read_to_string("/big"),
            Err(HostError::TooLarge { .. })
        ));
    }
}
