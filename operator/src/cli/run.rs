//! `medplat run`: starts every controller, with `/metrics`, `/healthz` and `/readyz` on a
//! separate port, and shuts down gracefully on SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use clap::Args;
use futures::FutureExt;

use crate::controller::leader::{LeaderConfig, run_as_leader};
use crate::controller::{Context, Operator, Settings};
use crate::render::settings::WorkloadSettings;

/// Options of `medplat run`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Watch only this namespace (all namespaces when unset).
    #[arg(
        long = "watch-namespace",
        alias = "namespace",
        env = "MEDPLAT_NAMESPACE"
    )]
    pub namespace: Option<String>,
    /// The operator's own namespace: where its Lease and webhook Secret live, and where the
    /// Platform's namespaced children (node agent, log collection, alert rules) go.
    #[arg(long, env = "POD_NAMESPACE", default_value = crate::render::platform::DEFAULT_NAMESPACE)]
    pub operator_namespace: String,
    /// Elect a leader among replicas with a Lease; only the leader reconciles.
    #[arg(long, env = "MEDPLAT_LEADER_ELECTION")]
    pub leader_election: bool,
    /// The Lease's name.
    #[arg(long, default_value = "medplat-operator")]
    pub lease_name: String,
    /// How long the Lease is valid after a renewal, in seconds; a follower takes over at most
    /// this long after the leader dies.
    #[arg(long, default_value_t = 15)]
    pub lease_duration_secs: u64,
    /// Address of the metrics and health endpoints.
    #[arg(long, default_value = "0.0.0.0:8080", env = "MEDPLAT_METRICS_ADDR")]
    pub metrics_addr: SocketAddr,
    /// The image of medplat's workers and listeners.
    #[arg(long, env = "MEDPLAT_WORKER_IMAGE")]
    pub worker_image: Option<String>,
    /// Timeout of data-source reachability probes, in seconds.
    #[arg(long, default_value_t = 3)]
    pub probe_timeout_secs: u64,
    /// How often healthy objects are re-checked, in seconds.
    #[arg(long, default_value_t = 300)]
    pub resync_secs: u64,
    /// How long in-flight reconciles may take to finish after a shutdown signal, in seconds.
    #[arg(long, default_value_t = 20)]
    pub shutdown_grace_secs: u64,
    /// The admission webhook (`--webhook-*`).
    #[command(flatten)]
    pub webhook: crate::webhook::cli::WebhookArgs,
}

impl RunArgs {
    /// The operator settings these options describe.
    pub fn settings(&self) -> Settings {
        let mut workload = WorkloadSettings::default();
        if let Some(image) = &self.worker_image {
            workload.image = image.clone();
        }
        Settings {
            workload,
            namespace: self.namespace.clone(),
            probe_timeout: Duration::from_secs(self.probe_timeout_secs),
            resync: Duration::from_secs(self.resync_secs),
            operator_namespace: self.operator_namespace.clone(),
        }
    }
}

