//! The simulated control plane's controllers, run in one background task: garbage collection
//! and deletion finalizers, the scheduler and kubelet, and the workload controllers.
//!
//! Controllers write through [`crate::objects::Objects`] like any client (so watches see their
//! changes), but not over HTTP, so they never appear in the request log.

pub mod batch;
pub mod gc;
pub mod util;
pub mod workloads;

use std::sync::Arc;
use std::time::Duration;

use crate::http::Shared;
use crate::kubelet::{Kubelet, PodOutcome};

/// Runs every controller until `shutdown` flips. Wakes on store changes (debounced) and on a
/// timer, so time-driven transitions (pod phases, CronJob schedules) happen without writes.
pub async fn run(
    shared: Arc<Shared>,
    tick: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    outcome: PodOutcome,
) {
    let mut changes = shared.objects.store().subscribe_changes();
    let mut kubelet = Kubelet::default();
    loop {
        // Several passes in a row settle cascades (a deletion that frees another) quickly.
        for _ in 0..8 {
            let mut acted = gc::pass(&shared.objects);
            acted |= kubelet.pass(&shared.objects, &outcome);
            acted |= workloads::deployments(&shared.objects);
            acted |= workloads::daemonsets(&shared.objects);
            acted |= workloads::statefulsets(&shared.objects);
            acted |= workloads::claims(&shared.objects);
            acted |= batch::jobs(&shared.objects);
            acted |= batch::cronjobs(&shared.objects);
            if !acted {
                break;
            }
        }
        tokio::select! {
            _ = changes.changed() => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            _ = tokio::time::sleep(tick) => {}
            _ = shutdown.changed() => return,
        }
    }
}
