//! The resolved-pipeline document: everything one worker run needs, in one self-contained JSON.
//!
//! The operator renders it into the pipeline's ConfigMap (`pipeline.json`) and the worker reads
//! it with `medplat worker run --config /etc/medplat/pipeline.json`; the worker's local mode
//! builds the same document from a directory of manifests. Both go through
//! [`ResolvedPipeline::build`], so the cluster and a laptop run the same thing.
//!
//! Secrets appear only as file locations (Secrets are mounted as files); their values never
//! enter the document.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::access_policy::{AccessPolicy, AccessPolicySpec, SubjectKind};
use super::classification::Classification;
use super::data_source::{DataSource, DataSourceSpec};
use super::deidentify::Method;
use super::pipeline::{Pipeline, PipelineSpec};
use super::storage_tier::{StorageTier, StorageTierSpec};

/// The document format version this build writes and reads.
pub const RESOLVED_PIPELINE_VERSION: u32 = 1;

/// Where the worker pod (or a local run) finds tiers and Secrets.
///
/// A volume tier `T` is mounted at `<tiers_root>/T`; key `K` of Secret `S` is the file
/// `<secrets_root>/S/K`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Mounts {
    /// The directory under which each volume tier is mounted, one sub-directory per tier.
    pub tiers_root: String,
    /// The directory under which each Secret is mounted, one sub-directory per Secret.
    pub secrets_root: String,
}

impl Mounts {
    /// The mounts the operator's renderer uses in the worker pod.
    pub fn in_cluster() -> Self {
        Mounts {
            tiers_root: "/data/tiers".into(),
            secrets_root: "/var/run/secrets/medplat".into(),
        }
    }

    /// The mount path of a volume tier.
    pub fn tier_path(&self, tier: &str) -> String {
        format!("{}/{tier}", self.tiers_root.trim_end_matches('/'))
    }

    /// The mount directory of a Secret.
    pub fn secret_dir(&self, secret: &str) -> String {
        format!("{}/{secret}", self.secrets_root.trim_end_matches('/'))
    }
}

/// One pipeline, resolved: its spec and every object it refers to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedPipeline {
    /// The document format version, [`RESOLVED_PIPELINE_VERSION`].
    pub version: u32,
    /// The pipeline's namespace.
    pub namespace: String,
    /// The pipeline's name.
    pub name: String,
    /// The pipeline's `metadata.generation` when resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// The pipeline's spec.
    pub spec: PipelineSpec,
    /// The ServiceAccount the worker runs as (who, in audit events).
    pub service_account: String,
    /// Every DataSource the pipeline reads, by name.
    pub sources: BTreeMap<String, DataSourceSpec>,
    /// Every StorageTier involved (the sink, the tiers file sources read from), by name.
    pub tiers: BTreeMap<String, ResolvedTier>,
    /// The compiled policy bundle: the AccessPolicies that name the pipeline's ServiceAccount.
    pub policies: Vec<ResolvedPolicy>,
    /// Every Secret the run needs, by name, with where it is mounted. Values are never here.
    pub secrets: BTreeMap<String, SecretMount>,
    /// The output classification the operator computed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_classification: Option<Classification>,
}

/// A StorageTier and where the worker reaches it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedTier {
    /// The tier's spec.
    pub spec: StorageTierSpec,
    /// Where its data is.
    pub location: TierLocation,
}

/// Where a tier's data is reached from the worker.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum TierLocation {
    /// A volume mounted at a path.
    Volume {
        /// The mount path.
        path: String,
    },
    /// An S3-compatible bucket, with the credential files.
    ObjectStore {
        /// The endpoint URL.
        endpoint: String,
        /// The bucket.
        bucket: String,
        /// The region, if the store needs one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        region: Option<String>,
        /// The file holding the access key id.
        access_key_id_file: String,
        /// The file holding the secret access key.
        secret_access_key_file: String,
        /// PEM certificates of a private CA to trust for the endpoint, besides the system's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ca_bundle: Option<String>,
    },
}

/// One AccessPolicy of the compiled bundle.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedPolicy {
    /// The policy's namespace.
    pub namespace: String,
    /// The policy's name.
    pub name: String,
    /// The policy's spec.
    pub spec: AccessPolicySpec,
}

/// A Secret mounted as a directory of files, one per key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretMount {
    /// The directory the Secret is mounted at.
    pub path: String,
    /// The keys the run reads from it.
    pub keys: BTreeSet<String>,
}

