//! The desired children of a DataSource: a ServiceAccount, an egress NetworkPolicy to the
//! source's endpoint for the pods that read it, and for HL7 v2 push sources the MLLP listener
//! Deployment, Service and ingress NetworkPolicy.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, PersistentVolumeClaimVolumeSource, PodSpec,
    PodTemplateSpec, Probe, Service, ServiceAccount, ServicePort, ServiceSpec, TCPSocketAction,
    Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::common::{
    AUDIT, Child, DOMAIN, LEVEL, Owner, RenderError, child_name, hardened_affinity, source_label,
    truncate_label,
};
use super::network::{dns_egress, host_egress, parse_url};
use super::pipeline::TIERS_DIR;
use super::pod_security::{restricted_container_security_context, restricted_pod_security_context};
use super::settings::{WorkloadSettings, resources};
use super::tier_claim::tier_claim_name;
use crate::api::data_source::DataSource;
use crate::policy::source_level;

/// The rendered children and what the renderer learned about the egress policy.
#[derive(Clone, Debug, PartialEq)]
pub struct DataSourceChildren {
    /// The children to apply.
    pub children: Vec<Child>,
    /// Set when egress could only be limited to the port (a DNS host without a CIDR): the
    /// condition message explaining the limit.
    pub egress_limit: Option<String>,
}

/// The name of the source's ServiceAccount, NetworkPolicy and listener objects.
pub fn source_child_name(source: &str) -> String {
    child_name("medplat-source", source, 52)
}

