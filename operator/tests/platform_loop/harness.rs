//! The harness of the Platform loop tests: kubesim with nodes, medplat's CRDs, the operator
//! running in-process with its health server on a free loopback port, and node agents scanning
//! fixture host trees through the real agent code.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use medplat::api::platform::Platform;
use medplat::api::storage_tier::StorageTier;
use medplat::controller::{Context, Operator, Settings};
use medplat::node_agent::ScanConfig;
use medplat::node_agent::agent::{AgentConfig, KubeStore, step};
use medplat::node_agent::status::WritePolicy;
use medplat::policy::hardening::{HARDENED_LABEL, parse_interval};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::support::{FixtureHost, fixture_host};

/// The namespace the operator puts the Platform's children in.
pub const OPERATOR_NS: &str = "medplat-system";
/// The field manager of the test's own writes.
pub const TEST_MANAGER: &str = "medplat-test";

/// A running kubesim plus operator.
pub struct Harness {
    /// The simulated API server.
    pub sim: kubesim::Sim,
    /// A client for the test's own requests.
    pub client: Client,
    /// The operator's shared state (metrics).
    pub ctx: Arc<Context>,
    /// The address of `/metrics`.
    pub metrics_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Starts kubesim with `nodes`, installs medplat's CRDs, the operator namespace and an audit
/// tier, then starts the operator.
pub async fn start(nodes: &[&str]) -> Harness {
    let sim = kubesim::Sim::builder()
        .nodes(nodes.iter().map(|n| kubesim::NodeSpec::new(*n)).collect())
        .start()
        .await
        .unwrap();
    let client = sim.client();
    install_crds(&client, medplat::api::all_crds()).await;
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": OPERATOR_NS}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    apply(&client, &audit_tier(365)).await;

    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown: Shared<BoxFuture<'static, ()>> = stopped.map(|_| ()).boxed().shared();
    let settings = Settings {
        operator_namespace: OPERATOR_NS.into(),
        ..Settings::default()
    };
    let (operator, run) = Operator::start(client.clone(), settings, shutdown.clone()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_addr = listener.local_addr().unwrap();
    let ctx = operator.context.clone();
    let task = tokio::spawn(async move {
        let health = medplat::cli::run::serve_health(listener, ctx, shutdown.clone());
        let _ = futures::join!(run, health);
    });
    Harness {
        sim,
        client,
        ctx: operator.context,
        metrics_addr,
        stop: Some(stop),
        task: Some(task),
    }
}

impl Harness {
    /// Stops the operator and the simulator.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        self.sim.shutdown().await;
    }

    /// The value of `medplat.io/hardened` on `node`.
    pub async fn hardened_label(&self, node: &str) -> Option<String> {
        Api::<Node>::all(self.client.clone())
            .get(node)
            .await
            .unwrap()
            .labels()
            .get(HARDENED_LABEL)
            .cloned()
    }

    /// Waits until every node in `want` carries the label value given.
    pub async fn wait_labels(&self, want: &[(&str, &str)], what: &str) {
        let last = Mutex::new(BTreeMap::new());
        let ok = wait_for(Duration::from_secs(20), || async {
            let mut all = true;
            for (node, value) in want {
                let got = self.hardened_label(node).await;
                all &= got.as_deref() == Some(*value);
                last.lock().unwrap().insert(node.to_string(), got);
            }
            all
        })
        .await;
        assert!(ok, "{what}: labels are {last:?}, want {want:?}");
    }

    /// The Platform `default`.
    pub async fn platform(&self) -> Platform {
        Api::<Platform>::all(self.client.clone())
            .get("default")
            .await
            .unwrap()
    }

    /// Waits until the Platform's status satisfies `f`.
    pub async fn wait_platform(&self, what: &str, f: impl Fn(&Platform) -> bool) -> Platform {
        let last = Mutex::new(None);
        let ok = wait_for(Duration::from_secs(20), || async {
            let p = self.platform().await;
            let done = f(&p);
            *last.lock().unwrap() = Some(p);
            done
        })
        .await;
        let status = last.into_inner().unwrap().map(|p| p.status);
        assert!(ok, "{what}: Platform status is {status:#?}");
        self.platform().await
    }

    /// How many times an Event with `reason` was recorded about the object named `name`,
    /// counting repeats folded into an Event series.
    pub async fn event_count(&self, reason: &str, name: &str) -> usize {
        self.events(reason, name)
            .await
            .iter()
            .map(|e| {
                e.series
                    .as_ref()
                    .map(|s| usize::try_from(s.count).unwrap())
                    .unwrap_or(1)
            })
            .sum()
    }

    /// Events with `reason` about the object named `name`.
    pub async fn events(&self, reason: &str, name: &str) -> Vec<Event> {
        Api::<Event>::all(self.client.clone())
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| {
                e.reason.as_deref() == Some(reason)
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
            })
            .collect()
    }

    /// Creates or updates an object by server-side apply under the test's field manager.
    pub async fn apply(&self, obj: &Value) {
        apply(&self.client, obj).await;
    }
}

/// Changes an annotation of `name`, as the test's field manager: a change that triggers
/// reconciles but asks for nothing.
pub async fn touch<K>(api: &Api<K>, name: &str, i: usize)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({"metadata": {"annotations": {"medplat.test/touch": i.to_string()}}});
    let params = PatchParams {
        field_manager: Some(TEST_MANAGER.into()),
        ..PatchParams::default()
    };
    api.patch(name, &params, &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("touch {name}: {e}"));
}

