//! Committing a dataset atomically: a crash at any point leaves either the old version or the
//! new one, never a mix.
//!
//! - **Volume tier**: the dataset path is a symbolic link to an immutable version directory
//!   beside it (`lab/results -> .results.versions/<run-id>`). A run stages its files in
//!   `.results.versions/<run-id>.staging/`, syncs them, renames the directory to its final name,
//!   then swaps the link with one `rename(2)`: the commit point. Old versions are deleted only
//!   after the swap. Readers see a plain directory holding one complete version.
//! - **Object store**: files go under `<dataset>/_versions/<run-id>/`, then one PUT of
//!   `<dataset>/_CURRENT` (the run manifest, listing every file) commits; readers read
//!   `_CURRENT` first. A single PUT is atomic on S3-compatible stores.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use super::manifest::RunManifest;

/// The manifest file inside a version.
pub const MANIFEST_FILE: &str = "_manifest.json";
/// The commit pointer of an object-store dataset.
pub const CURRENT_OBJECT: &str = "_CURRENT";

/// What can go wrong reading or committing a dataset.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A local file operation failed.
    #[error("{action} {}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The dataset path holds something medplat did not write.
    #[error(
        "{0} exists and is not a medplat dataset (expected a link to a version directory); move it away or choose another dataset path"
    )]
    NotManaged(String),
    /// The committed manifest does not parse.
    #[error("the committed manifest of {0} is damaged")]
    BadManifest(String),
    /// The object store failed.
    #[error("object store {location}: {message}")]
    Object {
        /// The object or prefix.
        location: String,
        /// The store's message.
        message: String,
    },
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl Fn(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Where a dataset lives and how it is committed.
pub trait DatasetStore: Send {
    /// `tier/dataset`, for messages and audit.
    fn describe(&self) -> String;
    /// The manifest of the committed version, if there is one.
    fn current(&self) -> Result<Option<RunManifest>, StoreError>;
    /// A fresh local directory to stage this run's files in.
    fn staging(&mut self, run_id: &str) -> Result<PathBuf, StoreError>;
    /// Commits the staged files as the new current version. `manifest.files` lists every file
    /// of the version; those not in the staging directory are carried over from the current
    /// version (incremental appends).
    ///
    /// An error means the old version is still the current one. Once the new one is, the run
    /// has succeeded: old versions that could not be removed after that are returned, one
    /// message each, for the run's summary (the next commit tries again).
    fn commit(
        &mut self,
        run_id: &str,
        staging: &Path,
        manifest: &RunManifest,
    ) -> Result<Vec<String>, StoreError>;
}

/// Flushes a directory entry to disk so a rename inside it survives a crash.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("cannot sync directory", dir))
}

/// A dataset in a volume tier mounted at a path.
pub struct VolumeStore {
    tier: String,
    dataset: String,
    path: PathBuf,
    versions: PathBuf,
    link_target_prefix: String,
}

impl VolumeStore {
    /// The dataset `dataset` of the tier mounted at `root`.
    pub fn new(tier: &str, root: &Path, dataset: &str) -> Self {
        let path = root.join(dataset);
        let leaf = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "dataset".into());
        let parent = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| root.to_path_buf());
        VolumeStore {
            tier: tier.to_string(),
            dataset: dataset.to_string(),
            versions: parent.join(format!(".{leaf}.versions")),
            link_target_prefix: format!(".{leaf}.versions"),
            path,
        }
    }

    /// The dataset path readers use.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn current_dir(&self) -> Result<Option<PathBuf>, StoreError> {
        match std::fs::symlink_metadata(&self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("cannot inspect", &self.path)(e)),
            Ok(m) if m.file_type().is_symlink() => {
                let target =
                    std::fs::read_link(&self.path).map_err(io("cannot read link", &self.path))?;
                let parent = self.path.parent().unwrap_or(Path::new("."));
                Ok(Some(parent.join(target)))
            }
            Ok(_) => Err(StoreError::NotManaged(self.path.display().to_string())),
        }
    }
}

impl DatasetStore for VolumeStore {
    fn describe(&self) -> String {
        format!("{}/{}", self.tier, self.dataset)
    }

