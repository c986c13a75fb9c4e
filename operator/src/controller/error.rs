//! Errors of the reconcilers: what failed, and on which object.

use crate::render::RenderError;

/// A reconcile failure. Every variant names the object it concerns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("{action} {object}: {source}")]
    Kube {
        /// What was being done, e.g. "apply", "delete", "patch status of".
        action: &'static str,
        /// The object, `Kind namespace/name`.
        object: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// Rendering the children failed.
    #[error("render children of {object}: {source}")]
    Render {
        /// The parent.
        object: String,
        /// The cause.
        #[source]
        source: RenderError,
    },
    /// A value could not be (de)serialised.
    #[error("serialise {object}: {source}")]
    Serde {
        /// The object.
        object: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The object lacks something every object has (a name, a namespace, a uid).
    #[error("{object} has no {what}")]
    MissingMetadata {
        /// The object.
        object: String,
        /// What is missing.
        what: &'static str,
    },
}

impl Error {
    /// A short, stable label for the `reason` of `medplat_reconcile_errors_total`.
    pub fn metric_reason(&self) -> &'static str {
        match self {
            Error::Kube { source, .. } => match source {
                kube::Error::Api(s) if s.code == 409 => "Conflict",
                kube::Error::Api(s) if s.code == 429 => "TooManyRequests",
                kube::Error::Api(s) if s.code >= 500 => "ServerError",
                kube::Error::Api(_) => "ApiError",
                _ => "Transport",
            },
            Error::Render { .. } => "Render",
            Error::Serde { .. } => "Serialization",
            Error::MissingMetadata { .. } => "MissingMetadata",
        }
    }

    /// Builds the `Kube` variant.
    pub fn kube(action: &'static str, object: impl Into<String>, source: kube::Error) -> Self {
        Error::Kube {
            action,
            object: object.into(),
            source,
        }
    }
}

/// Result of a reconcile step.
pub type Result<T, E = Error> = std::result::Result<T, E>;
