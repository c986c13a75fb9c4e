//! Pod Security "restricted" for every pod template medplat can render (issue 8): the
//! operator's own Deployment, and every child the renderers make from the hospital example and
//! the violation examples, with every pipeline forced to render both its CronJob and a run Job.
//!
//! The exceptions are the host readers of the Platform, each held to exactly the privileges its
//! module documents: the node agent (`render/platform/node_agent.rs`) and the log agent
//! (`render/platform/logging.rs`, which reads `/var/log` and keeps its read positions on the host).

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::PodSpec;
use medplat::api::access_policy::AccessPolicy;
use medplat::api::data_source::DataSource;
use medplat::api::pipeline::Pipeline;
use medplat::api::platform::Platform;
use medplat::api::resolved::{Mounts, ResolvedPipeline};
use medplat::api::storage_tier::{StorageTier, StorageTierSpec};
use medplat::controller::pipeline::decide;
use medplat::install::InstallOptions;
use medplat::manifests::{LoadedObject, load};
use medplat::render::access_policy::render_access_policy_children;
use medplat::render::data_source::render_data_source_children;
use medplat::render::pipeline::{PipelineRenderInput, render_pipeline_children};
use medplat::render::platform::rules::{RulesTarget, alerting_children};
use medplat::render::platform::{DEFAULT_NAMESPACE, logging, node_agent};
use medplat::render::pod_security::restricted_violations;
use medplat::render::settings::WorkloadSettings;
use medplat::render::{Child, tier_claim::render_tier_claim};
use serde::de::DeserializeOwned;

use super::common::repo;

fn now() -> Timestamp {
    "2026-11-28T00:00:00Z".parse().unwrap()
}

fn of_kind<T: DeserializeOwned>(objects: &[LoadedObject], kind: &str) -> Vec<T> {
    objects
        .iter()
        .filter(|o| o.kind() == kind)
        .filter_map(|o| {
            let mut v = o.value.clone();
            // Renderers label children with the owner's uid; a stored object has one.
            v["metadata"]["uid"] = format!("uid-{}", o.name()).into();
            serde_json::from_value(v).ok()
        })
        .collect()
}

/// Every child the renderers make from `objects`, as the reconcilers would call them, with
/// every pipeline also rendered as if it may run and a run was requested (so its Job is too).
pub fn every_rendered_child(objects: &[LoadedObject]) -> Vec<Child> {
    let tiers: Vec<StorageTier> = of_kind(objects, "StorageTier");
    let sources: Vec<DataSource> = of_kind(objects, "DataSource");
    let policies: Vec<AccessPolicy> = of_kind(objects, "AccessPolicy");
    let pipelines: Vec<Pipeline> = of_kind(objects, "Pipeline");
    let platforms: Vec<Platform> = of_kind(objects, "Platform");
    let tier_specs: BTreeMap<String, StorageTierSpec> = tiers
        .iter()
        .map(|t| (t.metadata.name.clone().unwrap_or_default(), t.spec.clone()))
        .collect();
    let source_specs = sources
        .iter()
        .map(|s| (s.metadata.name.clone().unwrap_or_default(), s.spec.clone()))
        .collect();
    let settings = WorkloadSettings::default();
    let mut out = Vec::new();
    for s in &sources {
        if let Ok(c) = render_data_source_children(s, &settings) {
            out.extend(c.children);
        }
    }
    for p in &policies {
        if let Ok(c) = render_access_policy_children(p, &source_specs, &tier_specs, now()) {
            out.extend(c.children);
        }
    }
    for p in &pipelines {
        let decision = decide(p, &sources, &tiers, &policies, now());
        let resolved =
            ResolvedPipeline::build(p, &sources, &tiers, &policies, &Mounts::in_cluster()).ok();
        for (may_run, cronjob_exists, request) in [
            (true, false, Some("2026-11-28T00:00:00Z")),
            (false, true, None),
        ] {
            let input = PipelineRenderInput {
                pipeline: p,
                decision: &decision,
                resolved: resolved.as_ref(),
                settings: &settings,
                may_run,
                cronjob_exists,
                pending_run_request: request,
            };
            if let Ok(children) = render_pipeline_children(&input) {
                out.extend(children);
            }
        }
        for t in &tiers {
            if let Ok(Some(claim)) = render_tier_claim(t, "clinical") {
                out.push(claim);
            }
        }
    }
    for p in &platforms {
        if let Ok(c) = node_agent::render(p, DEFAULT_NAMESPACE).children() {
            out.extend(c);
        }
        if let Ok(l) = logging::render(p, DEFAULT_NAMESPACE, &tier_specs)
            && let Ok(c) = l.children()
        {
            out.extend(c);
        }
        if let Ok(c) = alerting_children(p, DEFAULT_NAMESPACE, RulesTarget::PrometheusRule) {
            out.extend(c);
        }
    }
    out
}

