//! `medplat install-manifests`: the CRDs and the operator's install objects as one YAML stream,
//! or the generated files of `deploy/base/` and the Helm chart.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use crate::install::files::{self, FilesError};
use crate::install::{FailurePolicy, InstallError, InstallOptions, yaml_stream};

/// Options of `medplat install-manifests`.
#[derive(Args, Debug, Clone)]
pub struct InstallArgs {
    /// The operator's namespace.
    #[arg(long, default_value = crate::render::platform::DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// The operator image (also used for workers and listeners).
    #[arg(long)]
    pub image: Option<String>,
    /// Operator replicas (more than one needs leader election).
    #[arg(long, default_value_t = 2)]
    pub replicas: i32,
    /// Run without leader election (only with --replicas 1).
    #[arg(long)]
    pub no_leader_election: bool,
    /// Watch only this namespace.
    #[arg(long)]
    pub watch_namespace: Option<String>,
    /// The webhook's failure policy.
    #[arg(long, value_enum, default_value_t = FailurePolicy::Ignore)]
    pub failure_policy: FailurePolicy,
    /// The namespace whose pods may scrape the metrics port.
    #[arg(long, default_value = "monitoring")]
    pub monitoring_namespace: String,
    /// CIDRs of the API server endpoints (repeatable); any address on its ports when absent.
    #[arg(long = "api-server-cidr")]
    pub api_server_cidrs: Vec<String>,
    /// CIDRs the operator may probe (repeatable); the private ranges when absent.
    #[arg(long = "probe-cidr")]
    pub probe_cidrs: Vec<String>,
    /// Add a ServiceMonitor for the operator (needs the Prometheus operator).
    #[arg(long)]
    pub service_monitor: bool,
    /// Add the default Platform's alert rules as a PrometheusRule (needs the Prometheus operator).
    #[arg(long)]
    pub prometheus_rule: bool,
    /// Leave the CRDs out of the stream.
    #[arg(long)]
    pub without_crds: bool,
    /// Write the kustomize files (`base/`, `components/monitoring/`) into this directory.
    #[arg(long, conflicts_with = "chart")]
    pub kustomize: Option<PathBuf>,
    /// Write the Helm chart's generated files (CRDs, ClusterRole, alert rules) into this chart.
    #[arg(long)]
    pub chart: Option<PathBuf>,
}

impl InstallArgs {
    /// The install options these arguments describe.
    pub fn options(&self) -> InstallOptions {
        let defaults = InstallOptions::default();
        InstallOptions {
            namespace: self.namespace.clone(),
            image: self.image.clone().unwrap_or(defaults.image),
            replicas: self.replicas,
            leader_election: !self.no_leader_election,
            watch_namespace: self.watch_namespace.clone(),
            failure_policy: self.failure_policy,
            monitoring_namespace: self.monitoring_namespace.clone(),
            api_server_cidrs: self.api_server_cidrs.clone(),
            probe_cidrs: if self.probe_cidrs.is_empty() {
                defaults.probe_cidrs
            } else {
                self.probe_cidrs.clone()
            },
            service_monitor: self.service_monitor,
            prometheus_rule: self.prometheus_rule,
            ..defaults
        }
    }
}

/// What can go wrong in `medplat install-manifests`.
#[derive(Debug, thiserror::Error)]
pub enum InstallCliError {
    /// Rendering failed.
    #[error(transparent)]
    Install(#[from] InstallError),
    /// Writing files failed.
    #[error(transparent)]
    Files(#[from] FilesError),
    /// Printing failed.
    #[error("cannot write to standard output")]
    Stdout(#[source] std::io::Error),
}

/// Runs `medplat install-manifests`.
pub fn run(args: &InstallArgs) -> Result<(), InstallCliError> {
    let opts = args.options();
    if let Some(dir) = &args.kustomize {
        files::write_files(dir, &files::kustomize_files(&opts)?)?;
        return Ok(());
    }
    if let Some(dir) = &args.chart {
        files::write_files(dir, &files::chart_files()?)?;
        return Ok(());
    }
    let text = yaml_stream(&opts, !args.without_crds)?;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(InstallCliError::Stdout),
    }
}
