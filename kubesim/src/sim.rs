//! The library API: start kubesim in-process on a free loopback port and get a `kube::Client`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::faults::Faults;
use crate::http::Shared;
use crate::kubelet::{NodeSpec, PodOutcome};
use crate::objects::{Objects, WriteOptions};
use crate::request_log::{RequestLog, RequestRecord};
use crate::server::{self, ServerError, TlsMaterial};
use crate::store::Store;
use crate::webhooks::Webhooks;

/// Why kubesim could not start or act.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Listener or TLS setup failed.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// Building the `kube::Client` failed.
    #[error("building the kube client for {url} failed: {source}")]
    Client {
        /// Server URL.
        url: String,
        /// The error.
        source: kube::Error,
    },
    /// Seeding objects (namespaces, nodes) failed.
    #[error("seeding the initial objects failed: {0}")]
    Seed(#[from] crate::error::ApiError),
    /// Writing the kubeconfig failed.
    #[error("writing the kubeconfig to {path} failed: {source}")]
    Kubeconfig {
        /// Path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Configures and starts a [`Sim`].
#[derive(Clone)]
pub struct SimBuilder {
    nodes: Vec<NodeSpec>,
    pod_outcome: PodOutcome,
    tls: bool,
    token: Option<String>,
    port: u16,
    history_limit: usize,
    bookmark_interval: Duration,
    log_capacity: usize,
    max_body: usize,
    controllers: bool,
    tick: Duration,
}

impl std::fmt::Debug for SimBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimBuilder")
            .field("nodes", &self.nodes.len())
            .field("tls", &self.tls)
            .field("port", &self.port)
            .finish()
    }
}

impl Default for SimBuilder {
    fn default() -> Self {
        SimBuilder {
            nodes: vec![NodeSpec::new("kubesim-node")],
            pod_outcome: PodOutcome::default(),
            tls: false,
            token: None,
            port: 0,
            history_limit: 10_000,
            bookmark_interval: Duration::from_secs(5),
            log_capacity: 1_000_000,
            max_body: 3 * 1024 * 1024,
            controllers: true,
            tick: Duration::from_millis(100),
        }
    }
}

impl SimBuilder {
    /// The simulated nodes (default: one untainted node `kubesim-node`).
    pub fn nodes(mut self, nodes: Vec<NodeSpec>) -> Self {
        self.nodes = nodes;
        self
    }

    /// The rule that decides how pods move Pending → Running → Succeeded/Failed.
    pub fn pod_outcome(mut self, outcome: PodOutcome) -> Self {
        self.pod_outcome = outcome;
        self
    }

    /// Serve HTTPS with a generated CA and require this bearer token.
    pub fn https_with_token(mut self, token: impl Into<String>) -> Self {
        self.tls = true;
        self.token = Some(token.into());
        self
    }

