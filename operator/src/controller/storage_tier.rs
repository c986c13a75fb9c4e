//! The StorageTier reconciler: verifies the backend and reports it; never deletes data.
//!
//! dereference (StorageClass, or the object store's endpoint) → validate (exists, encrypted
//! when required) → status. A tier has no children of its own: its claims are made by the
//! controllers of the namespaces that use it, and under `Retain` nothing owns them.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};

use super::context::Context;
use super::error::{Error, Result};
use super::invalid::report_invalid;
use super::status::{Outcome, conditions_for};
use crate::api::ca_bundle::trusting;
use crate::api::conditions::BACKEND_VERIFIED;
use crate::api::storage_tier::{
    Encryption, ObjectStoreBackend, StorageTier, StorageTierStatus, TierBackend,
};
use crate::error_text::with_causes;
use crate::render::tier_claim::TIER_LABEL;

/// The controller's name, in metrics and its field manager.
pub const CONTROLLER: &str = "storagetier";
const FIELD_MANAGER: &str = "medplat-storagetier";

/// The annotation (or StorageClass parameter `encrypted`) that marks a class as encrypted.
pub const ENCRYPTED_ANNOTATION: &str = "medplat.io/encrypted";

/// The result of verifying a backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    /// Whether the backend meets the tier.
    pub verified: bool,
    /// CamelCase reason.
    pub reason: &'static str,
    /// What was found.
    pub message: String,
}

