//! The operator's own install objects, as pure functions of a small options struct: the
//! Namespace, identity and least-privilege RBAC, the HA Deployment with its Services,
//! PodDisruptionBudget and NetworkPolicy, the validating webhook, and monitoring.
//!
//! `medplat install-manifests` prints them; `deploy/base/` (kustomize) and the Helm chart's
//! generated parts are written from them, and tests compare the chart's rendered objects with
//! them, so there is one source of truth.

pub mod files;
pub mod network;
pub mod rbac;
pub mod webhook;
pub mod workload;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

/// Fixed object names. There is one medplat per cluster (its CRDs, the `default` Platform and
/// the node agent's cluster-wide objects are singletons), so names do not depend on a release.
pub mod names {
    /// ServiceAccount, ClusterRole(Binding), Role(Binding), Deployment, PDB, NetworkPolicy.
    pub const OPERATOR: &str = "medplat-operator";
    /// The metrics Service (the Platform's ServiceMonitor selects it by its labels).
    pub const METRICS_SERVICE: &str = "medplat-metrics";
    /// The webhook Service (`--webhook-service`).
    pub const WEBHOOK_SERVICE: &str = "medplat-webhook";
    /// The ValidatingWebhookConfiguration (`--webhook-config-name`).
    pub const WEBHOOK_CONFIG: &str = "medplat";
    /// The leader-election Lease (`--lease-name`).
    pub const LEASE: &str = "medplat-operator";
    /// The webhook certificate Secret (`--webhook-cert-secret`).
    pub const WEBHOOK_SECRET: &str = "medplat-webhook-tls";
    /// The ServiceMonitor of the operator's metrics: the same name the Platform's alerting
    /// gives its own, so enabling both never scrapes the operator twice.
    pub const SERVICE_MONITOR: &str = "medplat-operator";
    /// The PrometheusRule: the same name the Platform's alerting uses.
    pub const PROMETHEUS_RULE: &str = "medplat-alerts";
}

/// Ports of the operator.
pub mod ports {
    /// `/metrics`, `/healthz`, `/readyz` (`--metrics-addr`).
    pub const METRICS: i32 = 8080;
    /// The admission webhook over HTTPS (`--webhook-addr`).
    pub const WEBHOOK: i32 = 9443;
}

/// What the webhook does when the operator cannot answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
pub enum FailurePolicy {
    /// Admit the object (the operator still refuses to run it): the cluster never locks.
    Ignore,
    /// Reject the object: no unchecked object gets in, at the price of availability.
    Fail,
}

impl FailurePolicy {
    /// The API value.
    pub fn as_str(self) -> &'static str {
        match self {
            FailurePolicy::Ignore => "Ignore",
            FailurePolicy::Fail => "Fail",
        }
    }
}

/// The knobs of an install.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallOptions {
    /// The operator's namespace (Lease, webhook Secret, Platform children).
    pub namespace: String,
    /// The operator image (also the image of workers and listeners).
    pub image: String,
    /// `IfNotPresent`, `Always` or `Never`.
    pub image_pull_policy: String,
    /// Operator replicas; more than one needs leader election.
    pub replicas: i32,
    /// Leader election on a Lease.
    pub leader_election: bool,
    /// Watch only this namespace (all when `None`).
    pub watch_namespace: Option<String>,
    /// The webhook's failure policy.
    pub failure_policy: FailurePolicy,
    /// The Secret holding the webhook certificate.
    pub webhook_cert_secret: String,
    /// Namespace (by name) whose pods may scrape the metrics port.
    pub monitoring_namespace: String,
    /// CIDRs of the API server's endpoints; empty allows its ports to any address.
    pub api_server_cidrs: Vec<String>,
    /// CIDRs the operator may probe (DataSource and object-store endpoints), any TCP port.
    pub probe_cidrs: Vec<String>,
    /// Add the ServiceMonitor (needs the Prometheus operator's CRDs).
    pub service_monitor: bool,
    /// Add the PrometheusRule of the default Platform (needs the Prometheus operator's CRDs).
    pub prometheus_rule: bool,
}

