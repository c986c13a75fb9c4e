//! The ValidatingWebhookConfiguration that routes medplat's kinds to the webhook, rendered by
//! one pure function so the Helm chart, the kustomize base, the sandbox and the tests agree.
//!
//! It can never lock the cluster: `failurePolicy` is `Ignore` unless asked otherwise, only
//! CREATE and UPDATE are sent (deleting and uninstalling never depend on the webhook), and
//! `kube-system` and the operator's own namespace are excluded.

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    RuleWithOperations, ServiceReference, ValidatingWebhook, ValidatingWebhookConfiguration,
    WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};

use crate::api;

/// The path the webhook serves AdmissionReviews on.
pub const VALIDATE_PATH: &str = "/validate";
/// The label every namespace carries with its own name (Kubernetes ≥ 1.21).
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";
/// The kinds the webhook judges: (plural, scope, webhook name).
const KINDS: [(&str, &str, &str); 5] = [
    ("pipelines", "Namespaced", "pipelines.medplat.io"),
    ("datasources", "Namespaced", "datasources.medplat.io"),
    ("accesspolicies", "Namespaced", "accesspolicies.medplat.io"),
    ("storagetiers", "Cluster", "storagetiers.medplat.io"),
    ("platforms", "Cluster", "platforms.medplat.io"),
];

/// What the API server does when the webhook cannot be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// Admit the write; the controller still blocks non-compliant pipelines (the default).
    #[default]
    Ignore,
    /// Refuse the write.
    Fail,
}

impl FailurePolicy {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            FailurePolicy::Ignore => "Ignore",
            FailurePolicy::Fail => "Fail",
        }
    }
}

/// How the API server reaches the webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WebhookTarget {
    /// Through a Service (in a cluster).
    Service {
        /// The Service's name.
        name: String,
        /// The Service's namespace.
        namespace: String,
        /// The Service port (443 when `None`).
        port: Option<i32>,
    },
    /// At a URL (`https://127.0.0.1:9443/validate`: kubesim, or a webhook outside the cluster).
    Url(String),
}

/// Everything the configuration depends on.
#[derive(Clone, Debug)]
pub struct WebhookConfigOptions {
    /// The configuration's name (`--webhook-config-name`).
    pub name: String,
    /// Where the webhook is.
    pub target: WebhookTarget,
    /// The CA certificate (PEM) that signs the serving certificate; `None` leaves `caBundle`
    /// for the operator or cert-manager's CA injector to fill in.
    pub ca_bundle_pem: Option<String>,
    /// `Ignore` or `Fail`.
    pub failure_policy: FailurePolicy,
    /// The operator's namespace, never sent to the webhook.
    pub operator_namespace: String,
    /// When the operator watches one namespace only, the webhook judges only that one.
    pub watch_namespace: Option<String>,
    /// How long the API server waits for an answer, in seconds (1–30).
    pub timeout_seconds: i32,
}

impl WebhookConfigOptions {
    /// Options for an in-cluster webhook behind `service` in `operator_namespace`.
    pub fn in_cluster(name: &str, service: &str, operator_namespace: &str) -> Self {
        WebhookConfigOptions {
            name: name.into(),
            target: WebhookTarget::Service {
                name: service.into(),
                namespace: operator_namespace.into(),
                port: None,
            },
            ca_bundle_pem: None,
            failure_policy: FailurePolicy::Ignore,
            operator_namespace: operator_namespace.into(),
            watch_namespace: None,
            timeout_seconds: 5,
        }
    }
}

fn namespace_selector(opts: &WebhookConfigOptions) -> LabelSelector {
    let mut excluded = vec!["kube-system".to_string(), opts.operator_namespace.clone()];
    excluded.dedup();
    let mut expressions = vec![LabelSelectorRequirement {
        key: NAMESPACE_NAME_LABEL.into(),
        operator: "NotIn".into(),
        values: Some(excluded),
    }];
    if let Some(ns) = &opts.watch_namespace {
        expressions.push(LabelSelectorRequirement {
            key: NAMESPACE_NAME_LABEL.into(),
            operator: "In".into(),
            values: Some(vec![ns.clone()]),
        });
    }
    LabelSelector {
        match_expressions: Some(expressions),
        match_labels: None,
    }
}

/// Renders the ValidatingWebhookConfiguration: one webhook per medplat kind (so a denial names
/// the kind), CREATE and UPDATE only, `sideEffects: None`.
pub fn validating_webhook_configuration(
    opts: &WebhookConfigOptions,
) -> ValidatingWebhookConfiguration {
    let client_config = WebhookClientConfig {
        ca_bundle: opts
            .ca_bundle_pem
            .as_ref()
            .map(|pem| ByteString(pem.as_bytes().to_vec())),
        service: match &opts.target {
            WebhookTarget::Service {
                name,
                namespace,
                port,
            } => Some(ServiceReference {
                name: name.clone(),
                namespace: namespace.clone(),
                path: Some(VALIDATE_PATH.into()),
                port: *port,
            }),
            WebhookTarget::Url(_) => None,
        },
        url: match &opts.target {
            WebhookTarget::Url(url) => Some(url.clone()),
            WebhookTarget::Service { .. } => None,
        },
    };
    let webhooks = KINDS
        .iter()
        .map(|(plural, scope, name)| ValidatingWebhook {
            name: (*name).into(),
            admission_review_versions: vec!["v1".into()],
            client_config: client_config.clone(),
            failure_policy: Some(opts.failure_policy.as_str().into()),
            match_policy: Some("Equivalent".into()),
            // Cluster-scoped objects are never filtered by namespaceSelector.
            namespace_selector: (*scope == "Namespaced").then(|| namespace_selector(opts)),
            rules: Some(vec![RuleWithOperations {
                api_groups: Some(vec![api::GROUP.into()]),
                api_versions: Some(vec![api::VERSION.into()]),
                operations: Some(vec!["CREATE".into(), "UPDATE".into()]),
                resources: Some(vec![(*plural).into()]),
                scope: Some((*scope).into()),
            }]),
            side_effects: "None".into(),
            timeout_seconds: Some(opts.timeout_seconds.clamp(1, 30)),
            ..ValidatingWebhook::default()
        })
        .collect();
    ValidatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(opts.name.clone()),
            labels: Some([("app.kubernetes.io/name".to_string(), "medplat".to_string())].into()),
            ..ObjectMeta::default()
        },
        webhooks: Some(webhooks),
    }
}
