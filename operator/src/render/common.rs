//! What every rendered child shares: labels, owner references, and the [`Child`] wrapper the
//! shared apply-and-prune routine takes.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde::Serialize;
use serde_json::Value;

/// `app.kubernetes.io/managed-by`, set to `medplat` on every child.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The value of [`MANAGED_BY`].
pub const MANAGED_BY_VALUE: &str = "medplat";
/// `app.kubernetes.io/part-of`.
pub const PART_OF: &str = "app.kubernetes.io/part-of";
/// `app.kubernetes.io/component`: which controller made the child.
pub const COMPONENT: &str = "app.kubernetes.io/component";
/// The uid of the parent, used with the owner reference to prune children safely.
pub const OWNER_UID: &str = "medplat.io/owner-uid";
/// The kind of the parent, lower case.
pub const OWNER_KIND: &str = "medplat.io/owner-kind";
/// The name of the parent.
pub const OWNER_NAME: &str = "medplat.io/owner-name";
/// The classification level of the data a pod handles (`L1`..`L5`).
pub const LEVEL: &str = "medplat.io/level";
/// The data domain a pod works in.
pub const DOMAIN: &str = "medplat.io/domain";
/// The pipeline a pod runs.
pub const PIPELINE: &str = "medplat.io/pipeline";
/// The ServiceAccount a pod runs as, so NetworkPolicies can follow AccessPolicy subjects.
pub const SERVICE_ACCOUNT: &str = "medplat.io/service-account";
/// The node label set on hardened nodes.
pub const HARDENED: &str = "medplat.io/hardened";
/// The annotation marking pods whose every data access is audited.
pub const AUDIT: &str = "medplat.io/audit";

/// The label a pod carries for each DataSource it reads: `source.medplat.io/<name>: read`.
pub fn source_label(source: &str) -> String {
    format!("source.medplat.io/{source}")
}

/// The parent of a set of children.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// `apiVersion` of the parent.
    pub api_version: String,
    /// `kind` of the parent.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// Its namespace (`None` for cluster-scoped parents).
    pub namespace: Option<String>,
    /// Its uid.
    pub uid: String,
}

impl Owner {
    /// The controller owner reference children carry.
    pub fn reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: self.api_version.clone(),
            kind: self.kind.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    /// The labels every child of this owner carries. Never the parent's own labels: GitOps tools
    /// would see them as theirs and prune the children.
    pub fn labels(&self, component: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (MANAGED_BY.to_string(), MANAGED_BY_VALUE.to_string()),
            (PART_OF.to_string(), "medplat".to_string()),
            (COMPONENT.to_string(), component.to_string()),
            (OWNER_KIND.to_string(), self.kind.to_lowercase()),
            (OWNER_NAME.to_string(), truncate_label(&self.name)),
            (OWNER_UID.to_string(), self.uid.clone()),
        ])
    }

    /// Metadata of a child named `name` in the owner's namespace, owned by it.
    pub fn child_meta(&self, name: &str, component: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_string()),
            namespace: self.namespace.clone(),
            labels: Some(self.labels(component)),
            owner_references: Some(vec![self.reference()]),
            ..ObjectMeta::default()
        }
    }
}

/// Label values are at most 63 characters.
pub fn truncate_label(value: &str) -> String {
    value.chars().take(63).collect()
}

/// A child object ready for server-side apply: its identity plus the full desired object.
#[derive(Clone, Debug, PartialEq)]
pub struct Child {
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`, `None` for cluster-scoped children.
    pub namespace: Option<String>,
    /// The object as applied, including `apiVersion` and `kind`.
    pub object: Value,
}

/// What can go wrong turning a typed object into a [`Child`].
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The object could not be serialised.
    #[error("cannot serialise {kind} {name}")]
    Serialise {
        /// The kind.
        kind: String,
        /// The name.
        name: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A name or reference the renderer needs is missing.
    #[error("{0}")]
    Missing(String),
}

impl Child {
    /// Wraps a typed k8s-openapi object.
    pub fn from_typed<K>(obj: &K) -> Result<Child, RenderError>
    where
        K: k8s_openapi::Resource + k8s_openapi::Metadata<Ty = ObjectMeta> + Serialize,
    {
        let meta = obj.metadata();
        let name = meta.name.clone().unwrap_or_default();
        let mut object = serde_json::to_value(obj).map_err(|source| RenderError::Serialise {
            kind: K::KIND.to_string(),
            name: name.clone(),
            source,
        })?;
        if let Value::Object(map) = &mut object {
            map.insert("apiVersion".into(), Value::String(K::API_VERSION.into()));
            map.insert("kind".into(), Value::String(K::KIND.into()));
        }
        Ok(Child {
            api_version: K::API_VERSION.to_string(),
            kind: K::KIND.to_string(),
            name,
            namespace: meta.namespace.clone(),
            object,
        })
    }

    /// `Kind namespace/name`, for messages.
    pub fn display(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }
}

/// A name for a child: `prefix-name`, shortened with a hash suffix when it would exceed `max`
/// characters, so long parent names still give valid, unique child names.
pub fn child_name(prefix: &str, name: &str, max: usize) -> String {
    let full = format!("{prefix}-{name}");
    if full.len() <= max {
        return full;
    }
    let hash = short_hash(&full);
    let keep = max.saturating_sub(hash.len() + 1);
    let head: String = full.chars().take(keep).collect();
    format!("{}-{hash}", head.trim_end_matches('-'))
}

/// A short, stable hex hash (FNV-1a), for names and config checksums.
pub fn short_hash(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:08x}", h & 0xffff_ffff)
}

/// Required node affinity to nodes labelled `medplat.io/hardened=true`.
pub fn hardened_affinity() -> k8s_openapi::api::core::v1::Affinity {
    use k8s_openapi::api::core::v1::{
        Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    };
    Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: Some(vec![NodeSelectorRequirement {
                        key: HARDENED.into(),
                        operator: "In".into(),
                        values: Some(vec!["true".into()]),
                    }]),
                    ..NodeSelectorTerm::default()
                }],
            }),
            ..NodeAffinity::default()
        }),
        ..Affinity::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_shortened_stably_and_uniquely() {
        let a = child_name("medplat-pipeline", &"x".repeat(80), 63);
        let b = child_name("medplat-pipeline", &format!("{}y", "x".repeat(79)), 63);
        assert!(a.len() <= 63 && b.len() <= 63);
        assert_ne!(a, b);
        assert_eq!(a, child_name("medplat-pipeline", &"x".repeat(80), 63));
        assert_eq!(
            child_name("medplat-pipeline", "lab", 63),
            "medplat-pipeline-lab"
        );
    }

    #[test]
    fn children_carry_managed_by_and_owner_uid_but_no_parent_labels() {
        let owner = Owner {
            api_version: "medplat.io/v1alpha1".into(),
            kind: "Pipeline".into(),
            name: "lab".into(),
            namespace: Some("clinical".into()),
            uid: "u-1".into(),
        };
        let meta = owner.child_meta("x", "pipeline");
        let labels = meta.labels.unwrap();
        assert_eq!(labels[MANAGED_BY], "medplat");
        assert_eq!(labels[OWNER_UID], "u-1");
        assert_eq!(meta.owner_references.unwrap()[0].controller, Some(true));
    }
}
