//! Pipeline (namespaced): governed movement of data from sources through steps into a tier.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::classification::{Classification, Purpose};
use super::conditions::Condition;
use super::steps::Step;
use super::worker_resources::WorkerResources;

/// The annotation whose change requests an on-demand run (any new value, e.g. a timestamp).
pub const RUN_REQUESTED_AT: &str = "medplat.io/run-requested-at";

/// A governed pipeline: sources, ordered steps, a sink tier, and when to run.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "medplat.io",
    version = "v1alpha1",
    kind = "Pipeline",
    doc = "Governed movement of data from DataSources through ordered steps (map, cleanse, validate, deidentify, link, dedupe) into a StorageTier.",
    plural = "pipelines",
    shortname = "mpipe",
    category = "medplat",
    namespaced,
    status = "PipelineStatus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Level","type":"string","jsonPath":".status.outputClassification.level"}"#,
    printcolumn = r#"{"name":"Sink","type":"string","jsonPath":".spec.sink.tier"}"#,
    printcolumn = r#"{"name":"Schedule","type":"string","jsonPath":".spec.schedule"}"#,
    printcolumn = r#"{"name":"Compliant","type":"string","jsonPath":".status.conditions[?(@.type==\"PolicyCompliant\")].status"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Last Run","type":"string","jsonPath":".status.lastRun.result"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.sources.all(s, self.sources.exists_one(t, t == s))").message("sources must not repeat").field_path(".sources"))]
pub struct PipelineSpec {
    /// The DataSources to read, by name, in this namespace.
    #[schemars(length(min = 1, max = 16), inner(length(min = 1, max = 253)))]
    pub sources: Vec<String>,
    /// Ordered steps: map, cleanse, validate, deidentify, link, dedupe.
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub steps: Vec<Step>,
    /// Where the output goes.
    pub sink: Sink,
    /// A cron schedule (`0 2 * * *`); when unset, the pipeline runs on demand, each time the
    /// annotation `medplat.io/run-requested-at` changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|(\S+\s+){4}\S+)$"
    ))]
    pub schedule: Option<String>,
    /// Suspend scheduled runs without deleting anything.
    #[serde(default)]
    pub suspend: bool,
    /// Partitions of the input, run as an Indexed Job with this many pods.
    #[serde(default = "default_parallelism")]
    #[schemars(range(min = 1, max = 64))]
    pub parallelism: u32,
    /// Why the data moves. A cross-domain flow needs an AccessPolicy grant for this purpose.
    pub purpose: Purpose,
    /// The ServiceAccount the worker runs as; `medplat-pipeline-<name>` (created by medplat)
    /// when unset. AccessPolicies grant it read on the sources and write on the sink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub service_account_name: Option<String>,
    /// Retries of a failed run before it counts as failed.
    #[serde(default = "default_backoff_limit")]
    #[schemars(range(min = 0, max = 10))]
    pub backoff_limit: u32,
    /// CPU and memory of each worker pod. Unset amounts keep the defaults (requests 100m CPU
    /// and 256Mi, limits 2 CPUs and 2Gi); the worker runs one thread per CPU of its limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<WorkerResources>,
}

fn default_parallelism() -> u32 {
    1
}

fn default_backoff_limit() -> u32 {
    2
}

impl Pipeline {
    /// The ServiceAccount the worker runs as.
    pub fn service_account(&self) -> String {
        match &self.spec.service_account_name {
            Some(sa) => sa.clone(),
            None => format!(
                "medplat-pipeline-{}",
                self.metadata.name.as_deref().unwrap_or_default()
            ),
        }
    }
}

/// The output of a pipeline: a tier, a dataset path in it, and a format.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Sink {
    /// The StorageTier to write to.
    #[schemars(length(min = 1, max = 253))]
    pub tier: String,
    /// The dataset path inside the tier, e.g. `lab/results`. No `..` segments.
    #[schemars(
        length(min = 1, max = 512),
        regex(pattern = r"^[A-Za-z0-9_\-][A-Za-z0-9_\-.]*(/[A-Za-z0-9_\-][A-Za-z0-9_\-.]*)*$")
    )]
    pub dataset: String,
    /// The output format: `ndjson` (default), `parquet` or `csv`.
    #[serde(default)]
    pub format: SinkFormat,
}

/// An output format.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum SinkFormat {
    /// One JSON object per line.
    #[default]
    Ndjson,
    /// Apache Parquet.
    Parquet,
    /// Comma-separated values with a header row.
    Csv,
}

/// The observed state of a Pipeline.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PipelineStatus {
    /// The generation this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `PolicyCompliant`, `Reconciling`, `Stalled`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The classification of the output, computed by the policy engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_classification: Option<Classification>,
    /// Why the pipeline may not run, one line per reason (empty when compliant).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub violations: Vec<String>,
    /// Where the data comes from and goes to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lineage: Option<Lineage>,
    /// The most recent run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunStatus>,
    /// The last value of `medplat.io/run-requested-at` that was turned into a Job, so a request
    /// is never run twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_run_request: Option<String>,
}

/// Sources → sink lineage.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Lineage {
    /// The sources, as `namespace/name (level, domain)`.
    pub sources: Vec<String>,
    /// The steps, by kind and name, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<String>,
    /// The sink, as `tier/dataset`.
    pub sink: String,
}

/// One run of a pipeline.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RunStatus {
    /// The Job that ran it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// When the run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// `Running`, `Succeeded` or `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<RunResult>,
    /// Records read from the sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_in: Option<i64>,
    /// Records written to the sink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_out: Option<i64>,
    /// Records quarantined with a reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_quarantined: Option<i64>,
}

/// The outcome of a run.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunResult {
    /// The Job is running.
    Running,
    /// The Job completed and the output was committed.
    Succeeded,
    /// The Job failed; nothing was committed.
    Failed,
}
