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

use crate::api::platform::Platform;

use super::common::{self, Owner};

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
        (common::COMPONENT.to_string(), component.to_string()),
    ])
}

/// The Platform as the owner of its children, when it has a uid (it has none when rendered
/// offline, e.g. by `medplat alerts`).
pub fn platform_owner(platform: &Platform) -> Option<Owner> {
    Some(Owner {
        api_version: crate::api::API_VERSION.to_string(),
        kind: "Platform".to_string(),
        name: platform.metadata.name.clone().unwrap_or_default(),
        namespace: None,
        uid: platform.metadata.uid.clone()?,
    })
}

/// Metadata of a child in `namespace` (empty for cluster-scoped children): the shared owner
/// labels and controller reference of [`common::Owner`], the selector labels of `component`,
/// and `extra_labels` (e.g. the rule labels the Prometheus operator selects on).
pub fn child_meta(
    platform: &Platform,
    name: &str,
    namespace: &str,
    component: &str,
    extra_labels: &BTreeMap<String, String>,
) -> ObjectMeta {
    let owner = platform_owner(platform);
    let mut labels = extra_labels.clone();
    labels.extend(selector_labels(component));
    match &owner {
        Some(o) => labels.extend(o.labels(component)),
        None => {
            labels.insert(common::MANAGED_BY.into(), common::MANAGED_BY_VALUE.into());
            labels.insert(common::PART_OF.into(), "medplat".into());
        }
    }
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: (!namespace.is_empty()).then(|| namespace.to_string()),
        labels: Some(labels),
        owner_references: owner.map(|o| vec![o.reference()]),
        ..ObjectMeta::default()
    }
}

/// Wraps a dynamic object (PrometheusRule, ServiceMonitor) as a [`common::Child`].
pub fn dynamic_child(obj: &kube::api::DynamicObject) -> Result<common::Child, common::RenderError> {
    let types = obj.types.clone().unwrap_or_default();
    let name = obj.metadata.name.clone().unwrap_or_default();
    let object = serde_json::to_value(obj).map_err(|source| common::RenderError::Serialise {
        kind: types.kind.clone(),
        name: name.clone(),
        source,
    })?;
    Ok(common::Child {
        api_version: types.api_version,
        kind: types.kind,
        name,
        namespace: obj.metadata.namespace.clone(),
        object,
    })
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
        assert_eq!(labels[common::OWNER_UID], "1234");
        assert_eq!(labels[common::OWNER_KIND], "platform");
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
