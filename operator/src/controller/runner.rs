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
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::cache_index::CacheIndex;
use super::children::ChildStores;
use super::context::{Context, ParentStores, ParentsSynced, Settings};
use super::error::Error;
use super::fanout::Fanout;
use super::metrics::{Metrics, MetricsError};
use super::platform::watches::PlatformWatches;
use super::triggers::{in_namespace, pipelines_reading, sources_read_by, spec_changes};
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

/// The operator: its shared state, and the subscriptions controllers are started from.
pub struct Operator {
    /// Shared state (client, caches, metrics), for the controllers, the webhook and the health
    /// endpoints.
    pub context: Arc<Context>,
    tiers_sub: Fanout<DeserializeGuard<StorageTier>>,
    sources_sub: Fanout<DeserializeGuard<DataSource>>,
    policies_sub: Fanout<DeserializeGuard<AccessPolicy>>,
    pipelines_sub: Fanout<DeserializeGuard<Pipeline>>,
    /// The Platform side's watches; `None` when the operator watches one namespace.
    platform: Option<Arc<PlatformWatches>>,
}

const BUFFER: usize = 1024;

/// How many reconciles of one parent kind run at once. Without a bound, a start-up with
/// thousands of parents starts them all together: each holds its rendered children and an
/// HTTP connection of its own (HTTP/1.1 has no multiplexing) while kubesim or the API server
/// answers the others, which made the operator's peak memory grow with the object count. A few
/// dozen in flight keep both cores busy.
const PARENT_CONCURRENCY: u16 = 16;

/// The controller settings of the parent kinds (bounded concurrency).
fn parent_config() -> kube::runtime::controller::Config {
    kube::runtime::controller::Config::default().concurrency(PARENT_CONCURRENCY)
}

/// A shared watch of a parent kind: its store, an index of it, a subscription and the driver
/// future.
struct ParentWatch<K: Resource<DynamicType = ()> + Clone + 'static, D> {
    store: Store<DeserializeGuard<K>>,
    index: Arc<CacheIndex<DeserializeGuard<K>>>,
    subscription: Fanout<DeserializeGuard<K>>,
    drive: D,
}

/// No index keys: for the parent kinds nobody looks up by reference.
fn unindexed<K>(_: &K) -> Vec<String> {
    Vec::new()
}

fn parent_watch<K>(
    api: Api<DeserializeGuard<K>>,
    name: &'static str,
    synced: ParentsSynced,
    index_keys: fn(&DeserializeGuard<K>) -> Vec<String>,
) -> Result<ParentWatch<K, impl Future<Output = ()> + Send + 'static + use<K>>, OperatorError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store_shared(BUFFER);
    let (fanout, drain) = Fanout::new(writer.subscribe().ok_or(OperatorError::Subscribe(name))?);
    let index = Arc::new(CacheIndex::new(index_keys));
    let indexer = index.clone();
    let watch = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|g: &mut DeserializeGuard<K>| g.managed_fields_mut().clear())
        .inspect(move |ev| indexer.observe(ev))
        .reflect_shared(writer)
        .for_each(move |event| {
            if let Ok(watcher::Event::InitDone) = event {
                synced.mark(name);
            }
            futures::future::ready(())
        });
    let drive = async move {
        futures::join!(watch, drain);
    };
    Ok(ParentWatch {
        store,
        index,
        subscription: fanout,
        drive,
    })
}

