//! The AccessPolicy reconciler.
//!
//! dereference (the namespace's DataSources, the tiers) → build (Role, RoleBinding,
//! NetworkPolicy, policy bundle, for the grants live now) → apply and prune → status, then
//! requeue for the next instant something changes: a grant's expiry, or its 7-day warning.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};

use super::context::Context;
use super::error::{Error, Result};
use super::invalid::report_invalid;
use super::status::{Outcome, conditions_for};
use crate::api::access_policy::{AccessPolicy, AccessPolicyStatus};
use crate::api::data_source::DataSourceSpec;
use crate::api::storage_tier::StorageTierSpec;
use crate::render::access_policy::{EXPIRY_WARNING, render_access_policy_children};

/// The controller's name, in metrics and its field manager.
pub const CONTROLLER: &str = "accesspolicy";
const FIELD_MANAGER: &str = "medplat-accesspolicy";
const PRUNE: &[&str] = &["ConfigMap", "Role", "RoleBinding", "NetworkPolicy"];

/// The next instant the policy's children or warnings change after `now`: an expiry, or the
/// start of an expiry's warning window.
pub fn next_change(policy: &AccessPolicy, now: Timestamp) -> Option<Timestamp> {
    policy
        .spec
        .rules
        .iter()
        .filter_map(|r| r.constraints.valid_until.as_ref().map(|t| t.0))
        .flat_map(|t| [t, t.saturating_sub(EXPIRY_WARNING).unwrap_or(t)])
        .filter(|t| *t > now)
        .min()
}

/// Reconciles one AccessPolicy.
pub async fn reconcile(
    guard: Arc<DeserializeGuard<AccessPolicy>>,
    ctx: Arc<Context>,
) -> Result<Action> {
    let policy = match &guard.0 {
        Ok(p) => p,
        Err(invalid) => {
            report_invalid::<AccessPolicy>(&ctx, invalid, FIELD_MANAGER).await?;
            return Ok(Action::requeue(ctx.settings.resync));
        }
    };
    let name = policy.name_any();
    let ns = policy.namespace().ok_or_else(|| Error::MissingMetadata {
        object: format!("AccessPolicy {name}"),
        what: "namespace",
    })?;
    let uid = policy.uid().ok_or_else(|| Error::MissingMetadata {
        object: format!("AccessPolicy {ns}/{name}"),
        what: "uid",
    })?;
    let now = Timestamp::now();

    // dereference
    let sources: BTreeMap<String, DataSourceSpec> = ctx
        .parents
        .sources
        .state()
        .iter()
        .filter_map(|g| g.0.as_ref().ok())
        .filter(|d| d.namespace().as_deref() == Some(ns.as_str()))
        .map(|d| (d.name_any(), d.spec.clone()))
        .collect();
    let tiers: BTreeMap<String, StorageTierSpec> = ctx
        .parents
        .tiers
        .state()
        .iter()
        .filter_map(|g| g.0.as_ref().ok())
        .map(|t| (t.name_any(), t.spec.clone()))
        .collect();

    // build + apply
    let rendered =
        render_access_policy_children(policy, &sources, &tiers, now).map_err(|source| {
            Error::Render {
                object: format!("AccessPolicy {ns}/{name}"),
                source,
            }
        })?;
    let applied = ctx
        .applier(FIELD_MANAGER)
        .apply(&uid, rendered.children, PRUNE)
        .await?;
    if !applied.applied.is_empty() || !applied.pruned.is_empty() {
        tracing::info!(policy = %format!("{ns}/{name}"), applied = ?applied.applied, pruned = ?applied.pruned, "children changed");
    }

    // metrics
    for (i, rule) in policy.spec.rules.iter().enumerate() {
        let labels = [ns.as_str(), name.as_str(), &i.to_string()];
        match rule.constraints.valid_until.as_ref().map(|t| t.0) {
            Some(t) if t > now => ctx
                .metrics
                .grant_expiry
                .with_label_values(&labels)
                .set(t.as_second() as f64),
            _ => {
                let _ = ctx.metrics.grant_expiry.remove_label_values(&labels);
            }
        }
    }

    // events
    let reference: ObjectReference = policy.object_ref(&());
    let seen = ctx.statuses.current(policy, policy.status.as_ref());
    let previous_expired = seen.as_ref().map(|s| s.expired_grants).unwrap_or(0);
    let expired = i32::try_from(rendered.expired).unwrap_or(i32::MAX);
    if expired > previous_expired {
        ctx.event(
            &reference,
            EventType::Normal,
            "GrantExpired",
            "Expire",
            format!("{expired} grant(s) passed validUntil and were removed from the Role, RoleBinding and bundle"),
        )
        .await;
    } else if !rendered.expiring_soon.is_empty() {
        let list: Vec<String> = rendered
            .expiring_soon
            .iter()
            .map(|(r, t)| format!("{r} at {t}"))
            .collect();
        ctx.event(
            &reference,
            EventType::Warning,
            "GrantExpiringSoon",
            "Expire",
            format!("grants expire within 7 days: {}", list.join(", ")),
        )
        .await;
    }

    // status
    let current = seen.clone().unwrap_or_default();
    let outcome = Outcome::ready(
        "Reconciled",
        format!(
            "{} live grant(s), {} expired",
            rendered.active, rendered.expired
        ),
    );
    let status = AccessPolicyStatus {
        observed_generation: policy.metadata.generation,
        conditions: conditions_for(
            &current.conditions,
            policy.metadata.generation,
            &outcome,
            vec![],
        ),
        active_grants: i32::try_from(rendered.active).unwrap_or(i32::MAX),
        expired_grants: expired,
        next_expiry: rendered.next_expiry.map(Time),
    };
    let api: Api<AccessPolicy> = Api::namespaced(ctx.client.clone(), &ns);
    ctx.statuses
        .write_if_changed(&api, policy, FIELD_MANAGER, seen.as_ref(), &status)
        .await?;

    let wait = next_change(policy, now)
        .and_then(|t| Duration::try_from(t.duration_since(now)).ok())
        .map(|d| d + Duration::from_millis(5))
        .unwrap_or(ctx.settings.resync)
        .min(ctx.settings.resync);
    Ok(Action::requeue(applied.requeue_within(wait)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_change_is_the_warning_window_then_the_expiry() {
        let p: AccessPolicy = serde_yaml::from_str(
            "apiVersion: medplat.io/v1alpha1\nkind: AccessPolicy\nmetadata: {name: a, namespace: n}\nspec:\n  purpose: Research\n  subjects: [{kind: Group, name: g}]\n  rules: [{resources: {kind: StorageTier, names: [t]}, verbs: [read], constraints: {validUntil: '2026-12-10T00:00:00Z'}}]",
        )
        .unwrap();
        let early: Timestamp = "2026-11-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            next_change(&p, early),
            Some("2026-12-03T00:00:00Z".parse().unwrap())
        );
        let warned: Timestamp = "2026-12-05T00:00:00Z".parse().unwrap();
        assert_eq!(
            next_change(&p, warned),
            Some("2026-12-10T00:00:00Z".parse().unwrap())
        );
        let after: Timestamp = "2026-12-11T00:00:00Z".parse().unwrap();
        assert_eq!(next_change(&p, after), None);
    }
}
