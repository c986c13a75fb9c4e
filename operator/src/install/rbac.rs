//! The operator's own permissions: a least-privilege ClusterRole whose every rule carries the
//! reason it exists, the Role for the leader-election Lease and the webhook Secret in the
//! operator's namespace, and their bindings.
//!
//! The rules are derived from what the reconcilers call (see `controller/`), plus the
//! permissions the operator hands to the node agent, the log agent and AccessPolicy Roles:
//! Kubernetes only lets a subject create a Role or ClusterRole granting permissions it holds
//! itself (RBAC escalation prevention). Holding those few read permissions is narrower than
//! the alternative, the `escalate` and `bind` verbs, which would let the operator grant anything.
//!
//! Server-side apply is authorized as `create` when the object does not exist yet and as
//! `patch` otherwise, so every kind the operator applies needs both.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{InstallOptions, names};
use crate::render::platform::node_agent::NODE_AGENT_NAME;
use crate::render::platform::vector::AGENT_NAME as LOG_AGENT_NAME;

/// A rule with the reason it is granted.
pub type ReasonedRule = (PolicyRule, &'static str);

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(groups.iter().map(|s| s.to_string()).collect()),
        resources: Some(resources.iter().map(|s| s.to_string()).collect()),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        resource_names: None,
        non_resource_urls: None,
    }
}

fn named(mut r: PolicyRule, names: &[&str]) -> PolicyRule {
    r.resource_names = Some(names.iter().map(|s| s.to_string()).collect());
    r
}

const MEDPLAT: &str = crate::api::GROUP;
const CORE: &str = "";
const APPS: &str = "apps";
const BATCH: &str = "batch";
const NETWORKING: &str = "networking.k8s.io";
const RBAC: &str = "rbac.authorization.k8s.io";
const ADMISSION: &str = "admissionregistration.k8s.io";
const MONITORING: &str = "monitoring.coreos.com";

