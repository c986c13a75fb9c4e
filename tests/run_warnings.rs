//! How a finished run reaches the Pipeline against kubesim: the worker's run summary (its pod's
//! termination message) fills `lastRun`, and a failed run, or one that committed but left old
//! versions behind, is one Warning Event naming the Job.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kubesim::{PodFate, PodOutcome};
use medplat::worker::manifest::Counts;
use medplat::worker::summary::{RunOutcome, RunSummary};
use medplat_integration::{Cluster, eventually, test_settings};
use serde_json::Value;

const T: Duration = Duration::from_secs(30);
const V: &str = "medplat.io/v1alpha1";

async fn pipeline(c: &Cluster, name: &str) -> Option<Value> {
    c.get(V, "Pipeline", Some("clinical"), name).await
}

/// The worker's run summary for a run of research-extract, as its pod leaves it in the
/// termination message.
fn research_summary(
    job: &str,
    result: RunOutcome,
    message: Option<&str>,
    warnings: &[&str],
) -> String {
    let summary = RunSummary {
        medplat_run_summary: true,
        namespace: "clinical".into(),
        pipeline: "research-extract".into(),
        run_id: job.into(),
        result,
        message: message.map(String::from),
        records: Counts {
            records_in: 40,
            records_out: if result == RunOutcome::Succeeded {
                37
            } else {
                0
            },
            quarantined: 3,
            ..Counts::default()
        },
        output_level: None,
        sink: "research-l2/discharges".into(),
        duration_seconds: 0.5,
        bytes_read: 4096,
        bytes_written: 2048,
        access_denied: 0,
        warnings: warnings.iter().map(|w| w.to_string()).collect(),
        metrics: Default::default(),
    };
    serde_json::to_string(&summary.with_metrics()).unwrap()
}

/// A failed run and a run that committed but could not remove old versions each raise one
/// Warning Event on the Pipeline (`RunFailed`, `RunLeftOldVersions`) with the Job's name and
/// the worker's own words, and `lastRun` shows the result and the counts from the summary.
#[tokio::test]
async fn a_failed_run_and_a_run_that_left_old_versions_warn_on_the_pipeline() {
    // kubesim runs no containers: this rule ends research-extract's pods the way the worker
    // ends its runs, with the summary as termination message. The first run fails; later ones
    // commit, leaving two old versions behind.
    let jobs_seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = jobs_seen.clone();
    let outcome = PodOutcome::new(move |pod| {
        let label = |k: &str| {
            pod.pointer(&format!("/metadata/labels/{}", k.replace('/', "~1")))
                .and_then(Value::as_str)
                .map(String::from)
        };
        let (Some(job), Some("research-extract")) =
            (label("job-name"), label("medplat.io/pipeline").as_deref())
        else {
            return PodOutcome::default().fate(pod);
        };
        let mut seen = seen.lock().unwrap();
        if !seen.contains(&job) {
            seen.push(job.clone());
        }
        let message = if seen.first() == Some(&job) {
            research_summary(
                &job,
                RunOutcome::Failed,
                Some("step person-link: key hmac-key of Secret linkage-key is too short"),
                &[],
            )
        } else {
            research_summary(
                &job,
                RunOutcome::Succeeded,
                None,
                &[
                    "version v-old-1 of research-l2/discharges could not be removed: permission denied",
                    "version v-old-2 of research-l2/discharges could not be removed: permission denied",
                ],
            )
        };
        PodFate {
            start_after: Duration::from_millis(200),
            finish: Some((Duration::from_millis(500), seen.first() != Some(&job))),
            termination_message: Some(message),
        }
    });
    let c = Cluster::start_with_outcome(Cluster::default_nodes(), outcome).await;
    c.apply_hospital(&["Platform"]).await;
    let op = c.start_operator(test_settings());

    let p = eventually(T, "lastRun to show the failed run", || async {
        let p = pipeline(&c, "research-extract").await?;
        (p["status"]["lastRun"]["result"] == "Failed").then_some(p)
    })
    .await;
    let first_job = p["status"]["lastRun"]["jobName"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(p["status"]["lastRun"]["recordsIn"], 40);
    assert_eq!(p["status"]["lastRun"]["recordsOut"], 0);
    let warnings = |reason: &'static str| {
        let c = &c;
        async move {
            c.events("clinical")
                .await
                .into_iter()
                .filter(|e| e["reason"] == reason && e["regarding"]["name"] == "research-extract")
                .collect::<Vec<_>>()
        }
    };
    let first_warning = |reason: &'static str| {
        let warnings = &warnings;
        async move {
            let found = eventually(T, &format!("a {reason} Event"), || async {
                let found = warnings(reason).await;
                (!found.is_empty()).then_some(found)
            })
            .await;
            found[0].clone()
        }
    };
    let failed = first_warning("RunFailed").await;
    assert_eq!(failed["type"], "Warning");
    assert_eq!(
        failed["note"],
        format!(
            "Job {first_job} failed: step person-link: key hmac-key of Secret linkage-key is too short"
        )
    );

    // A new request runs again; that run commits but leaves old versions behind.
    c.request_run("clinical", "research-extract", "2026-11-28T12:00:00Z")
        .await;
    let p = eventually(T, "lastRun to show the second run's success", || async {
        let p = pipeline(&c, "research-extract").await?;
        (p["status"]["lastRun"]["result"] == "Succeeded").then_some(p)
    })
    .await;
    let second_job = p["status"]["lastRun"]["jobName"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(second_job, first_job);
    assert_eq!(p["status"]["lastRun"]["recordsOut"], 37);
    assert_eq!(p["status"]["lastRun"]["recordsQuarantined"], 3);
    let left = first_warning("RunLeftOldVersions").await;
    assert_eq!(left["type"], "Warning");
    assert_eq!(
        left["note"],
        format!(
            "Job {second_job} committed, but version v-old-1 of research-l2/discharges could not be removed: permission denied (1 more in the run summary)"
        )
    );

    // Each is said once, however often the pipeline reconciles meanwhile.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(warnings("RunFailed").await.len(), 1);
    assert_eq!(warnings("RunLeftOldVersions").await.len(), 1);
    op.stop().await;
}
