//! `medplat node-agent`: scan this node's host against the hardening baseline, once (`--once`,
//! no API server needed) or in a loop that writes the node's NodeCompliance status.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::node_agent::agent::{self, AgentConfig, KubeStore};
use crate::node_agent::status::{WritePolicy, build_status};
use crate::node_agent::{AGENT_VERSION, BASELINE, DEFAULT_ROOT, ScanConfig, scan};
use crate::policy::hardening::{HardeningError, parse_interval};

/// Options of `medplat node-agent`.
#[derive(Args, Debug)]
pub struct NodeAgentArgs {
    /// Where the host's `/` is mounted (read-only).
    #[arg(long, default_value = DEFAULT_ROOT)]
    pub root: PathBuf,
    /// The node this agent runs on; names its NodeCompliance object.
    #[arg(long, env = "NODE_NAME")]
    pub node_name: Option<String>,
    /// The Platform's scan interval (`spec.hardening.interval`), e.g. `10m`.
    #[arg(long, default_value = "10m")]
    pub interval: String,
    /// Kernel modules that must stay off, comma-separated; the baseline list when empty.
    #[arg(long, value_delimiter = ',')]
    pub disabled_kernel_modules: Vec<String>,
    /// Scan once, print the result and exit; no API server is contacted.
    #[arg(long)]
    pub once: bool,
    /// Output format of `--once`.
    #[arg(long, value_enum, default_value_t = Output::Json)]
    pub output: Output,
}

/// Output formats of `--once`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// The NodeCompliance status as JSON.
    Json,
    /// One line per check.
    Table,
}

/// What can go wrong running the agent.
#[derive(Debug, thiserror::Error)]
pub enum NodeAgentError {
    /// `--interval` is not a duration.
    #[error("--interval: {0}")]
    Interval(#[from] HardeningError),
    /// The loop needs to know its node.
    #[error("--node-name (or env NODE_NAME) is required unless --once is given")]
    NoNodeName,
    /// Printing failed.
    #[error("cannot write the scan to standard output")]
    Stdout(#[source] std::io::Error),
    /// Serialising the status failed.
    #[error("cannot serialise the scan result")]
    Serialise(#[source] serde_json::Error),
    /// No Kubernetes client could be built.
    #[error("cannot build a Kubernetes client (in-cluster or KUBECONFIG)")]
    Client(#[source] kube::Error),
    /// The async runtime could not start.
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
}

/// Runs `medplat node-agent`.
pub fn run(args: &NodeAgentArgs) -> Result<(), NodeAgentError> {
    let interval = parse_interval(&args.interval)?;
    let scan_cfg = ScanConfig {
        root: args.root.clone(),
        disabled_kernel_modules: args.disabled_kernel_modules.clone(),
        ..ScanConfig::default()
    };
    if args.once {
        return print_once(&scan_cfg, args.output);
    }
    let node_name = args.node_name.clone().ok_or(NodeAgentError::NoNodeName)?;
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(NodeAgentError::Runtime)?;
    runtime.block_on(async move {
        let client = kube::Client::try_default()
            .await
            .map_err(NodeAgentError::Client)?;
        let cfg = AgentConfig {
            node_name,
            scan: scan_cfg,
            policy: WritePolicy { interval },
        };
        let shutdown = async {
            // A failed signal handler means we cannot be stopped gracefully; keep running.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        agent::run(KubeStore::new(client), cfg, shutdown).await;
        Ok(())
    })
}

fn print_once(cfg: &ScanConfig, output: Output) -> Result<(), NodeAgentError> {
    let status = build_status(
        scan(cfg),
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
        BASELINE,
        AGENT_VERSION,
    );
    let text = match output {
        Output::Json => {
            let mut s = serde_json::to_string_pretty(&status).map_err(NodeAgentError::Serialise)?;
            s.push('\n');
            s
        }
        Output::Table => {
            let mut s = String::new();
            for c in &status.checks {
                let st = serde_json::to_value(c.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                s.push_str(&format!("{st:<14} {:<48} {}\n", c.id, c.actual));
            }
            let m = &status.summary;
            s.push_str(&format!(
                "compliant={} pass={} fail={} warn={} notapplicable={} error={}\n",
                status.compliant, m.pass, m.fail, m.warn, m.not_applicable, m.error
            ));
            s
        }
    };
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(NodeAgentError::Stdout),
    }
}
