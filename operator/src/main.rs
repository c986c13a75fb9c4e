//! The `medplat` binary: operator, offline checker, node agent, worker and sandbox in one.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator: the worker allocates and frees a few dozen small
/// strings per record, often on another thread than the one that allocated them (the parallel
/// per-record stage), where glibc's arenas showed up in profiles.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    medplat::cli::run(medplat::cli::Cli::parse())
}
