//! The `medplat` binary: operator, offline checker, node agent, worker and sandbox in one.

use std::process::ExitCode;

use clap::Parser;

// The system allocator, on purpose: mimalloc made the worker about a sixth faster but raised
// the operator's peak RSS at 5,000 Pipelines from 188 to 226 MiB (over its 200 MiB budget),
// and one binary has one global allocator (bench/RESULTS.md).

fn main() -> ExitCode {
    medplat::cli::run(medplat::cli::Cli::parse())
}