/// Errors of `medplat run`.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No kubeconfig or in-cluster configuration.
    #[error("cannot configure a Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    /// The operator could not start.
    #[error(transparent)]
    Operator(#[from] crate::controller::OperatorError),
    /// The health/metrics port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The admission webhook could not start.
    #[error(transparent)]
    Webhook(#[from] crate::webhook::WebhookError),
    /// Leader election failed or leadership was lost.
    #[error(transparent)]
    Leader(#[from] crate::controller::leader::LeaderError),
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

#[derive(Clone)]
struct Health {
    ctx: Arc<Context>,
    ready: Arc<AtomicBool>,
}

async fn metrics(State(h): State<Health>) -> (StatusCode, String) {
    match h.ctx.metrics.encode() {
        Ok(text) => (StatusCode::OK, text),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn readyz(State(h): State<Health>) -> (StatusCode, &'static str) {
    if h.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced")
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` for `ctx` on `listener` until `shutdown`.
pub async fn serve_health(
    listener: tokio::net::TcpListener,
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let ready = Arc::new(AtomicBool::new(false));
    {
        let ready = ready.clone();
        let ctx = ctx.clone();
        tokio::spawn(async move {
            ctx.wait_synced().await;
            ready.store(true, Ordering::Relaxed);
        });
    }
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(Health { ctx, ready });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// A future that resolves on SIGTERM or Ctrl-C, shareable by every task that must stop.
pub fn shutdown_signal() -> futures::future::Shared<futures::future::BoxFuture<'static, ()>> {
    async {
        #[cfg(unix)]
        {
            let term = async {
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(_) => futures::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = term => {},
                _ = tokio::signal::ctrl_c() => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutdown requested");
    }
    .boxed()
    .shared()
}

async fn run_async(args: RunArgs) -> Result<(), RunError> {
    let mut config = kube::Config::infer()
        .await
        .map_err(|e| RunError::Client(kube::Error::InferConfig(e)))?;
    config.headers.push(user_agent(&identity()));
    let client = kube::Client::try_from(config).map_err(RunError::Client)?;
    let shutdown = shutdown_signal();
    let (operator, watches) = Operator::start_caches(client.clone(), args.settings())?;
    let watches = tokio::spawn(watches);

    // Admission webhook: on every replica, leader or not, reading the caches kept warm above.
    // It serves until the process is about to exit, so it keeps answering while reconciles
    // drain after SIGTERM.
    let (webhook_stop, mut webhook_stopping) = tokio::sync::watch::channel(false);
    let webhook = match args.webhook.options(&args.operator_namespace) {
        Some(options) => {
            let until_exit = async move {
                let _ = webhook_stopping.wait_for(|stop| *stop).await;
            }
            .boxed()
            .shared();
            let (_, serve) = crate::webhook::start(
                client.clone(),
                operator.context.parents.clone(),
                options,
                until_exit,
            )
            .await?;
            Some(tokio::spawn(serve))
        }
        None => {
            tracing::info!("admission webhook turned off");
            None
        }
    };
    // End of the admission webhook.

    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .map_err(|source| RunError::Listen {
            addr: args.metrics_addr,
            source,
        })?;
    tracing::info!(addr = %args.metrics_addr, namespace = ?args.namespace, leader_election = args.leader_election, "medplat operator started");
    let health = tokio::spawn(serve_health(
        listener,
        operator.context.clone(),
        shutdown.clone(),
    ));
    let grace = Duration::from_secs(args.shutdown_grace_secs);
    // Reconciles get `grace` to finish after a shutdown signal; then they are abandoned.
    let bounded =
        |controllers: futures::future::BoxFuture<'static, ()>,
         stop: futures::future::Shared<futures::future::BoxFuture<'static, ()>>| async move {
            let deadline = stop.then(move |_| tokio::time::sleep(grace));
            tokio::select! {
                _ = controllers => {},
                _ = deadline => tracing::warn!("in-flight reconciles did not finish within the grace period; abandoning them"),
            }
        };
    let result = if args.leader_election {
        let config = LeaderConfig {
            namespace: args.operator_namespace.clone(),
            name: args.lease_name.clone(),
            identity: identity(),
            duration: Duration::from_secs(args.lease_duration_secs),
            grace: Duration::from_secs((args.lease_duration_secs / 3).max(1)),
        };
        run_as_leader(client, config, shutdown.clone(), |stop| {
            bounded(operator.controllers(stop.clone()).boxed(), stop)
        })
        .await
        .map(|_| ())
        .map_err(RunError::Leader)
    } else {
        bounded(
            operator.controllers(shutdown.clone()).boxed(),
            shutdown.clone(),
        )
        .await;
        Ok(())
    };
    let _ = webhook_stop.send(true);
    if let Some(webhook) = webhook {
        // Open admission requests get a few seconds to finish.
        let _ = tokio::time::timeout(Duration::from_secs(6), webhook).await;
    }
    watches.abort();
    health.abort();
    tracing::info!("medplat operator stopped");
    result
}

/// The `User-Agent` medplat sends: name, version and replica, so the API server's audit log
/// (and kubesim's request log) tell replicas apart.
pub fn user_agent(identity: &str) -> (http::HeaderName, http::HeaderValue) {
    let value = format!("medplat/{} ({identity})", env!("CARGO_PKG_VERSION"));
    (
        http::header::USER_AGENT,
        http::HeaderValue::from_str(&value)
            .unwrap_or_else(|_| http::HeaderValue::from_static("medplat")),
    )
}

/// This replica's identity for leader election: its pod name, else host name, else random.
fn identity() -> String {
    std::env::var("MEDPLAT_POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| format!("medplat-{}", uuid::Uuid::new_v4()))
}

/// Runs `medplat run`.
pub fn run(args: RunArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {}", RunError::Runtime(e));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_async(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
