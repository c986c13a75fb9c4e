//! The run manifest: what one run read, did and wrote. It is written into the committed
//! dataset version as `_manifest.json`, and it carries the sources' watermarks, so the
//! incremental checkpoint advances exactly when the data is committed, never before.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::sink::WrittenFile;
use crate::api::classification::Classification;
use crate::api::pipeline::SinkFormat;

/// The manifest format identifier.
pub const MANIFEST_KIND: &str = "medplat.io/run-manifest/v1";

/// How a run's output relates to the previous version.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum WriteMode {
    /// The new version holds only this run's output.
    Replace,
    /// The new version holds the previous files plus this run's (incremental sources).
    Append,
}

/// One source as read by the run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SourceRead {
    /// The DataSource's name.
    pub name: String,
    /// The connector kind.
    pub connector: String,
    /// What was read (directory, table, URL; never credentials).
    pub location: String,
    /// Items read (records and malformed input).
    pub records: u64,
    /// Bytes read.
    pub bytes: u64,
    /// The watermark after this run (incremental sources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<String>,
}

/// Record counts by outcome.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// Read from the sources, malformed ones included.
    pub records_in: u64,
    /// Written to the sink.
    pub records_out: u64,
    /// Set aside in `_quarantine/` with a reason.
    pub quarantined: u64,
    /// Dropped by `validate` with `onFail: drop`.
    pub dropped: u64,
    /// Removed as duplicates by `dedupe`.
    pub deduplicated: u64,
    /// Suppressed by the k-anonymity gate.
    pub suppressed: u64,
}

/// The key version a step used, for key rotation audits (never the key).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KeyVersion {
    /// The step.
    pub step: String,
    /// The Secret.
    pub secret: String,
    /// The declared version label, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// The manifest of one committed run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunManifest {
    /// [`MANIFEST_KIND`].
    pub kind: String,
    /// The run's id; also the name of the committed version.
    pub run_id: String,
    /// `namespace/name` of the pipeline.
    pub pipeline: String,
    /// The pipeline's generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// When the run started (RFC 3339).
    pub started_at: String,
    /// When the run committed (RFC 3339).
    pub finished_at: String,
    /// Wall time in seconds.
    pub duration_seconds: f64,
    /// The logical date used for ages.
    pub as_of: String,
    /// The sources as read.
    pub sources: Vec<SourceRead>,
    /// The steps, by kind and name, in order.
    pub steps: Vec<String>,
    /// Counts by outcome.
    pub counts: Counts,
    /// The output classification the policy engine computed.
    pub output_classification: Classification,
    /// `tier/dataset`.
    pub sink: String,
    /// The output format.
    pub format: SinkFormat,
    /// Replace or append.
    pub mode: WriteMode,
    /// The data files of this version (previous ones first when appending).
    pub files: Vec<WrittenFile>,
    /// The quarantine files of this version.
    pub quarantine_files: Vec<WrittenFile>,
    /// Key versions used by deidentify steps.
    pub key_versions: Vec<KeyVersion>,
    /// Incremental checkpoints by source, committed with the data.
    pub watermarks: BTreeMap<String, String>,
}

impl RunManifest {
    /// The manifest as pretty JSON.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
}
