//! Starts every controller on shared watches and runs them until shutdown.
//!
//! One watch per parent kind (with `DeserializeGuard`, so a malformed object cannot stall a
//! controller) and one metadata watch per child kind feed every controller that needs them.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use futures::{FutureExt, StreamExt};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, ReflectHandle, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::children::ChildStores;
use super::context::{Context, ParentStores, ParentsSynced, Settings};
use super::error::Error;
use super::metrics::{Metrics, MetricsError};
use super::{access_policy, data_source, pipeline, storage_tier};
use crate::api::{AccessPolicy, DataSource, Pipeline, StorageTier};
use crate::render::tier_claim::TIER_LABEL;

/// Errors starting the operator.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// Metrics could not be set up.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// A shared watch could not be subscribed to.
    #[error("cannot subscribe to the shared watch of {0}")]
    Subscribe(&'static str),
}

/// The running operator's handles: its context (metrics, caches) and the future that runs it.
pub struct Operator {
    /// Shared state, for the health and metrics endpoints.
    pub context: Arc<Context>,
}

const BUFFER: usize = 1024;

/// A shared watch of a parent kind: its store, a subscription and the driver future.
struct ParentWatch<K: Resource<DynamicType = ()> + Clone + 'static, D> {
    store: Store<DeserializeGuard<K>>,
    subscription: ReflectHandle<DeserializeGuard<K>>,
    drive: D,
}

fn parent_watch<K>(
    api: Api<DeserializeGuard<K>>,
    name: &'static str,
    synced: ParentsSynced,
) -> Result<ParentWatch<K, impl Future<Output = ()> + Send + 'static + use<K>>, OperatorError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store_shared(BUFFER);
    let handle = writer.subscribe().ok_or(OperatorError::Subscribe(name))?;
    let drive = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|g: &mut DeserializeGuard<K>| g.managed_fields_mut().clear())
        .reflect_shared(writer)
        .for_each(move |event| {
            if let Ok(watcher::Event::InitDone) = event {
                synced.mark(name);
            }
            futures::future::ready(())
        });
    Ok(ParentWatch {
        store,
        subscription: handle,
        drive,
    })
}

/// Wraps a reconciler with metrics and backoff bookkeeping.
async fn instrumented<K, F, Fut>(
    controller: &'static str,
    obj: Arc<DeserializeGuard<K>>,
    ctx: Arc<Context>,
    f: F,
) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()> + Clone,
    F: FnOnce(Arc<DeserializeGuard<K>>, Arc<Context>) -> Fut,
    Fut: Future<Output = Result<Action, Error>>,
{
    let key = format!("{controller}/{}", ObjectRef::from_obj(obj.as_ref()));
    // Prune must never mistake "not listed yet" for "absent"; this is instant once ready.
    ctx.children.wait_until_ready().await;
    let start = Instant::now();
    let result = f(obj, ctx.clone()).await;
    ctx.metrics.observe_reconcile(controller, start.elapsed());
    match &result {
        Ok(_) => ctx.succeeded(&key),
        Err(e) => {
            ctx.metrics.observe_error(controller, e.metric_reason());
            tracing::warn!(object = %key, error = %e, "reconcile failed");
        }
    }
    result
}

fn error_policy<K: Resource<DynamicType = ()>>(
    controller: &'static str,
) -> impl Fn(Arc<DeserializeGuard<K>>, &Error, Arc<Context>) -> Action {
    move |obj, _err, ctx| {
        let key = format!("{controller}/{}", ObjectRef::from_obj(obj.as_ref()));
        Action::requeue(ctx.backoff(&key))
    }
}

