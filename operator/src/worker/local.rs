//! Local mode: build the resolved-pipeline document from a directory of manifests (what a
//! GitOps repository holds), with volume tiers under a local root and Secrets under a local
//! directory, then run it with the same engine as in the cluster.

use std::path::{Path, PathBuf};

use crate::api::access_policy::AccessPolicy;
use crate::api::data_source::DataSource;
use crate::api::pipeline::Pipeline;
use crate::api::resolved::{Mounts, ResolveError, ResolvedPipeline};
use crate::api::storage_tier::StorageTier;
use crate::manifests::{self, ManifestError};

/// What can go wrong building a local document.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The manifests could not be read.
    #[error(transparent)]
    Manifests(#[from] ManifestError),
    /// An object of a medplat kind does not match its schema.
    #[error("{location}: {message}")]
    Invalid {
        /// File and document.
        location: String,
        /// The decoding error.
        message: String,
    },
    /// The pipeline is not among the manifests.
    #[error("no Pipeline {namespace}/{name} under {}", dir.display())]
    NoPipeline {
        /// The namespace asked for.
        namespace: String,
        /// The name asked for.
        name: String,
        /// The directory searched.
        dir: PathBuf,
    },
    /// The pipeline refers to something missing.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
}

/// Loads the manifests under `dir` and resolves one pipeline, with volume tiers at
/// `<local_root>/<tier>` and Secrets at `<secrets>/<secret>/<key>`.
pub fn resolve_from_manifests(
    dir: &Path,
    namespace: &str,
    pipeline: &str,
    local_root: &Path,
    secrets: &Path,
) -> Result<ResolvedPipeline, LocalError> {
    let objects = manifests::load(&[dir.to_path_buf()])?;
    let mut pipelines = Vec::new();
    let mut sources = Vec::new();
    let mut tiers = Vec::new();
    let mut policies = Vec::new();
    for o in &objects {
        if !o.api_version().starts_with("medplat.io/") {
            continue;
        }
        let invalid = |message: String| LocalError::Invalid {
            location: o.location(),
            message,
        };
        match o.kind() {
            "Pipeline" => pipelines.push(o.typed::<Pipeline>().map_err(invalid)?),
            "DataSource" => sources.push(o.typed::<DataSource>().map_err(invalid)?),
            "StorageTier" => tiers.push(o.typed::<StorageTier>().map_err(invalid)?),
            "AccessPolicy" => policies.push(o.typed::<AccessPolicy>().map_err(invalid)?),
            _ => {}
        }
    }
    let found = pipelines
        .into_iter()
        .find(|p| {
            p.metadata.name.as_deref() == Some(pipeline)
                && p.metadata.namespace.as_deref() == Some(namespace)
        })
        .ok_or_else(|| LocalError::NoPipeline {
            namespace: namespace.into(),
            name: pipeline.into(),
            dir: dir.to_path_buf(),
        })?;
    let mounts = Mounts {
        tiers_root: absolute(local_root),
        secrets_root: absolute(secrets),
    };
    Ok(ResolvedPipeline::build(
        &found, &sources, &tiers, &policies, &mounts,
    )?)
}

fn absolute(p: &Path) -> String {
    std::path::absolute(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}
