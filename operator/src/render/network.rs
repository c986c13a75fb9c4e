//! NetworkPolicy building blocks: DNS egress and egress to one endpoint (host and port).
//!
//! NetworkPolicy matches IP blocks, not DNS names. An endpoint given by IP becomes a /32
//! (or /128); a DNS name with a CIDR hint uses the CIDR; a bare DNS name can only be limited
//! to its port, which the caller reports in a condition.

use std::net::IpAddr;

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicyEgressRule, NetworkPolicyPeer, NetworkPolicyPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Egress to the cluster DNS (kube-dns / CoreDNS pods, port 53 UDP and TCP).
pub fn dns_egress() -> NetworkPolicyEgressRule {
    NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector::default()),
            pod_selector: Some(LabelSelector {
                match_labels: Some([("k8s-app".to_string(), "kube-dns".to_string())].into()),
                ..LabelSelector::default()
            }),
            ..NetworkPolicyPeer::default()
        }]),
        ports: Some(vec![port(53, "UDP"), port(53, "TCP")]),
    }
}

fn port(n: i32, protocol: &str) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(n)),
        protocol: Some(protocol.into()),
        end_port: None,
    }
}

/// A host and port parsed from a URL (`https://h:9000/x`) or a bare host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or IP literal.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

/// Parses `scheme://host[:port][/path]`; the port defaults by scheme (443 https, 80 http).
pub fn parse_url(url: &str) -> Option<Endpoint> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority
        .rsplit_once('@')
        .map(|(_, a)| a)
        .unwrap_or(authority);
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        443
    } else {
        80
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        let port = after
            .strip_prefix(':')
            .and_then(|p| p.parse().ok())
            .unwrap_or(default_port);
        (h.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().ok()?),
            None => (authority.to_string(), default_port),
        }
    };
    (!host.is_empty()).then_some(Endpoint { host, port })
}

/// Egress to an endpoint, and whether it could only be limited to the port (a DNS name
/// without a CIDR).
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointEgress {
    /// The rule.
    pub rule: NetworkPolicyEgressRule,
    /// True when the destination address could not be pinned down.
    pub port_only: bool,
}

/// Egress to `host:port`, pinned by IP or by the `cidr` hint when given.
pub fn host_egress(host: &str, port_number: u16, cidr: Option<&str>) -> EndpointEgress {
    let block = match (host.parse::<IpAddr>(), cidr) {
        (Ok(IpAddr::V4(ip)), _) => Some(format!("{ip}/32")),
        (Ok(IpAddr::V6(ip)), _) => Some(format!("{ip}/128")),
        (Err(_), Some(c)) => Some(c.to_string()),
        (Err(_), None) => None,
    };
    let port_only = block.is_none();
    EndpointEgress {
        rule: NetworkPolicyEgressRule {
            to: block.map(|cidr| {
                vec![NetworkPolicyPeer {
                    ip_block: Some(IPBlock { cidr, except: None }),
                    ..NetworkPolicyPeer::default()
                }]
            }),
            ports: Some(vec![port(i32::from(port_number), "TCP")]),
        },
        port_only,
    }
}

/// Egress to the endpoint of a URL.
pub fn endpoint_egress(url: &str, cidr: Option<&str>) -> Option<NetworkPolicyEgressRule> {
    parse_url(url).map(|e| host_egress(&e.host, e.port, cidr).rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_default_and_explicit_ports() {
        assert_eq!(
            parse_url("https://fhir.local/R4"),
            Some(Endpoint {
                host: "fhir.local".into(),
                port: 443
            })
        );
        assert_eq!(
            parse_url("http://10.0.0.5:9000"),
            Some(Endpoint {
                host: "10.0.0.5".into(),
                port: 9000
            })
        );
        assert_eq!(
            parse_url("https://[fd00::1]:8443/x"),
            Some(Endpoint {
                host: "fd00::1".into(),
                port: 8443
            })
        );
        assert_eq!(parse_url("not a url"), None);
    }

    #[test]
    fn ips_are_pinned_and_dns_names_only_by_port_without_a_cidr() {
        let ip = host_egress("10.1.2.3", 5432, None);
        assert!(!ip.port_only);
        assert_eq!(
            ip.rule.to.unwrap()[0].ip_block.as_ref().unwrap().cidr,
            "10.1.2.3/32"
        );
        let dns = host_egress("db.local", 5432, None);
        assert!(dns.port_only && dns.rule.to.is_none());
        let hinted = host_egress("db.local", 5432, Some("10.20.0.0/24"));
        assert!(!hinted.port_only);
    }
}
