//! Alert rules as Kubernetes objects: a PrometheusRule (`monitoring.coreos.com/v1`) where the
//! Prometheus operator is installed, or a ConfigMap holding a plain Prometheus rules file where
//! it is not (the controller picks one by discovery), plus ServiceMonitors for the operator's
//! and the log aggregator's metrics.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde::{Deserialize, Serialize};

use crate::api::platform::{Platform, PlatformSpec};

use super::alerts::{catalog, severity_label};
use super::{RenderError, child_meta, dynamic_child};
use crate::render::common::Child;

/// The name of the PrometheusRule, the rules ConfigMap and the operator's ServiceMonitor.
pub const RULES_NAME: &str = "medplat-alerts";
/// The key of the rules file inside the ConfigMap.
pub const RULES_FILE_KEY: &str = "medplat-rules.yaml";
/// The operator Service's port name the ServiceMonitor scrapes.
pub const OPERATOR_METRICS_PORT: &str = "metrics";
/// Labels the operator's metrics Service must carry for the ServiceMonitor to find it.
pub const OPERATOR_SERVICE_SELECTOR: &[(&str, &str)] = &[
    ("app.kubernetes.io/name", "medplat"),
    ("app.kubernetes.io/component", "operator"),
];

/// One Prometheus alerting rule, in the rules-file shape.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct AlertRule {
    /// The alert name.
    pub alert: String,
    /// The PromQL expression.
    pub expr: String,
    /// How long the expression must hold before the alert fires.
    #[serde(rename = "for")]
    pub for_: String,
    /// Labels: severity, component, routing labels, override labels.
    pub labels: BTreeMap<String, String>,
    /// summary, description, runbook_url.
    pub annotations: BTreeMap<String, String>,
}

/// A rule group.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RuleGroup {
    /// `medplat-<area>`.
    pub name: String,
    /// Its rules.
    pub rules: Vec<AlertRule>,
}

/// A plain Prometheus rules file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RulesFile {
    /// The groups.
    pub groups: Vec<RuleGroup>,
}

/// Builds the rule groups for `spec`: the catalog with routing labels, per-alert overrides
/// and runbook links applied. Disabled alerts are left out, and so are groups left empty.
///
/// An override naming an alert that does not exist is an error: a typo would otherwise
/// silently leave an alert unchanged.
pub fn rule_groups(spec: &PlatformSpec) -> Result<Vec<RuleGroup>, RenderError> {
    let alerting = &spec.alerting;
    let defs = catalog(spec);
    for (i, o) in alerting.overrides.iter().enumerate() {
        if !defs.iter().any(|d| d.name == o.alert) {
            return Err(RenderError::UnknownAlert {
                field: format!("spec.alerting.overrides[{i}].alert"),
                alert: o.alert.clone(),
            });
        }
    }
    let base = alerting.runbook_base_url.trim_end_matches('/');
    let mut groups: Vec<RuleGroup> = Vec::new();
    for def in defs {
        let ov = alerting.overrides.iter().find(|o| o.alert == def.name);
        if ov.is_some_and(|o| o.disabled) {
            continue;
        }
        let mut labels: BTreeMap<String, String> = alerting.routing_labels.clone();
        if let Some(o) = ov {
            labels.extend(o.labels.clone());
        }
        // severity and component are the routing contract: set last so nothing overwrites them
        // except an explicit severity override.
        let severity = ov.and_then(|o| o.severity).unwrap_or(def.severity);
        labels.insert("severity".into(), severity_label(severity).into());
        labels.insert("component".into(), def.component.into());
        let annotations = BTreeMap::from([
            ("summary".to_string(), def.summary.to_string()),
            ("description".to_string(), def.description.to_string()),
            ("runbook_url".to_string(), format!("{base}/{}", def.name)),
        ]);
        let rule = AlertRule {
            alert: def.name.to_string(),
            expr: def.expr,
            for_: ov
                .and_then(|o| o.r#for.clone())
                .unwrap_or_else(|| def.for_.to_string()),
            labels,
            annotations,
        };
        match groups.iter_mut().find(|g| g.name == def.group) {
            Some(g) => g.rules.push(rule),
            None => groups.push(RuleGroup {
                name: def.group.to_string(),
                rules: vec![rule],
            }),
        }
    }
    Ok(groups)
}

/// The plain rules file as YAML, with a header saying where it came from.
pub fn rules_file_yaml(spec: &PlatformSpec) -> Result<String, RenderError> {
    let file = RulesFile {
        groups: rule_groups(spec)?,
    };
    let body = serde_yaml::to_string(&file).map_err(|e| RenderError::Serialise {
        what: "rules file".into(),
        message: e.to_string(),
    })?;
    Ok(format!(
        "# medplat alert rules, generated by `medplat alerts --format prometheus-rules`. Do not edit.\n{body}"
    ))
}

/// The Prometheus operator's PrometheusRule kind.
pub fn prometheus_rule_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "monitoring.coreos.com",
        "v1",
        "PrometheusRule",
    ))
}

