//! The validating webhook's registration, and the monitoring objects: the ServiceMonitor of the
//! operator's metrics and, optionally, the PrometheusRule of the default Platform.
//!
//! The webhook can never lock the cluster: `failurePolicy` is `Ignore` by default, and
//! `kube-system` and the operator's own namespace are excluded, so the operator's pods and the
//! control plane are admitted even when the operator is down. `caBundle` is left out: the
//! operator writes it (generated certificate) or cert-manager's CA injector does.

use k8s_openapi::api::admissionregistration::v1::{
    RuleWithOperations, ServiceReference, ValidatingWebhook, ValidatingWebhookConfiguration,
    WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use kube::api::DynamicObject;

use super::rbac::labels;
use super::{InstallError, InstallOptions, names};
use crate::render::platform::default_platform;
use crate::render::platform::rules::{
    OPERATOR_METRICS_PORT, OPERATOR_SERVICE_SELECTOR, prometheus_rule as platform_rule,
    service_monitor as platform_service_monitor,
};

/// The name of the one webhook in the configuration.
pub const WEBHOOK_NAME: &str = "validate.medplat.io";
/// The path the operator serves reviews on.
pub const WEBHOOK_PATH: &str = "/validate";
/// The resources the webhook validates.
pub const VALIDATED_RESOURCES: &[&str] =
    &["datasources", "pipelines", "accesspolicies", "platforms"];
/// How long the API server waits for an answer.
pub const TIMEOUT_SECONDS: i32 = 5;

/// The namespaces the webhook never sees.
pub fn excluded_namespaces(opts: &InstallOptions) -> Vec<String> {
    vec!["kube-system".to_string(), opts.namespace.clone()]
}

/// The ValidatingWebhookConfiguration.
pub fn webhook_configuration(opts: &InstallOptions) -> ValidatingWebhookConfiguration {
    ValidatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(names::WEBHOOK_CONFIG.into()),
            labels: Some(labels("webhook")),
            ..ObjectMeta::default()
        },
        webhooks: Some(vec![ValidatingWebhook {
            name: WEBHOOK_NAME.into(),
            admission_review_versions: vec!["v1".into()],
            side_effects: "None".into(),
            failure_policy: Some(opts.failure_policy.as_str().into()),
            match_policy: Some("Equivalent".into()),
            timeout_seconds: Some(TIMEOUT_SECONDS),
            client_config: WebhookClientConfig {
                service: Some(ServiceReference {
                    name: names::WEBHOOK_SERVICE.into(),
                    namespace: opts.namespace.clone(),
                    path: Some(WEBHOOK_PATH.into()),
                    port: Some(443),
                }),
                ..WebhookClientConfig::default()
            },
            namespace_selector: Some(LabelSelector {
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "kubernetes.io/metadata.name".into(),
                    operator: "NotIn".into(),
                    values: Some(excluded_namespaces(opts)),
                }]),
                match_labels: None,
            }),
            rules: Some(vec![RuleWithOperations {
                api_groups: Some(vec![crate::api::GROUP.into()]),
                api_versions: Some(vec![crate::api::VERSION.into()]),
                operations: Some(vec!["CREATE".into(), "UPDATE".into()]),
                resources: Some(VALIDATED_RESOURCES.iter().map(|s| s.to_string()).collect()),
                scope: Some("*".into()),
            }]),
            ..ValidatingWebhook::default()
        }]),
    }
}

/// The ServiceMonitor of the operator's metrics: the spec the Platform's alerting renders,
/// under the install's labels.
pub fn service_monitor(opts: &InstallOptions) -> DynamicObject {
    let mut sm = platform_service_monitor(
        &default_platform(),
        names::SERVICE_MONITOR,
        &opts.namespace,
        "operator",
        OPERATOR_SERVICE_SELECTOR,
        OPERATOR_METRICS_PORT,
    );
    sm.metadata = ObjectMeta {
        name: Some(names::SERVICE_MONITOR.into()),
        namespace: Some(opts.namespace.clone()),
        labels: Some(labels("operator")),
        ..ObjectMeta::default()
    };
    sm
}

/// The alert rules of the default Platform as a PrometheusRule (what `medplat alerts` prints).
pub fn prometheus_rule(opts: &InstallOptions) -> Result<DynamicObject, InstallError> {
    let mut rule = platform_rule(&default_platform(), &opts.namespace)?;
    rule.metadata = ObjectMeta {
        name: Some(names::PROMETHEUS_RULE.into()),
        namespace: Some(opts.namespace.clone()),
        labels: Some(labels("alerting")),
        ..ObjectMeta::default()
    };
    Ok(rule)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::install::FailurePolicy;

    #[test]
    fn the_webhook_cannot_lock_the_cluster_by_default() {
        let opts = InstallOptions::default();
        let vwc = webhook_configuration(&opts);
        let w = &vwc.webhooks.unwrap()[0];
        assert_eq!(w.failure_policy.as_deref(), Some("Ignore"));
        assert_eq!(w.side_effects, "None");
        let excluded = w
            .namespace_selector
            .as_ref()
            .unwrap()
            .match_expressions
            .as_ref()
            .unwrap()[0]
            .values
            .clone()
            .unwrap();
        assert_eq!(
            excluded,
            vec!["kube-system".to_string(), opts.namespace.clone()]
        );
        let fail = InstallOptions {
            failure_policy: FailurePolicy::Fail,
            ..Default::default()
        };
        assert_eq!(
            webhook_configuration(&fail).webhooks.unwrap()[0]
                .failure_policy
                .as_deref(),
            Some("Fail")
        );
    }

    #[test]
    fn monitoring_objects_do_not_look_like_platform_children() {
        let opts = InstallOptions::default();
        for obj in [service_monitor(&opts), prometheus_rule(&opts).unwrap()] {
            let labels = obj.metadata.labels.unwrap();
            assert!(
                !labels.contains_key(crate::render::common::MANAGED_BY),
                "{labels:?}"
            );
            assert!(obj.metadata.owner_references.is_none());
        }
    }
}
