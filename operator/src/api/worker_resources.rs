//! A Pipeline's `spec.resources`: the CPU and memory of its worker pods, and their checked form.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// CPU and memory of each worker pod, as Kubernetes quantities.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkerResources {
    /// What the scheduler reserves for the pod. Defaults: `cpu: 100m`, `memory: 256Mi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<ResourceAmounts>,
    /// The most the pod may use: it is throttled above the CPU limit and killed above the
    /// memory limit. Defaults: `cpu: 2`, `memory: 2Gi`, or the request when that is larger.
    /// The worker runs one thread per CPU of its limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceAmounts>,
}

/// An amount of CPU and of memory.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResourceAmounts {
    /// CPU in cores (`2`, `0.5`) or millicores (`500m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]{1,3})?|[0-9]+m)$"))]
    pub cpu: Option<String>,
    /// Memory in bytes, with a binary (`512Mi`, `4Gi`) or decimal (`1G`) suffix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(Ki|Mi|Gi|Ti|k|M|G|T)?$"))]
    pub memory: Option<String>,
}

/// The condition, Event, webhook and `medplat check` reason for a refused `spec.resources`.
pub const INVALID_RESOURCES: &str = "InvalidResources";

/// Why `spec.resources` cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResourcesError {
    /// An amount is not a quantity this field accepts (the schema was bypassed).
    #[error("spec.resources.{field} {value:?} is not a {what} quantity")]
    Unreadable {
        /// `requests.cpu` and so on.
        field: String,
        /// The amount as written.
        value: String,
        /// `CPU` or `memory`.
        what: &'static str,
    },
    /// A request is above its limit, which Kubernetes refuses for the pod.
    #[error(
        "spec.resources.requests.{resource} {request} is above spec.resources.limits.{resource} {limit}"
    )]
    RequestAboveLimit {
        /// `cpu` or `memory`.
        resource: &'static str,
        /// The request as written.
        request: String,
        /// The limit as written.
        limit: String,
    },
}

impl ResourcesError {
    /// The field at fault, `spec.resources.requests.memory` and so on.
    pub fn field(&self) -> String {
        match self {
            ResourcesError::Unreadable { field, .. } => format!("spec.resources.{field}"),
            ResourcesError::RequestAboveLimit { resource, .. } => {
                format!("spec.resources.requests.{resource}")
            }
        }
    }
}

/// Checked requests and limits of a worker pod, each as written (or the default).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerSizing {
    /// CPU request.
    pub cpu_request: String,
    /// Memory request.
    pub memory_request: String,
    /// CPU limit.
    pub cpu_limit: String,
    /// Memory limit.
    pub memory_limit: String,
}

impl Default for WorkerSizing {
    fn default() -> Self {
        WorkerSizing {
            cpu_request: "100m".into(),
            memory_request: "256Mi".into(),
            cpu_limit: "2".into(),
            memory_limit: "2Gi".into(),
        }
    }
}

impl WorkerSizing {
    /// Checks `spec.resources` and fills what it leaves out with the defaults. A limit left out
    /// is raised to its request when the request is above the default limit.
    pub fn of(resources: Option<&WorkerResources>) -> Result<Self, ResourcesError> {
        let d = WorkerSizing::default();
        let requests = resources.and_then(|r| r.requests.as_ref());
        let limits = resources.and_then(|r| r.limits.as_ref());
        let (cpu_request, cpu_limit) = checked_pair(
            &CPU,
            requests.and_then(|r| r.cpu.as_deref()),
            limits.and_then(|l| l.cpu.as_deref()),
            (&d.cpu_request, &d.cpu_limit),
        )?;
        let (memory_request, memory_limit) = checked_pair(
            &MEMORY,
            requests.and_then(|r| r.memory.as_deref()),
            limits.and_then(|l| l.memory.as_deref()),
            (&d.memory_request, &d.memory_limit),
        )?;
        Ok(WorkerSizing {
            cpu_request,
            memory_request,
            cpu_limit,
            memory_limit,
        })
    }
}

/// One kind of resource: its field name, its name in messages, and how its quantities read.
struct Resource {
    field: &'static str,
    what: &'static str,
    amount: fn(&str) -> Option<u128>,
}

const CPU: Resource = Resource {
    field: "cpu",
    what: "CPU",
    amount: millicores,
};

const MEMORY: Resource = Resource {
    field: "memory",
    what: "memory",
    amount: bytes,
};

