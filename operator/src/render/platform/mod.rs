//! The Platform's children, rendered as pure functions: the node-agent DaemonSet, the log agent
//! and aggregator with their Vector configuration, and the alert rules with their
//! ServiceMonitors.
//!
//! Every child carries `app.kubernetes.io/managed-by=medplat`, a `component` label and, when
//! the Platform has a uid, a controller owner reference to it. The Platform's own labels are
//! never copied onto children (Argo CD would prune them).

pub mod alerts;
pub mod logging;
pub mod node_agent;
pub mod rules;
pub mod vector;
pub mod vector_check;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;

use crate::api::platform::Platform;

/// `app.kubernetes.io/managed-by` on every child.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "medplat");
/// `app.kubernetes.io/part-of` on every child.
pub const PART_OF: (&str, &str) = ("app.kubernetes.io/part-of", "medplat");
/// The namespace the operator runs in by default; Platform children go there.
pub const DEFAULT_NAMESPACE: &str = "medplat-system";

/// What can go wrong rendering a Platform's children.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RenderError {
    /// An alert override names no known alert.
    #[error("{field}: no alert named {alert:?}")]
    UnknownAlert {
        /// The field path.
        field: String,
        /// The name given.
        alert: String,
    },
    /// A value could not be serialised.
    #[error("cannot serialise the {what}: {message}")]
    Serialise {
        /// What was being serialised.
        what: String,
        /// The serialiser's message.
        message: String,
    },
}

/// The labels selecting one component's pods (stable: they end up in immutable selectors).
pub fn selector_labels(component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "medplat".to_string()),
        (
            "app.kubernetes.io/component".to_string(),
            component.to_string(),
        ),
    ])
}

/// Metadata of a child: name, namespace (if any), medplat labels plus `extra_labels`, and
/// the owner reference to the Platform.
pub fn child_meta(
    platform: &Platform,
    name: &str,
    namespace: &str,
    component: &str,
    extra_labels: &BTreeMap<String, String>,
) -> ObjectMeta {
    let mut labels = extra_labels.clone();
    labels.extend(selector_labels(component));
    labels.insert(MANAGED_BY.0.into(), MANAGED_BY.1.into());
    labels.insert(PART_OF.0.into(), PART_OF.1.into());
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: (!namespace.is_empty()).then(|| namespace.to_string()),
        labels: Some(labels),
        owner_references: platform.controller_owner_ref(&()).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

/// The Platform used when none is given (`medplat alerts` without `-f`, and the checked-in
/// `deploy/prometheus/medplat-rules.yaml`): every default, audit logs in the tier `audit`.
pub fn default_platform() -> Platform {
    Platform::new(
        crate::api::PLATFORM_NAME,
        crate::api::platform::PlatformSpec {
            hardening: Default::default(),
            logging: crate::api::platform::Logging {
                collector: Default::default(),
                agent_image: vector::DEFAULT_VECTOR_IMAGE.into(),
                aggregator_image: vector::DEFAULT_VECTOR_IMAGE.into(),
                audit_tier: "audit".into(),
                audit_retention_days: 180,
                sinks: Vec::new(),
                buffer: Default::default(),
                aggregator_storage: Default::default(),
            },
            alerting: Default::default(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_never_inherit_the_platforms_labels_and_are_owned() {
        let mut p = default_platform();
        p.metadata.labels = Some(BTreeMap::from([(
            "argocd.argoproj.io/instance".into(),
            "x".into(),
        )]));
        p.metadata.uid = Some("1234".into());
        let meta = child_meta(&p, "c", "ns", "alerting", &BTreeMap::new());
        let labels = meta.labels.unwrap();
        assert!(!labels.contains_key("argocd.argoproj.io/instance"));
        assert_eq!(labels["app.kubernetes.io/managed-by"], "medplat");
        let owner = &meta.owner_references.unwrap()[0];
        assert_eq!(owner.kind, "Platform");
        assert_eq!(owner.uid, "1234");
        assert_eq!(owner.controller, Some(true));
    }

    #[test]
    fn the_default_platform_matches_the_api_defaults() {
        // Deserialising the minimal manifest must give the same spec, so the checked-in rules
        // file and a user's minimal Platform agree.
        let parsed: Platform = serde_yaml::from_str(
            "apiVersion: medplat.io/v1alpha1\nkind: Platform\nmetadata: {name: default}\n\
             spec: {logging: {auditTier: audit}}\n",
        )
        .unwrap();
        assert_eq!(parsed.spec, default_platform().spec);
    }
}