/// Every rule of the operator's ClusterRole, with why it is needed.
pub fn cluster_rules() -> Vec<ReasonedRule> {
    vec![
        (
            rule(
                &[MEDPLAT],
                &["storagetiers", "pipelines", "accesspolicies", "platforms"],
                &["list", "watch"],
            ),
            "The reconcilers watch every parent kind (all namespaces unless --watch-namespace is set).",
        ),
        (
            rule(&[MEDPLAT], &["datasources"], &["get", "list", "watch"]),
            "Watched by the DataSource, AccessPolicy and Pipeline reconcilers. get: AccessPolicy Roles grant get on named DataSources, and RBAC lets the operator grant only what it holds.",
        ),
        (
            rule(
                &[MEDPLAT],
                &[
                    "storagetiers/status",
                    "datasources/status",
                    "pipelines/status",
                    "accesspolicies/status",
                    "platforms/status",
                ],
                &["patch"],
            ),
            "Status (conditions, observedGeneration) is written by server-side apply on the status subresource.",
        ),
        (
            rule(
                &[MEDPLAT],
                &["nodecompliances"],
                &["get", "list", "watch", "create"],
            ),
            "list/watch: the Platform reconciler reads each node's hardening scan. get/create are never called by the operator: the node agent's ClusterRole grants them, and RBAC lets the operator grant only what it holds.",
        ),
        (
            rule(&[MEDPLAT], &["nodecompliances/status"], &["get", "patch"]),
            "Never called by the operator: held only because the node agent's ClusterRole grants them (RBAC escalation prevention).",
        ),
        (
            rule(
                &[CORE],
                &["configmaps", "serviceaccounts", "services"],
                &["list", "watch", "create", "patch", "delete"],
            ),
            "Children (resolved pipelines, policy bundles, workload identities, listener and log Services): metadata-only watches, server-side apply (create or patch), prune.",
        ),
        (
            rule(
                &[CORE],
                &["persistentvolumeclaims"],
                &["get", "list", "watch", "create", "patch"],
            ),
            "Tier claims: applied by the Pipeline reconciler and watched by the StorageTier reconciler; never deleted (data outlives its pipeline). get: AccessPolicy Roles grant it on named claims.",
        ),
        (
            rule(
                &[APPS],
                &["deployments"],
                &["get", "list", "watch", "create", "patch", "delete"],
            ),
            "HL7 v2 listener Deployments of push DataSources. get: the DataSource reconciler reads the listener's availability.",
        ),
        (
            rule(
                &[APPS],
                &["daemonsets", "statefulsets"],
                &["list", "watch", "create", "patch", "delete"],
            ),
            "Platform children: the node-agent and log-agent DaemonSets and the log-aggregator StatefulSet.",
        ),
        (
            rule(
                &[BATCH],
                &["cronjobs"],
                &["list", "watch", "create", "patch", "delete"],
            ),
            "Scheduled Pipelines run as CronJobs, suspended while blocked and pruned when unscheduled.",
        ),
        (
            rule(&[BATCH], &["jobs"], &["list", "watch", "create", "patch"]),
            "One Job per run request; the Pipeline reconciler reads runs back. Jobs are run records: never deleted by the operator (their TTL removes them).",
        ),
        (
            rule(&[CORE], &["pods"], &["get", "list", "watch"]),
            "list/watch: sensitive pods (label medplat.io/level) are watched to evict them from unhardened nodes, and a run's pods are listed for their termination message. get: the log agent's ClusterRole grants it.",
        ),
        (
            rule(&[CORE], &["pods/eviction"], &["create"]),
            "Platform hardening in Enforce mode evicts sensitive pods from nodes that lost the hardened label, through the eviction API so PodDisruptionBudgets hold. The operator creates no pods.",
        ),
        (
            rule(&[CORE], &["nodes"], &["list", "watch", "patch"]),
            "The Platform reconciler watches node metadata and sets or clears the medplat.io/hardened label (a merge patch of that one label).",
        ),
        (
            rule(&[CORE], &["nodes", "namespaces"], &["get"]),
            "Never called by the operator: the log agent's ClusterRole grants get/list/watch on nodes, namespaces and pods to enrich log lines.",
        ),
        (
            rule(&[CORE], &["namespaces"], &["list", "watch"]),
            "Never called by the operator: the log agent's ClusterRole grants them (RBAC escalation prevention).",
        ),
        (
            rule(&[CORE], &["secrets"], &["get"]),
            "Existence checks of Secrets that DataSources and Pipelines reference by name, reading metadata only. No list or watch: a missing Secret is re-checked on a timer.",
        ),
        (
            rule(&["storage.k8s.io"], &["storageclasses"], &["get"]),
            "The StorageTier reconciler verifies that a volume tier's StorageClass exists and is marked encrypted.",
        ),
        (
            rule(
                &["apiextensions.k8s.io"],
                &["customresourcedefinitions"],
                &["list", "watch"],
            ),
            "The Platform reconciler notices the Prometheus operator's CRDs appearing or going, to choose PrometheusRule or a rules ConfigMap.",
        ),
        (
            rule(
                &[NETWORKING],
                &["networkpolicies"],
                &["list", "watch", "create", "patch", "delete"],
            ),
            "Children: default-deny egress and per-endpoint egress for sources, pipelines and access policies.",
        ),
        (
            rule(
                &[RBAC],
                &["roles", "rolebindings"],
                &["list", "watch", "create", "patch", "delete"],
            ),
            "AccessPolicy children: read access to named DataSources and tier claims for the policy's subjects. No bind or escalate: the Roles grant only what this ClusterRole holds.",
        ),
        (
            rule(
                &[RBAC],
                &["clusterroles", "clusterrolebindings"],
                &["list", "watch", "create"],
            ),
            "Platform children: the node agent's and the log agent's ClusterRole and binding (create cannot be limited by name).",
        ),
        (
            named(
                rule(
                    &[RBAC],
                    &["clusterroles", "clusterrolebindings"],
                    &["patch", "delete"],
                ),
                &[NODE_AGENT_NAME, LOG_AGENT_NAME],
            ),
            "Updating and pruning only the two cluster-wide RBAC objects the Platform owns.",
        ),
        (
            rule(
                &[ADMISSION],
                &[
                    "validatingadmissionpolicies",
                    "validatingadmissionpolicybindings",
                ],
                &["list", "watch", "create"],
            ),
            "Platform children: the policy that lets each node agent write only its own node's NodeCompliance.",
        ),
        (
            named(
                rule(
                    &[ADMISSION],
                    &[
                        "validatingadmissionpolicies",
                        "validatingadmissionpolicybindings",
                    ],
                    &["patch", "delete"],
                ),
                &[NODE_AGENT_NAME],
            ),
            "Updating and pruning only the node agent's admission policy and binding.",
        ),
        (
            named(
                rule(
                    &[ADMISSION],
                    &["validatingwebhookconfigurations"],
                    &["get", "list", "watch", "patch"],
                ),
                &[names::WEBHOOK_CONFIG],
            ),
            "Writes the CA of a generated webhook certificate into caBundle of its own ValidatingWebhookConfiguration, and no other; watches it (by name) to restore caBundle if something resets it.",
        ),
        (
            rule(
                &[MONITORING],
                &["prometheusrules", "servicemonitors"],
                &["list", "watch", "create", "patch", "delete"],
            ),
            "Platform alerting children (alert rules, ServiceMonitors), only where the Prometheus operator's CRDs exist.",
        ),
        (
            rule(&["events.k8s.io"], &["events"], &["create", "patch"]),
            "Events on the objects it reconciles, in their namespaces; patch updates a repeated event's count.",
        ),
    ]
}