/// Renders the desired children of a DataSource.
pub fn render_data_source_children(
    ds: &DataSource,
    settings: &WorkloadSettings,
) -> Result<DataSourceChildren, RenderError> {
    let name = ds
        .metadata
        .name
        .clone()
        .ok_or_else(|| RenderError::Missing("the DataSource has no name".into()))?;
    let owner = Owner {
        api_version: crate::api::API_VERSION.into(),
        kind: "DataSource".into(),
        name: name.clone(),
        namespace: ds.metadata.namespace.clone(),
        uid: ds.metadata.uid.clone().unwrap_or_default(),
    };
    let child = source_child_name(&name);
    let mut children = vec![Child::from_typed(&ServiceAccount {
        metadata: owner.child_meta(&child, "source"),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    })?];

    let c = &ds.spec.connector;
    let endpoint = if let Some(sql) = c.postgres.as_ref().or(c.mysql.as_ref()) {
        Some((sql.host.clone(), sql.port, sql.cidr.clone()))
    } else if let Some(f) = &c.fhir {
        parse_url(&f.base_url).map(|e| (e.host, e.port, f.cidr.clone()))
    } else {
        None
    };
    let mut egress_limit = None;
    if let Some((host, port, cidr)) = endpoint {
        let egress = host_egress(&host, port, cidr.as_deref());
        if egress.port_only {
            egress_limit = Some(format!(
                "host {host} is a DNS name and NetworkPolicy matches addresses only: egress is limited to TCP port {port} on any address; set the connector's cidr to pin it"
            ));
        }
        let np = NetworkPolicy {
            metadata: owner.child_meta(&child, "source"),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([(source_label(&name), "read".to_string())])),
                    ..LabelSelector::default()
                }),
                policy_types: Some(vec!["Egress".into()]),
                egress: Some(vec![dns_egress(), egress.rule]),
                ingress: None,
            }),
        };
        children.push(Child::from_typed(&np)?);
    }

    if let Some(h) = &c.hl7v2 {
        let level = source_level(&ds.spec);
        let mut pod_labels = BTreeMap::from([
            (
                "app.kubernetes.io/name".to_string(),
                "medplat-listener".to_string(),
            ),
            ("medplat.io/source".to_string(), truncate_label(&name)),
        ]);
        let selector = pod_labels.clone();
        pod_labels.extend(owner.labels("listener"));
        pod_labels.insert(LEVEL.into(), level.to_string());
        pod_labels.insert(
            DOMAIN.into(),
            truncate_label(&ds.spec.classification.domain),
        );

        let landing_dir = format!("{TIERS_DIR}/{}/{}", h.landing.tier, h.landing.path);
        let mut args = vec![
            "worker".to_string(),
            "listen".to_string(),
            "--port".to_string(),
            h.port.to_string(),
            "--charset".to_string(),
            h.charset.label().to_string(),
            "--landing-dir".to_string(),
            landing_dir,
            "--source".to_string(),
            format!(
                "{}/{name}",
                ds.metadata.namespace.as_deref().unwrap_or_default()
            ),
            // Who and at which level, for the audit event of every landed message.
            "--level".to_string(),
            level.to_string(),
            "--service-account".to_string(),
            child.clone(),
        ];
        if !h.message_types.is_empty() {
            args.push("--message-types".into());
            args.push(h.message_types.join(","));
        }
        let probe = Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(i32::from(h.port)),
                host: None,
            }),
            period_seconds: Some(10),
            ..Probe::default()
        };
        let deployment = Deployment {
            metadata: owner.child_meta(&child, "listener"),
            spec: Some(DeploymentSpec {
                replicas: Some(i32::try_from(h.replicas).unwrap_or(1)),
                selector: LabelSelector {
                    match_labels: Some(selector.clone()),
                    ..LabelSelector::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                        labels: Some(pod_labels),
                        annotations: Some(BTreeMap::from([(
                            AUDIT.to_string(),
                            "true".to_string(),
                        )])),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        service_account_name: Some(child.clone()),
                        automount_service_account_token: Some(false),
                        security_context: Some(restricted_pod_security_context()),
                        affinity: level.is_sensitive().then(hardened_affinity),
                        enable_service_links: Some(false),
                        containers: vec![Container {
                            name: "listener".into(),
                            image: Some(settings.image.clone()),
                            image_pull_policy: Some(settings.image_pull_policy.clone()),
                            args: Some(args),
                            ports: Some(vec![ContainerPort {
                                name: Some("mllp".into()),
                                container_port: i32::from(h.port),
                                protocol: Some("TCP".into()),
                                ..ContainerPort::default()
                            }]),
                            readiness_probe: Some(probe.clone()),
                            liveness_probe: Some(probe),
                            resources: Some(resources("50m", "64Mi", "500m", "256Mi")),
                            security_context: Some(restricted_container_security_context()),
                            volume_mounts: Some(vec![
                                VolumeMount {
                                    name: "landing".into(),
                                    mount_path: format!("{TIERS_DIR}/{}", h.landing.tier),
                                    ..VolumeMount::default()
                                },
                                VolumeMount {
                                    name: "tmp".into(),
                                    mount_path: "/tmp".into(),
                                    ..VolumeMount::default()
                                },
                            ]),
                            ..Container::default()
                        }],
                        volumes: Some(vec![
                            Volume {
                                name: "landing".into(),
                                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                                    claim_name: tier_claim_name(&h.landing.tier),
                                    read_only: Some(false),
                                }),
                                ..Volume::default()
                            },
                            Volume {
                                name: "tmp".into(),
                                empty_dir: Some(EmptyDirVolumeSource::default()),
                                ..Volume::default()
                            },
                        ]),
                        ..PodSpec::default()
                    }),
                },
                ..DeploymentSpec::default()
            }),
            ..Deployment::default()
        };
        children.push(Child::from_typed(&deployment)?);
        children.push(Child::from_typed(&Service {
            metadata: owner.child_meta(&child, "listener"),
            spec: Some(ServiceSpec {
                selector: Some(selector.clone()),
                ports: Some(vec![ServicePort {
                    name: Some("mllp".into()),
                    port: i32::from(h.port),
                    target_port: Some(IntOrString::String("mllp".into())),
                    protocol: Some("TCP".into()),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        })?);
        // Senders (the HIS integration engine) are outside the cluster, so ingress is open on
        // the MLLP port only; the listener itself may reach nothing but DNS.
        children.push(Child::from_typed(&NetworkPolicy {
            metadata: owner.child_meta(&format!("{child}-listener"), "listener"),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(LabelSelector {
                    match_labels: Some(selector),
                    ..LabelSelector::default()
                }),
                policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: None,
                    ports: Some(vec![NetworkPolicyPort {
                        port: Some(IntOrString::Int(i32::from(h.port))),
                        protocol: Some("TCP".into()),
                        end_port: None,
                    }]),
                }]),
                egress: Some(vec![dns_egress()]),
            }),
        })?);
    }
    Ok(DataSourceChildren {
        children,
        egress_limit,
    })
}
