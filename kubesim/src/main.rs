//! The `kubesim` binary: serves the simulated API server on loopback and writes a kubeconfig.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// kubesim: an in-memory Kubernetes API server for tests (a test double, not a cluster).
#[derive(Debug, Parser)]
#[command(name = "kubesim", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve until interrupted.
    Serve {
        /// Loopback port (0 picks a free one).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Where to write a kubeconfig for kubectl and kube::Client.
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// Serve HTTPS with a generated CA (written into the kubeconfig).
        #[arg(long)]
        https: bool,
        /// Require this bearer token (written into the kubeconfig).
        #[arg(long, env = "KUBESIM_TOKEN")]
        token: Option<String>,
        /// Simulated nodes: NAME[,label=value...]; repeatable. Default: one node `kubesim-node`.
        #[arg(long = "node")]
        nodes: Vec<String>,
        /// Seconds between watch bookmarks.
        #[arg(long, default_value_t = 5)]
        bookmark_seconds: u64,
    },
}

fn parse_node(spec: &str) -> kubesim::NodeSpec {
    let mut parts = spec.split(',');
    let mut node = kubesim::NodeSpec::new(parts.next().unwrap_or("kubesim-node"));
    for p in parts {
        if let Some(taint) = p.strip_prefix("taint:") {
            // taint:key=value:Effect
            let (kv, effect) = taint.rsplit_once(':').unwrap_or((taint, "NoSchedule"));
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            node = node.taint(k, v, effect);
        } else if let Some((k, v)) = p.split_once('=') {
            node = node.label(k, v);
        }
    }
    node
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let Command::Serve {
        port,
        kubeconfig,
        https,
        token,
        nodes,
        bookmark_seconds,
    } = cli.command;
    let mut builder = kubesim::Sim::builder()
        .port(port)
        .bookmark_interval(Duration::from_secs(bookmark_seconds.max(1)));
    if https {
        builder = builder.https();
    }
    if let Some(t) = token {
        builder = builder.token(t);
    }
    if !nodes.is_empty() {
        builder = builder.nodes(nodes.iter().map(|n| parse_node(n)).collect());
    }
    let sim = match builder.start().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kubesim: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Some(path) = &kubeconfig
        && let Err(e) = sim.write_kubeconfig(path)
    {
        eprintln!("kubesim: {e}");
        return std::process::ExitCode::FAILURE;
    }
    println!(
        "kubesim serving {} (a test double, not a cluster)",
        sim.url()
    );
    if let Some(path) = &kubeconfig {
        println!("kubeconfig written to {}", path.display());
    }
    let _ = tokio::signal::ctrl_c().await;
    sim.shutdown().await;
    std::process::ExitCode::SUCCESS
}
