//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several replicas exactly
//! one reconciles.
//!
//! A replica waits until it holds the Lease, then runs the controllers while it keeps renewing
//! it. If it loses the Lease (it could not renew in time and another replica took it), it stops
//! its controllers at once — abandoning in-flight reconciles rather than finishing them — and
//! reports the loss so the process exits and restarts as a follower: two leaders never write at
//! the same time. On a graceful shutdown it lets reconciles finish, then releases the Lease so
//! a follower takes over without waiting for it to expire.

use std::future::Future;
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};

/// Errors of leader election.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The Lease could not be created, read or renewed.
    #[error("lease {namespace}/{name}: {source}")]
    Lease {
        /// The Lease's namespace.
        namespace: String,
        /// The Lease's name.
        name: String,
        /// The cause.
        #[source]
        source: kube_lease_manager::LeaseManagerError,
    },
    /// Another replica took the Lease while this one led.
    #[error(
        "lost the lease {namespace}/{name} to another replica; stopping to never run two leaders"
    )]
    Lost {
        /// The Lease's namespace.
        namespace: String,
        /// The Lease's name.
        name: String,
    },
}

/// Where the Lease is and how long it lasts.
#[derive(Clone, Debug)]
pub struct LeaderConfig {
    /// The Lease's namespace (the operator's own).
    pub namespace: String,
    /// The Lease's name.
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a Lease is valid after its last renewal.
    pub duration: Duration,
    /// How long before expiry the holder renews; also the tolerated clock skew.
    pub grace: Duration,
}

/// How long a follower waits after a failed Lease request before it tries again.
const FOLLOWER_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// What ended a term as leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaderOutcome {
    /// Shutdown was requested before this replica ever led.
    NeverLed,
    /// The controllers stopped after a graceful shutdown and the Lease was released.
    Released,
}

/// Waits for the Lease, then runs `lead(stop)` while holding it. `stop` resolves when the
/// controllers must stop: on `shutdown`. Losing the Lease drops the controllers' future at
/// once and returns [`LeaderError::Lost`].
pub async fn run_as_leader<F, Fut>(
    client: Client,
    config: LeaderConfig,
    shutdown: Shared<BoxFuture<'static, ()>>,
    lead: F,
) -> Result<LeaderOutcome, LeaderError>
where
    F: FnOnce(Shared<BoxFuture<'static, ()>>) -> Fut,
    Fut: Future<Output = ()>,
{
    let lease_err = |source| LeaderError::Lease {
        namespace: config.namespace.clone(),
        name: config.name.clone(),
        source,
    };
    let manager: LeaseManager = LeaseManagerBuilder::new(client, &config.name)
        .with_namespace(&config.namespace)
        .with_identity(&config.identity)
        .with_duration(config.duration.as_secs().max(2))
        .with_grace(config.grace.as_secs().max(1))
        .with_field_manager(format!("medplat-leader-{}", config.identity))
        .build()
        .await
        .map_err(lease_err)?;

    // Follower: wait until the Lease is ours, or shutdown. A follower writes nothing, so a
    // failed read or acquisition (a flapping API server) is retried after a pause rather than
    // ending the replica.
    loop {
        tokio::select! {
            changed = manager.changed() => {
                match changed {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "could not read or acquire the lease; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(FOLLOWER_RETRY) => {}
                            _ = shutdown.clone() => return Ok(LeaderOutcome::NeverLed),
                        }
                    }
                }
            }
            _ = shutdown.clone() => return Ok(LeaderOutcome::NeverLed),
        }
    }
    tracing::info!(lease = %format!("{}/{}", config.namespace, config.name), identity = %config.identity, "became leader");

    // Leader: run the controllers while renewing; losing the Lease stops them at once.
    let controllers = lead(shutdown.clone()).fuse();
    tokio::pin!(controllers);
    // The manager renews `grace` before expiry; one failed renewal leaves time for a retry,
    // two within one Lease duration may mean the Lease expired and another replica holds it.
    let mut last_error: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            _ = &mut controllers => break,
            changed = manager.changed() => {
                match changed {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::error!(identity = %config.identity, "lost the lease; stopping controllers");
                        return Err(LeaderError::Lost {
                            namespace: config.namespace.clone(),
                            name: config.name.clone(),
                        });
                    }
                    Err(e) if last_error.is_none_or(|t| t.elapsed() >= config.duration) => {
                        tracing::warn!(error = %e, "lease renewal failed; retrying");
                        last_error = Some(std::time::Instant::now());
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "could not renew the lease before it could expire; stopping controllers");
                        return Err(LeaderError::Lost {
                            namespace: config.namespace.clone(),
                            name: config.name.clone(),
                        });
                    }
                }
            }
        }
    }
    manager.release().await.map_err(lease_err)?;
    tracing::info!(identity = %config.identity, "released the lease");
    Ok(LeaderOutcome::Released)
}
