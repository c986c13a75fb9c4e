//! The soak suite: the operator converges a generated hospital while things go wrong, and ends
//! in exactly the state of a fault-free run.
//!
//! Scenarios (each compared with one fault-free run of the same hospital):
//! - **faults**: kubesim fails 5% of requests (500, 429, 409), drops every watch every 10 s and
//!   restarts twice;
//! - **kills**: the operator is killed (its task aborted mid-reconcile, as SIGKILL would leave
//!   the API server) three times during the run and started again;
//! - **replicas**: two replicas with leader election under the same faults as `faults`, the
//!   leader killed once mid-run.
//!
//! Every scenario asserts: every child and every parent status equal the fault-free run's
//! field by field (minus volatile metadata); no Job created twice for one run request; no
//! panic in medplat or kubesim; a bounded request rate (the peak requests/s is printed). The
//! replicas scenario also asserts that two replicas never write in turn except across a Lease
//! takeover.
//!
//! Size: 100 Pipelines, 50 DataSources, 10 AccessPolicies by default (about a minute);
//! `MEDPLAT_SOAK_SCALE=full` runs issue 8's 1,000, 500 and 100.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod harness;
mod requests;

use std::time::Duration;

use harness::{Baseline, Scenario, baseline, run_scenario};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_converge_to_the_fault_free_state() {
    let base: &Baseline = baseline();
    run_scenario(base, Scenario::Faults).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_operators_converge_to_the_fault_free_state() {
    let base: &Baseline = baseline();
    run_scenario(base, Scenario::Kills).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_under_faults_never_write_together() {
    let base: &Baseline = baseline();
    run_scenario(base, Scenario::Replicas).await;
}

/// How long a scenario may take to converge: `MEDPLAT_SOAK_TIMEOUT_SECS`, else 600 s.
pub fn converge_timeout() -> Duration {
    Duration::from_secs(
        std::env::var("MEDPLAT_SOAK_TIMEOUT_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(600),
    )
}
