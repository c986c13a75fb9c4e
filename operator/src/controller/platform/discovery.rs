//! Which optional APIs the cluster serves, found by discovery and cached: the Prometheus
//! operator's `PrometheusRule` and `ServiceMonitor` CRDs, and `ValidatingAdmissionPolicy`
//! (GA in Kubernetes 1.30).
//!
//! Discovery is one GET per API group. The answer is cached for the resync period and dropped
//! as soon as a CustomResourceDefinition of the Prometheus operator's group changes, so
//! installing or removing the Prometheus operator switches the rules target at once.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::Client;

/// The Prometheus operator's API group and version.
pub const MONITORING_GROUP_VERSION: &str = "monitoring.coreos.com/v1";
/// The API group and version of `ValidatingAdmissionPolicy`.
pub const ADMISSION_GROUP_VERSION: &str = "admissionregistration.k8s.io/v1";
/// The suffix of the Prometheus operator's CRD names, for the CRD watch that drops the cache.
pub const MONITORING_CRD_SUFFIX: &str = ".monitoring.coreos.com";

/// The optional APIs the cluster serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OptionalApis {
    /// `monitoring.coreos.com/v1` `prometheusrules`.
    pub prometheus_rules: bool,
    /// `monitoring.coreos.com/v1` `servicemonitors`.
    pub service_monitors: bool,
    /// `admissionregistration.k8s.io/v1` `validatingadmissionpolicies` and their bindings.
    pub admission_policies: bool,
}

/// Discovery answers, cached.
pub struct DiscoveryCache {
    ttl: Duration,
    cached: Mutex<Option<(Instant, OptionalApis)>>,
}

impl DiscoveryCache {
    /// A cache whose answers are trusted for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        DiscoveryCache {
            ttl,
            cached: Mutex::new(None),
        }
    }

    /// Forgets the cached answer, so the next [`Self::get`] asks the API server.
    pub fn invalidate(&self) {
        if let Ok(mut c) = self.cached.lock() {
            *c = None;
        }
    }

    /// The optional APIs, from the cache when fresh.
    pub async fn get(&self, client: &Client) -> Result<OptionalApis, DiscoveryError> {
        if let Ok(c) = self.cached.lock()
            && let Some((at, apis)) = *c
            && at.elapsed() < self.ttl
        {
            return Ok(apis);
        }
        let monitoring = served(client, MONITORING_GROUP_VERSION).await?;
        let admission = served(client, ADMISSION_GROUP_VERSION).await?;
        let apis = OptionalApis {
            prometheus_rules: monitoring.iter().any(|r| r == "prometheusrules"),
            service_monitors: monitoring.iter().any(|r| r == "servicemonitors"),
            admission_policies: admission.iter().any(|r| r == "validatingadmissionpolicies")
                && admission
                    .iter()
                    .any(|r| r == "validatingadmissionpolicybindings"),
        };
        if let Ok(mut c) = self.cached.lock() {
            *c = Some((Instant::now(), apis));
        }
        Ok(apis)
    }
}

/// Discovery failed for a reason other than "this API group does not exist".
#[derive(Debug, thiserror::Error)]
#[error("discovery of {group_version} failed: {source}")]
pub struct DiscoveryError {
    /// The group and version asked for.
    pub group_version: &'static str,
    /// The cause.
    #[source]
    pub source: kube::Error,
}

/// The resource names `group_version` serves; empty when the group does not exist.
async fn served(
    client: &Client,
    group_version: &'static str,
) -> Result<Vec<String>, DiscoveryError> {
    match client.list_api_group_resources(group_version).await {
        Ok(list) => Ok(list.resources.into_iter().map(|r| r.name).collect()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Vec::new()),
        Err(source) => Err(DiscoveryError {
            group_version,
            source,
        }),
    }
}