/// The private address ranges (RFC 1918): where a hospital's HIS, LIS and PACS live.
pub const PRIVATE_RANGES: &[&str] = &["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"];

impl Default for InstallOptions {
    fn default() -> Self {
        InstallOptions {
            namespace: crate::render::platform::DEFAULT_NAMESPACE.into(),
            image: crate::render::settings::WorkloadSettings::default().image,
            image_pull_policy: "IfNotPresent".into(),
            replicas: 2,
            leader_election: true,
            watch_namespace: None,
            failure_policy: FailurePolicy::Ignore,
            webhook_cert_secret: names::WEBHOOK_SECRET.into(),
            monitoring_namespace: "monitoring".into(),
            api_server_cidrs: Vec::new(),
            probe_cidrs: PRIVATE_RANGES.iter().map(|s| s.to_string()).collect(),
            service_monitor: false,
            prometheus_rule: false,
        }
    }
}

/// What can go wrong rendering the install objects.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The options contradict each other or name something invalid.
    #[error("invalid install option {option}: {message}")]
    Invalid {
        /// The option.
        option: &'static str,
        /// What is wrong.
        message: String,
    },
    /// An object could not be serialised.
    #[error("cannot serialise {what} to YAML")]
    Serialise {
        /// The object.
        what: String,
        /// The cause.
        #[source]
        source: serde_yaml::Error,
    },
    /// The PrometheusRule could not be rendered.
    #[error(transparent)]
    Rules(#[from] crate::render::platform::RenderError),
    /// A CRD could not be rendered.
    #[error(transparent)]
    Crd(#[from] crate::cli::crd::CrdError),
}

fn dns_label(option: &'static str, value: &str) -> Result<(), InstallError> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(InstallError::Invalid {
            option,
            message: format!(
                "{value:?} is not a DNS label (lower-case letters, digits, '-', at most 63)"
            ),
        })
    }
}

impl InstallOptions {
    /// Checks the options; every install function assumes they passed.
    pub fn validate(&self) -> Result<(), InstallError> {
        dns_label("namespace", &self.namespace)?;
        dns_label("monitoring-namespace", &self.monitoring_namespace)?;
        if let Some(ns) = &self.watch_namespace {
            dns_label("watch-namespace", ns)?;
        }
        if self.image.trim().is_empty() || self.image.contains(char::is_whitespace) {
            return Err(InstallError::Invalid {
                option: "image",
                message: format!("{:?} is not an image reference", self.image),
            });
        }
        if !["IfNotPresent", "Always", "Never"].contains(&self.image_pull_policy.as_str()) {
            return Err(InstallError::Invalid {
                option: "image-pull-policy",
                message: format!(
                    "{:?} is not IfNotPresent, Always or Never",
                    self.image_pull_policy
                ),
            });
        }
        if self.replicas < 1 {
            return Err(InstallError::Invalid {
                option: "replicas",
                message: format!("{} replicas: at least 1 is needed", self.replicas),
            });
        }
        if self.replicas > 1 && !self.leader_election {
            return Err(InstallError::Invalid {
                option: "replicas",
                message: format!(
                    "{} replicas without leader election would reconcile twice; enable leader election or run 1 replica",
                    self.replicas
                ),
            });
        }
        for cidr in self.api_server_cidrs.iter().chain(&self.probe_cidrs) {
            if !valid_cidr(cidr) {
                return Err(InstallError::Invalid {
                    option: "cidr",
                    message: format!("{cidr:?} is not an IPv4 or IPv6 CIDR"),
                });
            }
        }
        Ok(())
    }
}

/// Whether `s` is `address/prefix` with a prefix that fits the address family.
pub fn valid_cidr(s: &str) -> bool {
    let Some((addr, prefix)) = s.split_once('/') else {
        return false;
    };
    let Ok(prefix) = prefix.parse::<u8>() else {
        return false;
    };
    match addr.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => prefix <= 32,
        Ok(std::net::IpAddr::V6(_)) => prefix <= 128,
        Err(_) => false,
    }
}

