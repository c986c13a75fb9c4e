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
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};

/// Errors of leader election.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The Lease could not be released at shutdown (failures to read, create or renew it are
    /// retried while they may be).
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

/// What a read of the Lease confirms about this replica's term.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Confirmed {
    /// This replica holds it; its term is safe for this much longer.
    Until(Duration),
    /// Another replica holds it.
    HeldByOther,
}

/// The part of a Lease term a leader may use: a follower may take the Lease `duration` after
/// its last renewal, so the leader stops `grace / 4` before that, which covers clock skew
/// between replicas and writes still in flight. The manager renews `grace` before expiry, so
/// it has three quarters of the grace to get a renewal through and confirmed.
fn safe_term(config: &LeaderConfig) -> Duration {
    config.duration.saturating_sub(config.grace / 4)
}

/// How often the leader reads the Lease to confirm its renewals: four times per grace.
fn check_period(config: &LeaderConfig) -> Duration {
    (config.grace / 4).max(Duration::from_millis(100))
}

/// How long the leader waits after a failed renewal before it tries again: eight times per
/// grace, so a few retries fit in the three quarters of the grace the term guard allows.
fn renew_retry(config: &LeaderConfig) -> Duration {
    (config.grace / 8).max(Duration::from_millis(100))
}

/// What `lease` says about this replica's term, measured from its `renewTime` on this
/// replica's clock (the holder writes `renewTime` itself). `None` when the Lease says nothing
/// usable.
fn confirmed_term(lease: &Lease, config: &LeaderConfig) -> Option<Confirmed> {
    let spec = lease.spec.as_ref()?;
    let holder = spec.holder_identity.as_deref()?;
    if holder != config.identity {
        return Some(Confirmed::HeldByOther);
    }
    let renewed = spec.renew_time.as_ref()?.0;
    let elapsed = jiff::Timestamp::now().duration_since(renewed);
    let elapsed = Duration::try_from(elapsed).unwrap_or(Duration::ZERO);
    Some(Confirmed::Until(safe_term(config).saturating_sub(elapsed)))
}

