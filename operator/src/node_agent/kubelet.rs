//! CIS Kubernetes worker checks (REFERENCE.md "CIS Kubernetes worker"): permissions of the
//! kubelet config, kubeconfig and client CA, and the security settings of the kubelet config.
//!
//! Distributions put the kubelet files in different places. The first candidate is the
//! kubeadm path the benchmark names; a file found only at another known path is judged there
//! and a pass is reported as WARN, never as a false FAIL. Settings the config leaves unset take
//! the `KubeletConfiguration` (v1beta1) defaults. Command-line flags can override the file;
//! the agent does not read the kubelet's flags.

use serde_yaml::Value;

use crate::api::node_compliance::{CheckResult, CheckSeverity, CheckStatus};

use super::check::{CheckDef, Located, PermRule, check_perms, clip};
use super::host::HostRoot;

/// Where the kubelet's files may be, expected path first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeletPaths {
    /// KubeletConfiguration file candidates.
    pub config: Vec<String>,
    /// The kubelet's kubeconfig candidates.
    pub kubeconfig: Vec<String>,
    /// Client CA candidates, used when the config names none.
    pub client_ca: Vec<String>,
}

impl Default for KubeletPaths {
    fn default() -> Self {
        let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect();
        KubeletPaths {
            config: v(&[
                "/var/lib/kubelet/config.yaml",
                "/etc/kubernetes/kubelet-config.yaml",
                "/etc/kubernetes/kubelet/kubelet-config.json",
                "/var/lib/kubelet/kubelet-config.yaml",
            ]),
            kubeconfig: v(&[
                "/etc/kubernetes/kubelet.conf",
                "/var/lib/kubelet/kubeconfig",
                "/etc/kubernetes/kubelet/kubeconfig",
            ]),
            client_ca: v(&[
                "/etc/kubernetes/pki/ca.crt",
                "/etc/kubernetes/pki/ca.pem",
                "/etc/kubernetes/ca.crt",
            ]),
        }
    }
}

/// The loaded kubelet configuration, or why it is not available.
enum Config {
    Loaded {
        value: Value,
        path: String,
        elsewhere: bool,
    },
    Missing,
    Broken(String),
}

fn load_config(host: &HostRoot, paths: &KubeletPaths) -> Config {
    let located = Located::find(host, &paths.config);
    let Some(path) = located.path() else {
        return Config::Missing;
    };
    match host.read_to_string(path) {
        Err(e) => Config::Broken(e.to_string()),
        Ok(text) => match serde_yaml::from_str::<Value>(&text) {
            Ok(value @ Value::Mapping(_)) => Config::Loaded {
                value,
                path: path.to_string(),
                elsewhere: matches!(located, Located::Elsewhere(_)),
            },
            Ok(_) => Config::Broken(format!("{path} is not a YAML mapping")),
            Err(e) => Config::Broken(format!("{path} is not valid YAML: {e}")),
        },
    }
}

fn lookup<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, k| v.get(*k))
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => clip(s, 64),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => "null".into(),
        _ => "a structure".into(),
    }
}

struct Setting {
    id: &'static str,
    path: &'static [&'static str],
    benchmark_ref: &'static str,
    severity: CheckSeverity,
    expected: Value,
    /// The v1beta1 default when unset.
    default: Value,
    fix: &'static str,
}

fn settings() -> Vec<Setting> {
    vec![
        Setting {
            id: "kubelet.anonymous_auth",
            path: &["authentication", "anonymous", "enabled"],
            benchmark_ref: "CIS Kubernetes 4.2.1",
            severity: CheckSeverity::High,
            expected: Value::Bool(false),
            default: Value::Bool(false),
            fix: "authentication:\n  anonymous:\n    enabled: false",
        },
        Setting {
            id: "kubelet.authorization_mode",
            path: &["authorization", "mode"],
            benchmark_ref: "CIS Kubernetes 4.2.2",
            severity: CheckSeverity::High,
            expected: Value::String("Webhook".into()),
            default: Value::String("Webhook".into()),
            fix: "authorization:\n  mode: Webhook",
        },
        Setting {
            id: "kubelet.read_only_port",
            path: &["readOnlyPort"],
            benchmark_ref: "CIS Kubernetes 4.2.4",
            severity: CheckSeverity::Medium,
            expected: Value::Number(0.into()),
            default: Value::Number(0.into()),
            fix: "readOnlyPort: 0",
        },
        Setting {
            id: "kubelet.rotate_certificates",
            path: &["rotateCertificates"],
            benchmark_ref: "CIS Kubernetes 4.2.11",
            severity: CheckSeverity::Medium,
            expected: Value::Bool(true),
            default: Value::Bool(false),
            fix: "rotateCertificates: true",
        },
        Setting {
            id: "kubelet.seccomp_default",
            path: &["seccompDefault"],
            benchmark_ref: "CIS Kubernetes 4.2.14",
            severity: CheckSeverity::Medium,
            expected: Value::Bool(true),
            default: Value::Bool(false),
            fix: "seccompDefault: true",
        },
    ]
}

