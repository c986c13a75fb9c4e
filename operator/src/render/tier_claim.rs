//! The PersistentVolumeClaim a volume tier gets in each namespace that uses it.
//!
//! One claim per (tier, namespace), named `medplat-tier-<tier>`, applied identically by every
//! controller that needs it. It is owned by the StorageTier only when the tier's
//! `deletionPolicy` is `Delete`: under `Retain` nothing owns it, so no garbage collection can
//! ever delete data.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::common::{Child, MANAGED_BY, MANAGED_BY_VALUE, Owner, PART_OF, RenderError, child_name};
use crate::api::storage_tier::{DeletionPolicy, StorageTier};

/// The label naming the tier a claim belongs to.
pub const TIER_LABEL: &str = "medplat.io/tier";

/// The claim name of a tier in any namespace.
pub fn tier_claim_name(tier: &str) -> String {
    child_name("medplat-tier", tier, 63)
}

/// The claim for `tier` in `namespace`, or `None` for an object-store tier.
pub fn render_tier_claim(
    tier: &StorageTier,
    namespace: &str,
) -> Result<Option<Child>, RenderError> {
    let Some(volume) = &tier.spec.backend.volume else {
        return Ok(None);
    };
    let name = tier
        .metadata
        .name
        .clone()
        .ok_or_else(|| RenderError::Missing("the StorageTier has no name".into()))?;
    let owner_refs = match tier.spec.deletion_policy {
        DeletionPolicy::Delete => Some(vec![
            Owner {
                api_version: crate::api::API_VERSION.into(),
                kind: "StorageTier".into(),
                name: name.clone(),
                namespace: None,
                uid: tier.metadata.uid.clone().unwrap_or_default(),
            }
            .reference(),
        ]),
        DeletionPolicy::Retain => None,
    };
    let pvc = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(tier_claim_name(&name)),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([
                (MANAGED_BY.to_string(), MANAGED_BY_VALUE.to_string()),
                (PART_OF.to_string(), "medplat".to_string()),
                (TIER_LABEL.to_string(), name.clone()),
            ])),
            annotations: Some(BTreeMap::from([(
                "medplat.io/deletion-policy".to_string(),
                format!("{:?}", tier.spec.deletion_policy),
            )])),
            owner_references: owner_refs,
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            storage_class_name: Some(volume.storage_class_name.clone()),
            access_modes: Some(
                volume
                    .access_modes
                    .iter()
                    .map(|m| m.as_str().to_string())
                    .collect(),
            ),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(volume.size.clone()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    };
    Child::from_typed(&pvc).map(Some)
}