/// A trigger stream for a controller started after its watch: every object already cached,
/// then every change. Subscribing first and reading the cache second leaves no gap (an object
/// seen twice is reconciled once more, harmlessly).
fn with_existing<K>(
    fanout: &Fanout<DeserializeGuard<K>>,
    store: &Store<DeserializeGuard<K>>,
) -> impl futures::Stream<Item = Arc<DeserializeGuard<K>>> + Send + 'static + use<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let changes = fanout.subscribe();
    futures::stream::iter(store.state()).chain(changes)
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
    // Prune must never mistake "not listed yet" for "absent", nor a policy decision a source
    // not listed yet for a missing one; this is instant once synced.
    ctx.wait_synced().await;
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
    /// Builds the operator and returns it with the future that runs the watches and every
    /// controller until `shutdown` resolves (in-flight reconciles finish). For a single
    /// replica; with leader election use [`Operator::start_caches`] and
    /// [`Operator::controllers`].
    pub fn start(
        client: Client,
        settings: Settings,
        shutdown: impl Future<Output = ()> + Send + Sync + Clone + 'static,
    ) -> Result<(Operator, impl Future<Output = ()> + Send + 'static), OperatorError> {
        let (operator, watches) = Operator::start_caches(client, settings)?;
        let controllers = operator.controllers(shutdown);
        let run = async move {
            tokio::select! {
                _ = watches => {},
                _ = controllers => {},
            }
        }
        .boxed();
        Ok((operator, run))
    }

    /// Builds the caches every replica keeps warm (for the webhook and a fast takeover) and
    /// returns the future that drives their watches.
    pub fn start_caches(
        client: Client,
        settings: Settings,
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
            index: _,
            drive: drive_tiers,
        } = parent_watch::<StorageTier>(
            Api::all(client.clone()),
            "StorageTier",
            synced.clone(),
            unindexed,
        )?;
        let ParentWatch {
            store: sources,
            subscription: sources_sub,
            index: _,
            drive: drive_sources,
        } = parent_watch::<DataSource>(sources_api, "DataSource", synced.clone(), unindexed)?;
        let ParentWatch {
            store: policies,
            subscription: policies_sub,
            index: _,
            drive: drive_policies,
        } = parent_watch::<AccessPolicy>(policies_api, "AccessPolicy", synced.clone(), unindexed)?;
        let ParentWatch {
            store: pipelines,
            index: pipelines_by_source,
            subscription: pipelines_sub,
            drive: drive_pipelines,
        } = parent_watch::<Pipeline>(pipelines_api, "Pipeline", synced.clone(), sources_read_by)?;
        let parents = ParentStores {
            tiers: tiers.clone(),
            sources: sources.clone(),
            policies: policies.clone(),
            pipelines: pipelines.clone(),
            pipelines_by_source,
            synced,
        };
        let ctx = Arc::new(Context::new(
            client,
            children.clone(),
            parents,
            metrics,
            settings,
        ));

        // Platform: the watches of the cluster guard rails (see `platform_caches` below).
        let (platform, drive_platform) = platform_caches(&ctx)?;

        let watches = async move {
            futures::join!(
                drive_children,
                drive_tiers,
                drive_sources,
                drive_policies,
                drive_pipelines,
                drive_platform
            );
        };
        Ok((
            Operator {
                context: ctx,
                tiers_sub,
                sources_sub,
                policies_sub,
                pipelines_sub,
                platform,
            },
            watches,
        ))
    }

    /// The future that runs every controller until `shutdown` resolves. Subscribes to the
    /// shared watches now, so it is built only when this replica leads.
    pub fn controllers<Sh>(
        &self,
        shutdown: Sh,
    ) -> impl Future<Output = ()> + Send + 'static + use<Sh>
    where
        Sh: Future<Output = ()> + Send + Sync + Clone + 'static,
    {
        let ctx = self.context.clone();
        let children = ctx.children.clone();
        let (tiers, sources, policies, pipelines) = (
            ctx.parents.tiers.clone(),
            ctx.parents.sources.clone(),
            ctx.parents.policies.clone(),
            ctx.parents.pipelines.clone(),
        );
        let (tiers_sub, sources_sub, policies_sub, pipelines_sub) = (
            &self.tiers_sub,
            &self.sources_sub,
            &self.policies_sub,
            &self.pipelines_sub,
        );
        let tier_controller = {
            Controller::for_shared_stream(with_existing(tiers_sub, &tiers), tiers.clone())
                .watches_shared_stream(children.claims.subscribe(), |claim| {
                    claim
                        .labels()
                        .get(TIER_LABEL)
                        .map(|t| ObjectRef::<DeserializeGuard<StorageTier>>::new(t))
                })
                .with_config(parent_config())
                .graceful_shutdown_on(shutdown.clone())
                .run(
                    |o, c| instrumented(storage_tier::CONTROLLER, o, c, storage_tier::reconcile),
                    error_policy(storage_tier::CONTROLLER),
                    ctx.clone(),
                )
                .for_each(|_| futures::future::ready(()))
                .boxed()
        };

        let source_controller = {
            let sources_for_tier = sources.clone();
            Controller::for_shared_stream(with_existing(sources_sub, &sources), sources.clone())
                .owns_shared_stream(children.service_accounts.subscribe())
                .owns_shared_stream(children.network_policies.subscribe())
                .owns_shared_stream(children.deployments.subscribe())
                .owns_shared_stream(children.services.subscribe())
                .watches_shared_stream(spec_changes(tiers_sub.subscribe()), move |tier| {
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
                .with_config(parent_config())
                .graceful_shutdown_on(shutdown.clone())
                .run(
                    |o, c| instrumented(data_source::CONTROLLER, o, c, data_source::reconcile),
                    error_policy(data_source::CONTROLLER),
                    ctx.clone(),
                )
                .for_each(|_| futures::future::ready(()))
                .boxed()
        };

        let policy_controller = {
            let policies_for_source = policies.clone();
            Controller::for_shared_stream(with_existing(policies_sub, &policies), policies.clone())
                .owns_shared_stream(children.config_maps.subscribe())
                .owns_shared_stream(children.roles.subscribe())
                .owns_shared_stream(children.role_bindings.subscribe())
                .owns_shared_stream(children.network_policies.subscribe())
                .watches_shared_stream(spec_changes(sources_sub.subscribe()), move |source| {
                    in_namespace(&policies_for_source, source.namespace().as_deref())
                })
                .with_config(parent_config())
                .graceful_shutdown_on(shutdown.clone())
                .run(
                    |o, c| instrumented(access_policy::CONTROLLER, o, c, access_policy::reconcile),
                    error_policy(access_policy::CONTROLLER),
                    ctx.clone(),
                )
                .for_each(|_| futures::future::ready(()))
                .boxed()
        };

        let pipeline_controller = {
            let by_source = ctx.parents.pipelines_by_source.clone();
            let (by_policy, by_tier) = (pipelines.clone(), pipelines.clone());
            Controller::for_shared_stream(
                with_existing(pipelines_sub, &pipelines),
                pipelines.clone(),
            )
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
                .map(|(name, ns)| ObjectRef::<DeserializeGuard<Pipeline>>::new(&name).within(&ns))
            })
            .watches_shared_stream(spec_changes(sources_sub.subscribe()), move |s| {
                pipelines_reading(&by_source, &s)
            })
            .watches_shared_stream(spec_changes(policies_sub.subscribe()), move |p| {
                in_namespace(&by_policy, p.namespace().as_deref())
            })
            .watches_shared_stream(spec_changes(tiers_sub.subscribe()), move |_| {
                in_namespace(&by_tier, None)
            })
            .with_config(parent_config())
            .graceful_shutdown_on(shutdown.clone())
            .run(
                |o, c| instrumented(pipeline::CONTROLLER, o, c, pipeline::reconcile),
                error_policy(pipeline::CONTROLLER),
                ctx.clone(),
            )
            .for_each(|_| futures::future::ready(()))
            .boxed()
        };

        // Platform: cluster guard rails (see `platform_controllers` below).
        let platform_controller = platform_controllers(
            &ctx,
            self.platform.clone(),
            tiers_sub.subscribe(),
            shutdown.clone(),
        );

        async move {
            futures::join!(
                tier_controller,
                source_controller,
                policy_controller,
                pipeline_controller,
                platform_controller
            );
        }
    }
}

