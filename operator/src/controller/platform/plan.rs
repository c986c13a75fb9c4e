//! What one Platform reconcile should do, computed without I/O: the hardening report, the
//! children of each group that is valid, which groups keep their last good children, and the
//! kinds to prune.
//!
//! The children come in three groups (node agent, log collection, alerting). A group whose
//! settings are invalid is neither applied nor pruned, so the children rendered from the last
//! good spec stay in place while the other groups are reconciled.

use std::collections::BTreeMap;

use jiff::Timestamp;

use super::discovery::OptionalApis;
use crate::api::platform::Platform;
use crate::api::storage_tier::StorageTierSpec;
use crate::controller::children::CachedChild;
use crate::policy::hardening::{
    ComplianceInfo, HardeningReport, NodeInfo, PodInfo, evaluate, parse_interval,
};
use crate::render::Child;
use crate::render::common::COMPONENT;
use crate::render::platform::rules::{RulesTarget, alerting_children};
use crate::render::platform::{dynamic_child, logging, node_agent};

/// The `app.kubernetes.io/component` values of the node-agent children.
pub const NODE_AGENT_COMPONENTS: &[&str] = &["node-agent"];
/// The component values of the log-collection children.
pub const LOGGING_COMPONENTS: &[&str] = &["log-agent", "log-aggregator"];
/// The component values of the alerting children (rules and the operator's ServiceMonitor).
pub const ALERTING_COMPONENTS: &[&str] = &["alerting", "operator"];

/// Kinds every Platform may own.
const BASE_PRUNE_KINDS: &[&str] = &[
    "ConfigMap",
    "ServiceAccount",
    "Service",
    "DaemonSet",
    "StatefulSet",
    "ClusterRole",
    "ClusterRoleBinding",
];

/// One group of children: rendered, or the reason it could not be.
#[derive(Debug)]
pub struct Group<T> {
    /// The children to apply, when the group is valid.
    pub children: Vec<Child>,
    /// What the renderer produced beyond the children (the config hash, the rules target), or
    /// the problem naming the field at fault.
    pub result: Result<T, String>,
}

impl<T> Group<T> {
    fn invalid(problem: String) -> Self {
        Group {
            children: Vec::new(),
            result: Err(problem),
        }
    }
}

/// Everything one reconcile applies.
#[derive(Debug)]
pub struct Plan {
    /// The hardening verdicts, or why `spec.hardening` cannot be evaluated.
    pub hardening: Result<HardeningReport, String>,
    /// The node agent's children (the admission policy only where the API exists).
    pub node_agent: Group<()>,
    /// The log collection's children and the hash of their configuration.
    pub logging: Group<String>,
    /// The alerting children and where the rules went.
    pub alerting: Group<RulesTarget>,
    /// Kinds to prune (the optional ones only where discovery found them).
    pub prune_kinds: Vec<&'static str>,
}

/// The inputs of a plan, as read from the caches.
pub struct Inputs<'a> {
    /// The Platform.
    pub platform: &'a Platform,
    /// The namespace of the namespaced children.
    pub namespace: &'a str,
    /// StorageTiers by name.
    pub tiers: &'a BTreeMap<String, StorageTierSpec>,
    /// The optional APIs.
    pub apis: OptionalApis,
    /// Nodes.
    pub nodes: &'a [NodeInfo],
    /// NodeCompliance objects.
    pub compliances: &'a [ComplianceInfo],
    /// Pods labelled with a level.
    pub pods: &'a [PodInfo],
    /// The time of the evaluation.
    pub now: Timestamp,
}

impl Plan {
    /// Every child to apply, node agent first (identity and permissions before workloads).
    pub fn children(&self) -> Vec<Child> {
        let mut out = self.node_agent.children.clone();
        out.extend(self.logging.children.iter().cloned());
        out.extend(self.alerting.children.iter().cloned());
        out
    }

    /// Whether an existing child belongs to a group that is invalid now, and so must stay as
    /// it is.
    pub fn keeps(&self, child: &CachedChild) -> bool {
        let component = child.labels.get(COMPONENT).map(String::as_str);
        let kept = |valid: bool, components: &[&str]| {
            !valid && component.is_some_and(|c| components.contains(&c))
        };
        kept(self.node_agent.result.is_ok(), NODE_AGENT_COMPONENTS)
            || kept(self.logging.result.is_ok(), LOGGING_COMPONENTS)
            || kept(self.alerting.result.is_ok(), ALERTING_COMPONENTS)
    }
}