/// A request and a limit of one resource, checked against each other.
fn checked_pair(
    resource: &Resource,
    request: Option<&str>,
    limit: Option<&str>,
    (default_request, default_limit): (&str, &str),
) -> Result<(String, String), ResourcesError> {
    let amount = |side: &str, value: &str| {
        (resource.amount)(value).ok_or_else(|| ResourcesError::Unreadable {
            field: format!("{side}.{}", resource.field),
            value: value.to_string(),
            what: resource.what,
        })
    };
    let request = request.unwrap_or(default_request);
    let request_amount = amount("requests", request)?;
    let limit = match limit {
        Some(l) => l,
        None if request_amount > amount("limits", default_limit)? => request,
        None => default_limit,
    };
    if request_amount > amount("limits", limit)? {
        return Err(ResourcesError::RequestAboveLimit {
            resource: resource.field,
            request: request.to_string(),
            limit: limit.to_string(),
        });
    }
    Ok((request.to_string(), limit.to_string()))
}

/// A CPU quantity in millicores: `2`, `0.5`, `500m`.
fn millicores(q: &str) -> Option<u128> {
    if let Some(m) = q.strip_suffix('m') {
        return digits(m);
    }
    let (whole, frac) = q.split_once('.').unwrap_or((q, ""));
    if frac.len() > 3 || (q.contains('.') && frac.is_empty()) {
        return None;
    }
    let frac_milli = if frac.is_empty() {
        0
    } else {
        digits(frac)? * 10u128.pow(3 - frac.len() as u32)
    };
    digits(whole)?.checked_mul(1000)?.checked_add(frac_milli)
}

/// A memory quantity in bytes: `512Mi`, `4Gi`, `1G`, `1000`.
fn bytes(q: &str) -> Option<u128> {
    const SUFFIXES: [(&str, u128); 8] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    let (number, unit) = SUFFIXES
        .iter()
        .find_map(|(s, m)| q.strip_suffix(s).map(|n| (n, *m)))
        .unwrap_or((q, 1));
    digits(number)?.checked_mul(unit)
}

fn digits(s: &str) -> Option<u128> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizing(yaml: &str) -> Result<WorkerSizing, ResourcesError> {
        let r: WorkerResources = serde_yaml::from_str(yaml).unwrap();
        WorkerSizing::of(Some(&r))
    }

    #[test]
    fn quantities_are_read_as_kubernetes_writes_them() {
        for (q, m) in [
            ("2", 2000),
            ("0.5", 500),
            ("1.25", 1250),
            ("500m", 500),
            ("0", 0),
        ] {
            assert_eq!(millicores(q), Some(m), "{q}");
        }
        for q in ["", "m", "1.", ".5", "0.0001", "2 ", "-1", "1e3", "2Gi"] {
            assert_eq!(millicores(q), None, "{q}");
        }
        for (q, b) in [
            ("512Mi", 512 << 20),
            ("4Gi", 4 << 30),
            ("1G", 1_000_000_000),
            ("1000", 1000),
            ("3k", 3000),
        ] {
            assert_eq!(bytes(q), Some(b), "{q}");
        }
        for q in ["", "Gi", "1.5Gi", "4gb", "-1Mi", "1Ei"] {
            assert_eq!(bytes(q), None, "{q}");
        }
    }

    #[test]
    fn unset_amounts_keep_the_defaults_and_a_large_request_raises_its_default_limit() {
        assert_eq!(WorkerSizing::of(None).unwrap(), WorkerSizing::default());
        assert_eq!(sizing("{}").unwrap(), WorkerSizing::default());
        let s = sizing("{requests: {cpu: '3', memory: 8Gi}}").unwrap();
        assert_eq!((s.cpu_request.as_str(), s.cpu_limit.as_str()), ("3", "3"));
        assert_eq!(
            (s.memory_request.as_str(), s.memory_limit.as_str()),
            ("8Gi", "8Gi")
        );
        let s = sizing("{requests: {cpu: 500m}, limits: {cpu: '4', memory: 6Gi}}").unwrap();
        assert_eq!(
            s,
            WorkerSizing {
                cpu_request: "500m".into(),
                memory_request: "256Mi".into(),
                cpu_limit: "4".into(),
                memory_limit: "6Gi".into(),
            }
        );
    }

    #[test]
    fn a_request_above_its_limit_or_an_unreadable_amount_names_the_field() {
        let e = sizing("{requests: {memory: 4Gi}, limits: {memory: 1Gi}}").unwrap_err();
        assert_eq!(
            e.to_string(),
            "spec.resources.requests.memory 4Gi is above spec.resources.limits.memory 1Gi"
        );
        // A limit below the default request.
        let e = sizing("{limits: {cpu: 50m}}").unwrap_err();
        assert_eq!(
            e.to_string(),
            "spec.resources.requests.cpu 100m is above spec.resources.limits.cpu 50m"
        );
        assert_eq!(e.field(), "spec.resources.requests.cpu");
        let e = sizing("{limits: {memory: lots}}").unwrap_err();
        assert_eq!(e.field(), "spec.resources.limits.memory");
        assert_eq!(
            e.to_string(),
            "spec.resources.limits.memory \"lots\" is not a memory quantity"
        );
    }
}