/// Every rule of the Role in the operator's namespace, with why it is needed.
pub fn namespace_rules(opts: &InstallOptions) -> Vec<ReasonedRule> {
    let mut rules = Vec::new();
    if opts.leader_election {
        rules.push((
            rule(&["coordination.k8s.io"], &["leases"], &["create"]),
            "Leader election: the first replica creates the Lease (create cannot be limited by name).",
        ));
        rules.push((
            named(
                rule(&["coordination.k8s.io"], &["leases"], &["get", "patch"]),
                &[names::LEASE],
            ),
            "Leader election: read and renew the one Lease that elects the leader.",
        ));
    }
    rules.push((
        named(
            rule(&[CORE], &["secrets"], &["get", "list", "watch", "update"]),
            &[&opts.webhook_cert_secret],
        ),
        "The webhook's serving certificate (tls.crt, tls.key, ca.crt): read it, watch it by name to serve a rotated one (cert-manager) without restart, and renew a certificate medplat generated before it expires.",
    ));
    rules.push((
        rule(&[CORE], &["secrets"], &["create"]),
        "Stores the certificate the first replica generates when no Secret exists, so every replica serves the same one (create cannot be limited by name; only this namespace).",
    ));
    rules
}

/// The labels of every install object.
pub fn labels(component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "medplat".to_string()),
        (
            "app.kubernetes.io/component".to_string(),
            component.to_string(),
        ),
        (
            "app.kubernetes.io/part-of".to_string(),
            "medplat".to_string(),
        ),
    ])
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        labels: Some(labels("operator")),
        ..ObjectMeta::default()
    }
}

fn subject(opts: &InstallOptions) -> Subject {
    Subject {
        kind: "ServiceAccount".into(),
        name: names::OPERATOR.into(),
        namespace: Some(opts.namespace.clone()),
        api_group: None,
    }
}

/// The ClusterRole.
pub fn cluster_role() -> ClusterRole {
    ClusterRole {
        metadata: meta(names::OPERATOR, None),
        rules: Some(cluster_rules().into_iter().map(|(r, _)| r).collect()),
        aggregation_rule: None,
    }
}

/// Binds the ClusterRole to the operator's ServiceAccount.
pub fn cluster_role_binding(opts: &InstallOptions) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(names::OPERATOR, None),
        role_ref: RoleRef {
            api_group: RBAC.into(),
            kind: "ClusterRole".into(),
            name: names::OPERATOR.into(),
        },
        subjects: Some(vec![subject(opts)]),
    }
}

/// The Role in the operator's namespace.
pub fn role(opts: &InstallOptions) -> Role {
    Role {
        metadata: meta(names::OPERATOR, Some(&opts.namespace)),
        rules: Some(namespace_rules(opts).into_iter().map(|(r, _)| r).collect()),
    }
}

/// Binds the Role to the operator's ServiceAccount.
pub fn role_binding(opts: &InstallOptions) -> RoleBinding {
    RoleBinding {
        metadata: meta(names::OPERATOR, Some(&opts.namespace)),
        role_ref: RoleRef {
            api_group: RBAC.into(),
            kind: "Role".into(),
            name: names::OPERATOR.into(),
        },
        subjects: Some(vec![subject(opts)]),
    }
}

/// The `rules:` list as YAML, each rule preceded by its reason as a comment, indented by
/// `indent` spaces. Parsing it gives exactly the rules of the table.
pub fn rules_yaml(rules: &[ReasonedRule], indent: usize) -> Result<String, serde_yaml::Error> {
    let pad = " ".repeat(indent);
    let mut out = format!("{pad}rules:\n");
    for (r, why) in rules {
        for line in wrap(why, 96usize.saturating_sub(indent)) {
            out.push_str(&format!("{pad}  # {line}\n"));
        }
        let body = serde_yaml::to_string(r)?;
        for (i, line) in body.lines().enumerate() {
            let lead = if i == 0 { "- " } else { "  " };
            out.push_str(&format!("{pad}  {lead}{line}\n"));
        }
    }
    Ok(out)
}

/// Splits `text` into lines of at most `width` characters at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commented_yaml_parses_back_to_the_table() {
        let rules = cluster_rules();
        let yaml = rules_yaml(&rules, 0).unwrap();
        #[derive(serde::Deserialize)]
        struct Doc {
            rules: Vec<PolicyRule>,
        }
        let parsed: Doc = serde_yaml::from_str(&yaml).unwrap();
        let expected: Vec<PolicyRule> = rules.into_iter().map(|(r, _)| r).collect();
        assert_eq!(parsed.rules, expected);
        assert!(
            yaml.lines()
                .filter(|l| l.trim_start().starts_with("# "))
                .count()
                >= expected.len()
        );
    }

    #[test]
    fn every_rule_has_a_reason_and_no_wildcard() {
        for (r, why) in cluster_rules() {
            assert!(why.len() > 20, "{r:?} needs a real reason");
            let all = r
                .verbs
                .iter()
                .chain(r.resources.iter().flatten())
                .chain(r.api_groups.iter().flatten());
            assert!(all.into_iter().all(|s| !s.contains('*')), "{r:?}");
        }
    }

    #[test]
    fn long_reasons_wrap_at_spaces() {
        let lines = wrap("aaa bbb ccc ddd", 7);
        assert_eq!(lines, vec!["aaa bbb", "ccc ddd"]);
    }
}