/// The pod spec a workload object runs, if it is one.
fn pod_spec(kind: &str, object: &serde_json::Value) -> Option<PodSpec> {
    let spec = match kind {
        "Pod" => object.get("spec"),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
            object.pointer("/spec/template/spec")
        }
        "CronJob" => object.pointer("/spec/jobTemplate/spec/template/spec"),
        _ => None,
    }?;
    Some(serde_json::from_value(spec.clone()).unwrap())
}

fn objects() -> Vec<LoadedObject> {
    load(&[
        repo().join("examples/hospital"),
        repo().join("examples/violations"),
    ])
    .unwrap()
}

/// The workloads allowed to break "restricted", and exactly how.
fn documented_exceptions() -> BTreeMap<&'static str, Vec<&'static str>> {
    BTreeMap::from([
        (
            node_agent::NODE_AGENT_NAME,
            vec![
                "hostNetwork is true",
                "volume host uses hostPath",
                "container node-agent does not run as non-root (runAsNonRoot: true)",
                "container node-agent runAsUser is 0",
            ],
        ),
        (
            medplat::render::platform::vector::AGENT_NAME,
            vec![
                "volume host-logs uses hostPath",
                "volume data uses hostPath",
                "container vector does not run as non-root (runAsNonRoot: true)",
            ],
        ),
    ])
}

#[test]
fn every_pod_template_medplat_renders_is_restricted_but_the_documented_host_readers() {
    let mut templates = vec![(
        "Deployment medplat-operator".to_string(),
        "medplat-operator".to_string(),
        pod_spec(
            "Deployment",
            &serde_json::to_value(medplat::install::workload::deployment(
                &InstallOptions::default(),
            ))
            .unwrap(),
        )
        .unwrap(),
    )];
    for child in every_rendered_child(&objects()) {
        if let Some(spec) = pod_spec(&child.kind, &child.object) {
            templates.push((child.display(), child.name.clone(), spec));
        }
    }
    let kinds: Vec<&str> = templates
        .iter()
        .map(|(d, _, _)| d.split(' ').next().unwrap())
        .collect();
    for kind in ["Deployment", "CronJob", "Job", "DaemonSet", "StatefulSet"] {
        assert!(
            kinds.contains(&kind),
            "no {kind} rendered, the matrix lost coverage: {kinds:?}"
        );
    }
    let exceptions = documented_exceptions();
    let mut problems = Vec::new();
    for (display, name, spec) in &templates {
        let mut got = restricted_violations(spec);
        got.sort();
        let mut allowed: Vec<String> = exceptions
            .get(name.as_str())
            .map(|v| v.iter().map(|s| s.to_string()).collect())
            .unwrap_or_default();
        allowed.sort();
        if got != allowed {
            problems.push(format!(
                "{display}: violations {got:?}, documented {allowed:?}"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} pod templates checked:\n{}",
        templates.len(),
        problems.join("\n")
    );
}

#[test]
fn the_node_agent_takes_exactly_its_documented_privileges_and_no_more() {
    let platform = of_kind::<Platform>(&objects(), "Platform")
        .into_iter()
        .next()
        .unwrap();
    let ds = node_agent::render(&platform, DEFAULT_NAMESPACE).daemon_set;
    let spec = ds.spec.unwrap().template.spec.unwrap();
    // Documented: host network (net.* sysctls), / read-only at /host, uid 0 without capabilities.
    assert_eq!(spec.host_network, Some(true));
    assert_ne!(spec.host_pid, Some(true), "hostPID is not needed");
    assert_ne!(spec.host_ipc, Some(true), "hostIPC is not needed");
    let volumes = spec.volumes.unwrap();
    assert_eq!(volumes.len(), 1);
    assert_eq!(volumes[0].host_path.as_ref().unwrap().path, "/");
    let c = &spec.containers[0];
    assert!(
        c.volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .all(|m| m.read_only == Some(true))
    );
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.privileged, Some(false));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    let caps = sc.capabilities.as_ref().unwrap();
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
    assert!(caps.add.is_none(), "no capability is added");
    assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
    // Tolerates every taint: a node it cannot run on can never prove it is hardened.
    assert!(
        spec.tolerations
            .unwrap()
            .iter()
            .any(|t| t.operator.as_deref() == Some("Exists") && t.key.is_none())
    );
}
