//! What the webhook found about one object: reasons to refuse the write, and warnings that
//! admit it. Each line reads like a `medplat check` problem: reason, field, message.

use std::fmt;

use crate::policy::Violation;

/// One finding: a stable CamelCase reason, the field it is about, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// A stable CamelCase reason (`TierLevelTooLow`, `TierNotFound`, …).
    pub reason: String,
    /// The field of the reviewed object, e.g. `spec.sink.tier`.
    pub field: String,
    /// What is wrong, naming the objects involved (never a Secret's value).
    pub message: String,
}

impl Finding {
    /// A finding about `field`.
    pub fn new(
        reason: impl Into<String>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Finding {
        Finding {
            reason: reason.into(),
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<&Violation> for Finding {
    fn from(v: &Violation) -> Finding {
        Finding::new(v.reason.as_str(), v.field.clone(), v.message.clone())
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The same shape as a Violation's, so the webhook, `medplat check` and the
        // PolicyCompliant condition say the same thing in the same words.
        write!(f, "{} ({}): {}", self.reason, self.field, self.message)
    }
}

/// Everything found about one object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Findings {
    /// Each one refuses the write.
    pub denials: Vec<Finding>,
    /// Returned to the client as warnings; the write is admitted.
    pub warnings: Vec<Finding>,
}

impl Findings {
    /// Adds a reason to refuse.
    pub fn deny(&mut self, finding: Finding) {
        self.denials.push(finding);
    }

    /// Adds a warning.
    pub fn warn(&mut self, finding: Finding) {
        self.warnings.push(finding);
    }

    /// Moves every denial to the warnings, each marked with `why` it is admitted anyway.
    pub fn demote_denials(&mut self, why: &str) {
        for mut d in std::mem::take(&mut self.denials) {
            d.message = format!("{} ({why})", d.message);
            self.warnings.push(d);
        }
    }
}
