//! The operator's RBAC against the reviewed list in `deploy/rbac-reviewed.yaml`: the binary's,
//! the kustomize base's and the Helm chart's rules must equal it, hold no wildcard and no
//! cluster-wide Secret list/watch, and cover every permission the operator grants to others.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::rbac::v1::PolicyRule;
use medplat::install::{InstallOptions, rbac};
use medplat::manifests::load;
use serde::Deserialize;
use serde_json::json;

use super::common::{
    Permission, flatten, helm_template, kustomize, rendered_objects, repo, rules_of,
};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Entry {
    api_group: String,
    resource: String,
    #[serde(default)]
    resource_names: Vec<String>,
    verbs: Vec<String>,
    reason: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Reviewed {
    cluster_role: Vec<Entry>,
    role: Vec<Entry>,
}

fn reviewed_set(entries: &[Entry]) -> BTreeSet<Permission> {
    let mut out = BTreeSet::new();
    for e in entries {
        assert!(
            e.reason.split_whitespace().count() >= 5,
            "{}/{}: the reason must say why ({:?})",
            e.api_group,
            e.resource,
            e.reason
        );
        for v in &e.verbs {
            let p = (
                e.api_group.clone(),
                e.resource.clone(),
                e.resource_names.clone(),
                v.clone(),
            );
            assert!(
                out.insert(p.clone()),
                "{p:?} is listed twice in deploy/rbac-reviewed.yaml"
            );
        }
    }
    out
}

fn reviewed() -> (BTreeSet<Permission>, BTreeSet<Permission>) {
    let text = std::fs::read_to_string(repo().join("deploy/rbac-reviewed.yaml")).unwrap();
    let r: Reviewed = serde_yaml::from_str(&text).unwrap();
    (reviewed_set(&r.cluster_role), reviewed_set(&r.role))
}

/// What differs between the granted and the reviewed permissions, as readable lines.
fn differences(
    what: &str,
    granted: &BTreeSet<Permission>,
    reviewed: &BTreeSet<Permission>,
) -> Vec<String> {
    let show = |p: &Permission| {
        let names = if p.2.is_empty() {
            String::new()
        } else {
            format!(" (names {:?})", p.2)
        };
        format!(
            "{} on {}/{}{names}",
            p.3,
            if p.0.is_empty() { "core" } else { &p.0 },
            p.1
        )
    };
    granted
        .difference(reviewed)
        .map(|p| format!("{what} grants {} which deploy/rbac-reviewed.yaml does not list: add it with a reason", show(p)))
        .chain(
            reviewed
                .difference(granted)
                .map(|p| format!("deploy/rbac-reviewed.yaml lists {} which {what} no longer grants: remove it", show(p))),
        )
        .collect()
}

/// Wildcards and cluster-wide Secret reads in a ClusterRole's rules.
fn forbidden(what: &str, rules: &[PolicyRule]) -> Vec<String> {
    let mut out = Vec::new();
    for p in flatten(rules) {
        if [&p.0, &p.1, &p.3].iter().any(|s| s.contains('*')) || p.2.iter().any(|n| n.contains('*'))
        {
            out.push(format!("{what}: wildcard in {p:?}"));
        }
        if p.0.is_empty() && p.1 == "secrets" && ["list", "watch"].contains(&p.3.as_str()) {
            out.push(format!("{what}: cluster-wide {} of Secrets", p.3));
        }
        if ["escalate", "bind", "impersonate"].contains(&p.3.as_str()) {
            out.push(format!("{what}: {} on {}", p.3, p.1));
        }
    }
    for r in rules {
        if r.non_resource_urls.is_some() {
            out.push(format!("{what}: nonResourceURLs {:?}", r.non_resource_urls));
        }
    }
    out
}

/// Every ClusterRole/Role source that must match the reviewed list: the binary, deploy/base,
/// and the chart rendered by Helm (when its engine is installed).
fn sources() -> Vec<(String, Vec<PolicyRule>, Vec<PolicyRule>)> {
    let opts = InstallOptions::default();
    let binary_cluster: Vec<PolicyRule> =
        rbac::cluster_rules().into_iter().map(|(r, _)| r).collect();
    let binary_role: Vec<PolicyRule> = rbac::namespace_rules(&opts)
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    let base = kustomize(&repo().join("deploy/base"));
    let mut out = vec![
        (
            "medplat install-manifests".to_string(),
            binary_cluster,
            binary_role,
        ),
        (
            "deploy/base".to_string(),
            rules_of(&base, "ClusterRole"),
            rules_of(&base, "Role"),
        ),
    ];
    if let Some(t) = helm_template(&json!({}), "medplat-system") {
        let objs = rendered_objects(&t);
        out.push((
            "the Helm chart".to_string(),
            rules_of(&objs, "ClusterRole"),
            rules_of(&objs, "Role"),
        ));
    }
    out
}

#[test]
fn every_clusterrole_and_role_equals_the_reviewed_list() {
    let (cluster, role) = reviewed();
    let mut problems = Vec::new();
    for (what, cluster_rules, role_rules) in sources() {
        problems.extend(differences(
            &format!("the ClusterRole of {what}"),
            &flatten(&cluster_rules),
            &cluster,
        ));
        problems.extend(differences(
            &format!("the Role of {what}"),
            &flatten(&role_rules),
            &role,
        ));
        problems.extend(forbidden(&what, &cluster_rules));
    }
    assert!(
        problems.is_empty(),
        "RBAC differs from the review:\n{}",
        problems.join("\n")
    );
}

#[test]
fn a_new_verb_or_resource_fails_until_reviewed() {
    let (cluster, _) = reviewed();
    let mut rules: Vec<PolicyRule> = rbac::cluster_rules().into_iter().map(|(r, _)| r).collect();
    rules[0].verbs.push("update".into());
    rules.push(PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(vec!["secrets".into()]),
        verbs: vec!["list".into(), "*".into()],
        ..PolicyRule::default()
    });
    let diff = differences("the test", &flatten(&rules), &cluster);
    // update on each of the first rule's four resources, list and * on Secrets.
    assert_eq!(diff.len(), 6, "{diff:?}");
    assert!(
        diff.iter()
            .any(|d| d.contains("update on medplat.io/storagetiers")),
        "{diff:?}"
    );
    let bad = forbidden("the test", &rules);
    assert!(bad.iter().any(|b| b.contains("wildcard")), "{bad:?}");
    assert!(
        bad.iter()
            .any(|b| b.contains("cluster-wide list of Secrets")),
        "{bad:?}"
    );
}