/// One install object as YAML (ClusterRole and Role carry their rules' reasons as comments).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    /// `kind`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// The file name in `deploy/base/`.
    pub file: String,
    /// The YAML text, without a `---` separator.
    pub yaml: String,
}

fn to_yaml<T: Serialize>(what: &str, obj: &T) -> Result<String, InstallError> {
    serde_yaml::to_string(obj).map_err(|source| InstallError::Serialise {
        what: what.to_string(),
        source,
    })
}

fn document<T: Serialize + kube::Resource<DynamicType = ()>>(
    file: &str,
    obj: &T,
) -> Result<Document, InstallError> {
    let kind = T::kind(&()).to_string();
    let name = obj.meta().name.clone().unwrap_or_default();
    Ok(Document {
        yaml: to_yaml(&format!("{kind} {name}"), obj)?,
        kind,
        name,
        file: file.to_string(),
    })
}

/// Serialises an RBAC role with its rules replaced by the commented table.
fn commented_role<T: Serialize + kube::Resource<DynamicType = ()>>(
    file: &str,
    obj: &T,
    rules: &[rbac::ReasonedRule],
) -> Result<Document, InstallError> {
    let mut doc = document(file, obj)?;
    let mut value = serde_json::to_value(obj).map_err(|e| InstallError::Invalid {
        option: "rbac",
        message: e.to_string(),
    })?;
    if let Some(o) = value.as_object_mut() {
        o.remove("rules");
    }
    let head = to_yaml(&doc.name, &value)?;
    let rules = rbac::rules_yaml(rules, 0).map_err(|source| InstallError::Serialise {
        what: format!("{} {} rules", doc.kind, doc.name),
        source,
    })?;
    doc.yaml = format!("{head}{rules}");
    Ok(doc)
}

