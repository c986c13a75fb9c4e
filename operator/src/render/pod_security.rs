//! The Pod Security Standards "restricted" profile: security contexts that meet it, and a
//! checker every rendered pod template is tested with.
//!
//! The checks follow <https://kubernetes.io/docs/concepts/security/pod-security-standards/>
//! (baseline and restricted, policy version 1.33).

use k8s_openapi::api::core::v1::{
    Capabilities, Container, PodSecurityContext, PodSpec, SeccompProfile, SecurityContext,
};

/// The non-root user medplat's images run as (distroless `nonroot`).
pub const NONROOT_UID: i64 = 65532;

/// A pod security context that meets "restricted": non-root, RuntimeDefault seccomp.
pub fn restricted_pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(NONROOT_UID),
        run_as_group: Some(NONROOT_UID),
        fs_group: Some(NONROOT_UID),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..PodSecurityContext::default()
    }
}

/// A container security context that meets "restricted", with a read-only root filesystem.
pub fn restricted_container_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..SecurityContext::default()
    }
}

/// Volume types "restricted" allows.
const ALLOWED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// Sysctls "baseline" allows.
const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

/// Every way `spec` breaks the "restricted" profile; empty when it passes.
pub fn restricted_violations(spec: &PodSpec) -> Vec<String> {
    let mut out = Vec::new();
    if spec.host_network == Some(true) {
        out.push("hostNetwork is true".into());
    }
    if spec.host_pid == Some(true) {
        out.push("hostPID is true".into());
    }
    if spec.host_ipc == Some(true) {
        out.push("hostIPC is true".into());
    }
    let pod_sc = spec.security_context.clone().unwrap_or_default();
    if pod_sc.run_as_user == Some(0) {
        out.push("pod runAsUser is 0".into());
    }
    if let Some(se) = &pod_sc.se_linux_options
        && (se.user.is_some() || se.role.is_some())
    {
        out.push("pod seLinuxOptions sets user or role".into());
    }
    if let Some(sysctls) = &pod_sc.sysctls {
        for s in sysctls {
            if !SAFE_SYSCTLS.contains(&s.name.as_str()) {
                out.push(format!("unsafe sysctl {}", s.name));
            }
        }
    }
    let pod_seccomp = pod_sc.seccomp_profile.as_ref().map(|p| p.type_.as_str());
    if pod_seccomp == Some("Unconfined") {
        out.push("pod seccompProfile is Unconfined".into());
    }
    for v in spec.volumes.iter().flatten() {
        let value = serde_json::to_value(v).unwrap_or_default();
        let kinds: Vec<&String> = value
            .as_object()
            .map(|o| o.keys().filter(|k| *k != "name").collect())
            .unwrap_or_default();
        for k in kinds {
            if !ALLOWED_VOLUMES.contains(&k.as_str()) {
                out.push(format!("volume {} uses {k}", v.name));
            }
        }
    }
    let containers = spec.containers.iter().map(|c| ("container", c)).chain(
        spec.init_containers
            .iter()
            .flatten()
            .map(|c| ("initContainer", c)),
    );
    for (what, c) in containers {
        out.extend(container_violations(what, c, &pod_sc, pod_seccomp));
    }
    out
}