impl SecretMount {
    /// The file that holds one key.
    pub fn file(&self, key: &str) -> String {
        format!("{}/{key}", self.path.trim_end_matches('/'))
    }
}

/// Why a pipeline could not be resolved.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    /// The Pipeline has no name or namespace.
    #[error("pipeline has no metadata.{0}")]
    MissingMetadata(&'static str),
    /// A DataSource the pipeline names was not given.
    #[error("pipeline {namespace}/{pipeline}: DataSource {namespace}/{source_name} not found")]
    SourceNotFound {
        /// The pipeline's namespace.
        namespace: String,
        /// The pipeline's name.
        pipeline: String,
        /// The missing source.
        source_name: String,
    },
    /// A StorageTier the pipeline or one of its sources names was not given.
    #[error("pipeline {namespace}/{pipeline}: StorageTier {tier} (used by {used_by}) not found")]
    TierNotFound {
        /// The pipeline's namespace.
        namespace: String,
        /// The pipeline's name.
        pipeline: String,
        /// The missing tier.
        tier: String,
        /// Who refers to it (`spec.sink.tier`, `DataSource lis-results`).
        used_by: String,
    },
    /// A document of another format version.
    #[error("resolved pipeline document version {found} is not supported (expected {expected})")]
    UnsupportedVersion {
        /// The version found.
        found: u32,
        /// The version this build reads.
        expected: u32,
    },
}

impl ResolvedPipeline {
    /// Resolves a pipeline against the objects it refers to.
    ///
    /// `sources`, `tiers` and `policies` may hold more objects than needed (e.g. a whole
    /// namespace); only those the pipeline uses end up in the document. A policy is part of
    /// the bundle when one of its subjects is the pipeline's ServiceAccount.
    pub fn build(
        pipeline: &Pipeline,
        sources: &[DataSource],
        tiers: &[StorageTier],
        policies: &[AccessPolicy],
        mounts: &Mounts,
    ) -> Result<ResolvedPipeline, ResolveError> {
        let name = pipeline
            .metadata
            .name
            .clone()
            .ok_or(ResolveError::MissingMetadata("name"))?;
        let namespace = pipeline
            .metadata
            .namespace
            .clone()
            .ok_or(ResolveError::MissingMetadata("namespace"))?;
        let service_account = pipeline.service_account();

        let mut resolved_sources = BTreeMap::new();
        let mut tier_users: Vec<(String, String)> =
            vec![(pipeline.spec.sink.tier.clone(), "spec.sink.tier".into())];
        for source_name in &pipeline.spec.sources {
            let found = sources.iter().find(|s| {
                s.metadata.name.as_deref() == Some(source_name)
                    && s.metadata.namespace.as_deref().unwrap_or(&namespace) == namespace
            });
            let Some(source) = found else {
                return Err(ResolveError::SourceNotFound {
                    namespace,
                    pipeline: name,
                    source_name: source_name.clone(),
                });
            };
            let c = &source.spec.connector;
            if let Some(files) = &c.files {
                tier_users.push((
                    files.location.tier.clone(),
                    format!("DataSource {source_name}"),
                ));
            }
            if let Some(h) = &c.hl7v2 {
                tier_users.push((h.landing.tier.clone(), format!("DataSource {source_name}")));
            }
            resolved_sources.insert(source_name.clone(), source.spec.clone());
        }

        let mut secrets: BTreeMap<String, SecretMount> = BTreeMap::new();
        let mut need_secret = |secret: &str, key: &str| {
            secrets
                .entry(secret.to_string())
                .or_insert_with(|| SecretMount {
                    path: mounts.secret_dir(secret),
                    keys: BTreeSet::new(),
                })
                .keys
                .insert(key.to_string());
        };

        let mut resolved_tiers = BTreeMap::new();
        for (tier_name, used_by) in tier_users {
            if resolved_tiers.contains_key(&tier_name) {
                continue;
            }
            let Some(tier) = tiers
                .iter()
                .find(|t| t.metadata.name.as_deref() == Some(&tier_name))
            else {
                return Err(ResolveError::TierNotFound {
                    namespace,
                    pipeline: name,
                    tier: tier_name,
                    used_by,
                });
            };
            let location = match &tier.spec.backend.object_store {
                Some(os) => {
                    need_secret(&os.access_key_id.name, &os.access_key_id.key);
                    need_secret(&os.secret_access_key.name, &os.secret_access_key.key);
                    TierLocation::ObjectStore {
                        endpoint: os.endpoint.clone(),
                        bucket: os.bucket.clone(),
                        region: os.region.clone(),
                        access_key_id_file: format!(
                            "{}/{}",
                            mounts.secret_dir(&os.access_key_id.name),
                            os.access_key_id.key
                        ),
                        secret_access_key_file: format!(
                            "{}/{}",
                            mounts.secret_dir(&os.secret_access_key.name),
                            os.secret_access_key.key
                        ),
                        ca_bundle: os.ca_bundle.clone(),
                    }
                }
                None => TierLocation::Volume {
                    path: mounts.tier_path(&tier_name),
                },
            };
            resolved_tiers.insert(
                tier_name,
                ResolvedTier {
                    spec: tier.spec.clone(),
                    location,
                },
            );
        }

        for source in resolved_sources.values() {
            if let Some(cred) = &source.credentials {
                let c = &source.connector;
                if c.postgres.is_some() || c.mysql.is_some() {
                    need_secret(&cred.secret_name, &cred.username_key);
                    need_secret(&cred.secret_name, &cred.password_key);
                }
                if let Some(token) = &cred.token_key {
                    need_secret(&cred.secret_name, token);
                }
            }
        }
        for step in &pipeline.spec.steps {
            if let Some(d) = &step.deidentify
                && let Some(keys) = &d.keys
            {
                let methods: Vec<Method> = d.rules.iter().map(|r| r.method).collect();
                if methods.contains(&Method::CryptoHash) || methods.contains(&Method::Perturb) {
                    need_secret(&keys.secret_name, &keys.hmac_key);
                }
                if methods.contains(&Method::Encrypt) {
                    need_secret(&keys.secret_name, &keys.encryption_key);
                }
                if methods.contains(&Method::DateShift) {
                    need_secret(&keys.secret_name, &keys.date_shift_key);
                }
            }
            if let Some(l) = &step.link {
                need_secret(&l.key.name, &l.key.key);
            }
        }

        let resolved_policies = policies
            .iter()
            .filter(|p| {
                let policy_ns = p.metadata.namespace.as_deref().unwrap_or(&namespace);
                p.spec.subjects.iter().any(|s| {
                    s.kind == SubjectKind::ServiceAccount
                        && s.name == service_account
                        && s.namespace.as_deref().unwrap_or(policy_ns) == namespace
                })
            })
            .map(|p| ResolvedPolicy {
                namespace: p
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| namespace.clone()),
                name: p.metadata.name.clone().unwrap_or_default(),
                spec: p.spec.clone(),
            })
            .collect();

