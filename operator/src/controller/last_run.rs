//! A Pipeline's last run: its newest Job (found in the Job metadata cache, read by name) and the
//! run summary its pod left as termination message; metrics and a Warning for failed runs.
//!
//! The cache answers "is there a run at all" without a request, so the thousands of pipelines
//! that have not run cost nothing; a finished run never changes, so it is read once per
//! process and then remembered.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::events::EventType;

use super::context::Context;
use super::error::{Error, Result};
use crate::api::metrics::{OUTCOME_IN, OUTCOME_OUT, OUTCOME_QUARANTINED};
use crate::api::pipeline::{RunResult, RunStatus};
use crate::worker::summary::RunSummary;

/// Finished runs already read by this process, by `namespace/job`.
#[derive(Default)]
pub struct FinishedRuns {
    runs: Mutex<HashMap<String, (RunStatus, Option<RunSummary>)>>,
}

impl FinishedRuns {
    fn get(&self, key: &str) -> Option<(RunStatus, Option<RunSummary>)> {
        self.runs.lock().ok()?.get(key).cloned()
    }

    fn remember(&self, key: String, run: (RunStatus, Option<RunSummary>)) {
        if let Ok(mut m) = self.runs.lock() {
            m.insert(key, run);
        }
    }
}

/// The last run of the pipeline with `uid` in `ns`: its newest Job and, once finished, the
/// worker's summary. `None` when it never ran (or its Jobs are gone).
pub async fn last_run(
    ctx: &Context,
    ns: &str,
    uid: &str,
) -> Result<Option<(RunStatus, Option<RunSummary>)>> {
    let newest = ctx
        .children
        .jobs
        .owned_by(uid)
        .into_iter()
        .filter(|j| j.namespace().as_deref() == Some(ns))
        .max_by_key(|j| {
            (
                j.metadata.creation_timestamp.clone().map(|t| t.0),
                j.name_any(),
            )
        });
    let Some(newest) = newest else {
        return Ok(None);
    };
    let job_name = newest.name_any();
    let key = format!("{ns}/{job_name}");
    if let Some(run) = ctx.finished_runs.get(&key) {
        return Ok(Some(run));
    }
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let Some(job) = jobs
        .get_opt(&job_name)
        .await
        .map_err(|e| Error::kube("get", format!("Job {key}"), e))?
    else {
        // Deleted since the cache saw it; its deletion wakes the pipeline again.
        return Ok(None);
    };
    let status = job.status.clone().unwrap_or_default();
    let condition = |t: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == t && c.status == "True")
    };
    let result = if condition("Complete") {
        RunResult::Succeeded
    } else if condition("Failed") {
        RunResult::Failed
    } else {
        RunResult::Running
    };
    let mut summary = None;
    if result != RunResult::Running {
        let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
        let list = pods
            .list(&ListParams::default().labels(&format!("job-name={job_name}")))
            .await
            .map_err(|e| Error::kube("list", format!("pods of Job {key}"), e))?;
        summary = list
            .items
            .iter()
            .flat_map(|p| {
                p.status
                    .iter()
                    .flat_map(|s| s.container_statuses.iter().flatten())
            })
            .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.message.clone())
            .find_map(|m| serde_json::from_str::<RunSummary>(m.trim()).ok());
    }
    let run = RunStatus {
        job_name: Some(job_name),
        start_time: status.start_time.clone(),
        completion_time: status.completion_time.clone(),
        result: Some(result),
        records_in: summary.as_ref().map(|s| s.records.records_in as i64),
        records_out: summary.as_ref().map(|s| s.records.records_out as i64),
        records_quarantined: summary.as_ref().map(|s| s.records.quarantined as i64),
    };
    if result != RunResult::Running {
        ctx.finished_runs
            .remember(key, (run.clone(), summary.clone()));
    }
    Ok(Some((run, summary)))
}

/// Exports a finished run's metrics once per Job, and warns about a failed run, or one that
/// left old versions behind, once.
pub async fn observe_run(
    ctx: &Context,
    ns: &str,
    name: &str,
    run: Option<&RunStatus>,
    summary: Option<&RunSummary>,
    reference: &ObjectReference,
) {
    let Some(run) = run else { return };
    let failed = run.result == Some(RunResult::Failed);
    ctx.metrics
        .pipeline_run_failed
        .with_label_values(&[ns, name])
        .set(if failed { 1.0 } else { 0.0 });
    if let Some(s) = summary {
        for (outcome, value) in [
            (OUTCOME_IN, s.records.records_in),
            (OUTCOME_OUT, s.records.records_out),
            (OUTCOME_QUARANTINED, s.records.quarantined),
        ] {
            ctx.metrics
                .pipeline_last_run_records
                .with_label_values(&[ns, name, outcome])
                .set(value as f64);
        }
        let job = run.job_name.clone().unwrap_or_default();
        if ctx.first_sighting(&format!("{ns}/{job}")) && s.access_denied > 0 {
            ctx.metrics
                .worker_access_denied
                .with_label_values(&[ns, name])
                .inc_by(s.access_denied as f64);
        }
    }
    // A run that committed but could not remove old versions leaves data past its retention
    // until a later run succeeds in removing it: say so once per Job.
    if let Some(s) = summary
        && let Some(first) = s.warnings.first()
    {
        let job = run.job_name.clone().unwrap_or_default();
        if ctx.first_sighting(&format!("{ns}/{job}/warnings")) {
            let more = match s.warnings.len() {
                1 => String::new(),
                n => format!(" ({} more in the run summary)", n - 1),
            };
            ctx.event(
                reference,
                EventType::Warning,
                "RunLeftOldVersions",
                "Run",
                format!("Job {job} committed, but {first}{more}"),
            )
            .await;
        }
    }
    if failed {
        let job = run.job_name.clone().unwrap_or_default();
        let why = summary
            .and_then(|s| s.message.clone())
            .unwrap_or_else(|| "see the Job's pod logs".into());
        ctx.event(
            reference,
            EventType::Warning,
            "RunFailed",
            "Run",
            format!("Job {job} failed: {why}"),
        )
        .await;
    }
}