fn check_setting(s: &Setting, config: &Config) -> CheckResult {
    let key = s.path.join(".");
    let def = CheckDef::new(
        s.id,
        format!("kubelet {key} is {}", show(&s.expected)),
        s.benchmark_ref,
        s.severity,
        format!(
            "Set in the kubelet config file:\n{}\nthen `systemctl restart kubelet`.",
            s.fix
        ),
    );
    let expected = show(&s.expected);
    match config {
        Config::Missing => def.result(
            CheckStatus::Warn,
            expected,
            "no kubelet config file found at the known paths",
        ),
        Config::Broken(why) => def.error(expected, why),
        Config::Loaded {
            value,
            path,
            elsewhere,
        } => {
            let (found, shown) = match lookup(value, s.path) {
                Some(v) => (v.clone(), show(v)),
                None => (
                    s.default.clone(),
                    format!("unset (default {})", show(&s.default)),
                ),
            };
            let ok = found == s.expected;
            if ok && *elsewhere {
                def.result(CheckStatus::Warn, expected, format!("{shown} in {path}"))
            } else {
                def.judge(ok, expected, shown)
            }
        }
    }
}

/// Every kubelet check.
pub fn check_all(host: &HostRoot, paths: &KubeletPaths) -> Vec<CheckResult> {
    let config = load_config(host, paths);
    let rule = PermRule::root_owned(0o600);
    let perm = |id: &str, what: &str, bench: &str, candidates: &[String]| {
        let expected_path = candidates.first().cloned().unwrap_or_default();
        let def = CheckDef::new(
            id,
            format!("the kubelet {what} is 0600 or stricter, root:root"),
            bench,
            CheckSeverity::High,
            format!("chown root:root {expected_path} && chmod 0600 {expected_path}"),
        );
        check_perms(
            &def,
            host,
            &Located::find(host, candidates),
            &expected_path,
            &rule,
            CheckStatus::Warn,
        )
    };
    let mut out = vec![
        perm(
            "kubelet.config_perms",
            "config file",
            "CIS Kubernetes 4.1.9-10",
            &paths.config,
        ),
        perm(
            "kubelet.kubeconfig_perms",
            "kubeconfig",
            "CIS Kubernetes 4.1.5-6",
            &paths.kubeconfig,
        ),
    ];
    // The config names the client CA it uses; that file, not a guessed one, is checked.
    let ca_candidates = match &config {
        Config::Loaded { value, .. } => {
            match lookup(value, &["authentication", "x509", "clientCAFile"]) {
                Some(Value::String(p)) => vec![p.clone()],
                _ => paths.client_ca.clone(),
            }
        }
        _ => paths.client_ca.clone(),
    };
    out.push(perm(
        "kubelet.client_ca_perms",
        "client CA file",
        "CIS Kubernetes 4.1.7-8",
        &ca_candidates,
    ));
    out.extend(settings().iter().map(|s| check_setting(s, &config)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(yaml: &str, elsewhere: bool) -> Config {
        Config::Loaded {
            value: serde_yaml::from_str(yaml).unwrap(),
            path: "/x".into(),
            elsewhere,
        }
    }

    #[test]
    fn unset_values_take_kubelet_defaults() {
        let cfg = loaded("kind: KubeletConfiguration\n", false);
        let status: Vec<_> = settings()
            .iter()
            .map(|s| (s.id, check_setting(s, &cfg).status))
            .collect();
        assert_eq!(
            status,
            vec![
                ("kubelet.anonymous_auth", CheckStatus::Pass),
                ("kubelet.authorization_mode", CheckStatus::Pass),
                ("kubelet.read_only_port", CheckStatus::Pass),
                ("kubelet.rotate_certificates", CheckStatus::Fail),
                ("kubelet.seccomp_default", CheckStatus::Fail),
            ]
        );
    }

    #[test]
    fn explicit_bad_values_fail_and_alt_path_passes_become_warn() {
        let bad = loaded(
            "authentication: {anonymous: {enabled: true}}\nauthorization: {mode: AlwaysAllow}\n\
             readOnlyPort: 10255\nrotateCertificates: true\nseccompDefault: \"true\"\n",
            false,
        );
        let st: Vec<_> = settings()
            .iter()
            .map(|s| check_setting(s, &bad).status)
            .collect();
        // "true" as a string is not the boolean the kubelet needs.
        assert_eq!(
            st,
            vec![
                CheckStatus::Fail,
                CheckStatus::Fail,
                CheckStatus::Fail,
                CheckStatus::Pass,
                CheckStatus::Fail
            ]
        );
        let alt = loaded("rotateCertificates: true\n", true);
        let s = &settings()[3];
        assert_eq!(check_setting(s, &alt).status, CheckStatus::Warn);
        assert_eq!(check_setting(s, &Config::Missing).status, CheckStatus::Warn);
        assert_eq!(
            check_setting(s, &Config::Broken("x".into())).status,
            CheckStatus::Error
        );
    }
}