// ---- Platform: node hardening, log collection, alerting, and the sensitive-pod watch -------------

/// Starts the Platform side's own watches (Platforms, Nodes, NodeCompliance objects, pods
/// labelled `medplat.io/level`, CRDs), kept warm on every replica like the other caches.
///
/// The Platform is cluster-wide: an operator restricted to one namespace (`--watch-namespace`)
/// does not run it, because its child caches would not see the Platform's children in the
/// operator namespace and node hardening needs cluster-wide access anyway.
fn platform_caches(
    ctx: &Arc<Context>,
) -> Result<
    (
        Option<Arc<PlatformWatches>>,
        futures::future::BoxFuture<'static, ()>,
    ),
    OperatorError,
> {
    if let Some(ns) = &ctx.settings.namespace {
        tracing::info!(namespace = %ns, "watching one namespace: the Platform controller (node hardening, log collection, alerting) is off");
        return Ok((None, futures::future::ready(()).boxed()));
    }
    let (watches, drive) =
        PlatformWatches::start(&ctx.client).ok_or(OperatorError::Subscribe("Platform watches"))?;
    Ok((Some(Arc::new(watches)), drive.boxed()))
}

/// The Platform controller and the cluster-wide sensitive-pod watch, until `shutdown`.
fn platform_controllers(
    ctx: &Arc<Context>,
    watches: Option<Arc<PlatformWatches>>,
    tiers_sub: futures::channel::mpsc::UnboundedReceiver<Arc<DeserializeGuard<StorageTier>>>,
    shutdown: impl Future<Output = ()> + Send + Sync + Clone + 'static,
) -> futures::future::BoxFuture<'static, ()> {
    use super::platform::{self, PlatformState, discovery, sensitive_pods};
    use crate::api::Platform;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::core::PartialObjectMeta;

    let Some(w) = watches else {
        return futures::future::ready(()).boxed();
    };
    // Every change that can move a pod on or off an unhardened node, plus a periodic tick in
    // case a change signal was lost.
    let pod_changes = futures::stream::select_all([
        w.pods.subscribe().map(|_| ()).boxed(),
        w.pods.deleted().map(|_| ()).boxed(),
        w.nodes.subscribe().map(|_| ()).boxed(),
        w.nodes.deleted().map(|_| ()).boxed(),
        futures::stream::unfold((), |()| async {
            tokio::time::sleep(sensitive_pods::RECHECK).await;
            Some(((), ()))
        })
        .boxed(),
    ])
    .take_until(shutdown.clone());
    let sensitive = sensitive_pods::run(ctx.clone(), w.clone(), pod_changes).boxed();

    let state = Arc::new(PlatformState::new(w.clone(), ctx.settings.resync));
    let default = || ObjectRef::<DeserializeGuard<Platform>>::new(crate::api::PLATFORM_NAME);
    let children = &ctx.children;
    // Only the Platform makes PrometheusRules and ServiceMonitors.
    let monitoring_changes = futures::stream::select(
        children.prometheus_rules.changes(),
        children.service_monitors.changes(),
    )
    .map(move |()| default());
    // A CRD of the Prometheus operator came, changed or went: discovery must be asked again.
    let monitoring_crd = {
        let state = state.clone();
        move |crd: Arc<PartialObjectMeta<CustomResourceDefinition>>| {
            if !crd.name_any().ends_with(discovery::MONITORING_CRD_SUFFIX) {
                return None;
            }
            state.discovery.invalidate();
            Some(default())
        }
    };
    let sensitive_pod = move |pod: Arc<k8s_openapi::api::core::v1::Pod>| {
        // Only sensitive pods can need an eviction.
        pod.labels()
            .get(crate::policy::hardening::LEVEL_LABEL)
            .and_then(|l| crate::api::Level::parse(l))
            .is_some_and(|l| l.is_sensitive())
            .then(default)
    };
    // Owned children trigger on change and on deletion, so a deleted child is recreated now.
    let controller = Controller::for_shared_stream(
        with_existing(&w.platforms.fanout, &w.platforms.store),
        w.platforms.store.clone(),
    )
    .owns_shared_stream(children.config_maps.subscribe())
    .owns_shared_stream(children.config_maps.deleted())
    .owns_shared_stream(children.service_accounts.subscribe())
    .owns_shared_stream(children.service_accounts.deleted())
    .owns_shared_stream(children.services.subscribe())
    .owns_shared_stream(children.services.deleted())
    .owns_shared_stream(children.daemon_sets.subscribe())
    .owns_shared_stream(children.daemon_sets.deleted())
    .owns_shared_stream(children.stateful_sets.subscribe())
    .owns_shared_stream(children.stateful_sets.deleted())
    .owns_shared_stream(children.cluster_roles.subscribe())
    .owns_shared_stream(children.cluster_roles.deleted())
    .owns_shared_stream(children.cluster_role_bindings.subscribe())
    .owns_shared_stream(children.cluster_role_bindings.deleted())
    .owns_shared_stream(children.admission_policies.subscribe())
    .owns_shared_stream(children.admission_policies.deleted())
    .owns_shared_stream(children.admission_policy_bindings.subscribe())
    .owns_shared_stream(children.admission_policy_bindings.deleted())
    .reconcile_on(monitoring_changes)
    .watches_shared_stream(w.nodes.subscribe(), move |_| Some(default()))
    .watches_shared_stream(w.nodes.deleted(), move |_| Some(default()))
    .watches_shared_stream(w.compliances.subscribe(), move |_| Some(default()))
    .watches_shared_stream(w.compliances.deleted(), move |_| Some(default()))
    .watches_shared_stream(tiers_sub, move |_| Some(default()))
    .watches_shared_stream(w.pods.subscribe(), sensitive_pod)
    .watches_shared_stream(w.crds.subscribe(), monitoring_crd.clone())
    .watches_shared_stream(w.crds.deleted(), monitoring_crd)
    .with_config(
        kube::runtime::controller::Config::default()
            .debounce(std::time::Duration::from_millis(100)),
    )
    .graceful_shutdown_on(shutdown)
    .run(
        move |o, c| {
            let state = state.clone();
            instrumented(platform::CONTROLLER, o, c, move |o, c| {
                platform::reconcile(o, c, state)
            })
        },
        error_policy(platform::CONTROLLER),
        ctx.clone(),
    )
    .for_each(|_| futures::future::ready(()))
    .boxed();
    async move {
        futures::join!(controller, sensitive);
    }
    .boxed()
}