impl Operator {
    /// Builds the operator and returns it with the future that runs every controller until
    /// `shutdown` resolves. In-flight reconciles are allowed to finish.
    pub fn start(
        client: Client,
        settings: Settings,
        shutdown: impl Future<Output = ()> + Send + Sync + Clone + 'static,
    ) -> Result<(Operator, impl Future<Output = ()> + Send + 'static), OperatorError> {
        let ns = settings.namespace.clone();
        let metrics = Metrics::new()?;
        let (children, drive_children) = ChildStores::start(&client, ns.as_deref())
            .ok_or(OperatorError::Subscribe("children"))?;
        let (sources_api, policies_api, pipelines_api) = match ns.as_deref() {
            Some(n) => (
                Api::namespaced(client.clone(), n),
                Api::namespaced(client.clone(), n),
                Api::namespaced(client.clone(), n),
            ),
            None => (
                Api::all(client.clone()),
                Api::all(client.clone()),
                Api::all(client.clone()),
            ),
        };
        let synced = ParentsSynced::default();
        let ParentWatch {
            store: tiers,
            subscription: tiers_sub,
            drive: drive_tiers,
        } = parent_watch::<StorageTier>(Api::all(client.clone()), "StorageTier", synced.clone())?;
        let ParentWatch {
            store: sources,
            subscription: sources_sub,
            drive: drive_sources,
        } = parent_watch::<DataSource>(sources_api, "DataSource", synced.clone())?;
        let ParentWatch {
            store: policies,
            subscription: policies_sub,
            drive: drive_policies,
        } = parent_watch::<AccessPolicy>(policies_api, "AccessPolicy", synced.clone())?;
        let ParentWatch {
            store: pipelines,
            subscription: pipelines_sub,
            drive: drive_pipelines,
        } = parent_watch::<Pipeline>(pipelines_api, "Pipeline", synced.clone())?;
        let parents = ParentStores {
            tiers: tiers.clone(),
            sources: sources.clone(),
            policies: policies.clone(),
            pipelines: pipelines.clone(),
            synced,
        };
        let ctx = Arc::new(Context::new(
            client,
            children.clone(),
            parents,
            metrics,
            settings,
        ));

        let tier_controller = {
            Controller::for_shared_stream(tiers_sub.clone(), tiers.clone())
                .watches_shared_stream(children.claims.subscribe(), |claim| {
                    claim
                        .labels()
                        .get(TIER_LABEL)
                        .map(|t| ObjectRef::<DeserializeGuard<StorageTier>>::new(t))
                })
                .graceful_shutdown_on(shutdown.clone())
                .run(
                    |o, c| instrumented(storage_tier::CONTROLLER, o, c, storage_tier::reconcile),
                    error_policy(storage_tier::CONTROLLER),
                    ctx.clone(),
                )
                .for_each(|_| futures::future::ready(()))
        };

        let source_controller = {
            let sources_for_tier = sources.clone();
            Controller::for_shared_stream(sources_sub.clone(), sources.clone())
                .owns_shared_stream(children.service_accounts.subscribe())
                .owns_shared_stream(children.network_policies.subscribe())
                .owns_shared_stream(children.deployments.subscribe())
                .owns_shared_stream(children.services.subscribe())
                .watches_shared_stream(tiers_sub.clone(), move |tier| {
                    let name = tier.name_any();
                    sources_for_tier
                        .state()
                        .iter()
                        .filter(|g| {
                            g.0.as_ref().is_ok_and(|d| {
                                let c = &d.spec.connector;
                                c.files.as_ref().is_some_and(|f| f.location.tier == name)
                                    || c.hl7v2.as_ref().is_some_and(|h| h.landing.tier == name)
                            })
                        })
                        .map(|g| ObjectRef::from_obj(g.as_ref()))
                        .collect::<Vec<_>>()
                })
                .graceful_shutdown_on(shutdown.clone())
                .run(
                    |o, c| instrumented(data_source::CONTROLLER, o, c, data_source::reconcile),
                    error_policy(data_source::CONTROLLER),
                    ctx.clone(),
                )
                .for_each(|_| futures::future::ready(()))
        };

        let policy_controller = {
            let policies_for_source = policies.clone();
            Controller::for_shared_stream(policies_sub.clone(), policies.clone())
                .owns_shared_stream(children.config_maps.subscribe())
                .owns_shared_stream(children.roles.subscribe())
                .owns_shared_stream(children.role_bindings.subscribe())
                .owns_shared_stream(children.network_policies.subscribe())
                .watches_shared_stream(sources_sub.clone(), move |source| {
                    let ns = source.namespace();
                    policies_for_source
                        .state()
                        .iter()
                        .filter(|p| p.namespace() == ns)
                        .map(|p| ObjectRef::from_obj(p.as_ref()))
                        .collect::<Vec<_>>()
                })
                .graceful_shutdown_on(shutdown.clone())
                .run(
                    |o, c| instrumented(access_policy::CONTROLLER, o, c, access_policy::reconcile),
                    error_policy(access_policy::CONTROLLER),
                    ctx.clone(),
                )
                .for_each(|_| futures::future::ready(()))
        };

        let pipeline_controller = {
            let in_namespace = |store: Store<DeserializeGuard<Pipeline>>| {
                move |ns: Option<String>| -> Vec<ObjectRef<DeserializeGuard<Pipeline>>> {
                    store
                        .state()
                        .iter()
                        .filter(|p| ns.is_none() || p.namespace() == ns)
                        .map(|p| ObjectRef::from_obj(p.as_ref()))
                        .collect()
                }
            };
            let by_source = in_namespace(pipelines.clone());
            let by_policy = in_namespace(pipelines.clone());
            let by_tier = in_namespace(pipelines.clone());
            Controller::for_shared_stream(pipelines_sub, pipelines.clone())
                .owns_shared_stream(children.service_accounts.subscribe())
                .owns_shared_stream(children.config_maps.subscribe())
                .owns_shared_stream(children.network_policies.subscribe())
                .owns_shared_stream(children.cron_jobs.subscribe())
                .owns_shared_stream(children.jobs.subscribe())
                // Jobs a CronJob starts are owned by the CronJob; their labels name the pipeline.
                .watches_shared_stream(children.jobs.subscribe(), |job| {
                    let labels = job.labels();
                    (labels
                        .get(crate::render::common::OWNER_KIND)
                        .map(String::as_str)
                        == Some("pipeline"))
                    .then(|| labels.get(crate::render::common::OWNER_NAME).cloned())
                    .flatten()
                    .zip(job.namespace())
                    .map(|(name, ns)| {
                        ObjectRef::<DeserializeGuard<Pipeline>>::new(&name).within(&ns)
                    })
                })
                .watches_shared_stream(sources_sub.clone(), move |s| by_source(s.namespace()))
                .watches_shared_stream(policies_sub.clone(), move |p| by_policy(p.namespace()))
                .watches_shared_stream(tiers_sub.clone(), move |_| by_tier(None))
                .graceful_shutdown_on(shutdown.clone())
                .run(
                    |o, c| instrumented(pipeline::CONTROLLER, o, c, pipeline::reconcile),
                    error_policy(pipeline::CONTROLLER),
                    ctx.clone(),
                )
                .for_each(|_| futures::future::ready(()))
        };

        let run = async move {
            let watches = futures::future::join5(
                drive_children,
                drive_tiers,
                drive_sources,
                drive_policies,
                drive_pipelines,
            )
            .map(|_| ());
            let controllers = async move {
                futures::join!(
                    tier_controller,
                    source_controller,
                    policy_controller,
                    pipeline_controller
                );
            };
            tokio::select! {
                _ = watches => {},
                _ = controllers => {},
            }
        };
        Ok((Operator { context: ctx }, run))
    }
}