/// The operator's Namespace.
///
/// Pod Security is enforced at `privileged` and audited at `restricted`: the Platform's node
/// agent and log agent run here and read the host (hostNetwork, read-only hostPath, uid 0 with
/// every capability dropped), which "restricted" and "baseline" forbid. The operator's own pods
/// meet "restricted" (a test checks), and the audit level records any pod that does not.
pub fn namespace(opts: &InstallOptions) -> Namespace {
    let mut labels = rbac::labels("operator");
    labels.insert(
        "pod-security.kubernetes.io/enforce".into(),
        "privileged".into(),
    );
    labels.insert(
        "pod-security.kubernetes.io/audit".into(),
        "restricted".into(),
    );
    Namespace {
        metadata: ObjectMeta {
            name: Some(opts.namespace.clone()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

/// Every install object for `opts`, in apply order (without the CRDs).
pub fn documents(opts: &InstallOptions) -> Result<Vec<Document>, InstallError> {
    opts.validate()?;
    let mut docs = vec![
        document("namespace.yaml", &namespace(opts))?,
        document("serviceaccount.yaml", &workload::service_account(opts))?,
        commented_role(
            "clusterrole.yaml",
            &rbac::cluster_role(),
            &rbac::cluster_rules(),
        )?,
        document("clusterrolebinding.yaml", &rbac::cluster_role_binding(opts))?,
        commented_role("role.yaml", &rbac::role(opts), &rbac::namespace_rules(opts))?,
        document("rolebinding.yaml", &rbac::role_binding(opts))?,
        document("service-metrics.yaml", &workload::metrics_service(opts))?,
        document("service-webhook.yaml", &workload::webhook_service(opts))?,
        document("deployment.yaml", &workload::deployment(opts))?,
        document(
            "poddisruptionbudget.yaml",
            &workload::pod_disruption_budget(opts),
        )?,
        document("networkpolicy.yaml", &network::network_policy(opts))?,
        document(
            "validatingwebhookconfiguration.yaml",
            &webhook::webhook_configuration(opts),
        )?,
    ];
    if opts.service_monitor {
        let sm = webhook::service_monitor(opts);
        docs.push(Document {
            kind: "ServiceMonitor".into(),
            name: names::SERVICE_MONITOR.into(),
            file: "servicemonitor.yaml".into(),
            yaml: to_yaml("ServiceMonitor", &sm)?,
        });
    }
    if opts.prometheus_rule {
        let rule = webhook::prometheus_rule(opts)?;
        docs.push(Document {
            kind: "PrometheusRule".into(),
            name: names::PROMETHEUS_RULE.into(),
            file: "prometheusrule.yaml".into(),
            yaml: to_yaml("PrometheusRule", &rule)?,
        });
    }
    Ok(docs)
}

/// The CRDs, then every install object, as one YAML stream.
pub fn yaml_stream(opts: &InstallOptions, with_crds: bool) -> Result<String, InstallError> {
    let mut out = String::from(
        "# Generated by `medplat install-manifests`. Apply with: kubectl apply --server-side -f -\n",
    );
    if with_crds {
        for crd in crate::api::all_crds() {
            out.push_str("---\n");
            out.push_str(&crate::cli::crd::render_crd_yaml(&crd)?);
        }
    }
    for doc in documents(opts)? {
        out.push_str("---\n");
        out.push_str(&doc.yaml);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_ha() {
        let o = InstallOptions::default();
        o.validate().unwrap();
        assert_eq!(o.replicas, 2);
        assert!(o.leader_election);
        assert_eq!(o.failure_policy, FailurePolicy::Ignore);
    }

    #[test]
    fn contradictions_and_bad_values_are_refused_with_the_option_named() {
        let cases: Vec<(InstallOptions, &str)> = vec![
            (
                InstallOptions {
                    leader_election: false,
                    ..Default::default()
                },
                "replicas",
            ),
            (
                InstallOptions {
                    replicas: 0,
                    ..Default::default()
                },
                "replicas",
            ),
            (
                InstallOptions {
                    namespace: "Medplat".into(),
                    ..Default::default()
                },
                "namespace",
            ),
            (
                InstallOptions {
                    image: "a b".into(),
                    ..Default::default()
                },
                "image",
            ),
            (
                InstallOptions {
                    image_pull_policy: "Sometimes".into(),
                    ..Default::default()
                },
                "image-pull-policy",
            ),
            (
                InstallOptions {
                    probe_cidrs: vec!["10.0.0.0/33".into()],
                    ..Default::default()
                },
                "cidr",
            ),
            (
                InstallOptions {
                    api_server_cidrs: vec!["example.org".into()],
                    ..Default::default()
                },
                "cidr",
            ),
        ];
        for (opts, option) in cases {
            let err = documents(&opts).unwrap_err();
            assert!(err.to_string().contains(option), "{err}");
        }
        let single = InstallOptions {
            replicas: 1,
            leader_election: false,
            ..Default::default()
        };
        assert!(documents(&single).is_ok());
    }

    #[test]
    fn the_stream_holds_every_object_once_and_parses() {
        let opts = InstallOptions {
            service_monitor: true,
            prometheus_rule: true,
            ..Default::default()
        };
        let stream = yaml_stream(&opts, true).unwrap();
        let mut kinds = Vec::new();
        for doc in serde_yaml::Deserializer::from_str(&stream) {
            let v = serde_json::Value::deserialize(doc).unwrap();
            kinds.push(v["kind"].as_str().unwrap().to_string());
        }
        assert_eq!(
            kinds
                .iter()
                .filter(|k| *k == "CustomResourceDefinition")
                .count(),
            6
        );
        for kind in [
            "Namespace",
            "ClusterRole",
            "Deployment",
            "ValidatingWebhookConfiguration",
            "ServiceMonitor",
            "PrometheusRule",
        ] {
            assert_eq!(kinds.iter().filter(|k| *k == kind).count(), 1, "{kind}");
        }
    }

    use serde::Deserialize;
}
