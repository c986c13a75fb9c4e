//! Reading Kubernetes manifests from files and directory trees, as a GitOps repository holds
//! them: YAML streams (`---`), JSON objects and `List` kinds, each object remembering its file.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;

/// What can go wrong reading manifests.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// A file or directory could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid YAML or JSON.
    #[error("{} (document {document}) is not valid YAML: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The 1-based document index in the stream.
        document: usize,
        /// The parser's message (with line and column).
        message: String,
    },
}

/// One object read from a manifest file.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedObject {
    /// The file it came from.
    pub file: PathBuf,
    /// Its 1-based position in the file's stream.
    pub document: usize,
    /// The object.
    pub value: Value,
}

impl LoadedObject {
    /// `apiVersion` of the object, or "".
    pub fn api_version(&self) -> &str {
        self.value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// `kind` of the object, or "".
    pub fn kind(&self) -> &str {
        self.value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// `metadata.name`, or "".
    pub fn name(&self) -> &str {
        self.value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// `metadata.namespace`, if set.
    pub fn namespace(&self) -> Option<&str> {
        self.value
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
    }

    /// `Kind/namespace/name` or `Kind/name`, for messages.
    pub fn display_name(&self) -> String {
        match self.namespace() {
            Some(ns) => format!("{}/{}/{}", self.kind(), ns, self.name()),
            None => format!("{}/{}", self.kind(), self.name()),
        }
    }

    /// `file:document`, for messages.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file.display(), self.document)
    }

    /// Deserialises the object into a typed resource, with the failing field path in the error.
    pub fn typed<T: DeserializeOwned>(&self) -> Result<T, String> {
        let de = self.value.clone();
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            format!("{path}: {}", e.into_inner())
        })
    }
}

/// Whether a path looks like a manifest file.
fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml") | Some("yml") | Some("json")
    )
}

/// Collects manifest files under `paths` (files as given, directories recursively, sorted).
pub fn manifest_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ManifestError> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|source| ManifestError::Read {
            path: p.clone(),
            source,
        })?;
        if meta.is_dir() {
            walk(p, &mut out)?;
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ManifestError> {
    let read = |source| ManifestError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(read)?;
    entries.sort();
    for e in entries {
        if e.is_dir() {
            walk(&e, out)?;
        } else if is_manifest(&e) {
            out.push(e);
        }
    }
    Ok(())
}

/// Parses one file's text into objects. Empty documents are skipped; `List` kinds are expanded.
pub fn parse_stream(file: &Path, text: &str) -> Result<Vec<LoadedObject>, ManifestError> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let document = i + 1;
        let value: Value =
            serde::Deserialize::deserialize(doc).map_err(|e| ManifestError::Parse {
                path: file.to_path_buf(),
                document,
                message: e.to_string(),
            })?;
        match value {
            Value::Null => {}
            Value::Object(ref o)
                if o.get("kind")
                    .and_then(Value::as_str)
                    .is_some_and(|k| k.ends_with("List")) =>
            {
                if let Some(items) = o.get("items").and_then(Value::as_array) {
                    out.extend(items.iter().map(|item| LoadedObject {
                        file: file.to_path_buf(),
                        document,
                        value: item.clone(),
                    }));
                }
            }
            v => out.push(LoadedObject {
                file: file.to_path_buf(),
                document,
                value: v,
            }),
        }
    }
    Ok(out)
}

/// Loads every object under `paths`.
pub fn load(paths: &[PathBuf]) -> Result<Vec<LoadedObject>, ManifestError> {
    let mut out = Vec::new();
    for file in manifest_files(paths)? {
        let text = std::fs::read_to_string(&file).map_err(|source| ManifestError::Read {
            path: file.clone(),
            source,
        })?;
        out.extend(parse_stream(&file, &text)?);
    }
    Ok(out)
}

/// Builds Secret objects from a directory laid out as `<secret-name>/<key>` (the layout
/// `medplat worker run --secrets` reads), for a development cluster. Sub-directories are
/// Secrets; other entries (a README) are ignored.
pub fn secrets_from_dir(dir: &Path, namespace: &str) -> Result<Vec<Value>, ManifestError> {
    use base64::Engine as _;
    let read = |path: &Path, source| ManifestError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| read(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    names.sort();
    let mut out = Vec::new();
    for secret_dir in names {
        let name = secret_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let mut data = serde_json::Map::new();
        let mut keys: Vec<PathBuf> = std::fs::read_dir(&secret_dir)
            .map_err(|e| read(&secret_dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        keys.sort();
        for key in keys {
            let bytes = std::fs::read(&key).map_err(|e| read(&key, e))?;
            let k = key
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            data.insert(
                k,
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
            );
        }
        out.push(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace, "labels": {"medplat.io/development-only": "true"}},
            "type": "Opaque",
            "data": data,
        }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_skip_empty_documents_and_expand_lists() {
        let text = "---\n# only a comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Secret, metadata: {name: b}}\n";
        let objs = parse_stream(Path::new("f.yaml"), text).unwrap();
        assert_eq!(
            objs.iter().map(|o| o.display_name()).collect::<Vec<_>>(),
            vec!["ConfigMap/a", "Secret/b"]
        );
        assert_eq!(objs[1].document, 3);
    }

    #[test]
    fn a_parse_error_names_the_file_and_document() {
        let err = parse_stream(Path::new("bad.yaml"), "a: 1\n---\nb: [unclosed\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("bad.yaml (document 2)"), "{msg}");
    }

    #[test]
    fn a_missing_path_is_a_read_error() {
        let err = load(&[PathBuf::from("/nonexistent/medplat")]).unwrap_err();
        assert!(matches!(err, ManifestError::Read { .. }));
    }
}
