//! The node-agent DaemonSet and its identity: ServiceAccount, RBAC limited to NodeCompliance,
//! and a ValidatingAdmissionPolicy that lets each agent write only its own node's object.
//!
//! # Privileges, and why
//! The node agent is the one documented exception to Pod Security "restricted":
//! - **`hostNetwork: true`** — the `net.*` sysctls under `/proc/sys/net` belong to the network
//!   namespace of the reader; only in the host's namespace does the agent see the host's values.
//! - **`hostPath: /` mounted read-only at `/host`** — the baseline reads `/etc`, `/proc`,
//!   `/sys` and the kubelet's files. `readOnly: true` and a read-only root filesystem mean the
//!   agent can change nothing on the host (it never remediates; REFERENCE.md warns about
//!   auto-remediation rebooting nodes).
//! - **uid 0 with every capability dropped** — files such as `sshd_config` and the kubelet
//!   config are `0600 root`, readable only through their owner bits; root without
//!   `CAP_DAC_OVERRIDE` reads exactly what its owner bits allow and nothing more. No
//!   capability is added, privilege escalation is off, seccomp is `RuntimeDefault`.
//! - **tolerates every taint** — a node the agent cannot run on can never prove it is hardened.
//!
//! Not needed and not granted: `privileged`, `hostPID`, `hostIPC`, any added capability.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::{
    MatchResources, NamedRuleWithOperations, ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding, ValidatingAdmissionPolicyBindingSpec,
    ValidatingAdmissionPolicySpec, Validation,
};
use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, HostPathVolumeSource, PodSpec, PodTemplateSpec, ResourceRequirements,
    SeccompProfile, SecurityContext, ServiceAccount, Volume, VolumeMount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::api::platform::Platform;
use crate::node_agent::DEFAULT_ROOT;

use super::logging::{env_field, match_labels, tolerate_everything};
use super::{child_meta, selector_labels};
use crate::render::common::{Child, RenderError};

/// The name of the DaemonSet, its ServiceAccount and its RBAC objects.
pub const NODE_AGENT_NAME: &str = "medplat-node-agent";
const COMPONENT: &str = "node-agent";

/// Every node-agent child.
#[derive(Clone, Debug)]
pub struct NodeAgentChildren {
    /// The agent's ServiceAccount.
    pub service_account: ServiceAccount,
    /// Create, read and patch NodeCompliance objects and their status; nothing else.
    pub cluster_role: ClusterRole,
    /// Binds the role to the ServiceAccount.
    pub cluster_role_binding: ClusterRoleBinding,
    /// Lets each agent touch only the NodeCompliance named after its own node (needs the
    /// node-name claim of bound service-account tokens, Kubernetes 1.30+).
    pub admission_policy: ValidatingAdmissionPolicy,
    /// Binds the admission policy, denying violations.
    pub admission_policy_binding: ValidatingAdmissionPolicyBinding,
    /// The DaemonSet.
    pub daemon_set: DaemonSet,
}

impl NodeAgentChildren {
    /// The children in apply order (identity and permissions before the workload).
    pub fn children(&self) -> Result<Vec<Child>, RenderError> {
        Ok(vec![
            Child::from_typed(&self.service_account)?,
            Child::from_typed(&self.cluster_role)?,
            Child::from_typed(&self.cluster_role_binding)?,
            Child::from_typed(&self.admission_policy)?,
            Child::from_typed(&self.admission_policy_binding)?,
            Child::from_typed(&self.daemon_set)?,
        ])
    }
}

/// The agent's command line for `platform`.
pub fn agent_args(platform: &Platform) -> Vec<String> {
    let h = &platform.spec.hardening;
    let mut args = vec![
        "node-agent".to_string(),
        "--root".into(),
        DEFAULT_ROOT.into(),
        "--interval".into(),
        h.interval.clone(),
    ];
    if !h.disabled_kernel_modules.is_empty() {
        args.push("--disabled-kernel-modules".into());
        args.push(h.disabled_kernel_modules.join(","));
    }
    args
}