fn container_violations(
    what: &str,
    c: &Container,
    pod_sc: &PodSecurityContext,
    pod_seccomp: Option<&str>,
) -> Vec<String> {
    let mut out = Vec::new();
    let name = format!("{what} {}", c.name);
    let sc = c.security_context.clone().unwrap_or_default();
    if sc.privileged == Some(true) {
        out.push(format!("{name} is privileged"));
    }
    if sc.allow_privilege_escalation != Some(false) {
        out.push(format!(
            "{name} does not set allowPrivilegeEscalation: false"
        ));
    }
    let non_root = sc.run_as_non_root.or(pod_sc.run_as_non_root);
    if non_root != Some(true) {
        out.push(format!(
            "{name} does not run as non-root (runAsNonRoot: true)"
        ));
    }
    if sc.run_as_user == Some(0) {
        out.push(format!("{name} runAsUser is 0"));
    }
    let seccomp = sc
        .seccomp_profile
        .as_ref()
        .map(|p| p.type_.as_str())
        .or(pod_seccomp);
    if !matches!(seccomp, Some("RuntimeDefault") | Some("Localhost")) {
        out.push(format!(
            "{name} has no RuntimeDefault or Localhost seccompProfile"
        ));
    }
    let caps = sc.capabilities.clone().unwrap_or_default();
    if !caps.drop.iter().flatten().any(|d| d == "ALL") {
        out.push(format!("{name} does not drop ALL capabilities"));
    }
    for add in caps.add.iter().flatten() {
        if add != "NET_BIND_SERVICE" {
            out.push(format!("{name} adds capability {add}"));
        }
    }
    if let Some(se) = &sc.se_linux_options
        && (se.user.is_some() || se.role.is_some())
    {
        out.push(format!("{name} seLinuxOptions sets user or role"));
    }
    if sc.proc_mount.as_deref().is_some_and(|p| p != "Default") {
        out.push(format!("{name} procMount is not Default"));
    }
    for p in c.ports.iter().flatten() {
        if p.host_port.is_some_and(|h| h != 0) {
            out.push(format!(
                "{name} uses hostPort {}",
                p.host_port.unwrap_or_default()
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(container_sc: Option<SecurityContext>) -> PodSpec {
        PodSpec {
            security_context: Some(restricted_pod_security_context()),
            containers: vec![Container {
                name: "c".into(),
                security_context: container_sc,
                ..Container::default()
            }],
            ..PodSpec::default()
        }
    }

    #[test]
    fn the_restricted_builders_pass() {
        assert_eq!(
            restricted_violations(&pod(Some(restricted_container_security_context()))),
            Vec::<String>::new()
        );
    }

    #[test]
    fn each_weakening_is_caught() {
        let base = restricted_container_security_context();
        let cases: Vec<(SecurityContext, &str)> = vec![
            (
                SecurityContext {
                    privileged: Some(true),
                    ..base.clone()
                },
                "is privileged",
            ),
            (
                SecurityContext {
                    allow_privilege_escalation: None,
                    ..base.clone()
                },
                "allowPrivilegeEscalation",
            ),
            (
                SecurityContext {
                    run_as_user: Some(0),
                    ..base.clone()
                },
                "runAsUser is 0",
            ),
            (
                SecurityContext {
                    capabilities: Some(Capabilities {
                        drop: None,
                        add: None,
                    }),
                    ..base.clone()
                },
                "drop ALL",
            ),
            (
                SecurityContext {
                    capabilities: Some(Capabilities {
                        drop: Some(vec!["ALL".into()]),
                        add: Some(vec!["SYS_ADMIN".into()]),
                    }),
                    ..base.clone()
                },
                "adds capability SYS_ADMIN",
            ),
            (
                SecurityContext {
                    seccomp_profile: Some(SeccompProfile {
                        type_: "Unconfined".into(),
                        localhost_profile: None,
                    }),
                    ..base.clone()
                },
                "seccompProfile",
            ),
        ];
        for (sc, expected) in cases {
            let v = restricted_violations(&pod(Some(sc)));
            assert!(v.iter().any(|m| m.contains(expected)), "{expected}: {v:?}");
        }
    }

    #[test]
    fn host_namespaces_and_hostpath_volumes_are_caught() {
        let mut p = pod(Some(restricted_container_security_context()));
        p.host_network = Some(true);
        p.volumes = Some(vec![k8s_openapi::api::core::v1::Volume {
            name: "root".into(),
            host_path: Some(k8s_openapi::api::core::v1::HostPathVolumeSource {
                path: "/".into(),
                type_: None,
            }),
            ..Default::default()
        }]);
        let v = restricted_violations(&p);
        assert!(v.contains(&"hostNetwork is true".to_string()), "{v:?}");
        assert!(v.iter().any(|m| m.contains("uses hostPath")), "{v:?}");
    }
}
