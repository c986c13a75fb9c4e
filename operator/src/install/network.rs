//! The operator's NetworkPolicy.
//!
//! Ingress: the webhook port from any source, because where the API server's calls come from
//! (a node address, a managed control plane's range, a konnectivity agent) is not knowable in
//! general; the metrics port only from the monitoring namespace. Kubelet probes come from the
//! node itself, which network plugins admit regardless of policy.
//!
//! Egress: DNS, the API server's ports, and TCP to the ranges DataSources and object stores
//! live in, for reachability probes. The trade-off: the probes need the sources' addresses,
//! which only the hospital knows. The default is the private ranges (RFC 1918), where HIS,
//! LIS and PACS systems live, so probes work out of the box while the internet stays closed to
//! an operator that can read Secrets by name. Sources outside the ranges show
//! `Reachable=False` (a TCP handshake never carries data, so nothing breaks but the probe)
//! until their CIDR is added. With no `apiServerCidrs` the API server's ports (443, 6443) are
//! open to any address — set them to close that path too.

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::workload::selector_labels;
use super::{InstallOptions, names, ports};
use crate::render::network::dns_egress;

/// The API server's usual ports: 443 behind the `kubernetes` Service, 6443 on endpoints.
pub const API_SERVER_PORTS: &[i32] = &[443, 6443];

fn tcp(port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        end_port: None,
    }
}

fn any_tcp() -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: None,
        protocol: Some("TCP".into()),
        end_port: None,
    }
}

fn cidr_peers(cidrs: &[String]) -> Vec<NetworkPolicyPeer> {
    cidrs
        .iter()
        .map(|c| NetworkPolicyPeer {
            ip_block: Some(IPBlock {
                cidr: c.clone(),
                except: None,
            }),
            ..NetworkPolicyPeer::default()
        })
        .collect()
}

/// The operator's NetworkPolicy for `opts`.
pub fn network_policy(opts: &InstallOptions) -> NetworkPolicy {
    let monitoring = NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(
                [(
                    "kubernetes.io/metadata.name".to_string(),
                    opts.monitoring_namespace.clone(),
                )]
                .into(),
            ),
            match_expressions: None,
        }),
        ..NetworkPolicyPeer::default()
    };
    let api_server = NetworkPolicyEgressRule {
        to: (!opts.api_server_cidrs.is_empty()).then(|| cidr_peers(&opts.api_server_cidrs)),
        ports: Some(API_SERVER_PORTS.iter().map(|p| tcp(*p)).collect()),
    };
    let mut egress = vec![dns_egress(), api_server];
    if !opts.probe_cidrs.is_empty() {
        egress.push(NetworkPolicyEgressRule {
            to: Some(cidr_peers(&opts.probe_cidrs)),
            ports: Some(vec![any_tcp()]),
        });
    }
    NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(names::OPERATOR.into()),
            namespace: Some(opts.namespace.clone()),
            labels: Some(super::rbac::labels("operator")),
            ..ObjectMeta::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels()),
                match_expressions: None,
            }),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    from: None,
                    ports: Some(vec![tcp(ports::WEBHOOK)]),
                },
                NetworkPolicyIngressRule {
                    from: Some(vec![monitoring]),
                    ports: Some(vec![tcp(ports::METRICS)]),
                },
            ]),
            egress: Some(egress),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_open_only_to_the_monitoring_namespace() {
        let np = network_policy(&InstallOptions::default());
        let spec = np.spec.unwrap();
        let ingress = spec.ingress.unwrap();
        let metrics = ingress
            .iter()
            .find(|r| r.ports.as_ref().unwrap()[0].port == Some(IntOrString::Int(ports::METRICS)))
            .unwrap();
        assert!(metrics.from.as_ref().is_some_and(|f| f.len() == 1));
        let egress = spec.egress.unwrap();
        assert_eq!(egress.len(), 3, "DNS, API server, probes");
    }

    #[test]
    fn no_probe_ranges_means_no_probe_egress() {
        let o = InstallOptions {
            probe_cidrs: vec![],
            api_server_cidrs: vec!["10.0.0.1/32".into()],
            ..Default::default()
        };
        let egress = network_policy(&o).spec.unwrap().egress.unwrap();
        assert_eq!(egress.len(), 2);
        assert!(egress[1].to.as_ref().is_some_and(|t| t.len() == 1));
    }
}