/// Returns when this replica must stop leading on its own evidence.
///
/// The manager reports a lost Lease only once it has heard so from the API server. Under a
/// flapping server that news can come after the Lease expired and another replica took it, so
/// the leader also keeps its own clock: it reads the Lease several times per grace, and returns
/// when a read shows another holder or when no read has confirmed a renewal in time to keep the
/// term safe. A failed read extends nothing.
async fn guard_term(leases: Api<Lease>, config: &LeaderConfig) {
    let mut held_until = tokio::time::Instant::now() + safe_term(config);
    loop {
        let read = async {
            tokio::time::sleep(check_period(config)).await;
            leases.get_opt(&config.name).await
        };
        tokio::select! {
            _ = tokio::time::sleep_until(held_until) => {
                tracing::error!(identity = %config.identity, "no confirmed lease renewal before the safe end of the term; stopping controllers");
                return;
            }
            result = read => {
                if let Ok(Some(lease)) = result {
                    match confirmed_term(&lease, config) {
                        Some(Confirmed::Until(remaining)) => {
                            held_until = tokio::time::Instant::now() + remaining;
                        }
                        Some(Confirmed::HeldByOther) => {
                            tracing::error!(identity = %config.identity, "another replica holds the lease; stopping controllers");
                            return;
                        }
                        None => {}
                    }
                }
            }
        }
    }
}

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
    // Building the manager reads the Lease and creates it when missing. A follower writes
    // nothing else, so a failure here (a flapping API server at start-up) is retried after a
    // pause like any other follower request, instead of ending the process.
    let manager: LeaseManager = loop {
        let built = LeaseManagerBuilder::new(client.clone(), &config.name)
            .with_namespace(&config.namespace)
            .with_identity(&config.identity)
            .with_duration(config.duration.as_secs().max(2))
            .with_grace(config.grace.as_secs().max(1))
            .with_field_manager(format!("medplat-leader-{}", config.identity))
            .build()
            .await;
        match built {
            Ok(manager) => break manager,
            Err(e) => {
                tracing::warn!(error = %lease_err(e), "could not read or create the lease; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(FOLLOWER_RETRY) => {}
                    _ = shutdown.clone() => return Ok(LeaderOutcome::NeverLed),
                }
            }
        }
    };

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
    let leases: Api<Lease> = Api::namespaced(client, &config.namespace);
    // Pinned once, so its Lease reads are never cancelled by the other branches, and the
    // manager's renewals are never cancelled by it: it only ever completes to end the term.
    let term_guard = guard_term(leases, &config).fuse();
    tokio::pin!(term_guard);
    let controllers = lead(shutdown.clone()).fuse();
    tokio::pin!(controllers);
    // A failed renewal does not end the term: the manager tries again after a pause, for as
    // long as the term guard has confirmed the term, as client-go retries until its renew
    // deadline. Giving up on the second error made a leader under a flaky API server (5% of
    // requests failing in the soak) hand over every minute or so, and every takeover costs the
    // new leader a reconcile of every parent.
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        let renewal = async {
            if let Some(at) = retry_at {
                tokio::time::sleep_until(at).await;
            }
            manager.changed().await
        };
        tokio::select! {
            _ = &mut controllers => break,
            () = &mut term_guard => {
                return Err(LeaderError::Lost {
                    namespace: config.namespace.clone(),
                    name: config.name.clone(),
                });
            }
            changed = renewal => {
                retry_at = None;
                match changed {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::error!(identity = %config.identity, "lost the lease; stopping controllers");
                        return Err(LeaderError::Lost {
                            namespace: config.namespace.clone(),
                            name: config.name.clone(),
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "lease renewal failed; retrying while the term lasts");
                        retry_at = Some(tokio::time::Instant::now() + renew_retry(&config));
                    }
                }
            }
        }
    }
    manager.release().await.map_err(lease_err)?;
    tracing::info!(identity = %config.identity, "released the lease");
    Ok(LeaderOutcome::Released)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn config() -> LeaderConfig {
        LeaderConfig {
            namespace: "medplat-system".into(),
            name: "medplat-operator".into(),
            identity: "replica-a".into(),
            duration: Duration::from_secs(15),
            grace: Duration::from_secs(5),
        }
    }

    fn lease(holder: &str, renewed_secs_ago: i64) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                renew_time: Some(MicroTime(
                    jiff::Timestamp::now() - jiff::SignedDuration::from_secs(renewed_secs_ago),
                )),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        }
    }

    #[test]
    fn the_term_ends_a_quarter_grace_before_a_follower_may_take_over() {
        let c = config();
        assert_eq!(safe_term(&c), Duration::from_millis(13_750));
        // Renewed 4 s ago: 9.75 s left (give or take the test's own run time).
        let Some(Confirmed::Until(left)) = confirmed_term(&lease("replica-a", 4), &c) else {
            panic!("our own lease is not confirmed");
        };
        assert!(left <= Duration::from_millis(9_750) && left > Duration::from_millis(9_250));
        // Renewed longer ago than the safe term: nothing left, the leader must stop.
        assert_eq!(
            confirmed_term(&lease("replica-a", 14), &c),
            Some(Confirmed::Until(Duration::ZERO))
        );
        // A renewal in the future (clock skew) counts as just now, never as more.
        let Some(Confirmed::Until(left)) = confirmed_term(&lease("replica-a", -30), &c) else {
            panic!("a skewed lease is not confirmed");
        };
        assert!(left <= safe_term(&c));
    }

    #[test]
    fn another_holder_or_an_empty_lease_is_never_a_confirmation() {
        let c = config();
        assert_eq!(
            confirmed_term(&lease("replica-b", 0), &c),
            Some(Confirmed::HeldByOther)
        );
        assert_eq!(confirmed_term(&Lease::default(), &c), None);
        assert!(check_period(&c) < c.grace);
    }
}