/// Whether `held` grants `wanted` (a rule with resourceNames grants only those names).
fn covers(held: &BTreeSet<Permission>, wanted: &Permission) -> bool {
    held.iter().any(|h| {
        h.0 == wanted.0
            && h.1 == wanted.1
            && h.3 == wanted.3
            && (h.2.is_empty()
                || (!wanted.2.is_empty() && wanted.2.iter().all(|n| h.2.contains(n))))
    })
}

/// RBAC escalation prevention: the API server lets the operator create a (Cluster)Role only
/// with permissions it holds itself. kubesim does not enforce RBAC, so this is checked here
/// against every role medplat renders: the node agent's, the log agent's and AccessPolicy Roles.
#[test]
fn the_operator_holds_every_permission_it_grants() {
    let held = flatten(
        &rbac::cluster_rules()
            .into_iter()
            .map(|(r, _)| r)
            .collect::<Vec<_>>(),
    );
    let objects = load(&[repo().join("examples/hospital")]).unwrap();
    let mut granted: BTreeMap<String, Vec<PolicyRule>> = BTreeMap::new();
    for child in super::pod_security::every_rendered_child(&objects) {
        if child.kind == "ClusterRole" || child.kind == "Role" {
            let rules: Vec<PolicyRule> =
                serde_json::from_value(child.object["rules"].clone()).unwrap();
            granted.insert(child.display(), rules);
        }
    }
    assert!(
        granted.keys().any(|k| k.contains("medplat-node-agent")),
        "{granted:?}"
    );
    assert!(
        granted.keys().any(|k| k.contains("medplat-log-agent")),
        "{granted:?}"
    );
    assert!(
        granted.keys().any(|k| k.starts_with("Role ")),
        "no AccessPolicy Role rendered: {granted:?}"
    );
    let mut missing = Vec::new();
    for (role, rules) in &granted {
        for p in flatten(rules) {
            if !covers(&held, &p) {
                missing.push(format!(
                    "{role} grants {p:?}, which the operator's ClusterRole does not hold"
                ));
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}
