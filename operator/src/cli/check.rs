//! `medplat check -f PATH...`: offline validation of manifests for a GitOps pipeline's CI.
//!
//! Exit codes: 0 clean, 1 schema or policy problems, 2 the input cannot be read.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use jiff::Timestamp;

use crate::check::{Severity, check_objects};
use crate::manifests;

/// Options of `medplat check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Files or directories of manifests (directories are read recursively).
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Evaluate grant expiry as of this instant (RFC 3339) instead of now.
    #[arg(long)]
    pub now: Option<Timestamp>,
}

/// How `medplat check` prints its findings.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// One line per problem: file, object, field, reason and message.
    Text,
    /// A JSON report.
    Json,
}

/// Runs `medplat check` and returns its exit code.
pub fn run(args: &CheckArgs) -> ExitCode {
    let objects = match manifests::load(&args.paths) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let report = check_objects(&objects, args.now.unwrap_or_else(Timestamp::now));
    let mut out = std::io::stdout().lock();
    let written = match args.output {
        OutputFormat::Json => serde_json::to_string_pretty(&report)
            .map_err(std::io::Error::other)
            .and_then(|s| writeln!(out, "{s}")),
        OutputFormat::Text => (|| {
            for p in &report.problems {
                let sev = match p.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                };
                writeln!(
                    out,
                    "{}: {sev}: {}: {}: {}: {}",
                    p.file, p.object, p.field, p.reason, p.message
                )?;
            }
            let errors = report
                .problems
                .iter()
                .filter(|p| p.severity == Severity::Error)
                .count();
            writeln!(
                out,
                "checked {} objects ({} pipelines): {} errors, {} warnings",
                report.objects,
                report.pipelines,
                errors,
                report.problems.len() - errors
            )
        })(),
    };
    if let Err(e) = written
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("error: cannot write the report: {e}");
        return ExitCode::from(2);
    }
    if report.has_errors() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
