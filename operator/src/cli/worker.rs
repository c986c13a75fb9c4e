//! `medplat worker`: run one pipeline (`run`), in the cluster from the resolved document or
//! locally from a directory of manifests, or serve the HL7 v2 MLLP listener (`listen`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};

use crate::api::audit::AuditEmitter;
use crate::api::resolved::ResolvedPipeline;
use crate::worker::engine::{self, RunOptions};
use crate::worker::{local, mllp};

/// Options of `medplat worker`.
#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: WorkerCommand,
}

/// The worker's subcommands.
#[derive(Subcommand, Debug)]
pub enum WorkerCommand {
    /// Run one pipeline once.
    Run(RunArgs),
    /// Serve the MLLP listener of an hl7v2 DataSource, landing messages in its tier.
    Listen(mllp::ListenArgs),
}

/// Options of `medplat worker run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The resolved-pipeline document (in the cluster: /etc/medplat/pipeline.json).
    #[arg(long, conflicts_with_all = ["manifests", "pipeline", "local_root"])]
    pub config: Option<PathBuf>,
    /// Local mode: a directory of manifests (a GitOps repository).
    #[arg(long, requires_all = ["pipeline", "local_root", "secrets"])]
    pub manifests: Option<PathBuf>,
    /// Local mode: the Pipeline's name.
    #[arg(long)]
    pub pipeline: Option<String>,
    /// Local mode: the Pipeline's namespace.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// Local mode: volume tier T is the directory <local-root>/T.
    #[arg(long)]
    pub local_root: Option<PathBuf>,
    /// Local mode: key K of Secret S is the file <secrets>/S/K.
    #[arg(long)]
    pub secrets: Option<PathBuf>,
    /// The logical date of the run (YYYY-MM-DD), for ages computed from birth dates; today (UTC)
    /// by default.
    #[arg(long)]
    pub as_of: Option<jiff::civil::Date>,
    /// Also write the one-line summary here (the container's termination message). Defaults to
    /// /dev/termination-log with --config.
    #[arg(long)]
    pub termination_log: Option<PathBuf>,
    /// The run id (defaults to the start time and random bits).
    #[arg(long)]
    pub run_id: Option<String>,
    /// Threads applying the per-record steps (defaults to the CPUs the container may use, its
    /// CPU limit included). Output is the same for any number.
    #[arg(long, env = "MEDPLAT_WORKER_THREADS")]
    pub threads: Option<std::num::NonZeroUsize>,
}

/// What can go wrong before a run starts.
#[derive(Debug, thiserror::Error)]
pub enum WorkerCliError {
    /// Neither mode was chosen.
    #[error(
        "give --config FILE, or --manifests DIR --pipeline NAME --local-root DIR --secrets DIR"
    )]
    NoMode,
    /// The document could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The document is invalid.
    #[error("{}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: crate::api::resolved::ResolvedParseError,
    },
    /// Local mode could not resolve the pipeline.
    #[error(transparent)]
    Local(#[from] local::LocalError),
    /// The async runtime could not start.
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    /// The listener failed.
    #[error(transparent)]
    Listen(#[from] mllp::ListenError),
}

/// Installs ring as the process-wide rustls provider (reqwest and object_store use it).
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn runtime() -> Result<tokio::runtime::Runtime, WorkerCliError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(WorkerCliError::Runtime)
}

/// Runs `medplat worker`.
pub fn run(args: &WorkerArgs) -> ExitCode {
    install_crypto_provider();
    match &args.command {
        WorkerCommand::Run(a) => match run_pipeline(a) {
            Ok(code) => code,
            Err(e) => super::report::<WorkerCliError>(Err(e)),
        },
        WorkerCommand::Listen(a) => {
            let result =
                runtime().and_then(|rt| rt.block_on(mllp::listen(a)).map_err(WorkerCliError::from));
            super::report(result)
        }
    }
}

fn run_pipeline(a: &RunArgs) -> Result<ExitCode, WorkerCliError> {
    // An Indexed Job (spec.parallelism > 1) starts one pod per index. Splitting a run into
    // partitions is not implemented: the k-anonymity gate, dedupe and linkage need the whole
    // dataset, and the commit must stay one atomic version. Index 0 runs the pipeline; the
    // others stop at once, so pods never race on the commit.
    if let Some(index) = std::env::var("JOB_COMPLETION_INDEX")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        && index > 0
    {
        eprintln!(
            "medplat worker: index {index} of an Indexed Job has nothing to do: index 0 runs the whole pipeline (partitioned runs are not implemented)"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let (doc, termination_log) = match (&a.config, &a.manifests) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path).map_err(|source| WorkerCliError::Read {
                path: path.clone(),
                source,
            })?;
            let doc =
                ResolvedPipeline::from_json(&text).map_err(|source| WorkerCliError::Parse {
                    path: path.clone(),
                    source,
                })?;
            let log = a
                .termination_log
                .clone()
                .or_else(|| Some(PathBuf::from("/dev/termination-log")));
            (doc, log)
        }
        (None, Some(dir)) => {
            let (Some(name), Some(root), Some(secrets)) = (&a.pipeline, &a.local_root, &a.secrets)
            else {
                return Err(WorkerCliError::NoMode);
            };
            let doc = local::resolve_from_manifests(dir, &a.namespace, name, root, secrets)?;
            (doc, a.termination_log.clone())
        }
        (None, None) => return Err(WorkerCliError::NoMode),
    };
    let rt = runtime()?;
    let opts = RunOptions {
        run_id: a
            .run_id
            .clone()
            .or_else(|| std::env::var("MEDPLAT_RUN_ID").ok()),
        as_of: a.as_of.unwrap_or_else(|| {
            jiff::Timestamp::now()
                .to_zoned(jiff::tz::TimeZone::UTC)
                .date()
        }),
        audit: Arc::new(AuditEmitter::stdout()),
        runtime: rt.handle().clone(),
        object_store_override: None,
        parallelism: a.threads,
    };
    let report = engine::run(&doc, &opts);
    eprint!("{}", report.summary.human());
    report.summary.emit(termination_log.as_deref());
    drop(rt);
    Ok(if report.error.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