    fn current(&self) -> Result<Option<RunManifest>, StoreError> {
        let Some(dir) = self.current_dir()? else {
            return Ok(None);
        };
        let file = dir.join(MANIFEST_FILE);
        let bytes = std::fs::read(&file).map_err(io("cannot read", &file))?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|_| StoreError::BadManifest(self.describe()))
    }

    fn staging(&mut self, run_id: &str) -> Result<PathBuf, StoreError> {
        // Fail early, before reading anything, if the path is not ours.
        self.current_dir()?;
        std::fs::create_dir_all(&self.versions).map_err(io("cannot create", &self.versions))?;
        // Leftovers of crashed runs are never referenced: remove them.
        for entry in std::fs::read_dir(&self.versions)
            .map_err(io("cannot list", &self.versions))?
            .flatten()
        {
            if entry.file_name().to_string_lossy().ends_with(".staging") {
                let p = entry.path();
                std::fs::remove_dir_all(&p).map_err(io("cannot remove stale staging", &p))?;
            }
        }
        let staging = self.versions.join(format!("{run_id}.staging"));
        std::fs::create_dir_all(&staging).map_err(io("cannot create", &staging))?;
        Ok(staging)
    }

    fn commit(
        &mut self,
        run_id: &str,
        staging: &Path,
        manifest: &RunManifest,
    ) -> Result<Vec<String>, StoreError> {
        let previous = self.current_dir()?;
        for f in manifest.files.iter().chain(&manifest.quarantine_files) {
            let staged = staging.join(&f.path);
            if staged.exists() {
                continue;
            }
            let Some(prev) = &previous else {
                return Err(StoreError::Io {
                    action: "cannot carry over",
                    path: staged,
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                });
            };
            if let Some(parent) = staged.parent() {
                std::fs::create_dir_all(parent).map_err(io("cannot create", parent))?;
            }
            let old = prev.join(&f.path);
            // Version files are immutable, so a hard link is a safe, instant copy.
            if std::fs::hard_link(&old, &staged).is_err() {
                std::fs::copy(&old, &staged).map_err(io("cannot carry over", &old))?;
            }
        }
        let manifest_path = staging.join(MANIFEST_FILE);
        std::fs::write(&manifest_path, manifest.to_json())
            .map_err(io("cannot write", &manifest_path))?;
        std::fs::File::open(&manifest_path)
            .and_then(|f| f.sync_all())
            .map_err(io("cannot sync", &manifest_path))?;
        let quarantine = staging.join("_quarantine");
        if quarantine.is_dir() {
            sync_dir(&quarantine)?;
        }
        sync_dir(staging)?;

        let final_dir = self.versions.join(run_id);
        std::fs::rename(staging, &final_dir).map_err(io("cannot finalise", &final_dir))?;
        sync_dir(&self.versions)?;

        let parent = self.path.parent().unwrap_or(Path::new("."));
        let tmp_link = parent.join(format!(
            ".{}.link-{run_id}",
            self.link_target_prefix.trim_start_matches('.')
        ));
        let _ = std::fs::remove_file(&tmp_link);
        std::os::unix::fs::symlink(format!("{}/{run_id}", self.link_target_prefix), &tmp_link)
            .map_err(io("cannot create link", &tmp_link))?;
        // The commit point: one atomic rename replaces the old link.
        std::fs::rename(&tmp_link, &self.path).map_err(io("cannot commit", &self.path))?;
        sync_dir(parent)?;

        // Only now may old versions go.
        let mut left = Vec::new();
        let entries = match std::fs::read_dir(&self.versions) {
            Ok(entries) => entries,
            Err(e) => {
                left.push(io("cannot list old versions in", &self.versions)(e).to_string());
                return Ok(left);
            }
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy() != run_id {
                let p = entry.path();
                if let Err(e) = std::fs::remove_dir_all(&p) {
                    left.push(io("cannot remove old version", &p)(e).to_string());
                }
            }
        }
        Ok(left)
    }
}