        Ok(ResolvedPipeline {
            version: RESOLVED_PIPELINE_VERSION,
            namespace,
            name,
            generation: pipeline.metadata.generation,
            spec: pipeline.spec.clone(),
            service_account,
            sources: resolved_sources,
            tiers: resolved_tiers,
            policies: resolved_policies,
            secrets,
            output_classification: None,
        })
    }

    /// Sets the output classification the operator computed.
    pub fn with_output_classification(mut self, output: Classification) -> Self {
        self.output_classification = Some(output);
        self
    }

    /// Parses a document and checks its version.
    pub fn from_json(text: &str) -> Result<ResolvedPipeline, ResolvedParseError> {
        let doc: ResolvedPipeline = serde_json::from_str(text).map_err(ResolvedParseError::Json)?;
        if doc.version != RESOLVED_PIPELINE_VERSION {
            return Err(ResolvedParseError::Resolve(
                ResolveError::UnsupportedVersion {
                    found: doc.version,
                    expected: RESOLVED_PIPELINE_VERSION,
                },
            ));
        }
        Ok(doc)
    }

    /// The document as pretty JSON, as written into the ConfigMap. Deterministic: maps are
    /// ordered, so an unchanged pipeline renders byte-identical JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The tier specs alone, by name, as the policy engine takes them.
    pub fn tier_specs(&self) -> BTreeMap<String, StorageTierSpec> {
        self.tiers
            .iter()
            .map(|(n, t)| (n.clone(), t.spec.clone()))
            .collect()
    }
}

