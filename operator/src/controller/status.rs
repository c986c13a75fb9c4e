//! kstatus conditions: `Ready`, `Reconciling` and `Stalled` set together and consistently, so
//! Argo CD, Flux and `kubectl wait` agree on what an object's state is.

use crate::api::conditions::{
    Condition, ConditionStatus, READY, RECONCILING, STALLED, new_condition, set_condition,
};

use super::context::now;

/// The overall state of an object after a reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Reconciled: `Ready=True`.
    Ready {
        /// CamelCase reason.
        reason: String,
        /// Human message.
        message: String,
    },
    /// Cannot progress until a human changes something: `Ready=False`, `Stalled=True`.
    Stalled {
        /// CamelCase reason.
        reason: String,
        /// Human message naming the field or object.
        message: String,
    },
    /// Still working (e.g. waiting for a dependency): `Ready=False`, `Reconciling=True`.
    Progressing {
        /// CamelCase reason.
        reason: String,
        /// Human message.
        message: String,
    },
}

impl Outcome {
    /// `Ready` with a reason and message.
    pub fn ready(reason: &str, message: impl Into<String>) -> Outcome {
        Outcome::Ready {
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// `Stalled` with a reason and message.
    pub fn stalled(reason: &str, message: impl Into<String>) -> Outcome {
        Outcome::Stalled {
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// `Progressing` with a reason and message.
    pub fn progressing(reason: &str, message: impl Into<String>) -> Outcome {
        Outcome::Progressing {
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// Whether the object is ready.
    pub fn is_ready(&self) -> bool {
        matches!(self, Outcome::Ready { .. })
    }
}

/// Applies `outcome` and `extra` conditions to a copy of `existing`, keeping transition times
/// of conditions whose status did not change.
pub fn conditions_for(
    existing: &[Condition],
    generation: Option<i64>,
    outcome: &Outcome,
    extra: Vec<(String, bool, String, String)>,
) -> Vec<Condition> {
    let mut out = existing.to_vec();
    let t = now();
    let (ready, reconciling, stalled, reason, message) = match outcome {
        Outcome::Ready { reason, message } => (true, false, false, reason, message),
        Outcome::Stalled { reason, message } => (false, false, true, reason, message),
        Outcome::Progressing { reason, message } => (false, true, false, reason, message),
    };
    let status = ConditionStatus::from_bool;
    set_condition(
        &mut out,
        new_condition(
            READY,
            status(ready),
            reason,
            message.as_str(),
            generation,
            t.clone(),
        ),
    );
    set_condition(
        &mut out,
        new_condition(
            RECONCILING,
            status(reconciling),
            reason,
            if reconciling { message.as_str() } else { "" },
            generation,
            t.clone(),
        ),
    );
    set_condition(
        &mut out,
        new_condition(
            STALLED,
            status(stalled),
            reason,
            if stalled { message.as_str() } else { "" },
            generation,
            t.clone(),
        ),
    );
    for (type_, value, reason, message) in extra {
        set_condition(
            &mut out,
            new_condition(
                &type_,
                status(value),
                &reason,
                message,
                generation,
                t.clone(),
            ),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::conditions::{find_condition, is_true};

    #[test]
    fn ready_clears_stalled_and_reconciling() {
        let c = conditions_for(&[], Some(3), &Outcome::ready("Reconciled", "ok"), vec![]);
        assert!(is_true(&c, READY) && !is_true(&c, STALLED) && !is_true(&c, RECONCILING));
        assert_eq!(
            find_condition(&c, READY).unwrap().observed_generation,
            Some(3)
        );
    }

    #[test]
    fn an_unchanged_outcome_is_equal_so_nothing_is_written() {
        let a = conditions_for(
            &[],
            Some(1),
            &Outcome::stalled("X", "y"),
            vec![("Extra".into(), true, "R".into(), "m".into())],
        );
        let b = conditions_for(
            &a,
            Some(1),
            &Outcome::stalled("X", "y"),
            vec![("Extra".into(), true, "R".into(), "m".into())],
        );
        assert_eq!(a, b);
    }
}