/// Computes the plan.
pub fn plan(inputs: &Inputs<'_>) -> Plan {
    let platform = inputs.platform;
    let hardening = evaluate(
        inputs.nodes,
        inputs.compliances,
        inputs.pods,
        &platform.spec.hardening,
        inputs.now,
    )
    .map_err(|e| e.to_string());
    Plan {
        hardening,
        node_agent: node_agent_group(platform, inputs.namespace, inputs.apis),
        logging: logging_group(platform, inputs.namespace, inputs.tiers, inputs.apis),
        alerting: alerting_group(platform, inputs.namespace, inputs.apis),
        prune_kinds: prune_kinds(inputs.apis),
    }
}

fn prune_kinds(apis: OptionalApis) -> Vec<&'static str> {
    let mut kinds = BASE_PRUNE_KINDS.to_vec();
    if apis.admission_policies {
        kinds.extend([
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
        ]);
    }
    if apis.prometheus_rules {
        kinds.push("PrometheusRule");
    }
    if apis.service_monitors {
        kinds.push("ServiceMonitor");
    }
    kinds
}

fn node_agent_group(platform: &Platform, ns: &str, apis: OptionalApis) -> Group<()> {
    // The agent's DaemonSet carries the interval on its command line: an interval the agent
    // would refuse must not replace a working DaemonSet.
    if let Err(e) = parse_interval(&platform.spec.hardening.interval) {
        return Group::invalid(e.to_string());
    }
    match node_agent::render(platform, ns).children() {
        Ok(children) => Group {
            children: children
                .into_iter()
                .filter(|c| apis.admission_policies || !c.kind.starts_with("ValidatingAdmission"))
                .collect(),
            result: Ok(()),
        },
        Err(e) => Group::invalid(e.to_string()),
    }
}

fn logging_group(
    platform: &Platform,
    ns: &str,
    tiers: &BTreeMap<String, StorageTierSpec>,
    apis: OptionalApis,
) -> Group<String> {
    let rendered = match logging::render(platform, ns, tiers) {
        Ok(r) => r,
        Err(logging::LoggingError::Invalid(problems)) => {
            return Group::invalid(
                problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            );
        }
        Err(e) => return Group::invalid(e.to_string()),
    };
    let mut children = match rendered.children() {
        Ok(c) => c,
        Err(e) => return Group::invalid(e.to_string()),
    };
    if apis.service_monitors {
        for sm in &rendered.service_monitors {
            match dynamic_child(sm) {
                Ok(c) => children.push(c),
                Err(e) => return Group::invalid(e.to_string()),
            }
        }
    }
    Group {
        children,
        result: Ok(rendered.config_hash),
    }
}

