//! The `medplat` command line: one subcommand per job, each in its own file.

pub mod alerts;
pub mod check;
pub mod crd;
pub mod install;
pub mod node_agent;
pub mod run;
pub mod sandbox;
pub mod worker;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// medplat: a Kubernetes operator for a hospital's governed medical big-data platform.
#[derive(Parser, Debug)]
#[command(name = "medplat", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print every CRD as one YAML stream, or write one file per CRD with --out.
    Crd(crd::CrdArgs),
    /// Validate manifests offline: CRD schemas, CEL rules and the classification policy.
    Check(check::CheckArgs),
    /// Run the operator: every controller, with metrics and health endpoints.
    Run(run::RunArgs),
    /// Try medplat with no cluster: a simulated cluster running the example hospital.
    Sandbox(sandbox::SandboxArgs),
    /// Print the alert rules rendered from a Platform (PrometheusRule or a plain rules file).
    Alerts(alerts::AlertsArgs),
    /// Print the operator's install objects (and the CRDs) as one YAML stream, or write the
    /// kustomize base or the Helm chart's generated files.
    InstallManifests(install::InstallArgs),
    /// Scan this node against the hardening baseline and report its NodeCompliance status.
    NodeAgent(node_agent::NodeAgentArgs),
    /// The data plane: run a pipeline, or serve an HL7 v2 MLLP listener.
    Worker(worker::WorkerArgs),
}

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    // The sandbox prints a summary; the operator inside it should not drown it in logs.
    init_process(if matches!(cli.command, Command::Sandbox(_)) {
        "warn"
    } else {
        "info"
    });
    match cli.command {
        Command::Crd(args) => report(crd::run(&args)),
        Command::Check(args) => check::run(&args),
        Command::Run(args) => run::run(args),
        Command::Sandbox(args) => sandbox::run(args),
        Command::Alerts(args) => report(alerts::run(&args)),
        Command::InstallManifests(args) => report(install::run(&args)),
        Command::NodeAgent(args) => report(node_agent::run(&args)),
        Command::Worker(args) => worker::run(&args),
    }
}

/// Process-wide setup: the rustls crypto provider (ring) and logging.
///
/// Logs go to stderr; `MEDPLAT_LOG_FORMAT=json` gives one JSON object per line for the log
/// collector, anything else readable text. `RUST_LOG` filters them (default `info`).
pub fn init_process(default_filter: &str) {
    // A second install (tests calling this twice) is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let json = std::env::var("MEDPLAT_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Prints an error with its chain of causes and maps it to exit code 1.
fn report<E: std::error::Error>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = format!("error: {e}");
            let mut source = e.source();
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}
