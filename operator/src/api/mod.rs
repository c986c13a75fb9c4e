//! The API contract: the custom resources of group `medplat.io`, version `v1alpha1`.
//!
//! One file per kind, plus the shared classification, conditions, references and steps. The CRD
//! schemas are generated from these types; `medplat crd` writes them to `crds/`.

pub mod access_policy;
pub mod audit;
pub mod ca_bundle;
pub mod classification;
pub mod conditions;
pub mod data_source;
pub mod deidentify;
pub mod metrics;
pub mod node_compliance;
pub mod pipeline;
pub mod platform;
pub mod refs;
pub mod resolved;
pub mod steps;
pub mod storage_tier;
pub mod worker_resources;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use access_policy::{AccessPolicy, AccessPolicySpec, AccessPolicyStatus};
pub use classification::{
    Category, Classification, FieldSpec, IdentifierClass, Level, Purpose, SensitiveFlag,
};
pub use conditions::{Condition, ConditionStatus};
pub use data_source::{DataSource, DataSourceSpec, DataSourceStatus};
pub use node_compliance::{NodeCompliance, NodeComplianceSpec, NodeComplianceStatus};
pub use pipeline::{Pipeline, PipelineSpec, PipelineStatus};
pub use platform::{Platform, PlatformSpec, PlatformStatus};
pub use storage_tier::{StorageTier, StorageTierSpec, StorageTierStatus};

/// The API group of every medplat kind.
pub const GROUP: &str = "medplat.io";
/// The API version of every medplat kind.
pub const VERSION: &str = "v1alpha1";
/// `group/version`, as in `apiVersion`.
pub const API_VERSION: &str = "medplat.io/v1alpha1";
/// The single Platform's name.
pub const PLATFORM_NAME: &str = "default";

/// Every CRD medplat defines, in a stable order (by plural name).
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![
        AccessPolicy::crd(),
        DataSource::crd(),
        NodeCompliance::crd(),
        Pipeline::crd(),
        Platform::crd(),
        StorageTier::crd(),
    ];
    crds.sort_by(|a, b| a.spec.names.plural.cmp(&b.spec.names.plural));
    crds
}
