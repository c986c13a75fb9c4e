//! `medplat alerts`: print the alert rules rendered from a Platform, as a PrometheusRule or as a
//! plain Prometheus rules file (`deploy/prometheus/medplat-rules.yaml` is the latter, for the
//! default Platform).

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::api::platform::Platform;
use crate::render::platform::rules::{prometheus_rule, rules_file_yaml};
use crate::render::platform::{DEFAULT_NAMESPACE, RenderError, default_platform};

/// Options of `medplat alerts`.
#[derive(Args, Debug)]
pub struct AlertsArgs {
    /// The Platform manifest to render from; the built-in default Platform when absent.
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// What to print.
    #[arg(long, value_enum, default_value_t = AlertsFormat::PrometheusRule)]
    pub format: AlertsFormat,
    /// The namespace of the PrometheusRule.
    #[arg(long, default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
}

/// Output formats of `medplat alerts`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AlertsFormat {
    /// A `monitoring.coreos.com/v1` PrometheusRule.
    PrometheusRule,
    /// A plain Prometheus rules file (for `promtool` or a Prometheus without the operator).
    PrometheusRules,
}

/// What can go wrong in `medplat alerts`.
#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    /// The manifest could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The manifest is not a Platform.
    #[error("{} is not a valid Platform manifest", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_yaml::Error,
    },
    /// The manifest is of another kind.
    #[error("{} holds a {kind:?}, not a medplat.io Platform", path.display())]
    WrongKind {
        /// The file.
        path: PathBuf,
        /// The kind found.
        kind: String,
    },
    /// The rules could not be rendered.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// Serialising the PrometheusRule failed.
    #[error("cannot serialise the PrometheusRule")]
    Serialise(#[source] serde_yaml::Error),
    /// Printing failed.
    #[error("cannot write to standard output")]
    Stdout(#[source] std::io::Error),
}

/// Loads a Platform manifest from a YAML file.
pub fn load_platform(path: &std::path::Path) -> Result<Platform, AlertsError> {
    let text = std::fs::read_to_string(path).map_err(|source| AlertsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let value: serde_yaml::Value =
        serde_yaml::from_str(&text).map_err(|source| AlertsError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
    let kind = value
        .get("kind")
        .and_then(serde_yaml::Value::as_str)
        .unwrap_or("")
        .to_string();
    let api_version = value
        .get("apiVersion")
        .and_then(serde_yaml::Value::as_str)
        .unwrap_or("");
    if kind != "Platform" || api_version != crate::api::API_VERSION {
        return Err(AlertsError::WrongKind {
            path: path.to_path_buf(),
            kind: format!("{api_version} {kind}"),
        });
    }
    serde_yaml::from_value(value).map_err(|source| AlertsError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// Renders the text `medplat alerts` prints.
pub fn render(args: &AlertsArgs) -> Result<String, AlertsError> {
    let platform = match &args.file {
        Some(path) => load_platform(path)?,
        None => default_platform(),
    };
    match args.format {
        AlertsFormat::PrometheusRules => Ok(rules_file_yaml(&platform.spec)?),
        AlertsFormat::PrometheusRule => {
            let obj = prometheus_rule(&platform, &args.namespace)?;
            serde_yaml::to_string(&obj).map_err(AlertsError::Serialise)
        }
    }
}

/// Runs `medplat alerts`.
pub fn run(args: &AlertsArgs) -> Result<(), AlertsError> {
    let text = render(args)?;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(AlertsError::Stdout),
    }
}