/// Touches the Platform `default` (see [`touch`]).
pub async fn touch_platform(client: &Client, i: usize) {
    touch(&Api::<Platform>::all(client.clone()), "default", i).await;
}

/// Polls `f` every 50 ms until it holds or `timeout` passes.
pub async fn wait_for<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates CRDs and waits until each kind is served.
pub async fn install_crds(client: &Client, crds: Vec<CustomResourceDefinition>) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crds {
        api.create(&PostParams::default(), &crd).await.unwrap();
        let gv = format!("{}/{}", crd.spec.group, crd.spec.versions[0].name);
        let plural = crd.spec.names.plural.clone();
        let served = wait_for(Duration::from_secs(10), || async {
            client
                .list_api_group_resources(&gv)
                .await
                .is_ok_and(|l| l.resources.iter().any(|r| r.name == plural))
        })
        .await;
        assert!(served, "{plural} is not served");
    }
}

/// Server-side applies `obj` under [`TEST_MANAGER`].
pub async fn apply(client: &Client, obj: &Value) {
    let av = obj["apiVersion"].as_str().unwrap();
    let kind = obj["kind"].as_str().unwrap();
    let name = obj["metadata"]["name"].as_str().unwrap();
    let ns = obj["metadata"]["namespace"].as_str();
    let api = medplat::controller::apply::dynamic_api(client, av, kind, ns);
    api.patch(
        name,
        &PatchParams::apply(TEST_MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
    .unwrap_or_else(|e| panic!("apply {kind} {name}: {e}"));
}

/// The audit StorageTier, keeping data `retention_days`.
pub fn audit_tier(retention_days: u32) -> Value {
    let tier: StorageTier = serde_yaml::from_str(&format!(
        "apiVersion: medplat.io/v1alpha1\nkind: StorageTier\nmetadata: {{name: audit}}\n\
         spec: {{domain: operations, maxLevel: L4, encryption: required, retentionDays: {retention_days},\n\
         backend: {{volume: {{storageClassName: encrypted, size: 10Gi}}}}}}\n"
    ))
    .unwrap();
    serde_json::to_value(tier).unwrap()
}

/// A Platform manifest with `hardening` merged into the defaults.
pub fn platform(hardening: Value, alerting: Value) -> Value {
    json!({
        "apiVersion": "medplat.io/v1alpha1",
        "kind": "Platform",
        "metadata": {"name": "default"},
        "spec": {
            "hardening": hardening,
            "logging": {"auditTier": "audit"},
            "alerting": alerting,
        }
    })
}

/// An L3+ pod that, like a pipeline's worker, may run only on hardened nodes.
pub fn sensitive_pod(ns: &str, name: &str, level: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"medplat.io/level": level}},
        "spec": {
            "affinity": serde_json::to_value(medplat::render::common::hardened_affinity()).unwrap(),
            "containers": [{"name": "worker", "image": "medplat:test"}],
        }
    })
}

/// A node agent for one node: a fixture host tree it can change, scanned through the real
/// agent code and written through the real store.
pub struct Agent {
    /// The host tree.
    pub host: FixtureHost,
    cfg: AgentConfig,
    store: KubeStore,
}

impl Agent {
    /// An agent for `node` scanning a copy of fixture host `fixture`.
    pub fn new(client: &Client, node: &str, fixture: &str, interval: &str) -> Agent {
        let host = fixture_host(fixture);
        let cfg = AgentConfig {
            node_name: node.into(),
            scan: ScanConfig {
                root: host.root().to_path_buf(),
                ..ScanConfig::default()
            },
            policy: WritePolicy {
                interval: parse_interval(interval).unwrap(),
            },
        };
        Agent {
            host,
            cfg,
            store: KubeStore::new(client.clone()),
        }
    }

    /// One scan round; writes when the agent's rule says so.
    pub async fn scan(&self) {
        step(&self.store, &self.cfg).await.unwrap();
    }

    /// Runs the real agent loop until the returned sender is dropped or fired.
    pub fn run(&self) -> oneshot::Sender<()> {
        let (tx, rx) = oneshot::channel::<()>();
        let store = self.store.clone();
        let cfg = self.cfg.clone();
        tokio::spawn(medplat::node_agent::agent::run(store, cfg, async {
            let _ = rx.await;
        }));
        tx
    }

    /// Breaks the host: ASLR off, a FAIL no deviation covers.
    pub fn break_host(&self) {
        write(
            self.host.root(),
            "proc/sys/kernel/randomize_va_space",
            "0\n",
        );
    }
}

fn write(root: &Path, rel: &str, content: &str) {
    std::fs::write(root.join(rel), content).unwrap();
}

/// Disable deviations for the checks that fail on the hardened fixture only because the test
/// does not run as root (the fixture's owners cannot be applied). Empty as root.
pub fn owner_deviations() -> Vec<Value> {
    let host = fixture_host("hardened");
    if host.owners_applied {
        return Vec::new();
    }
    let results = medplat::node_agent::scan(&ScanConfig {
        root: host.root().to_path_buf(),
        ..ScanConfig::default()
    });
    results
        .iter()
        .filter(|c| {
            matches!(
                c.status,
                medplat::api::node_compliance::CheckStatus::Fail
                    | medplat::api::node_compliance::CheckStatus::Error
            )
        })
        .map(|c| {
            json!({
                "checkId": c.id, "action": "Disable",
                "reason": "fixture owners need root; the test does not run as root",
                "ticket": "TEST-1", "expiresAt": "2999-01-01T00:00:00Z",
            })
        })
        .collect()
}