    /// Serve HTTPS (generated CA), without authentication.
    pub fn https(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Require a bearer token (works over HTTP too).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Listen on this loopback port (0, the default, picks a free one).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Watch events kept per resource; a watch from before the window gets 410 Gone.
    pub fn history_limit(mut self, events: usize) -> Self {
        self.history_limit = events;
        self
    }

    /// How often `allowWatchBookmarks` watches get a BOOKMARK (default 5 s).
    pub fn bookmark_interval(mut self, every: Duration) -> Self {
        self.bookmark_interval = every;
        self
    }

    /// Request-log capacity (oldest records dropped first).
    pub fn log_capacity(mut self, records: usize) -> Self {
        self.log_capacity = records;
        self
    }

    /// Largest accepted request body in bytes (default 3 MiB, as the real server).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Turn the simulated controllers (GC, namespaces, kubelet, workloads) off or on.
    pub fn controllers(mut self, on: bool) -> Self {
        self.controllers = on;
        self
    }

    /// How often controllers wake without a change (time-driven transitions).
    pub fn tick(mut self, every: Duration) -> Self {
        self.tick = every;
        self
    }

    /// Starts the server and the controllers.
    pub async fn start(self) -> Result<Sim, SimError> {
        let store = Arc::new(Store::new(self.history_limit));
        let objects = Objects::new(store);
        objects.bootstrap()?;
        crate::kubelet::seed_nodes(&objects, &self.nodes)?;
        let addr_req: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let listener = tokio::net::TcpListener::bind(addr_req)
            .await
            .map_err(|source| {
                SimError::Server(ServerError::Bind {
                    addr: addr_req.to_string(),
                    source,
                })
            })?;
        let addr = listener.local_addr().map_err(|source| {
            SimError::Server(ServerError::Bind {
                addr: addr_req.to_string(),
                source,
            })
        })?;
        let tls = if self.tls {
            Some(server::self_signed()?)
        } else {
            None
        };
        let server_cfg = match &tls {
            Some(m) => Some(server::server_config(m)?),
            None => None,
        };
        let (restart, _) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            objects,
            faults: Faults::default(),
            log: RequestLog::new(self.log_capacity),
            token: self.token.clone(),
            bookmark_interval: self.bookmark_interval,
            max_body: self.max_body,
            server_address: addr.to_string(),
            webhooks: Webhooks,
            restart,
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = vec![tokio::spawn(server::serve(
            listener,
            shared.clone(),
            server_cfg,
            shutdown_rx.clone(),
        ))];
        if self.controllers {
            tasks.push(tokio::spawn(crate::controllers::run(
                shared.clone(),
                self.tick,
                shutdown_rx.clone(),
                self.pod_outcome.clone(),
            )));
        }
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{addr}");
        let config = build_config(&url, tls.as_ref(), self.token.as_deref())?;
        let client = kube::Client::try_from(config.clone()).map_err(|source| SimError::Client {
            url: url.clone(),
            source,
        })?;
        Ok(Sim {
            shared,
            addr,
            url,
            tls,
            token: self.token,
            client,
            config,
            shutdown,
            tasks: Mutex::new(tasks),
        })
    }
}

fn build_config(
    url: &str,
    tls: Option<&TlsMaterial>,
    token: Option<&str>,
) -> Result<kube::Config, SimError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| SimError::Client {
            url: url.to_string(),
            source: kube::Error::Service(Box::new(e)),
        })?;
    let mut cfg = kube::Config::new(uri);
    cfg.default_namespace = "default".into();
    if let Some(m) = tls {
        use rustls::pki_types::pem::PemObject;
        let ders: Vec<Vec<u8>> =
            rustls::pki_types::CertificateDer::pem_slice_iter(m.ca_pem.as_bytes())
                .filter_map(Result::ok)
                .map(|c| c.to_vec())
                .collect();
        cfg.root_cert = Some(ders);
    }
    if let Some(t) = token
        && let Ok(v) = http::HeaderValue::from_str(&format!("Bearer {t}"))
    {
        cfg.headers.push((http::header::AUTHORIZATION, v));
    }
    Ok(cfg)
}

/// A running kubesim: an in-memory API server on loopback.
pub struct Sim {
    shared: Arc<Shared>,
    addr: SocketAddr,
    url: String,
    tls: Option<TlsMaterial>,
    token: Option<String>,
    client: kube::Client,
    config: kube::Config,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim").field("url", &self.url).finish()
    }
}

impl Sim {
    /// A builder with defaults (plain HTTP, one node, controllers on).
    pub fn builder() -> SimBuilder {
        SimBuilder::default()
    }

    /// Starts with defaults.
    pub async fn start() -> Result<Sim, SimError> {
        SimBuilder::default().start().await
    }

