//! Objects that do not deserialize (a client bypassed the schema, or an old object predates
//! it): reported with `Ready=False`, `Stalled=True` and a Warning Event naming the field,
//! retried with backoff, and never allowed to crash or stall the controller.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::api::{Patch, PatchParams};
use kube::core::error_boundary::InvalidObject;
use kube::runtime::events::EventType;
use serde::de::DeserializeOwned;

use super::context::{Context, now};
use super::error::{Error, Result};
use crate::api::conditions::{ConditionStatus, READY, RECONCILING, STALLED, new_condition};

/// Reports an object of kind `K` that failed to deserialize.
pub async fn report_invalid<K>(
    ctx: &Context,
    invalid: &InvalidObject,
    field_manager: &str,
) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let meta = &invalid.metadata;
    let name = meta.name.clone().unwrap_or_default();
    let reference = ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: Some(name.clone()),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        ..ObjectReference::default()
    };
    let message = format!("the spec cannot be read: {}", invalid.error);
    let generation = meta.generation;
    let conditions = vec![
        new_condition(
            READY,
            ConditionStatus::False,
            "InvalidSpec",
            &message,
            generation,
            now(),
        ),
        new_condition(
            STALLED,
            ConditionStatus::True,
            "InvalidSpec",
            &message,
            generation,
            now(),
        ),
        new_condition(
            RECONCILING,
            ConditionStatus::False,
            "InvalidSpec",
            "",
            generation,
            now(),
        ),
    ];
    // The object cannot be read, so its current status is unknown: the event fingerprint
    // decides whether this exact problem was already reported for this generation.
    let fingerprint_note = format!("{message} (generation {})", generation.unwrap_or_default());
    let first_time = !ctx.already_reported(&reference, "InvalidSpec", &fingerprint_note);
    if first_time {
        let api = super::apply::dynamic_api(
            &ctx.client,
            &K::api_version(&()),
            &K::kind(&()),
            meta.namespace.as_deref(),
        );
        let patch = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": {"observedGeneration": generation, "conditions": conditions},
        });
        api.patch_status(
            &name,
            &PatchParams::apply(field_manager).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|e| Error::kube("patch status of", format!("{} {name}", K::kind(&())), e))?;
        ctx.event(
            &reference,
            EventType::Warning,
            "InvalidSpec",
            "Validate",
            fingerprint_note,
        )
        .await;
    }
    Ok(())
}
