//! Operator-wide settings that shape rendered workloads: images and default resources.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The image medplat's own workloads (workers, listeners) run, and how to pull it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadSettings {
    /// The `medplat` image, e.g. `ghcr.io/medplat/medplat:0.1.0`.
    pub image: String,
    /// `IfNotPresent`, `Always` or `Never`.
    pub image_pull_policy: String,
}

impl Default for WorkloadSettings {
    fn default() -> Self {
        WorkloadSettings {
            image: format!("ghcr.io/medplat/medplat:{}", env!("CARGO_PKG_VERSION")),
            image_pull_policy: "IfNotPresent".into(),
        }
    }
}

/// Requests and limits, so every pod is schedulable and bounded.
pub fn resources(
    cpu_request: &str,
    memory_request: &str,
    cpu_limit: &str,
    memory_limit: &str,
) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu_request.into())),
            ("memory".to_string(), Quantity(memory_request.into())),
        ])),
        limits: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu_limit.into())),
            ("memory".to_string(), Quantity(memory_limit.into())),
        ])),
        ..ResourceRequirements::default()
    }
}