    /// A `kube::Client` for this server (default namespace `default`).
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The `kube::Config` behind [`Sim::client`], to build clients with other settings (e.g.
    /// `default_retry = false`, since kube retries 429s with backoff by default).
    pub fn kube_config(&self) -> kube::Config {
        self.config.clone()
    }

    /// The base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The CA certificate (PEM) when serving HTTPS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.tls.as_ref().map(|t| t.ca_pem.as_str())
    }

    /// A kubeconfig (YAML) that `kubectl` and `kube::Client` use directly.
    pub fn kubeconfig(&self) -> String {
        kubeconfig_yaml(&self.url, self.ca_pem(), self.token.as_deref())
    }

    /// Writes the kubeconfig to `path`.
    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), SimError> {
        std::fs::write(path, self.kubeconfig()).map_err(|source| SimError::Kubeconfig {
            path: path.display().to_string(),
            source,
        })
    }

    /// Every request so far.
    pub fn request_log(&self) -> Vec<RequestRecord> {
        self.shared.log.snapshot()
    }

    /// Forgets the request log.
    pub fn clear_request_log(&self) {
        self.shared.log.clear();
    }

    /// Fault injection.
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// Object semantics over the store, for tests that want to look without HTTP.
    pub fn objects(&self) -> &Objects {
        &self.shared.objects
    }

    /// Drops every open connection (watches end, clients reconnect); forgets nothing.
    pub async fn restart(&self) {
        self.shared.restart.send_modify(|e| *e += 1);
        tokio::task::yield_now().await;
    }

    /// Stops the server and controllers.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
    }

    /// Creates (or server-side applies) an object from JSON without HTTP, as `kubesim`.
    pub fn seed(&self, obj: &Value) -> Result<Arc<Value>, crate::error::ApiError> {
        seed_object(&self.shared.objects, obj)
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Server-side applies an object (field manager `kubesim`) through the store.
pub fn seed_object(objects: &Objects, obj: &Value) -> Result<Arc<Value>, crate::error::ApiError> {
    let av = obj["apiVersion"].as_str().unwrap_or_default();
    let kind = obj["kind"].as_str().unwrap_or_default();
    let reg = objects.store().registry();
    let rt = reg.by_kind(av, kind).ok_or_else(|| {
        crate::error::ApiError::bad_request(format!(
            "no kind {kind:?} is registered for version {av:?}"
        ))
    })?;
    let ns = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let opts = WriteOptions {
        manager: "kubesim".into(),
        force: true,
        ..WriteOptions::default()
    };
    let out = objects.run(&rt, || {
        objects.plan_patch(
            &rt,
            &ns,
            &name,
            crate::objects::PatchKind::Apply,
            obj,
            None,
            &opts,
        )
    })?;
    // A kind with a status subresource drops status on create, as the real server does; a
    // seeded status (a Node's conditions) is written through /status, as a kubelet would.
    if rt.status_subresource && obj.get("status").is_some() {
        let status = objects.run(&rt, || {
            objects.plan_patch(
                &rt,
                &ns,
                &name,
                crate::objects::PatchKind::Apply,
                obj,
                Some("status"),
                &opts,
            )
        })?;
        return Ok(status.object);
    }
    Ok(out.object)
}

/// Renders a kubeconfig for a kubesim URL.
pub fn kubeconfig_yaml(url: &str, ca_pem: Option<&str>, token: Option<&str>) -> String {
    use base64::Engine;
    let mut cluster = json!({"server": url});
    if let Some(ca) = ca_pem {
        cluster["certificate-authority-data"] =
            json!(base64::engine::general_purpose::STANDARD.encode(ca));
    }
    let mut user = json!({});
    if let Some(t) = token {
        user["token"] = json!(t);
    }
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kubesim", "cluster": cluster}],
        "users": [{"name": "kubesim", "user": user}],
        "contexts": [{"name": "kubesim", "context": {"cluster": "kubesim", "user": "kubesim", "namespace": "default"}}],
        "current-context": "kubesim",
        "preferences": {},
    });
    serde_yaml::to_string(&doc).unwrap_or_default()
}