/// The Prometheus operator's ServiceMonitor kind.
pub fn service_monitor_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "monitoring.coreos.com",
        "v1",
        "ServiceMonitor",
    ))
}

/// The PrometheusRule in `namespace`, labelled with `spec.alerting.ruleLabels` so the
/// Prometheus operator's `ruleSelector` picks it up.
pub fn prometheus_rule(platform: &Platform, namespace: &str) -> Result<DynamicObject, RenderError> {
    let groups = rule_groups(&platform.spec)?;
    let mut obj = DynamicObject::new(RULES_NAME, &prometheus_rule_resource()).within(namespace);
    obj.metadata = child_meta(
        platform,
        RULES_NAME,
        namespace,
        "alerting",
        &platform.spec.alerting.rule_labels,
    );
    obj.data = serde_json::json!({ "spec": { "groups": groups } });
    Ok(obj)
}

/// The fallback: a ConfigMap with the plain rules file under [`RULES_FILE_KEY`], for a
/// Prometheus that loads rule files from a mounted ConfigMap.
pub fn rules_config_map(platform: &Platform, namespace: &str) -> Result<ConfigMap, RenderError> {
    Ok(ConfigMap {
        metadata: child_meta(
            platform,
            RULES_NAME,
            namespace,
            "alerting",
            &platform.spec.alerting.rule_labels,
        ),
        data: Some(BTreeMap::from([(
            RULES_FILE_KEY.to_string(),
            rules_file_yaml(&platform.spec)?,
        )])),
        ..ConfigMap::default()
    })
}

/// Where the alert rules go, as discovery found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RulesTarget {
    /// The `monitoring.coreos.com/v1` PrometheusRule CRD exists.
    PrometheusRule,
    /// It does not: a ConfigMap with a plain rules file.
    ConfigMap,
}

impl RulesTarget {
    /// The value for `status.rulesTarget`.
    pub fn as_str(self) -> &'static str {
        match self {
            RulesTarget::PrometheusRule => "PrometheusRule",
            RulesTarget::ConfigMap => "ConfigMap",
        }
    }
}

/// The alerting children for `target`: the PrometheusRule plus the operator's ServiceMonitor,
/// or the rules ConfigMap alone (without the Prometheus operator there is no ServiceMonitor
/// CRD either).
pub fn alerting_children(
    platform: &Platform,
    namespace: &str,
    target: RulesTarget,
) -> Result<Vec<Child>, AlertingChildError> {
    Ok(match target {
        RulesTarget::PrometheusRule => vec![
            dynamic_child(&prometheus_rule(platform, namespace)?)?,
            dynamic_child(&operator_service_monitor(platform, namespace))?,
        ],
        RulesTarget::ConfigMap => vec![Child::from_typed(&rules_config_map(platform, namespace)?)?],
    })
}

