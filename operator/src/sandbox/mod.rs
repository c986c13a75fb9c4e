//! `medplat sandbox`: the whole platform on a laptop, with no cluster.
//!
//! It starts kubesim (the simulated API server, a test double) with a few simulated nodes,
//! installs the CRDs, starts the operator in-process, applies the example hospital (compiled
//! into the binary), waits until the operator has reached a verdict on every resource, prints
//! a summary, and writes a kubeconfig so `kubectl` can explore it.

pub mod agents;
pub mod embedded;
pub mod summary;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::FutureExt;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::Value;

use crate::controller::apply::dynamic_api;
use crate::controller::{Operator, Settings};
use summary::Row;

/// Errors of the sandbox.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// kubesim could not start.
    #[error("cannot start the simulated API server: {0}")]
    Sim(#[from] kubesim::SimError),
    /// An object could not be applied or read.
    #[error("{action} {object}: {source}")]
    Kube {
        /// What was being done.
        action: &'static str,
        /// The object.
        object: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// An embedded manifest does not parse (a build problem).
    #[error("embedded manifest {file} is not valid YAML: {message}")]
    Manifest {
        /// The file.
        file: &'static str,
        /// The parser's message.
        message: String,
    },
    /// The operator could not start.
    #[error(transparent)]
    Operator(#[from] crate::controller::OperatorError),
}

/// Options of the sandbox.
#[derive(Clone, Debug)]
pub struct SandboxOptions {
    /// Where to write the kubeconfig.
    pub kubeconfig: PathBuf,
    /// The loopback port of the API server (0: any free port).
    pub port: u16,
    /// How long to wait for every resource to settle.
    pub settle_timeout: Duration,
}

/// The simulated nodes: two hardened, one not, so placement rules have something to decide.
pub fn sandbox_nodes() -> Vec<kubesim::NodeSpec> {
    vec![
        kubesim::NodeSpec::new("ward-node-1").label(crate::render::common::HARDENED, "true"),
        kubesim::NodeSpec::new("ward-node-2").label(crate::render::common::HARDENED, "true"),
        kubesim::NodeSpec::new("general-node-1").label(crate::render::common::HARDENED, "false"),
    ]
}

/// A running sandbox.
pub struct Sandbox {
    /// The simulated API server.
    pub sim: kubesim::Sim,
    /// The operator's handle.
    pub operator: Operator,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    agents: tokio::task::JoinHandle<()>,
}

async fn apply(client: &Client, obj: &Value) -> Result<(), SandboxError> {
    let api = dynamic_api(
        client,
        obj["apiVersion"].as_str().unwrap_or_default(),
        obj["kind"].as_str().unwrap_or_default(),
        obj["metadata"]["namespace"].as_str(),
    );
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    api.patch(
        name,
        &PatchParams::apply("medplat-sandbox").force(),
        &Patch::Apply(obj),
    )
    .await
    .map_err(|source| SandboxError::Kube {
        action: "apply",
        object: format!("{} {name}", obj["kind"].as_str().unwrap_or_default()),
        source,
    })?;
    Ok(())
}

impl Sandbox {
    /// Starts kubesim, the CRDs, the operator and the example hospital.
    pub async fn start(opts: &SandboxOptions) -> Result<Sandbox, SandboxError> {
        let sim = kubesim::Sim::builder()
            .nodes(sandbox_nodes())
            .port(opts.port)
            .start()
            .await?;
        sim.write_kubeconfig(&opts.kubeconfig)?;
        let client = sim.client();
        for crd in crate::api::all_crds() {
            let v = serde_json::to_value(&crd).map_err(|e| SandboxError::Manifest {
                file: "CRD",
                message: e.to_string(),
            })?;
            apply(&client, &v).await?;
        }
        // The operator's own namespace, where the Platform's children go.
        let operator_ns = crate::render::platform::DEFAULT_NAMESPACE;
        apply(
            &client,
            &serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": operator_ns}}),
        )
        .await?;
        // Node agents: kubesim runs no containers, so simulated ones report each node's scan.
        let scanned = sandbox_nodes()
            .into_iter()
            .map(|n| {
                let hardened = n
                    .labels
                    .get(crate::render::common::HARDENED)
                    .map(String::as_str)
                    == Some("true");
                (n.name, hardened)
            })
            .collect();
        let agents = tokio::spawn(agents::run(
            client.clone(),
            scanned,
            agents::example_interval(),
        ));
        let settings = Settings {
            probe_timeout: Duration::from_millis(500),
            resync: Duration::from_secs(30),
            ..Settings::default()
        };
        let (stop, mut rx) = tokio::sync::watch::channel(false);
        let shutdown = async move {
            let _ = rx.wait_for(|s| *s).await;
        }
        .boxed()
        .shared();
        let (operator, run) = Operator::start(client.clone(), settings, shutdown)?;
        let task = tokio::spawn(run);
        // The namespace first, then the Secrets, so nothing is ever seen without them.
        let (first, rest) = embedded::MANIFESTS.split_at(1);
        let mut secrets_applied = false;
        for (file, text) in first.iter().chain(rest) {
            if !secrets_applied && !file.starts_with("00-") {
                for secret in embedded::dev_secret_objects() {
                    apply(&client, &secret).await?;
                }
                secrets_applied = true;
            }
            for doc in serde_yaml::Deserializer::from_str(text) {
                let v: Value =
                    serde::Deserialize::deserialize(doc).map_err(|e| SandboxError::Manifest {
                        file,
                        message: e.to_string(),
                    })?;
                if !v.is_null() {
                    apply(&client, &v).await?;
                }
            }
        }
        Ok(Sandbox {
            sim,
            operator,
            stop,
            task,
            agents,
        })
    }

    /// Reads every medplat resource with its children.
    pub async fn rows(&self) -> Result<Vec<Row>, SandboxError> {
        let client = self.sim.client();
        let mut rows = Vec::new();
        for kind in [
            "StorageTier",
            "DataSource",
            "Pipeline",
            "AccessPolicy",
            "Platform",
        ] {
            let api = dynamic_api(&client, crate::api::API_VERSION, kind, None);
            let list =
                api.list(&ListParams::default())
                    .await
                    .map_err(|source| SandboxError::Kube {
                        action: "list",
                        object: kind.to_string(),
                        source,
                    })?;
            for o in list.items {
                let uid = o.uid().unwrap_or_default();
                let name = match o.namespace() {
                    Some(ns) => format!("{ns}/{}", o.name_any()),
                    None => o.name_any(),
                };
                let children = [
                    "ServiceAccount",
                    "ConfigMap",
                    "NetworkPolicy",
                    "CronJob",
                    "Job",
                    "Deployment",
                    "Service",
                    "Role",
                    "RoleBinding",
                    "DaemonSet",
                    "StatefulSet",
                ]
                .iter()
                .flat_map(|k| self.operator.context.children.owned_by(k, &uid))
                .map(|c| c.kind)
                .collect::<Vec<_>>();
                let mut counted: Vec<String> = Vec::new();
                for k in &children {
                    let n = children.iter().filter(|c| *c == k).count();
                    let label = if n > 1 {
                        format!("{k}×{n}")
                    } else {
                        k.clone()
                    };
                    if !counted.contains(&label) {
                        counted.push(label);
                    }
                }
                rows.push(Row {
                    kind: kind.to_string(),
                    name,
                    object: serde_json::to_value(&o).unwrap_or_default(),
                    children: counted,
                });
            }
        }
        Ok(rows)
    }

    /// The simulated nodes as JSON.
    pub async fn nodes(&self) -> Result<Vec<Value>, SandboxError> {
        let api = dynamic_api(&self.sim.client(), "v1", "Node", None);
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|source| SandboxError::Kube {
                action: "list",
                object: "Nodes".into(),
                source,
            })?;
        Ok(list
            .items
            .iter()
            .map(|n| serde_json::to_value(n).unwrap_or_default())
            .collect())
    }

    /// Waits until the operator has reached a verdict on every resource (each has `Ready` for
    /// its current generation), or `timeout`. Returns whether it settled.
    pub async fn wait_settled(&self, timeout: Duration) -> Result<bool, SandboxError> {
        let start = Instant::now();
        loop {
            let rows = self.rows().await?;
            if !rows.is_empty() && rows.iter().all(|r| summary::settled(&r.object)) {
                return Ok(true);
            }
            if start.elapsed() > timeout {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Stops the operator (finishing in-flight reconciles) and the API server.
    pub async fn stop(self) {
        self.agents.abort();
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
        self.sim.shutdown().await;
    }
}