/// Elements of an S3 error body that echo the credentials or the signed request: S3 sends
/// back the access key id, and the string it expected to be signed, with
/// `SignatureDoesNotMatch`.
const ECHOED_ELEMENTS: [&str; 6] = [
    "AWSAccessKeyId",
    "StringToSign",
    "StringToSignBytes",
    "CanonicalRequest",
    "CanonicalRequestBytes",
    "SignatureProvided",
];

/// An object store's error as text for run errors, summaries and Events, with what S3 echoes
/// of the credentials cut out (the message carries the response body).
pub fn object_error_text(e: &object_store::Error) -> String {
    scrub_echoed_credentials(&crate::error_text::with_causes(e))
}

fn scrub_echoed_credentials(text: &str) -> String {
    let mut out = text.to_string();
    for name in ECHOED_ELEMENTS {
        let (open, close) = (format!("<{name}>"), format!("</{name}>"));
        let mut from = 0;
        while let Some(start) = out[from..].find(&open).map(|i| from + i + open.len()) {
            // An element cut off by a truncated body is redacted to the end.
            let end = out[start..].find(&close).map_or(out.len(), |i| start + i);
            out.replace_range(start..end, "<redacted>");
            from = start + "<redacted>".len();
        }
    }
    out
}

/// A dataset in an object-store tier.
pub struct ObjectStoreDataset {
    tier: String,
    dataset: String,
    store: Arc<dyn ObjectStore>,
    runtime: tokio::runtime::Handle,
    scratch: Option<tempfile::TempDir>,
}

impl ObjectStoreDataset {
    /// The dataset `dataset` in `store`; async calls run on `runtime`.
    pub fn new(
        tier: &str,
        dataset: &str,
        store: Arc<dyn ObjectStore>,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        ObjectStoreDataset {
            tier: tier.to_string(),
            dataset: dataset.trim_matches('/').to_string(),
            store,
            runtime,
            scratch: None,
        }
    }

    fn object(&self, rel: &str) -> ObjectPath {
        ObjectPath::from(format!("{}/{rel}", self.dataset))
    }

    fn err(&self, location: &ObjectPath) -> impl Fn(object_store::Error) -> StoreError + '_ {
        let location = location.to_string();
        move |e| StoreError::Object {
            location: location.clone(),
            message: object_error_text(&e),
        }
    }

    async fn upload(&self, local: &Path, to: &ObjectPath) -> Result<(), StoreError> {
        use tokio::io::AsyncWriteExt;
        let mut file = tokio::fs::File::open(local)
            .await
            .map_err(io("cannot read", local))?;
        let mut writer = object_store::buffered::BufWriter::new(self.store.clone(), to.clone());
        tokio::io::copy(&mut file, &mut writer)
            .await
            .map_err(io("cannot upload", local))?;
        writer
            .shutdown()
            .await
            .map_err(io("cannot upload", local))?;
        Ok(())
    }
}

impl DatasetStore for ObjectStoreDataset {
    fn describe(&self) -> String {
        format!("{}/{}", self.tier, self.dataset)
    }

    fn current(&self) -> Result<Option<RunManifest>, StoreError> {
        let loc = self.object(CURRENT_OBJECT);
        let got = self.runtime.block_on(async {
            match self.store.get(&loc).await {
                Ok(r) => r.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        match got.map_err(self.err(&loc))? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|_| StoreError::BadManifest(self.describe())),
        }
    }

    fn staging(&mut self, run_id: &str) -> Result<PathBuf, StoreError> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("medplat-{run_id}-"))
            .tempdir()
            .map_err(io("cannot create staging in", &std::env::temp_dir()))?;
        let path = dir.path().to_path_buf();
        self.scratch = Some(dir);
        Ok(path)
    }

    fn commit(
        &mut self,
        run_id: &str,
        staging: &Path,
        manifest: &RunManifest,
    ) -> Result<Vec<String>, StoreError> {
        let version = format!("_versions/{run_id}");
        let mut committed = manifest.clone();
        self.runtime.block_on(async {
            for f in committed
                .files
                .iter_mut()
                .chain(committed.quarantine_files.iter_mut())
            {
                let local = staging.join(&f.path);
                if local.exists() {
                    let rel = format!("{version}/{}", f.path);
                    self.upload(&local, &self.object(&rel)).await?;
                    f.path = rel;
                }
            }
            let body = committed.to_json();
            let version_manifest = self.object(&format!("{version}/{MANIFEST_FILE}"));
            self.store
                .put(&version_manifest, body.clone().into())
                .await
                .map_err(self.err(&version_manifest))?;
            // The commit point: one PUT of the pointer.
            let current = self.object(CURRENT_OBJECT);
            self.store
                .put(&current, body.into())
                .await
                .map_err(self.err(&current))?;
            Ok::<(), StoreError>(())
        })?;
        self.scratch = None;
        let keep: std::collections::HashSet<String> = committed
            .files
            .iter()
            .chain(&committed.quarantine_files)
            .filter_map(|f| f.path.split('/').nth(1).map(String::from))
            .chain(std::iter::once(run_id.to_string()))
            .collect();
        Ok(self.runtime.block_on(self.prune_versions(&keep)))
    }
}