fn alerting_group(platform: &Platform, ns: &str, apis: OptionalApis) -> Group<RulesTarget> {
    let target = if apis.prometheus_rules {
        RulesTarget::PrometheusRule
    } else {
        RulesTarget::ConfigMap
    };
    match alerting_children(platform, ns, target) {
        Ok(children) => Group {
            children: children
                .into_iter()
                .filter(|c| apis.service_monitors || c.kind != "ServiceMonitor")
                .collect(),
            result: Ok(target),
        },
        Err(e) => Group::invalid(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::platform::AlertOverride;
    use crate::api::storage_tier::StorageTier;
    use crate::render::platform::default_platform;

    fn tiers(retention: u32) -> BTreeMap<String, StorageTierSpec> {
        let t: StorageTier = serde_yaml::from_str(&format!(
            "apiVersion: medplat.io/v1alpha1\nkind: StorageTier\nmetadata: {{name: audit}}\n\
             spec: {{domain: operations, maxLevel: L4, encryption: required, retentionDays: {retention},\n\
             backend: {{volume: {{storageClassName: enc, size: 10Gi}}}}}}\n"
        ))
        .unwrap();
        BTreeMap::from([("audit".to_string(), t.spec)])
    }

    fn platform() -> Platform {
        let mut p = default_platform();
        p.metadata.uid = Some("uid-1".into());
        p
    }

    fn plan_for(p: &Platform, t: &BTreeMap<String, StorageTierSpec>, apis: OptionalApis) -> Plan {
        plan(&Inputs {
            platform: p,
            namespace: "medplat-system",
            tiers: t,
            apis,
            nodes: &[],
            compliances: &[],
            pods: &[],
            now: Timestamp::now(),
        })
    }

    fn kinds(children: &[Child]) -> Vec<String> {
        children.iter().map(|c| c.kind.clone()).collect()
    }

    fn cached(kind: &str, component: &str) -> CachedChild {
        CachedChild {
            kind: kind.into(),
            namespace: Some("medplat-system".into()),
            name: "x".into(),
            labels: BTreeMap::from([(COMPONENT.to_string(), component.to_string())]),
            annotations: BTreeMap::new(),
            generation: None,
            resource_version: None,
        }
    }

    #[test]
    fn optional_kinds_follow_discovery() {
        let t = tiers(365);
        let none = plan_for(&platform(), &t, OptionalApis::default());
        let all_kinds = kinds(&none.children());
        for absent in [
            "PrometheusRule",
            "ServiceMonitor",
            "ValidatingAdmissionPolicy",
        ] {
            assert!(!all_kinds.iter().any(|k| k == absent), "{absent}");
        }
        assert_eq!(
            none.alerting.result.as_ref().ok(),
            Some(&RulesTarget::ConfigMap)
        );
        assert_eq!(none.prune_kinds, BASE_PRUNE_KINDS.to_vec());

        let all = OptionalApis {
            prometheus_rules: true,
            service_monitors: true,
            admission_policies: true,
        };
        let full = plan_for(&platform(), &t, all);
        let full_kinds = kinds(&full.children());
        assert!(full_kinds.iter().any(|k| k == "PrometheusRule"));
        assert_eq!(
            full_kinds.iter().filter(|k| *k == "ServiceMonitor").count(),
            3,
            "operator, log agent and aggregator"
        );
        assert!(
            full_kinds
                .iter()
                .any(|k| k == "ValidatingAdmissionPolicyBinding")
        );
        assert_eq!(
            full.alerting.result.as_ref().ok(),
            Some(&RulesTarget::PrometheusRule)
        );
        assert!(full.prune_kinds.contains(&"PrometheusRule"));
        // The rules ConfigMap is not desired when the PrometheusRule is, so it is pruned.
        assert!(!full.alerting.children.iter().any(|c| c.kind == "ConfigMap"));
    }

    #[test]
    fn an_invalid_group_keeps_its_children_and_only_its_children() {
        // (what breaks, which group is invalid)
        type Breakage = Box<dyn Fn(&mut Platform, &mut u32)>;
        let cases: Vec<(Breakage, &[&str])> = vec![
            (Box::new(|_, retention| *retention = 90), LOGGING_COMPONENTS),
            (
                Box::new(|p, _| p.spec.logging.audit_tier = "missing".into()),
                LOGGING_COMPONENTS,
            ),
            (
                Box::new(|p, _| {
                    p.spec.alerting.overrides.push(AlertOverride {
                        alert: "MedplatNoSuchAlert".into(),
                        disabled: true,
                        r#for: None,
                        severity: None,
                        labels: BTreeMap::new(),
                    })
                }),
                ALERTING_COMPONENTS,
            ),
            (
                Box::new(|p, _| p.spec.hardening.interval = "0m".into()),
                NODE_AGENT_COMPONENTS,
            ),
        ];
        for (i, (breaks, group)) in cases.into_iter().enumerate() {
            let mut p = platform();
            let mut retention = 365;
            breaks(&mut p, &mut retention);
            let plan = plan_for(&p, &tiers(retention), OptionalApis::default());
            for component in NODE_AGENT_COMPONENTS
                .iter()
                .chain(LOGGING_COMPONENTS)
                .chain(ALERTING_COMPONENTS)
            {
                assert_eq!(
                    plan.keeps(&cached("ConfigMap", component)),
                    group.contains(component),
                    "case {i}: {component}"
                );
                let rendered = plan
                    .children()
                    .iter()
                    .any(|c| c.object["metadata"]["labels"][COMPONENT] == *component);
                assert_eq!(
                    rendered,
                    !group.contains(component) && *component != "operator",
                    "case {i}: {component} rendered"
                );
            }
        }
    }

    #[test]
    fn problems_name_the_field() {
        let p = platform();
        let plan = plan_for(&p, &tiers(90), OptionalApis::default());
        let problem = plan.logging.result.unwrap_err();
        assert!(problem.contains("spec.logging.auditTier"), "{problem}");
        let mut p = platform();
        p.spec.hardening.interval = "0m".into();
        let plan = plan_for(&p, &tiers(365), OptionalApis::default());
        assert!(
            plan.hardening
                .unwrap_err()
                .contains("spec.hardening.interval")
        );
    }
}
