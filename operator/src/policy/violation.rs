//! Why a pipeline may not run: typed reasons with human messages naming objects and fields.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What kind of rule a [`Violation`] breaks. The CamelCase name is used as the condition reason
/// and Event reason, so it is stable.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ViolationReason {
    /// A source named in `spec.sources` does not exist.
    SourceNotFound,
    /// The sink tier does not exist.
    TierNotFound,
    /// The output level is above the sink tier's `maxLevel`.
    TierLevelTooLow,
    /// L3+ output into a tier that does not require encryption.
    TierNotEncrypted,
    /// Data crosses domains without an AccessPolicy `crossDomain` grant for the purpose.
    CrossDomainNotGranted,
    /// The pipeline's ServiceAccount has no `read` grant on a source.
    ReadNotGranted,
    /// The pipeline's ServiceAccount has no `write` grant on the sink tier.
    WriteNotGranted,
    /// The only grant that would allow the access has passed its `validUntil`.
    GrantExpired,
    /// A grant allows the access only for de-identified data, and the data is not.
    GrantRequiresDeidentified,
    /// A grant allows the access only up to a lower level than the data's.
    GrantLevelTooLow,
}

impl ViolationReason {
    /// The reason's CamelCase name.
    pub fn as_str(self) -> &'static str {
        match self {
            ViolationReason::SourceNotFound => "SourceNotFound",
            ViolationReason::TierNotFound => "TierNotFound",
            ViolationReason::TierLevelTooLow => "TierLevelTooLow",
            ViolationReason::TierNotEncrypted => "TierNotEncrypted",
            ViolationReason::CrossDomainNotGranted => "CrossDomainNotGranted",
            ViolationReason::ReadNotGranted => "ReadNotGranted",
            ViolationReason::WriteNotGranted => "WriteNotGranted",
            ViolationReason::GrantExpired => "GrantExpired",
            ViolationReason::GrantRequiresDeidentified => "GrantRequiresDeidentified",
            ViolationReason::GrantLevelTooLow => "GrantLevelTooLow",
        }
    }
}

impl fmt::Display for ViolationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a violation acts, from the AccessPolicy `mode` that governs it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Enforcement {
    /// Recorded only (mode `Audit`).
    Audit,
    /// Recorded with a Warning Event (mode `Warn`).
    Warn,
    /// Blocks the pipeline (mode `Enforce`, and every classification rule).
    Block,
}

/// One broken rule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which rule.
    pub reason: ViolationReason,
    /// Whether it blocks the pipeline or is only reported.
    pub enforcement: Enforcement,
    /// The field of the Pipeline it is about, e.g. `spec.sink.tier` or `spec.sources[1]`.
    pub field: String,
    /// What is wrong, naming the objects involved.
    pub message: String,
}

impl Violation {
    /// A violation that always blocks.
    pub fn blocking(
        reason: ViolationReason,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Violation {
            reason,
            enforcement: Enforcement::Block,
            field: field.into(),
            message: message.into(),
        }
    }

    /// Whether this violation stops the pipeline from running.
    pub fn blocks(&self) -> bool {
        self.enforcement == Enforcement::Block
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.reason, self.field, self.message)
    }
}