/// Why the alerting children could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum AlertingChildError {
    /// The Platform's alerting settings are wrong (e.g. an override of an unknown alert).
    #[error(transparent)]
    Spec(#[from] RenderError),
    /// An object could not be serialised.
    #[error(transparent)]
    Serialise(#[from] crate::render::common::RenderError),
}

/// A ServiceMonitor scraping the Services matching `selector` on port `port`.
///
/// `honorLabels` keeps the metrics' own `namespace` label (the namespace of the pipeline or
/// policy) instead of the scraped Service's namespace.
pub fn service_monitor(
    platform: &Platform,
    name: &str,
    namespace: &str,
    component: &str,
    selector: &[(&str, &str)],
    port: &str,
) -> DynamicObject {
    let mut obj = DynamicObject::new(name, &service_monitor_resource()).within(namespace);
    obj.metadata = child_meta(
        platform,
        name,
        namespace,
        component,
        &platform.spec.alerting.rule_labels,
    );
    let match_labels: BTreeMap<&str, &str> = selector.iter().copied().collect();
    obj.data = serde_json::json!({
        "spec": {
            "selector": { "matchLabels": match_labels },
            "namespaceSelector": { "matchNames": [namespace] },
            "endpoints": [{ "port": port, "interval": "30s", "honorLabels": true }]
        }
    });
    obj
}

/// The ServiceMonitor of the operator's own `/metrics`.
pub fn operator_service_monitor(platform: &Platform, namespace: &str) -> DynamicObject {
    service_monitor(
        platform,
        "medplat-operator",
        namespace,
        "operator",
        OPERATOR_SERVICE_SELECTOR,
        OPERATOR_METRICS_PORT,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::platform::{AlertOverride, Severity};
    use crate::render::platform::default_platform;

    fn rule<'a>(groups: &'a [RuleGroup], name: &str) -> Option<&'a AlertRule> {
        groups
            .iter()
            .flat_map(|g| &g.rules)
            .find(|r| r.alert == name)
    }

    #[test]
    fn conventions_hold_for_every_alert() {
        let groups = rule_groups(&default_platform().spec).unwrap();
        for g in &groups {
            assert!(g.name.starts_with("medplat-"), "{}", g.name);
            for r in &g.rules {
                assert!(r.alert.starts_with("Medplat"), "{}", r.alert);
                assert!(
                    r.alert.chars().all(|c| c.is_ascii_alphanumeric()),
                    "{}",
                    r.alert
                );
                assert!(["critical", "warning", "info"].contains(&r.labels["severity"].as_str()));
                assert!(!r.labels["component"].is_empty());
                assert_eq!(
                    r.annotations["runbook_url"],
                    format!("https://medplat.example/runbooks/{}", r.alert)
                );
                assert!(
                    !r.annotations["summary"].contains("{{"),
                    "summary must be static"
                );
                assert!(r.annotations["description"].contains("{{"), "{}", r.alert);
            }
        }
    }

    #[test]
    fn overrides_change_one_alert_and_routing_labels_reach_all() {
        let mut p = default_platform();
        p.spec.alerting.routing_labels = BTreeMap::from([("team".into(), "platform".into())]);
        p.spec.alerting.runbook_base_url = "https://wiki.hospital.local/rb/".into();
        p.spec.alerting.overrides = vec![
            AlertOverride {
                alert: "MedplatPipelineRunFailed".into(),
                disabled: false,
                r#for: Some("30s".into()),
                severity: Some(Severity::Critical),
                labels: BTreeMap::from([("pager".into(), "dba".into())]),
            },
            AlertOverride {
                alert: "MedplatDataSourceUnreachable".into(),
                disabled: true,
                r#for: None,
                severity: None,
                labels: BTreeMap::new(),
            },
        ];
        let groups = rule_groups(&p.spec).unwrap();
        let r = rule(&groups, "MedplatPipelineRunFailed").unwrap();
        assert_eq!(r.for_, "30s");
        assert_eq!(r.labels["severity"], "critical");
        assert_eq!(r.labels["pager"], "dba");
        assert_eq!(
            r.annotations["runbook_url"],
            "https://wiki.hospital.local/rb/MedplatPipelineRunFailed"
        );
        assert!(rule(&groups, "MedplatDataSourceUnreachable").is_none());
        // The datasource group held only that alert, so it is gone.
        assert!(groups.iter().all(|g| g.name != "medplat-datasources"));
        let other = rule(&groups, "MedplatPipelineBlockedByPolicy").unwrap();
        assert_eq!(other.for_, "15m");
        assert_eq!(other.labels["severity"], "warning");
        assert!(
            groups
                .iter()
                .flat_map(|g| &g.rules)
                .all(|r| r.labels["team"] == "platform")
        );
    }

    #[test]
    fn an_override_cannot_remove_the_component_label() {
        let mut p = default_platform();
        p.spec.alerting.overrides = vec![AlertOverride {
            alert: "MedplatPipelineRunFailed".into(),
            disabled: false,
            r#for: None,
            severity: None,
            labels: BTreeMap::from([("component".into(), "x".into())]),
        }];
        let groups = rule_groups(&p.spec).unwrap();
        assert_eq!(
            rule(&groups, "MedplatPipelineRunFailed").unwrap().labels["component"],
            "pipeline"
        );
    }

    #[test]
    fn an_unknown_override_is_an_error_naming_the_field() {
        let mut p = default_platform();
        p.spec.alerting.overrides = vec![AlertOverride {
            alert: "MedplatNoSuchAlert".into(),
            disabled: true,
            r#for: None,
            severity: None,
            labels: BTreeMap::new(),
        }];
        let e = rule_groups(&p.spec).unwrap_err().to_string();
        assert!(e.contains("spec.alerting.overrides[0].alert"), "{e}");
        assert!(e.contains("MedplatNoSuchAlert"), "{e}");
    }

    #[test]
    fn prometheus_rule_carries_rule_labels_and_the_groups() {
        let mut p = default_platform();
        p.spec.alerting.rule_labels =
            BTreeMap::from([("release".into(), "kube-prometheus-stack".into())]);
        let obj = prometheus_rule(&p, "medplat-system").unwrap();
        let v = serde_json::to_value(&obj).unwrap();
        assert_eq!(v["apiVersion"], "monitoring.coreos.com/v1");
        assert_eq!(v["kind"], "PrometheusRule");
        assert_eq!(v["metadata"]["namespace"], "medplat-system");
        assert_eq!(v["metadata"]["labels"]["release"], "kube-prometheus-stack");
        assert_eq!(
            v["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "medplat"
        );
        assert!(v["spec"]["groups"].as_array().unwrap().len() >= 5);
        let cm = rules_config_map(&p, "medplat-system").unwrap();
        let file: RulesFile = serde_yaml::from_str(&cm.data.unwrap()[RULES_FILE_KEY]).unwrap();
        assert_eq!(
            serde_json::to_value(&file.groups).unwrap(),
            v["spec"]["groups"]
        );
    }

    #[test]
    fn the_rules_target_decides_the_children() {
        let p = default_platform();
        let with = alerting_children(&p, "ns", RulesTarget::PrometheusRule).unwrap();
        let kinds: Vec<_> = with.iter().map(|c| c.kind.as_str()).collect();
        assert_eq!(kinds, vec!["PrometheusRule", "ServiceMonitor"]);
        assert_eq!(with[0].object["apiVersion"], "monitoring.coreos.com/v1");
        let without = alerting_children(&p, "ns", RulesTarget::ConfigMap).unwrap();
        assert_eq!(without.len(), 1);
        assert_eq!(without[0].kind, "ConfigMap");
        assert_eq!(without[0].namespace.as_deref(), Some("ns"));
    }

    #[test]
    fn service_monitor_honours_labels_and_selects_the_operator() {
        let v = serde_json::to_value(operator_service_monitor(&default_platform(), "ns")).unwrap();
        assert_eq!(v["kind"], "ServiceMonitor");
        assert_eq!(v["spec"]["endpoints"][0]["honorLabels"], true);
        assert_eq!(v["spec"]["endpoints"][0]["port"], "metrics");
        assert_eq!(
            v["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"],
            "operator"
        );
    }
}