impl ObjectStoreDataset {
    /// Deletes the objects of versions not in `keep`; returns what could not be deleted.
    async fn prune_versions(&self, keep: &std::collections::HashSet<String>) -> Vec<String> {
        use futures::TryStreamExt;
        let prefix = self.object("_versions");
        let objects: Vec<_> = match self.store.list(Some(&prefix)).try_collect().await {
            Ok(objects) => objects,
            Err(e) => return vec![self.err(&prefix)(e).to_string()],
        };
        let mut left = Vec::new();
        for o in objects {
            let rel = o
                .location
                .as_ref()
                .strip_prefix(&format!("{}/", self.dataset))
                .unwrap_or_default();
            let ver = rel.split('/').nth(1).unwrap_or_default();
            if !keep.contains(ver)
                && let Err(e) = self.store.delete(&o.location).await
            {
                left.push(self.err(&o.location)(e).to_string());
            }
        }
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_s3_echoes_of_the_credentials_is_cut_from_error_text() {
        // The shape of S3's SignatureDoesNotMatch body, with made-up values.
        let body = "403 Forbidden: <Error><Code>SignatureDoesNotMatch</Code><Message>check your key</Message>\
            <AWSAccessKeyId>AKIAEXAMPLEKEYID0001</AWSAccessKeyId><StringToSign>AWS4-HMAC-SHA256\n20261203T120000Z</StringToSign>\
            <SignatureProvided>abc123</SignatureProvided><StringToSignBytes>41 57 53</StringToSignBytes>\
            <CanonicalRequest>PUT /b/k</CanonicalRequest><CanonicalRequestBytes>50 55</CanonicalRequestBytes>\
            <RequestId>R1</RequestId></Error>";
        let text = scrub_echoed_credentials(body);
        for echoed in [
            "AKIAEXAMPLEKEYID0001",
            "20261203T120000Z",
            "abc123",
            "41 57 53",
            "PUT /b/k",
            "50 55",
        ] {
            assert!(!text.contains(echoed), "{echoed} in {text}");
        }
        assert!(text.contains("<Code>SignatureDoesNotMatch</Code>"));
        assert!(text.contains("<AWSAccessKeyId><redacted></AWSAccessKeyId>"));
        assert!(text.contains("<RequestId>R1</RequestId>"));
        // A body cut off inside an element.
        assert_eq!(
            scrub_echoed_credentials("x <AWSAccessKeyId>AKIAEXAMPLE"),
            "x <AWSAccessKeyId><redacted>"
        );
        assert_eq!(scrub_echoed_credentials("no body"), "no body");
    }

    #[test]
    fn an_object_store_error_names_its_cause() {
        #[derive(Debug)]
        struct Sending(std::io::Error);
        impl std::fmt::Display for Sending {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("error sending request")
            }
        }
        impl std::error::Error for Sending {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = object_store::Error::Generic {
            store: "S3",
            source: Box::new(Sending(std::io::Error::other(
                "invalid peer certificate: UnknownIssuer",
            ))),
        };
        assert_eq!(
            object_error_text(&e),
            "Generic S3 error: error sending request: invalid peer certificate: UnknownIssuer"
        );
    }
}
