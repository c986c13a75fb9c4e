//! The log collection children: the Vector agent DaemonSet, the aggregator StatefulSet with
//! its volumes, their ConfigMaps, Services, ServiceAccounts, RBAC and ServiceMonitors.
//!
//! [`render`] validates first and returns the problems instead of objects when anything is
//! wrong, so the controller keeps the last good children and reports the problems in a
//! condition.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec, StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    HostPathVolumeSource, ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PodSecurityContext, PodSpec, PodTemplateSpec, ResourceRequirements, SeccompProfile,
    SecretKeySelector, SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec,
    Toleration, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::DynamicObject;

use crate::api::platform::Platform;
use crate::api::storage_tier::StorageTierSpec;

use super::rules::service_monitor;
use super::vector::{
    self, AGENT_NAME, AGGREGATOR_NAME, AGGREGATOR_PORT, DATA_DIR, HOST_LOG_MOUNT, METRICS_PORT,
    TIER_MOUNT_ROOT, VectorConfigs,
};
use super::vector_check::{ConfigProblem, validate};
use super::{RenderError, child_meta, selector_labels};
use crate::render::common::{Child, short_hash};

/// The pod-template annotation carrying the configuration hash, so a new config rolls pods.
pub const CONFIG_HASH_ANNOTATION: &str = "medplat.io/config-hash";
/// The key of `vector.yaml` in the ConfigMaps.
pub const CONFIG_KEY: &str = "vector.yaml";
/// Where the agent keeps its checkpoints (the position database) on the host.
pub const AGENT_HOST_DATA_DIR: &str = "/var/lib/medplat-log-agent";
/// The uid the aggregator runs as (Vector's distroless `nonroot` user).
pub const AGGREGATOR_UID: i64 = 65532;

/// Every log-collection child, ready to apply.
#[derive(Clone, Debug)]
pub struct LoggingChildren {
    /// The agent's `vector.yaml`.
    pub agent_config: ConfigMap,
    /// The aggregator's `vector.yaml`.
    pub aggregator_config: ConfigMap,
    /// The agent's ServiceAccount.
    pub agent_service_account: ServiceAccount,
    /// The aggregator's ServiceAccount.
    pub aggregator_service_account: ServiceAccount,
    /// Read access to pods, namespaces and nodes for the agent's `kubernetes_logs` source.
    pub agent_cluster_role: ClusterRole,
    /// Binds [`Self::agent_cluster_role`] to the agent.
    pub agent_cluster_role_binding: ClusterRoleBinding,
    /// The agent DaemonSet.
    pub agent: DaemonSet,
    /// The aggregator StatefulSet.
    pub aggregator: StatefulSet,
    /// The aggregator's Service (events from agents, metrics).
    pub aggregator_service: Service,
    /// A headless Service over the agents, for scraping their metrics.
    pub agent_metrics_service: Service,
    /// ServiceMonitors for the agent and the aggregator (apply when the CRD exists).
    pub service_monitors: Vec<DynamicObject>,
    /// The hash of both configurations, for `status.loggingConfigHash`.
    pub config_hash: String,
}

impl LoggingChildren {
    /// The children in apply order (configuration and identity before the workloads). The
    /// ServiceMonitors are separate ([`Self::service_monitors`]): apply them only where the
    /// Prometheus operator's CRDs exist.
    pub fn children(&self) -> Result<Vec<Child>, crate::render::common::RenderError> {
        Ok(vec![
            Child::from_typed(&self.agent_config)?,
            Child::from_typed(&self.aggregator_config)?,
            Child::from_typed(&self.agent_service_account)?,
            Child::from_typed(&self.aggregator_service_account)?,
            Child::from_typed(&self.agent_cluster_role)?,
            Child::from_typed(&self.agent_cluster_role_binding)?,
            Child::from_typed(&self.aggregator_service)?,
            Child::from_typed(&self.agent_metrics_service)?,
            Child::from_typed(&self.aggregator)?,
            Child::from_typed(&self.agent)?,
        ])
    }
}

/// A selector on exactly these labels.
pub(crate) fn match_labels(sel: &BTreeMap<String, String>) -> LabelSelector {
    LabelSelector {
        match_labels: Some(sel.clone()),
        ..LabelSelector::default()
    }
}

