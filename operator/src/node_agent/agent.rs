//! The agent loop: scan, build the status, and write it through one narrow writer when the
//! write rule ([`super::status`]) says so.
//!
//! The writer touches exactly one object, the NodeCompliance named after the agent's node:
//! it creates it when missing and patches its status. It never reads or writes anything else.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};

use crate::api::node_compliance::{NodeCompliance, NodeComplianceSpec, NodeComplianceStatus};

use super::status::{WriteDecision, WritePolicy, build_status};
use super::{AGENT_VERSION, BASELINE, ScanConfig, scan};

/// The field manager of the agent's writes.
pub const FIELD_MANAGER: &str = "medplat-node-agent";

/// What can go wrong talking to the API server.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Reading the node's NodeCompliance failed.
    #[error("cannot read NodeCompliance {node}")]
    Read {
        /// The node.
        node: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// Creating or patching the node's NodeCompliance failed.
    #[error("cannot write NodeCompliance {node}")]
    Write {
        /// The node.
        node: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// The scan task died (it panicked or was cancelled).
    #[error("the host scan did not finish: {0}")]
    Scan(String),
}

/// Where the agent keeps its node's status: the narrow writer.
pub trait ComplianceStore {
    /// The stored status of `node`, `None` when there is no object or no status yet.
    fn current(
        &self,
        node: &str,
    ) -> impl Future<Output = Result<Option<NodeComplianceStatus>, AgentError>> + Send;
    /// Stores `status` for `node`, creating the object when missing.
    fn write(
        &self,
        node: &str,
        status: &NodeComplianceStatus,
    ) -> impl Future<Output = Result<(), AgentError>> + Send;
}

/// The real store: `Api<NodeCompliance>` (cluster-scoped).
#[derive(Clone)]
pub struct KubeStore {
    api: Api<NodeCompliance>,
}

impl KubeStore {
    /// A store over the cluster the client talks to.
    pub fn new(client: kube::Client) -> Self {
        KubeStore {
            api: Api::all(client),
        }
    }
}

impl ComplianceStore for KubeStore {
    async fn current(&self, node: &str) -> Result<Option<NodeComplianceStatus>, AgentError> {
        self.api
            .get_opt(node)
            .await
            .map(|o| o.and_then(|nc| nc.status))
            .map_err(|source| AgentError::Read {
                node: node.to_string(),
                source,
            })
    }

    async fn write(&self, node: &str, status: &NodeComplianceStatus) -> Result<(), AgentError> {
        let err = |source| AgentError::Write {
            node: node.to_string(),
            source,
        };
        let patch = Patch::Merge(serde_json::json!({ "status": status }));
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        match self.api.patch_status(node, &params, &patch).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(err(e)),
        }
        let object = NodeCompliance {
            metadata: ObjectMeta {
                name: Some(node.to_string()),
                labels: Some(
                    [(
                        "app.kubernetes.io/managed-by".to_string(),
                        "medplat".to_string(),
                    )]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            spec: NodeComplianceSpec {
                node_name: node.to_string(),
            },
            status: None,
        };
        let post = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        match self.api.create(&post, &object).await {
            Ok(_) => {}
            // Another agent instance (a rolling update) created it first: fine.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(err(e)),
        }
        self.api
            .patch_status(node, &params, &patch)
            .await
            .map(|_| ())
            .map_err(err)
    }
}

/// Settings of the running agent.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The node this agent runs on; the NodeCompliance's name.
    pub node_name: String,
    /// What to scan.
    pub scan: ScanConfig,
    /// The Platform's scan interval.
    pub policy: WritePolicy,
}

/// Runs one scan in a blocking thread (host file reads block).
pub async fn scan_once(cfg: &ScanConfig) -> Result<NodeComplianceStatus, AgentError> {
    let cfg = cfg.clone();
    let checks = tokio::task::spawn_blocking(move || scan(&cfg))
        .await
        .map_err(|e| AgentError::Scan(e.to_string()))?;
    Ok(build_status(
        checks,
        Time(jiff::Timestamp::now()),
        BASELINE,
        AGENT_VERSION,
    ))
}

/// One round: scan, compare with the stored status, write when the rule says so.
pub async fn step<S: ComplianceStore>(
    store: &S,
    cfg: &AgentConfig,
) -> Result<WriteDecision, AgentError> {
    let next = scan_once(&cfg.scan).await?;
    let prev = store.current(&cfg.node_name).await?;
    let now = next
        .last_scan
        .clone()
        .unwrap_or(Time(jiff::Timestamp::now()));
    let decision = cfg.policy.decide(prev.as_ref(), &next, &now);
    if decision != WriteDecision::Skip {
        store.write(&cfg.node_name, &next).await?;
    }
    Ok(decision)
}

/// Runs [`step`] every scan period until `shutdown` resolves. Errors are logged and retried at
/// the next period; they never end the loop.
pub async fn run<S: ComplianceStore>(
    store: S,
    cfg: AgentConfig,
    shutdown: impl Future<Output = ()>,
) {
    let mut ticker = tokio::time::interval(cfg.policy.scan_period());
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = ticker.tick() => {}
        }
        match step(&store, &cfg).await {
            Ok(decision) => tracing::info!(node = %cfg.node_name, ?decision, "scan done"),
            Err(e) => tracing::warn!(node = %cfg.node_name, error = %e, "scan round failed"),
        }
    }
}

/// The scan period for an interval, for callers that only need the timing.
pub fn scan_period(interval: Duration) -> Duration {
    WritePolicy { interval }.scan_period()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct MemoryStore {
        stored: Mutex<Option<NodeComplianceStatus>>,
        writes: Mutex<usize>,
    }

    impl ComplianceStore for MemoryStore {
        async fn current(&self, _: &str) -> Result<Option<NodeComplianceStatus>, AgentError> {
            Ok(self.stored.lock().unwrap().clone())
        }
        async fn write(&self, _: &str, s: &NodeComplianceStatus) -> Result<(), AgentError> {
            *self.stored.lock().unwrap() = Some(s.clone());
            *self.writes.lock().unwrap() += 1;
            Ok(())
        }
    }

    #[tokio::test]
    async fn first_round_writes_and_an_immediate_rescan_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = AgentConfig {
            node_name: "n1".into(),
            scan: ScanConfig {
                root: dir.path().to_path_buf(),
                ..ScanConfig::default()
            },
            policy: WritePolicy {
                interval: Duration::from_secs(600),
            },
        };
        let store = MemoryStore::default();
        assert_eq!(step(&store, &cfg).await.unwrap(), WriteDecision::Changed);
        assert_eq!(step(&store, &cfg).await.unwrap(), WriteDecision::Skip);
        assert_eq!(*store.writes.lock().unwrap(), 1);
        // An empty root is a broken host: errors, never a panic, and not compliant.
        let s = store.stored.lock().unwrap().clone().unwrap();
        assert!(!s.compliant);
        assert!(s.summary.error > 0);
        // A change on the host is written at the next round.
        std::fs::create_dir_all(dir.path().join("proc/sys/kernel")).unwrap();
        std::fs::write(dir.path().join("proc/sys/kernel/randomize_va_space"), "2\n").unwrap();
        assert_eq!(step(&store, &cfg).await.unwrap(), WriteDecision::Changed);
    }
}