/// Why a document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ResolvedParseError {
    /// Not valid JSON for the document's shape.
    #[error("resolved pipeline document is not valid")]
    Json(#[source] serde_json::Error),
    /// Valid JSON of an unsupported version.
    #[error(transparent)]
    Resolve(ResolveError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml<T: serde::de::DeserializeOwned>(s: &str) -> T {
        serde_yaml::from_str(s).unwrap()
    }

    fn fixture() -> (
        Pipeline,
        Vec<DataSource>,
        Vec<StorageTier>,
        Vec<AccessPolicy>,
    ) {
        let pipeline: Pipeline = yaml(
            r#"
apiVersion: medplat.io/v1alpha1
kind: Pipeline
metadata: {name: p, namespace: ns, generation: 3}
spec:
  purpose: Treatment
  sources: [src]
  steps:
    - deidentify:
        keys: {secretName: deid}
        rules:
          - {field: a, method: cryptoHash}
          - {field: b, method: dateShift, dateShift: {maxDays: 3, patientIdField: a}}
    - link: {identityFields: [a], key: {name: link, key: k}}
  sink: {tier: out, dataset: d}
"#,
        );
        let source: DataSource = yaml(
            r#"
apiVersion: medplat.io/v1alpha1
kind: DataSource
metadata: {name: src, namespace: ns}
spec:
  system: LIS
  connector: {files: {location: {tier: in, path: x}, format: csv}}
  classification: {level: L4, domain: clinical}
  fields: []
"#,
        );
        let tier = |n: &str| -> StorageTier {
            yaml(&format!(
                r#"
apiVersion: medplat.io/v1alpha1
kind: StorageTier
metadata: {{name: {n}}}
spec:
  domain: clinical
  maxLevel: L4
  encryption: required
  backend: {{volume: {{storageClassName: s, size: 1Gi}}}}
  retentionDays: 10
"#
            ))
        };
        let policy = |n: &str, sa: &str| -> AccessPolicy {
            yaml(&format!(
                r#"
apiVersion: medplat.io/v1alpha1
kind: AccessPolicy
metadata: {{name: {n}, namespace: ns}}
spec:
  purpose: Treatment
  subjects: [{{kind: ServiceAccount, name: {sa}}}]
  rules: [{{resources: {{kind: DataSource, names: [src]}}, verbs: [read]}}]
"#
            ))
        };
        (
            pipeline,
            vec![source],
            vec![tier("in"), tier("out"), tier("unused")],
            vec![
                policy("mine", "medplat-pipeline-p"),
                policy("other", "someone-else"),
            ],
        )
    }

    #[test]
    fn build_collects_what_the_pipeline_uses_and_nothing_else() {
        let (p, s, t, a) = fixture();
        let doc = ResolvedPipeline::build(&p, &s, &t, &a, &Mounts::in_cluster()).unwrap();
        assert_eq!(doc.version, RESOLVED_PIPELINE_VERSION);
        assert_eq!(doc.generation, Some(3));
        assert_eq!(doc.service_account, "medplat-pipeline-p");
        assert_eq!(doc.sources.keys().collect::<Vec<_>>(), ["src"]);
        assert_eq!(doc.tiers.keys().collect::<Vec<_>>(), ["in", "out"]);
        assert_eq!(
            doc.tiers["out"].location,
            TierLocation::Volume {
                path: "/data/tiers/out".into()
            }
        );
        assert_eq!(doc.policies.len(), 1);
        assert_eq!(doc.policies[0].name, "mine");
        let deid = &doc.secrets["deid"];
        assert_eq!(deid.path, "/var/run/secrets/medplat/deid");
        assert_eq!(
            deid.keys.iter().collect::<Vec<_>>(),
            ["date-shift-key", "hmac-key"]
        );
        assert_eq!(
            deid.file("hmac-key"),
            "/var/run/secrets/medplat/deid/hmac-key"
        );
        assert!(doc.secrets["link"].keys.contains("k"));
    }

    #[test]
    fn document_round_trips_and_rejects_other_versions() {
        let (p, s, t, a) = fixture();
        let doc = ResolvedPipeline::build(&p, &s, &t, &a, &Mounts::in_cluster()).unwrap();
        let json = doc.to_json();
        assert_eq!(ResolvedPipeline::from_json(&json).unwrap(), doc);
        let bumped = json.replacen("\"version\": 1", "\"version\": 99", 1);
        assert!(matches!(
            ResolvedPipeline::from_json(&bumped),
            Err(ResolvedParseError::Resolve(
                ResolveError::UnsupportedVersion { found: 99, .. }
            ))
        ));
    }

    #[test]
    fn missing_objects_are_named() {
        let (p, s, t, a) = fixture();
        let err = ResolvedPipeline::build(&p, &[], &t, &a, &Mounts::in_cluster()).unwrap_err();
        assert!(
            err.to_string().contains("DataSource ns/src not found"),
            "{err}"
        );
        let err = ResolvedPipeline::build(&p, &s, &t[..1], &a, &Mounts::in_cluster()).unwrap_err();
        assert!(err.to_string().contains("StorageTier out"), "{err}");
    }
}
