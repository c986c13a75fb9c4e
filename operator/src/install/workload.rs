//! The operator's workload: ServiceAccount, Deployment, the metrics and webhook Services and
//! the PodDisruptionBudget.
//!
//! Two replicas elect a leader on a Lease; only the leader reconciles, both serve the webhook.
//! Anti-affinity is *preferred*, not required: with required anti-affinity a one-node cluster
//! (kind, a lab) leaves the standby Pending forever, and a two-node cluster cannot place the
//! surge pod of a rolling update. A co-located standby still covers a crashed leader, and the
//! PodDisruptionBudget keeps one replica through node drains.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction,
    ObjectFieldSelector, PodAffinityTerm, PodAntiAffinity, PodSpec, PodTemplateSpec, Probe,
    Service, ServiceAccount, ServicePort, ServiceSpec, TopologySpreadConstraint, Volume,
    VolumeMount, WeightedPodAffinityTerm,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::rbac::labels;
use super::{InstallOptions, names, ports};
use crate::render::pod_security::{
    restricted_container_security_context, restricted_pod_security_context,
};
use crate::render::settings::resources;

/// How long in-flight reconciles may finish after SIGTERM (`--shutdown-grace-secs`).
pub const SHUTDOWN_GRACE_SECS: i64 = 20;
/// The pod's termination grace: the shutdown grace plus time to release the Lease and stop
/// the servers, so the kubelet never kills a replica that is still shutting down cleanly.
pub const TERMINATION_GRACE_SECS: i64 = SHUTDOWN_GRACE_SECS + 10;

/// The labels selecting the operator's pods (stable: they are in an immutable selector).
pub fn selector_labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "medplat".to_string()),
        (
            "app.kubernetes.io/component".to_string(),
            "operator".to_string(),
        ),
    ])
}

fn selector() -> LabelSelector {
    LabelSelector {
        match_labels: Some(selector_labels()),
        match_expressions: None,
    }
}

fn meta(name: &str, opts: &InstallOptions, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(opts.namespace.clone()),
        labels: Some(labels(component)),
        ..ObjectMeta::default()
    }
}

/// The operator's ServiceAccount.
pub fn service_account(opts: &InstallOptions) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(names::OPERATOR, opts, "operator"),
        ..ServiceAccount::default()
    }
}

/// The operator's command line.
pub fn args(opts: &InstallOptions) -> Vec<String> {
    let mut args = vec![
        "run".to_string(),
        format!("--metrics-addr=0.0.0.0:{}", ports::METRICS),
        format!("--webhook-addr=0.0.0.0:{}", ports::WEBHOOK),
        format!("--webhook-cert-secret={}", opts.webhook_cert_secret),
        format!("--webhook-config-name={}", names::WEBHOOK_CONFIG),
        format!("--webhook-service={}", names::WEBHOOK_SERVICE),
        format!("--shutdown-grace-secs={SHUTDOWN_GRACE_SECS}"),
    ];
    if opts.leader_election {
        args.push("--leader-election".into());
        args.push(format!("--lease-name={}", names::LEASE));
    }
    if let Some(ns) = &opts.watch_namespace {
        args.push(format!("--watch-namespace={ns}"));
    }
    args
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: path.into(),
            }),
            ..EnvVarSource::default()
        }),
    }
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("metrics".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Probe::default()
    }
}

fn container_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

fn affinity() -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(selector()),
                        topology_key: "kubernetes.io/hostname".into(),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

