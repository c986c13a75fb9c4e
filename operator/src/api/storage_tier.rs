//! StorageTier (cluster-scoped): where data may rest, at which level, in which domain.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ca_bundle::ca_certificates;
use super::classification::Level;
use super::conditions::Condition;
use super::refs::SecretKeyRef;

/// A place where data may rest: its domain, the highest level it accepts, whether it is
/// encrypted, and the backend (a volume or an object store) that holds it.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "medplat.io",
    version = "v1alpha1",
    kind = "StorageTier",
    doc = "A place where data may rest (a volume or an object store), the highest level it accepts, its domain and whether it is encrypted.",
    plural = "storagetiers",
    shortname = "mtier",
    category = "medplat",
    status = "StorageTierStatus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Domain","type":"string","jsonPath":".spec.domain"}"#,
    printcolumn = r#"{"name":"Max Level","type":"string","jsonPath":".spec.maxLevel"}"#,
    printcolumn = r#"{"name":"Encryption","type":"string","jsonPath":".spec.encryption"}"#,
    printcolumn = r#"{"name":"Backend","type":"string","jsonPath":".status.conditions[?(@.type==\"BackendVerified\")].status"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.encryption == 'required' || !(self.maxLevel in ['L3', 'L4', 'L5'])").message("a tier that accepts L3 or above must set encryption: required").field_path(".encryption"))]
pub struct StorageTierSpec {
    /// The data domain (分域) this tier serves, e.g. `clinical` or `research`. Data from another
    /// domain may land here only with an AccessPolicy grant.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub domain: String,
    /// The highest classification level that may rest in this tier.
    pub max_level: Level,
    /// `required` when the backend must encrypt data at rest (needed for L3 and above).
    pub encryption: Encryption,
    /// Where the data physically rests: exactly one of `volume` or `objectStore`.
    pub backend: TierBackend,
    /// How many days data is kept before it may be deleted (at least 180 for audit tiers).
    #[schemars(range(min = 1, max = 36500))]
    pub retention_days: u32,
    /// What deleting the tier does to its data. `Retain` (the default) never deletes data.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// Whether a tier's backend must encrypt data at rest.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Encryption {
    /// The backend must be verified as encrypting at rest.
    Required,
    /// No encryption is required; only for data below L3.
    None,
}

/// What happens to a tier's data when the tier is deleted.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeletionPolicy {
    /// Keep the volumes and objects; medplat never deletes data on its own.
    #[default]
    Retain,
    /// Delete the tier's volume claims with the tier.
    Delete,
}

/// The storage behind a tier: exactly one of `volume` or `objectStore`.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.volume) != has(self.objectStore)").message("exactly one of volume or objectStore must be set"))]
pub struct TierBackend {
    /// A PersistentVolumeClaim per namespace, from a StorageClass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeBackend>,
    /// An S3-compatible object store bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_store: Option<ObjectStoreBackend>,
}

/// A volume backend: medplat creates one PersistentVolumeClaim per namespace that uses the tier.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeBackend {
    /// The StorageClass to claim from. For `encryption: required` it must carry the annotation
    /// `medplat.io/encrypted=true` or an `encrypted: "true"` parameter.
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: String,
    /// The requested size, as a Kubernetes quantity (e.g. `500Gi`).
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"))]
    pub size: String,
    /// Access modes of the claim; `ReadWriteOnce` by default.
    #[serde(default = "default_access_modes")]
    #[schemars(length(min = 1))]
    pub access_modes: Vec<AccessMode>,
}

fn default_access_modes() -> Vec<AccessMode> {
    vec![AccessMode::ReadWriteOnce]
}

/// A PersistentVolume access mode.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessMode {
    /// Mounted read-write by one node.
    ReadWriteOnce,
    /// Mounted read-only by many nodes.
    ReadOnlyMany,
    /// Mounted read-write by many nodes.
    ReadWriteMany,
    /// Mounted read-write by one pod.
    ReadWriteOncePod,
}

impl AccessMode {
    /// The mode's name as the PersistentVolumeClaim API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessMode::ReadWriteOnce => "ReadWriteOnce",
            AccessMode::ReadOnlyMany => "ReadOnlyMany",
            AccessMode::ReadWriteMany => "ReadWriteMany",
            AccessMode::ReadWriteOncePod => "ReadWriteOncePod",
        }
    }
}

/// An S3-compatible object store bucket.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.caBundle) || !self.caBundle.contains('PRIVATE KEY')").message("caBundle holds certificates only, never a private key").field_path(".caBundle"))]
pub struct ObjectStoreBackend {
    /// The endpoint URL, e.g. `https://minio.storage.svc:9000`. Must answer a HEAD request.
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^https?://[^\s]+$"))]
    pub endpoint: String,
    /// The bucket name.
    #[schemars(
        length(min = 3, max = 63),
        regex(pattern = r"^[a-z0-9][a-z0-9.\-]*[a-z0-9]$")
    )]
    pub bucket: String,
    /// The region, for stores that need one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The Secret key holding the access key id, in the namespace of the workload that uses it.
    pub access_key_id: SecretKeyRef,
    /// The Secret key holding the secret access key.
    pub secret_access_key: SecretKeyRef,
    /// Whether the store encrypts at rest (server-side encryption is on for the bucket).
    /// Required for `encryption: required`.
    #[serde(default)]
    pub server_side_encryption: bool,
    /// PEM certificates of the certificate authorities that sign the endpoint's TLS
    /// certificate, for a store behind a private CA (an in-cluster MinIO, the hospital's PKI).
    /// The operator's probe, the workers and the log aggregator trust them as well as the
    /// system's roots. Certificates are public: never put a private key here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 65536),
        regex(pattern = r"-----BEGIN CERTIFICATE-----")
    )]
    pub ca_bundle: Option<String>,
}

impl ObjectStoreBackend {
    /// The certificates of `caBundle` (none when unset): see [`ca_certificates`].
    pub fn ca_certificates(
        &self,
    ) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
        match &self.ca_bundle {
            Some(pem) => ca_certificates(pem, "caBundle"),
            None => Ok(Vec::new()),
        }
    }
}

/// The observed state of a StorageTier.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct StorageTierStatus {
    /// The generation this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `BackendVerified`, `Reconciling`, `Stalled`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The volume claims medplat made for this tier, as `namespace/name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_claims: Vec<String>,
}
