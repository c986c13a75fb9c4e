//! The `medplat` binary: operator, offline checker, node agent, worker and sandbox in one.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    medplat::cli::run(medplat::cli::Cli::parse())
}
