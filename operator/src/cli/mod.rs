//! The `medplat` command line: one subcommand per job, each in its own file.

pub mod check;
pub mod crd;
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
    /// The data plane: run a pipeline, or serve an HL7 v2 MLLP listener.
    Worker(worker::WorkerArgs),
}

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Crd(args) => report(crd::run(&args)),
        Command::Check(args) => check::run(&args),
        Command::Worker(args) => worker::run(&args),
    }
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