fn daemon_set(platform: &Platform, ns: &str) -> DaemonSet {
    let sel = selector_labels(COMPONENT);
    let q = |s: &str| Quantity(s.to_string());
    let container = Container {
        name: "node-agent".into(),
        image: Some(platform.spec.hardening.agent_image.clone()),
        args: Some(agent_args(platform)),
        env: Some(vec![env_field("NODE_NAME", "spec.nodeName")]),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".into(), q("10m")),
                ("memory".into(), q("32Mi")),
            ])),
            limits: Some(BTreeMap::from([
                ("cpu".into(), q("200m")),
                ("memory".into(), q("128Mi")),
            ])),
            ..ResourceRequirements::default()
        }),
        security_context: Some(SecurityContext {
            run_as_user: Some(0),
            run_as_non_root: Some(false),
            privileged: Some(false),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..SeccompProfile::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: "host".into(),
            mount_path: DEFAULT_ROOT.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    };
    let node_selector = (!platform.spec.hardening.node_selector.is_empty())
        .then(|| platform.spec.hardening.node_selector.clone());
    DaemonSet {
        metadata: child_meta(platform, NODE_AGENT_NAME, ns, COMPONENT, &BTreeMap::new()),
        spec: Some(DaemonSetSpec {
            selector: match_labels(&sel),
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDaemonSet {
                    max_unavailable: Some(IntOrString::String("25%".into())),
                    ..RollingUpdateDaemonSet::default()
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(sel),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(NODE_AGENT_NAME.into()),
                    host_network: Some(true),
                    dns_policy: Some("ClusterFirstWithHostNet".into()),
                    tolerations: Some(tolerate_everything()),
                    node_selector,
                    priority_class_name: Some("system-node-critical".into()),
                    containers: vec![container],
                    volumes: Some(vec![Volume {
                        name: "host".into(),
                        host_path: Some(HostPathVolumeSource {
                            path: "/".into(),
                            type_: Some("Directory".into()),
                        }),
                        ..Volume::default()
                    }]),
                    ..PodSpec::default()
                }),
            },
            ..DaemonSetSpec::default()
        }),
        ..DaemonSet::default()
    }
}

/// The CEL rule of the admission policy: the agent's service account may only touch the
/// NodeCompliance whose name is the node its token was issued on.
pub fn own_node_only_expression(ns: &str) -> String {
    format!(
        "request.userInfo.username != 'system:serviceaccount:{ns}:{NODE_AGENT_NAME}' || \
         ('authentication.kubernetes.io/node-name' in request.userInfo.extra && \
         request.userInfo.extra['authentication.kubernetes.io/node-name'][0] == request.name)"
    )
}

/// Every node-agent child for `platform`, in namespace `ns`.
pub fn render(platform: &Platform, ns: &str) -> NodeAgentChildren {
    let meta = |name: &str, namespace: &str| {
        child_meta(platform, name, namespace, COMPONENT, &BTreeMap::new())
    };
    let cluster_role = ClusterRole {
        metadata: meta(NODE_AGENT_NAME, ""),
        rules: Some(vec![
            PolicyRule {
                api_groups: Some(vec![crate::api::GROUP.into()]),
                resources: Some(vec!["nodecompliances".into()]),
                verbs: vec!["get".into(), "create".into()],
                ..PolicyRule::default()
            },
            PolicyRule {
                api_groups: Some(vec![crate::api::GROUP.into()]),
                resources: Some(vec!["nodecompliances/status".into()]),
                verbs: vec!["get".into(), "patch".into()],
                ..PolicyRule::default()
            },
        ]),
        ..ClusterRole::default()
    };
    let cluster_role_binding = ClusterRoleBinding {
        metadata: meta(NODE_AGENT_NAME, ""),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: NODE_AGENT_NAME.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: NODE_AGENT_NAME.into(),
            namespace: Some(ns.into()),
            ..Subject::default()
        }]),
    };
    let admission_policy = ValidatingAdmissionPolicy {
        metadata: meta(NODE_AGENT_NAME, ""),
        spec: Some(ValidatingAdmissionPolicySpec {
            failure_policy: Some("Fail".into()),
            match_constraints: Some(MatchResources {
                resource_rules: Some(vec![NamedRuleWithOperations {
                    api_groups: Some(vec![crate::api::GROUP.into()]),
                    api_versions: Some(vec![crate::api::VERSION.into()]),
                    operations: Some(vec!["CREATE".into(), "UPDATE".into()]),
                    resources: Some(vec![
                        "nodecompliances".into(),
                        "nodecompliances/status".into(),
                    ]),
                    ..NamedRuleWithOperations::default()
                }]),
                ..MatchResources::default()
            }),
            validations: Some(vec![Validation {
                expression: own_node_only_expression(ns),
                message: Some(
                    "the node agent may only write the NodeCompliance of its own node".into(),
                ),
                ..Validation::default()
            }]),
            ..ValidatingAdmissionPolicySpec::default()
        }),
        ..ValidatingAdmissionPolicy::default()
    };
    let admission_policy_binding = ValidatingAdmissionPolicyBinding {
        metadata: meta(NODE_AGENT_NAME, ""),
        spec: Some(ValidatingAdmissionPolicyBindingSpec {
            policy_name: Some(NODE_AGENT_NAME.into()),
            validation_actions: Some(vec!["Deny".into()]),
            ..ValidatingAdmissionPolicyBindingSpec::default()
        }),
    };
    NodeAgentChildren {
        service_account: ServiceAccount {
            metadata: meta(NODE_AGENT_NAME, ns),
            ..ServiceAccount::default()
        },
        cluster_role,
        cluster_role_binding,
        admission_policy,
        admission_policy_binding,
        daemon_set: daemon_set(platform, ns),
    }
}
