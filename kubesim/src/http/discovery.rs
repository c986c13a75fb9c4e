//! Discovery documents: `/version`, `/api`, `/apis`, resource lists, and aggregated discovery.
//!
//! Reproduces <https://kubernetes.io/docs/concepts/overview/kubernetes-api/#discovery-api>
//! (legacy `APIGroupList`/`APIResourceList` and aggregated `apidiscovery.k8s.io/v2`
//! `APIGroupDiscoveryList`, chosen by the `Accept` header as kubectl 1.32 and kube 5 ask).

use serde_json::{Value, json};

use crate::registry::{Registry, ResourceType};

/// The version kubesim reports (k8s-openapi's `v1_33` feature).
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-kubesim",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-04-23T00:00:00Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `/api`.
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn gv(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

fn group_entry(group: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": gv(group, v), "version": v}))
        .collect();
    let preferred = vs.first().cloned().unwrap_or(json!({}));
    json!({"name": group, "versions": vs, "preferredVersion": preferred})
}

/// `/apis` in the legacy format.
pub fn group_list(reg: &Registry) -> Value {
    let groups: Vec<Value> = reg
        .groups()
        .iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, vs)| group_entry(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/{group}`.
pub fn group(reg: &Registry, name: &str) -> Option<Value> {
    let (g, vs) = reg
        .groups()
        .into_iter()
        .find(|(g, _)| g == name && !g.is_empty())?;
    let mut e = group_entry(&g, &vs);
    e["kind"] = json!("APIGroup");
    e["apiVersion"] = json!("v1");
    Some(e)
}

/// Subresources of a type: (name, kind, group, version, verbs).
fn subresources(
    rt: &ResourceType,
) -> Vec<(&'static str, String, String, String, Vec<&'static str>)> {
    let mut out = Vec::new();
    if rt.status_subresource {
        out.push((
            "status",
            rt.kind.clone(),
            rt.group.clone(),
            rt.version.clone(),
            vec!["get", "patch", "update"],
        ));
    }
    if rt.scale_subresource {
        out.push((
            "scale",
            "Scale".into(),
            "autoscaling".into(),
            "v1".into(),
            vec!["get", "patch", "update"],
        ));
    }
    if rt.group.is_empty() && rt.plural == "pods" {
        out.push((
            "eviction",
            "Eviction".into(),
            "policy".into(),
            "v1".into(),
            vec!["create"],
        ));
    }
    if rt.group.is_empty() && rt.plural == "namespaces" {
        out.push((
            "finalize",
            "Namespace".into(),
            String::new(),
            "v1".into(),
            vec!["update"],
        ));
    }
    out
}

/// `/api/v1` or `/apis/{g}/{v}`.
pub fn resource_list(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    if !reg.has_group_version(group, version) {
        return None;
    }
    let mut resources = Vec::new();
    for rt in reg.in_group_version(group, version) {
        resources.push(json!({
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": rt.verbs(),
            "shortNames": rt.short_names,
            "categories": rt.categories,
            "storageVersionHash": storage_hash(&rt),
        }));
        for (sub, kind, g, v, verbs) in subresources(&rt) {
            let mut e = json!({
                "name": format!("{}/{}", rt.plural, sub),
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": kind,
                "verbs": verbs,
            });
            if g != rt.group || v != rt.version {
                e["group"] = json!(g);
                e["version"] = json!(v);
            }
            resources.push(e);
        }
    }
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv(group, version),
        "resources": resources,
    }))
}

fn storage_hash(rt: &ResourceType) -> String {
    use base64::Engine;
    let text = format!("{}/{}/{}", rt.storage.group, rt.storage_version, rt.kind);
    let digest: u64 = text.bytes().fold(1469598103934665603u64, |h, b| {
        (h ^ b as u64).wrapping_mul(1099511628211)
    });
    base64::engine::general_purpose::STANDARD.encode(digest.to_be_bytes())
}

fn discovery_resource(rt: &ResourceType) -> Value {
    let subs: Vec<Value> = subresources(rt)
        .into_iter()
        .map(|(sub, kind, g, v, verbs)| {
            json!({
                "subresource": sub,
                "responseKind": {"group": g, "version": v, "kind": kind},
                "verbs": verbs,
            })
        })
        .collect();
    let mut r = json!({
        "resource": rt.plural,
        "responseKind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
        "scope": if rt.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": rt.singular,
        "verbs": rt.verbs(),
    });
    if !rt.short_names.is_empty() {
        r["shortNames"] = json!(rt.short_names);
    }
    if !rt.categories.is_empty() {
        r["categories"] = json!(rt.categories);
    }
    if !subs.is_empty() {
        r["subresources"] = Value::Array(subs);
    }
    r
}

/// Aggregated discovery for `/api` (`core`) or `/apis`, in `apidiscovery.k8s.io/{version}`.
pub fn aggregated(reg: &Registry, core: bool, api_version: &str) -> Value {
    let items: Vec<Value> = reg
        .groups()
        .iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(g, vs)| {
            let versions: Vec<Value> = vs
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = reg
                        .in_group_version(g, v)
                        .iter()
                        .map(|rt| discovery_resource(rt))
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            let meta = if g.is_empty() {
                json!({})
            } else {
                json!({"name": g})
            };
            json!({"metadata": meta, "versions": versions})
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{api_version}"),
        "metadata": {},
        "items": items,
    })
}

/// Which aggregated discovery version an `Accept` header asks for, if any.
pub fn wants_aggregated(accept: &str) -> Option<&'static str> {
    for part in accept.split(',') {
        if part.contains("as=APIGroupDiscoveryList") && part.contains("g=apidiscovery.k8s.io") {
            if part.contains("v=v2beta1") {
                return Some("v2beta1");
            }
            if part.contains("v=v2") {
                return Some("v2");
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    // https://kubernetes.io/docs/concepts/overview/kubernetes-api/#aggregated-discovery
    #[test]
    fn aggregated_discovery_lists_scope_and_subresources() {
        let reg = Registry::with_builtins();
        let core = aggregated(&reg, true, "v2");
        let pods = core["items"][0]["versions"][0]["resources"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["resource"] == "pods"))
            .cloned()
            .expect("pods");
        assert_eq!(pods["scope"], "Namespaced");
        assert_eq!(pods["subresources"][1]["subresource"], "eviction");
        let apis = aggregated(&reg, false, "v2");
        let names: Vec<&str> = apis["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|i| i["metadata"]["name"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        for g in [
            "apps",
            "batch",
            "policy",
            "admissionregistration.k8s.io",
            "events.k8s.io",
        ] {
            assert!(names.contains(&g), "{g} in {names:?}");
        }
        assert_eq!(
            wants_aggregated(
                "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
            ),
            Some("v2")
        );
        assert_eq!(wants_aggregated("application/json, */*"), None);
        let nodes = resource_list(&reg, "", "v1")
            .and_then(|l| {
                l["resources"]
                    .as_array()
                    .and_then(|a| a.iter().find(|r| r["name"] == "nodes").cloned())
            })
            .expect("nodes");
        assert_eq!(nodes["namespaced"], false);
    }
}