/// Pod-template metadata: the selector labels and the configuration hash, so a changed
/// configuration rolls the pods.
fn hashed_template_meta(sel: BTreeMap<String, String>, hash: &str) -> ObjectMeta {
    ObjectMeta {
        labels: Some(sel),
        annotations: Some(BTreeMap::from([(
            CONFIG_HASH_ANNOTATION.into(),
            hash.into(),
        )])),
        ..ObjectMeta::default()
    }
}

fn labels(component: &str) -> BTreeMap<String, String> {
    selector_labels(component)
}

fn config_map(
    platform: &Platform,
    name: &str,
    ns: &str,
    component: &str,
    yaml: String,
) -> ConfigMap {
    ConfigMap {
        metadata: child_meta(platform, name, ns, component, &BTreeMap::new()),
        data: Some(BTreeMap::from([(CONFIG_KEY.to_string(), yaml)])),
        ..ConfigMap::default()
    }
}

/// An environment variable from a field of the pod (`spec.nodeName`, `metadata.name`).
pub(crate) fn env_field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn resources(cpu_req: &str, mem_req: &str, cpu_lim: &str, mem_lim: &str) -> ResourceRequirements {
    let q = |s: &str| Quantity(s.to_string());
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".into(), q(cpu_req)),
            ("memory".into(), q(mem_req)),
        ])),
        limits: Some(BTreeMap::from([
            ("cpu".into(), q(cpu_lim)),
            ("memory".into(), q(mem_lim)),
        ])),
        ..ResourceRequirements::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    }
}

fn port(name: &str, p: u16) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: i32::from(p),
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

fn service_port(name: &str, p: u16) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port: i32::from(p),
        target_port: Some(IntOrString::String(name.into())),
        ..ServicePort::default()
    }
}

fn locked_down(run_as_root: bool) -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(!run_as_root),
        privileged: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..SecurityContext::default()
    }
}

/// Tolerates every taint, so every node is covered (REFERENCE.md: "scan pods stuck on tainted
/// nodes" is a top complaint).
pub fn tolerate_everything() -> Vec<Toleration> {
    vec![Toleration {
        operator: Some("Exists".into()),
        ..Toleration::default()
    }]
}

