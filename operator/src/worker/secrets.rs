//! Secret values, read from mounted files only. A [`SecretValue`] never prints its content:
//! `Debug` and `Display` show `<redacted>`, and errors name the file, never the value.

use std::path::{Path, PathBuf};

use crate::api::resolved::ResolvedPipeline;

/// A secret's bytes, kept out of logs and error messages.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Vec<u8>);

impl SecretValue {
    /// Wraps bytes (tests and generators).
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretValue(bytes)
    }

    /// The raw bytes, for the one place that uses them (a key schedule, a login).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The value as text with surrounding whitespace removed (user names, passwords, tokens):
    /// `kubectl create secret --from-file` often leaves a trailing newline.
    pub fn expose_text(&self) -> Result<&str, SecretError> {
        std::str::from_utf8(&self.0)
            .map(str::trim)
            .map_err(|_| SecretError::NotText)
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::fmt::Display for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The Secret is not among the document's mounts.
    #[error("Secret {secret} is not mounted for this pipeline (key {key})")]
    NotMounted {
        /// The Secret's name.
        secret: String,
        /// The key asked for.
        key: String,
    },
    /// The file is missing or unreadable.
    #[error("cannot read key {key} of Secret {secret} from {}", path.display())]
    Read {
        /// The Secret's name.
        secret: String,
        /// The key.
        key: String,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is empty.
    #[error("key {key} of Secret {secret} ({}) is empty", path.display())]
    Empty {
        /// The Secret's name.
        secret: String,
        /// The key.
        key: String,
        /// The file.
        path: PathBuf,
    },
    /// A text secret (user name, password, token) is not UTF-8.
    #[error("a text secret is not valid UTF-8")]
    NotText,
}

/// Reads secrets from the files the resolved document names.
#[derive(Clone, Debug)]
pub struct SecretStore {
    mounts: std::collections::BTreeMap<String, PathBuf>,
}

impl SecretStore {
    /// The secrets of a resolved document.
    pub fn from_document(doc: &ResolvedPipeline) -> Self {
        SecretStore {
            mounts: doc
                .secrets
                .iter()
                .map(|(n, m)| (n.clone(), PathBuf::from(&m.path)))
                .collect(),
        }
    }

    /// Secrets under one root directory, `<root>/<secret>/<key>` (the listener, tests).
    pub fn under_root(root: &Path, secrets: &[&str]) -> Self {
        SecretStore {
            mounts: secrets
                .iter()
                .map(|s| (s.to_string(), root.join(s)))
                .collect(),
        }
    }

    /// Reads one key of one Secret.
    pub fn read(&self, secret: &str, key: &str) -> Result<SecretValue, SecretError> {
        let dir = self
            .mounts
            .get(secret)
            .ok_or_else(|| SecretError::NotMounted {
                secret: secret.into(),
                key: key.into(),
            })?;
        let path = dir.join(key);
        let bytes = std::fs::read(&path).map_err(|source| SecretError::Read {
            secret: secret.into(),
            key: key.into(),
            path: path.clone(),
            source,
        })?;
        if bytes.is_empty() {
            return Err(SecretError::Empty {
                secret: secret.into(),
                key: key.into(),
                path,
            });
        }
        Ok(SecretValue(bytes))
    }

    /// Reads a key from an explicit file path (object-store credentials in the document).
    pub fn read_file(path: &str) -> Result<SecretValue, SecretError> {
        let p = PathBuf::from(path);
        let bytes = std::fs::read(&p).map_err(|source| SecretError::Read {
            secret: p
                .parent()
                .and_then(Path::file_name)
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            key: p
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path: p.clone(),
            source,
        })?;
        Ok(SecretValue(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_never_print_and_errors_name_only_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("db")).unwrap();
        std::fs::write(dir.path().join("db/password"), "s3cr3t\n").unwrap();
        std::fs::write(dir.path().join("db/empty"), "").unwrap();
        let store = SecretStore::under_root(dir.path(), &["db"]);
        let v = store.read("db", "password").unwrap();
        assert_eq!(v.expose_text().unwrap(), "s3cr3t");
        assert_eq!(format!("{v:?} {v}"), "<redacted> <redacted>");
        let e = store.read("db", "missing").unwrap_err().to_string();
        assert!(e.contains("key missing of Secret db"), "{e}");
        assert!(
            store
                .read("db", "empty")
                .unwrap_err()
                .to_string()
                .contains("is empty")
        );
        assert!(matches!(
            store.read("other", "k"),
            Err(SecretError::NotMounted { .. })
        ));
    }
}