/// The operator's Deployment.
pub fn deployment(opts: &InstallOptions) -> Deployment {
    let container = Container {
        name: "operator".into(),
        image: Some(opts.image.clone()),
        image_pull_policy: Some(opts.image_pull_policy.clone()),
        args: Some(args(opts)),
        env: Some(vec![
            field_env("POD_NAMESPACE", "metadata.namespace"),
            field_env("MEDPLAT_POD_NAME", "metadata.name"),
            env("MEDPLAT_LOG_FORMAT", "json"),
            env("MEDPLAT_WORKER_IMAGE", &opts.image),
        ]),
        ports: Some(vec![
            container_port("metrics", ports::METRICS),
            container_port("webhook", ports::WEBHOOK),
        ]),
        liveness_probe: Some(Probe {
            initial_delay_seconds: Some(5),
            ..http_probe("/healthz", 10, 3)
        }),
        readiness_probe: Some(http_probe("/readyz", 5, 3)),
        resources: Some(resources("100m", "128Mi", "1", "512Mi")),
        security_context: Some(restricted_container_security_context()),
        volume_mounts: Some(vec![VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    };
    let template_labels = selector_labels()
        .into_iter()
        .chain([(
            "app.kubernetes.io/part-of".to_string(),
            "medplat".to_string(),
        )])
        .collect();
    Deployment {
        metadata: meta(names::OPERATOR, opts, "operator"),
        spec: Some(DeploymentSpec {
            replicas: Some(opts.replicas),
            revision_history_limit: Some(5),
            selector: selector(),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(template_labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(names::OPERATOR.into()),
                    security_context: Some(restricted_pod_security_context()),
                    termination_grace_period_seconds: Some(TERMINATION_GRACE_SECS),
                    affinity: Some(affinity()),
                    topology_spread_constraints: Some(vec![TopologySpreadConstraint {
                        max_skew: 1,
                        topology_key: "topology.kubernetes.io/zone".into(),
                        when_unsatisfiable: "ScheduleAnyway".into(),
                        label_selector: Some(selector()),
                        ..TopologySpreadConstraint::default()
                    }]),
                    containers: vec![container],
                    volumes: Some(vec![Volume {
                        name: "tmp".into(),
                        empty_dir: Some(EmptyDirVolumeSource {
                            medium: None,
                            size_limit: Some(Quantity("16Mi".into())),
                        }),
                        ..Volume::default()
                    }]),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

fn service(opts: &InstallOptions, name: &str, component: &str, port: ServicePort) -> Service {
    Service {
        metadata: meta(name, opts, component),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels()),
            ports: Some(vec![port]),
            type_: Some("ClusterIP".into()),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The metrics Service. It carries the labels the Platform's ServiceMonitor selects
/// (`rules::OPERATOR_SERVICE_SELECTOR`) and the port name it scrapes.
pub fn metrics_service(opts: &InstallOptions) -> Service {
    service(
        opts,
        names::METRICS_SERVICE,
        "operator",
        ServicePort {
            name: Some(crate::render::platform::rules::OPERATOR_METRICS_PORT.into()),
            port: ports::METRICS,
            target_port: Some(IntOrString::String("metrics".into())),
            protocol: Some("TCP".into()),
            ..ServicePort::default()
        },
    )
}

/// The webhook Service the API server calls on 443.
pub fn webhook_service(opts: &InstallOptions) -> Service {
    service(
        opts,
        names::WEBHOOK_SERVICE,
        "webhook",
        ServicePort {
            name: Some("webhook".into()),
            port: 443,
            target_port: Some(IntOrString::String("webhook".into())),
            protocol: Some("TCP".into()),
            ..ServicePort::default()
        },
    )
}

/// Keeps at least one replica through voluntary disruptions (drains, upgrades).
pub fn pod_disruption_budget(opts: &InstallOptions) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(names::OPERATOR, opts, "operator"),
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(1)),
            selector: Some(selector()),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::pod_security::restricted_violations;

    #[test]
    fn the_operator_pod_is_restricted_and_outlives_its_shutdown_grace() {
        let d = deployment(&InstallOptions::default());
        let spec = d.spec.unwrap().template.spec.unwrap();
        assert_eq!(restricted_violations(&spec), Vec::<String>::new());
        assert!(spec.termination_grace_period_seconds.unwrap() > SHUTDOWN_GRACE_SECS);
    }

    #[test]
    fn args_follow_the_options() {
        let o = InstallOptions {
            watch_namespace: Some("clinical".into()),
            ..Default::default()
        };
        let a = args(&o);
        assert!(a.contains(&"--leader-election".to_string()));
        assert!(a.contains(&"--watch-namespace=clinical".to_string()));
        let single = InstallOptions {
            replicas: 1,
            leader_election: false,
            ..Default::default()
        };
        assert!(!args(&single).iter().any(|x| x.starts_with("--lease")));
    }

    #[test]
    fn the_metrics_service_is_what_the_platforms_service_monitor_selects() {
        let s = metrics_service(&InstallOptions::default());
        let labels = s.metadata.labels.unwrap();
        for (k, v) in crate::render::platform::rules::OPERATOR_SERVICE_SELECTOR {
            assert_eq!(labels.get(*k).map(String::as_str), Some(*v));
        }
    }
}