fn agent_daemonset(platform: &Platform, ns: &str, hash: &str) -> DaemonSet {
    let sel = labels("log-agent");
    let container = Container {
        name: "vector".into(),
        image: Some(platform.spec.logging.agent_image.clone()),
        args: Some(vec!["--config".into(), format!("/etc/vector/{CONFIG_KEY}")]),
        env: Some(vec![
            env_field("VECTOR_SELF_NODE_NAME", "spec.nodeName"),
            env_field("VECTOR_SELF_POD_NAME", "metadata.name"),
            env_field("VECTOR_SELF_POD_NAMESPACE", "metadata.namespace"),
        ]),
        ports: Some(vec![port("metrics", METRICS_PORT)]),
        resources: Some(resources("50m", "64Mi", "500m", "256Mi")),
        // Root, to read the host's root-owned log files (audit.log is 0600); every capability
        // is dropped, so root here cannot bypass file permissions or touch the host otherwise.
        security_context: Some(locked_down(true)),
        volume_mounts: Some(vec![
            mount("config", "/etc/vector", true),
            mount("host-logs", HOST_LOG_MOUNT, true),
            mount("data", DATA_DIR, false),
        ]),
        ..Container::default()
    };
    let volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: AGENT_NAME.into(),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "host-logs".into(),
            host_path: Some(HostPathVolumeSource {
                path: "/var/log".into(),
                type_: Some("Directory".into()),
            }),
            ..Volume::default()
        },
        Volume {
            // The position database must survive pod restarts, or files are re-read or skipped.
            name: "data".into(),
            host_path: Some(HostPathVolumeSource {
                path: AGENT_HOST_DATA_DIR.into(),
                type_: Some("DirectoryOrCreate".into()),
            }),
            ..Volume::default()
        },
    ];
    DaemonSet {
        metadata: child_meta(platform, AGENT_NAME, ns, "log-agent", &BTreeMap::new()),
        spec: Some(DaemonSetSpec {
            selector: match_labels(&sel),
            template: PodTemplateSpec {
                metadata: Some(hashed_template_meta(sel, hash)),
                spec: Some(PodSpec {
                    service_account_name: Some(AGENT_NAME.into()),
                    tolerations: Some(tolerate_everything()),
                    priority_class_name: Some("system-node-critical".into()),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..DaemonSetSpec::default()
        }),
        ..DaemonSet::default()
    }
}

fn pvc(name: &str, class: Option<String>, size: &str, modes: Vec<String>) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(modes),
            storage_class_name: class,
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".into(), Quantity(size.into()))])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

/// The claim name of a volume-backed tier inside the aggregator StatefulSet.
pub fn tier_claim_name(tier: &str) -> String {
    format!("tier-{tier}")
}

fn aggregator_statefulset(
    platform: &Platform,
    ns: &str,
    hash: &str,
    configs: &VectorConfigs,
) -> StatefulSet {
    let sel = labels("log-aggregator");
    let storage = &platform.spec.logging.aggregator_storage;
    let mut claims = vec![pvc(
        "data",
        storage.storage_class_name.clone(),
        &storage.size,
        vec!["ReadWriteOnce".into()],
    )];
    let mut mounts = vec![
        mount("config", "/etc/vector", true),
        mount("data", DATA_DIR, false),
    ];
    for (name, tier) in &configs.tier_volumes {
        if let Some(v) = &tier.backend.volume {
            claims.push(pvc(
                &tier_claim_name(name),
                Some(v.storage_class_name.clone()),
                &v.size,
                v.access_modes
                    .iter()
                    .map(|m| m.as_str().to_string())
                    .collect(),
            ));
            mounts.push(mount(
                &tier_claim_name(name),
                &format!("{TIER_MOUNT_ROOT}/{name}"),
                false,
            ));
        }
    }
    let env: Vec<EnvVar> = configs
        .aggregator_secret_env
        .iter()
        .map(|(var, (secret, key))| EnvVar {
            name: var.clone(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret.clone(),
                    key: key.clone(),
                    optional: Some(false),
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        })
        .collect();
    let container = Container {
        name: "vector".into(),
        image: Some(platform.spec.logging.aggregator_image.clone()),
        args: Some(vec!["--config".into(), format!("/etc/vector/{CONFIG_KEY}")]),
        env: (!env.is_empty()).then_some(env),
        ports: Some(vec![
            port("vector", AGGREGATOR_PORT),
            port("metrics", METRICS_PORT),
        ]),
        resources: Some(resources("100m", "128Mi", "1", "512Mi")),
        security_context: Some(locked_down(false)),
        volume_mounts: Some(mounts),
        ..Container::default()
    };
    StatefulSet {
        metadata: child_meta(
            platform,
            AGGREGATOR_NAME,
            ns,
            "log-aggregator",
            &BTreeMap::new(),
        ),
        spec: Some(StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(AGGREGATOR_NAME.into()),
            selector: match_labels(&sel),
            template: PodTemplateSpec {
                metadata: Some(hashed_template_meta(sel, hash)),
                spec: Some(PodSpec {
                    service_account_name: Some(AGGREGATOR_NAME.into()),
                    automount_service_account_token: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(AGGREGATOR_UID),
                        run_as_group: Some(AGGREGATOR_UID),
                        fs_group: Some(AGGREGATOR_UID),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![container],
                    volumes: Some(vec![Volume {
                        name: "config".into(),
                        config_map: Some(ConfigMapVolumeSource {
                            name: AGGREGATOR_NAME.into(),
                            ..ConfigMapVolumeSource::default()
                        }),
                        ..Volume::default()
                    }]),
                    ..PodSpec::default()
                }),
            },
            // Audit data: the claims outlive the StatefulSet (the Kubernetes default, made explicit).
            persistent_volume_claim_retention_policy: Some(
                k8s_openapi::api::apps::v1::StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Retain".into()),
                    when_scaled: Some("Retain".into()),
                },
            ),
            volume_claim_templates: Some(claims),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

fn service(
    platform: &Platform,
    name: &str,
    ns: &str,
    component: &str,
    ports: Vec<ServicePort>,
    headless: bool,
) -> Service {
    Service {
        metadata: child_meta(platform, name, ns, component, &BTreeMap::new()),
        spec: Some(ServiceSpec {
            selector: Some(labels(component)),
            ports: Some(ports),
            cluster_ip: headless.then(|| "None".to_string()),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn service_account(platform: &Platform, name: &str, ns: &str, component: &str) -> ServiceAccount {
    ServiceAccount {
        metadata: child_meta(platform, name, ns, component, &BTreeMap::new()),
        ..ServiceAccount::default()
    }
}

/// Renders and validates every log-collection child.
///
/// Returns the problems instead when the Platform's logging settings or the generated
/// configurations are not safe to roll out.
pub fn render(
    platform: &Platform,
    ns: &str,
    tiers: &BTreeMap<String, StorageTierSpec>,
) -> Result<LoggingChildren, LoggingError> {
    let configs = vector::render(platform, ns, tiers);
    let problems = validate(platform, tiers, &configs);
    if !problems.is_empty() {
        return Err(LoggingError::Invalid(problems));
    }
    let agent_yaml = vector::to_yaml(&configs.agent)?;
    let aggregator_yaml = vector::to_yaml(&configs.aggregator)?;
    let agent_hash = short_hash(&agent_yaml);
    let aggregator_hash = short_hash(&aggregator_yaml);
    let config_hash = short_hash(&format!("{agent_hash}{aggregator_hash}"));
    let agent_cluster_role = ClusterRole {
        metadata: child_meta(platform, AGENT_NAME, "", "log-agent", &BTreeMap::new()),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["pods".into(), "namespaces".into(), "nodes".into()]),
            verbs: vec!["get".into(), "list".into(), "watch".into()],
            ..PolicyRule::default()
        }]),
        ..ClusterRole::default()
    };
    let agent_cluster_role_binding = ClusterRoleBinding {
        metadata: child_meta(platform, AGENT_NAME, "", "log-agent", &BTreeMap::new()),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: AGENT_NAME.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: AGENT_NAME.into(),
            namespace: Some(ns.into()),
            ..Subject::default()
        }]),
    };
    Ok(LoggingChildren {
        agent_config: config_map(platform, AGENT_NAME, ns, "log-agent", agent_yaml),
        aggregator_config: config_map(
            platform,
            AGGREGATOR_NAME,
            ns,
            "log-aggregator",
            aggregator_yaml,
        ),
        agent_service_account: service_account(platform, AGENT_NAME, ns, "log-agent"),
        aggregator_service_account: service_account(
            platform,
            AGGREGATOR_NAME,
            ns,
            "log-aggregator",
        ),
        agent_cluster_role,
        agent_cluster_role_binding,
        agent: agent_daemonset(platform, ns, &agent_hash),
        aggregator: aggregator_statefulset(platform, ns, &aggregator_hash, &configs),
        aggregator_service: service(
            platform,
            AGGREGATOR_NAME,
            ns,
            "log-aggregator",
            vec![
                service_port("vector", AGGREGATOR_PORT),
                service_port("metrics", METRICS_PORT),
            ],
            false,
        ),
        agent_metrics_service: service(
            platform,
            &format!("{AGENT_NAME}-metrics"),
            ns,
            "log-agent",
            vec![service_port("metrics", METRICS_PORT)],
            true,
        ),
        service_monitors: vec![
            service_monitor(
                platform,
                AGGREGATOR_NAME,
                ns,
                "log-aggregator",
                &selector_pairs("log-aggregator"),
                "metrics",
            ),
            service_monitor(
                platform,
                AGENT_NAME,
                ns,
                "log-agent",
                &selector_pairs("log-agent"),
                "metrics",
            ),
        ],
        config_hash,
    })
}

fn selector_pairs(component: &str) -> [(&'static str, &str); 2] {
    [
        ("app.kubernetes.io/name", "medplat"),
        ("app.kubernetes.io/component", component),
    ]
}

/// Why the log-collection children were not rendered.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// The settings or the generated configuration are invalid; nothing may be rolled out.
    #[error("the logging configuration is invalid: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<ConfigProblem>),
    /// Serialising failed.
    #[error(transparent)]
    Render(#[from] RenderError),
}
