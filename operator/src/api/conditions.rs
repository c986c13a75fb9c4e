//! Status conditions in the `metav1.Condition` shape, with kstatus semantics.
//!
//! Argo CD, Flux and `kubectl wait --for=condition=Ready` read these. The helpers only move
//! `lastTransitionTime` when the status really changes, so an unchanged reconcile writes nothing.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `Ready`: the object is reconciled and its children are in the desired state.
pub const READY: &str = "Ready";
/// `Reconciling` (kstatus): the controller is working towards the desired state.
pub const RECONCILING: &str = "Reconciling";
/// `Stalled` (kstatus): the controller cannot make progress without a change from a human.
pub const STALLED: &str = "Stalled";
/// `PolicyCompliant` (Pipeline): the classification rules allow this pipeline to run.
pub const POLICY_COMPLIANT: &str = "PolicyCompliant";
/// `Reachable` (DataSource): the source answered its probe.
pub const REACHABLE: &str = "Reachable";
/// `BackendVerified` (StorageTier): the storage backend exists and meets the tier's encryption.
pub const BACKEND_VERIFIED: &str = "BackendVerified";
/// `NodesHardened` (Platform): every selected node passed a recent scan.
pub const NODES_HARDENED: &str = "NodesHardened";
/// `LoggingConfigured` (Platform): the log collection config is valid and rolled out.
pub const LOGGING_CONFIGURED: &str = "LoggingConfigured";
/// `AlertingConfigured` (Platform): the alert rules are rendered; the reason says where to.
pub const ALERTING_CONFIGURED: &str = "AlertingConfigured";

/// The status of a condition, as in `metav1.ConditionStatus`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// The controller cannot tell yet.
    #[default]
    Unknown,
}

impl ConditionStatus {
    /// `True` for `true`, `False` for `false`.
    pub fn from_bool(b: bool) -> Self {
        if b {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        }
    }
}

/// One aspect of an object's current state, in the `metav1.Condition` shape.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The condition's type in CamelCase, e.g. `Ready`, `PolicyCompliant`.
    #[schemars(length(min = 1, max = 316))]
    pub r#type: String,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// A CamelCase, machine-readable reason for the last transition.
    #[schemars(length(min = 1, max = 1024))]
    pub reason: String,
    /// A human-readable message: what is wrong and on which object or field.
    #[serde(default)]
    #[schemars(length(max = 32768))]
    pub message: String,
    /// When the status last changed.
    pub last_transition_time: Time,
    /// The `metadata.generation` this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Sets `cond` in `conditions`, keeping `lastTransitionTime` when the status did not change.
///
/// Returns whether anything in the list changed, so callers can skip a status write.
pub fn set_condition(conditions: &mut Vec<Condition>, mut cond: Condition) -> bool {
    match conditions.iter_mut().find(|c| c.r#type == cond.r#type) {
        Some(existing) => {
            if existing.status == cond.status {
                cond.last_transition_time = existing.last_transition_time.clone();
            }
            if *existing == cond {
                false
            } else {
                *existing = cond;
                true
            }
        }
        None => {
            conditions.push(cond);
            true
        }
    }
}

/// Finds a condition by type.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.r#type == type_)
}

/// Whether the condition `type_` is present with status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find_condition(conditions, type_).is_some_and(|c| c.status == ConditionStatus::True)
}

/// Builds a condition stamped with `now`; [`set_condition`] keeps the old time when unchanged.
pub fn new_condition(
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: impl Into<String>,
    observed_generation: Option<i64>,
    now: Time,
) -> Condition {
    Condition {
        r#type: type_.to_string(),
        status,
        reason: reason.to_string(),
        message: message.into(),
        last_transition_time: now,
        observed_generation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Time {
        Time(jiff::Timestamp::from_second(secs).unwrap_or_default())
    }

    #[test]
    fn unchanged_status_keeps_transition_time_and_reports_no_change() {
        let mut list = vec![];
        assert!(set_condition(
            &mut list,
            new_condition(
                READY,
                ConditionStatus::True,
                "Reconciled",
                "ok",
                Some(1),
                at(10)
            )
        ));
        assert!(!set_condition(
            &mut list,
            new_condition(
                READY,
                ConditionStatus::True,
                "Reconciled",
                "ok",
                Some(1),
                at(20)
            )
        ));
        assert_eq!(list[0].last_transition_time, at(10));
    }

    #[test]
    fn message_change_without_transition_keeps_the_time() {
        let mut list = vec![];
        set_condition(
            &mut list,
            new_condition(READY, ConditionStatus::False, "A", "x", None, at(10)),
        );
        assert!(set_condition(
            &mut list,
            new_condition(READY, ConditionStatus::False, "B", "y", None, at(30))
        ));
        assert_eq!(list[0].last_transition_time, at(10));
        assert_eq!(list[0].reason, "B");
    }

    #[test]
    fn status_flip_moves_the_transition_time() {
        let mut list = vec![];
        set_condition(
            &mut list,
            new_condition(READY, ConditionStatus::False, "A", "", None, at(10)),
        );
        set_condition(
            &mut list,
            new_condition(READY, ConditionStatus::True, "A", "", None, at(40)),
        );
        assert_eq!(list[0].last_transition_time, at(40));
        assert!(is_true(&list, READY));
    }
}