/// Whether a StorageClass is marked as encrypting at rest.
pub fn storage_class_encrypted(sc: &StorageClass) -> bool {
    sc.annotations()
        .get(ENCRYPTED_ANNOTATION)
        .is_some_and(|v| v == "true")
        || sc
            .parameters
            .as_ref()
            .and_then(|p| p.get("encrypted"))
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Verifies a volume backend against its StorageClass (pure).
pub fn verify_volume(
    class_name: &str,
    class: Option<&StorageClass>,
    encryption: Encryption,
) -> Verification {
    match class {
        None => Verification {
            verified: false,
            reason: "StorageClassNotFound",
            message: format!(
                "StorageClass {class_name} does not exist (spec.backend.volume.storageClassName)"
            ),
        },
        Some(sc) if encryption == Encryption::Required && !storage_class_encrypted(sc) => {
            Verification {
                verified: false,
                reason: "StorageClassNotEncrypted",
                message: format!(
                    "the tier requires encryption but StorageClass {class_name} is not marked encrypted (annotation {ENCRYPTED_ANNOTATION}=true or parameter encrypted=true)"
                ),
            }
        }
        Some(_) => Verification {
            verified: true,
            reason: "StorageClassVerified",
            message: format!(
                "StorageClass {class_name} exists{}",
                if encryption == Encryption::Required {
                    " and is marked encrypted"
                } else {
                    ""
                }
            ),
        },
    }
}

/// Verifies an object-store backend: encryption as the tier requires, then any HTTP answer
/// from the endpoint over a connection that trusts the system's roots and the tier's
/// `caBundle`.
pub async fn verify_object_store(
    backend: &ObjectStoreBackend,
    encryption: Encryption,
    timeout: Duration,
) -> Verification {
    let endpoint = &backend.endpoint;
    if encryption == Encryption::Required && !backend.server_side_encryption {
        return Verification {
            verified: false,
            reason: "ObjectStoreNotEncrypted",
            message: "the tier requires encryption but spec.backend.objectStore.serverSideEncryption is false".into(),
        };
    }
    let mut builder = reqwest::Client::builder().timeout(timeout);
    if let Some(pem) = &backend.ca_bundle {
        builder = match trusting(builder, pem, "caBundle") {
            Ok(b) => b,
            Err(e) => {
                return Verification {
                    verified: false,
                    reason: "InvalidCABundle",
                    message: format!("spec.backend.objectStore.{e}"),
                };
            }
        };
    }
    let client = match builder.build() {
        Ok(c) => c,
        Err(e) => {
            return Verification {
                verified: false,
                reason: "ProbeFailed",
                message: format!("cannot build an HTTP client: {}", with_causes(&e)),
            };
        }
    };
    match client.head(endpoint).send().await {
        // Any HTTP answer (even 403 for an anonymous HEAD) proves the store is reachable.
        Ok(resp) => Verification {
            verified: true,
            reason: "ObjectStoreReachable",
            message: format!("{endpoint} answered HTTP {}", resp.status().as_u16()),
        },
        Err(e) => Verification {
            verified: false,
            reason: "ObjectStoreUnreachable",
            message: format!("{endpoint} did not answer: {}", with_causes(&e)),
        },
    }
}

/// Reconciles one StorageTier.
pub async fn reconcile(
    guard: Arc<DeserializeGuard<StorageTier>>,
    ctx: Arc<Context>,
) -> Result<Action> {
    let tier = match &guard.0 {
        Ok(t) => t,
        Err(invalid) => {
            report_invalid::<StorageTier>(&ctx, invalid, FIELD_MANAGER).await?;
            return Ok(Action::requeue(ctx.settings.resync));
        }
    };
    let name = tier.name_any();

    // dereference + validate
    let verification = match &tier.spec.backend {
        TierBackend {
            volume: Some(v),
            object_store: None,
        } => {
            let classes: Api<StorageClass> = Api::all(ctx.client.clone());
            let class = classes.get_opt(&v.storage_class_name).await.map_err(|e| {
                Error::kube("get", format!("StorageClass {}", v.storage_class_name), e)
            })?;
            verify_volume(&v.storage_class_name, class.as_ref(), tier.spec.encryption)
        }
        TierBackend {
            volume: None,
            object_store: Some(o),
        } => verify_object_store(o, tier.spec.encryption, ctx.settings.probe_timeout).await,
        _ => Verification {
            verified: false,
            reason: "InvalidBackend",
            message: "exactly one of spec.backend.volume or spec.backend.objectStore must be set"
                .into(),
        },
    };

    // status
    let outcome = if verification.verified {
        Outcome::ready("BackendVerified", verification.message.clone())
    } else {
        Outcome::stalled(verification.reason, verification.message.clone())
    };
    let seen = ctx.statuses.current(tier, tier.status.as_ref());
    let current = seen.clone().unwrap_or_default();
    let mut claims: Vec<String> = ctx
        .children
        .claims
        .store
        .state()
        .iter()
        .filter(|c| c.labels().get(TIER_LABEL) == Some(&name))
        .map(|c| format!("{}/{}", c.namespace().unwrap_or_default(), c.name_any()))
        .collect();
    claims.sort();
    let status = StorageTierStatus {
        observed_generation: tier.metadata.generation,
        conditions: conditions_for(
            &current.conditions,
            tier.metadata.generation,
            &outcome,
            vec![(
                BACKEND_VERIFIED.into(),
                verification.verified,
                verification.reason.into(),
                verification.message.clone(),
            )],
        ),
        volume_claims: claims,
    };
    let reference: ObjectReference = tier.object_ref(&());
    if verification.verified {
        ctx.clear_event(&reference);
    } else {
        ctx.event(
            &reference,
            EventType::Warning,
            verification.reason,
            "VerifyBackend",
            verification.message,
        )
        .await;
    }
    let api: Api<StorageTier> = Api::all(ctx.client.clone());
    ctx.statuses
        .write_if_changed(&api, tier, FIELD_MANAGER, seen.as_ref(), &status)
        .await?;
    Ok(Action::requeue(ctx.settings.resync))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(yaml: &str) -> StorageClass {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn encryption_is_verified_by_annotation_or_parameter() {
        let by_annotation = class(
            "metadata: {name: a, annotations: {medplat.io/encrypted: 'true'}}\nprovisioner: x",
        );
        let by_parameter =
            class("metadata: {name: b}\nprovisioner: x\nparameters: {encrypted: 'true'}");
        let plain = class("metadata: {name: c}\nprovisioner: x");
        assert!(verify_volume("a", Some(&by_annotation), Encryption::Required).verified);
        assert!(verify_volume("b", Some(&by_parameter), Encryption::Required).verified);
        let v = verify_volume("c", Some(&plain), Encryption::Required);
        assert_eq!((v.verified, v.reason), (false, "StorageClassNotEncrypted"));
        assert!(verify_volume("c", Some(&plain), Encryption::None).verified);
        assert_eq!(
            verify_volume("d", None, Encryption::None).reason,
            "StorageClassNotFound"
        );
    }
}
