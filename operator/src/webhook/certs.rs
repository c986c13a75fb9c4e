//! Where the serving certificate comes from and where its CA goes: a Secret in the operator's
//! namespace (cert-manager's `tls.crt`, `tls.key`, `ca.crt`), created with a generated
//! certificate when it does not exist, and the `caBundle` of every webhook of the
//! ValidatingWebhookConfiguration.
//!
//! Replicas race to create the Secret; the loser reads the winner's, so every replica serves
//! the same certificate. [`maintain`] keeps it that way: it reloads the certificate when the
//! Secret changes (cert-manager rotation, or another replica's renewal), renews a generated
//! certificate before it expires, and restores `caBundle` when something (a Helm upgrade, a
//! GitOps sync) blanks it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

use super::tls::{
    ReloadingCert, ServingIdentity, TlsBundle, TlsError, generate, needs_renewal, renew,
};

/// The Secret key of the serving certificate chain.
pub const TLS_CRT: &str = "tls.crt";
/// The Secret key of the serving key.
pub const TLS_KEY: &str = "tls.key";
/// The Secret key of the CA certificate.
pub const CA_CRT: &str = "ca.crt";
/// The Secret key of a generated CA's key (medplat-generated Secrets only).
pub const CA_KEY: &str = "ca.key";
/// Marks a Secret medplat generated (and may therefore renew).
pub const GENERATED_BY: &str = "medplat.io/generated-by";
/// When a generated serving certificate expires (RFC 3339).
pub const NOT_AFTER: &str = "medplat.io/not-after";
/// Renew a generated certificate this long before it expires.
const RENEW_BEFORE: SignedDuration = SignedDuration::from_hours(30 * 24);
/// How often expiry is checked.
const RENEWAL_CHECK: Duration = Duration::from_secs(6 * 3600);

/// Errors obtaining or publishing the certificate. Messages name objects, never key material.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// An API call failed.
    #[error("cannot {action} {object}: {source}")]
    Kube {
        /// What was attempted.
        action: &'static str,
        /// The object.
        object: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// The Secret lacks a key.
    #[error("Secret {secret} has no {key}")]
    Incomplete {
        /// `namespace/name`.
        secret: String,
        /// The missing key.
        key: &'static str,
    },
    /// A Secret value is not UTF-8 PEM.
    #[error("{key} of Secret {secret} is not PEM text")]
    NotPem {
        /// `namespace/name`.
        secret: String,
        /// The key.
        key: &'static str,
    },
    /// The material does not load.
    #[error("the certificate of Secret {secret}: {source}")]
    Tls {
        /// `namespace/name`.
        secret: String,
        /// The cause.
        #[source]
        source: TlsError,
    },
}

/// Where the certificate lives and what it is for.
#[derive(Clone, Debug)]
pub struct CertSource {
    /// The operator's namespace.
    pub namespace: String,
    /// The Secret's name (`--webhook-cert-secret`).
    pub secret: String,
    /// The names a generated certificate covers.
    pub identity: ServingIdentity,
    /// The ValidatingWebhookConfiguration whose `caBundle` is kept in step (`None`: leave it).
    pub config_name: Option<String>,
}

impl CertSource {
    fn display(&self) -> String {
        format!("{}/{}", self.namespace, self.secret)
    }
}

fn pem_value(
    secret: &Secret,
    key: &'static str,
    display: &str,
) -> Result<Option<String>, CertError> {
    match secret.data.as_ref().and_then(|d| d.get(key)) {
        None => Ok(None),
        Some(ByteString(bytes)) => {
            String::from_utf8(bytes.clone())
                .map(Some)
                .map_err(|_| CertError::NotPem {
                    secret: display.into(),
                    key,
                })
        }
    }
}

/// Reads the TLS material of a Secret.
pub fn bundle_from_secret(secret: &Secret) -> Result<TlsBundle, CertError> {
    let display = format!(
        "{}/{}",
        secret.namespace().unwrap_or_default(),
        secret.name_any()
    );
    let required = |key| {
        pem_value(secret, key, &display)?.ok_or_else(|| CertError::Incomplete {
            secret: display.clone(),
            key,
        })
    };
    let generated = secret.annotations().get(GENERATED_BY).is_some();
    Ok(TlsBundle {
        cert_pem: required(TLS_CRT)?,
        key_pem: required(TLS_KEY)?,
        ca_pem: pem_value(secret, CA_CRT, &display)?,
        ca_key_pem: if generated {
            pem_value(secret, CA_KEY, &display)?
        } else {
            None
        },
        not_after: secret
            .annotations()
            .get(NOT_AFTER)
            .and_then(|t| t.parse().ok()),
    })
}

/// The Secret holding `bundle` (type `kubernetes.io/tls`, as cert-manager writes it).
pub fn secret_from_bundle(namespace: &str, name: &str, bundle: &TlsBundle) -> Secret {
    let mut data = BTreeMap::new();
    data.insert(
        TLS_CRT.to_string(),
        ByteString(bundle.cert_pem.clone().into_bytes()),
    );
    data.insert(
        TLS_KEY.to_string(),
        ByteString(bundle.key_pem.clone().into_bytes()),
    );
    if let Some(ca) = &bundle.ca_pem {
        data.insert(CA_CRT.to_string(), ByteString(ca.clone().into_bytes()));
    }
    if let Some(key) = &bundle.ca_key_pem {
        data.insert(CA_KEY.to_string(), ByteString(key.clone().into_bytes()));
    }
    let mut annotations = BTreeMap::from([(GENERATED_BY.to_string(), "medplat".to_string())]);
    if let Some(t) = bundle.not_after {
        annotations.insert(NOT_AFTER.to_string(), t.to_string());
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_string(),
                "medplat".to_string(),
            )])),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data),
        ..Secret::default()
    }
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// The certificate to serve: the Secret's when it exists (renewed first when medplat generated
/// it and it expires soon), else a generated one stored in a new Secret. When another replica
/// creates the Secret first, its certificate is used.
pub async fn load_or_create(
    client: &Client,
    source: &CertSource,
    now: Timestamp,
) -> Result<TlsBundle, CertError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &source.namespace);
    let kube_err = |action, source_err| CertError::Kube {
        action,
        object: format!("Secret {}", source.display()),
        source: source_err,
    };
    let tls_err = |e| CertError::Tls {
        secret: source.display(),
        source: e,
    };
    if let Some(existing) = api
        .get_opt(&source.secret)
        .await
        .map_err(|e| kube_err("get", e))?
    {
        return renew_if_due(&api, source, existing, now).await;
    }
    let bundle = generate(&source.identity, now).map_err(tls_err)?;
    let secret = secret_from_bundle(&source.namespace, &source.secret, &bundle);
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => {
            tracing::info!(secret = %source.display(), "generated the webhook's serving certificate");
            Ok(bundle)
        }
        Err(e) if is_status(&e, 409) => {
            let winner = api
                .get(&source.secret)
                .await
                .map_err(|e| kube_err("get", e))?;
            bundle_from_secret(&winner)
        }
        Err(e) => Err(kube_err("create", e)),
    }
}

/// Renews a generated certificate that expires within [`RENEW_BEFORE`], under the same CA.
/// The write is conditional on the Secret's resourceVersion; on a conflict another replica has
/// renewed it and its certificate is returned.
async fn renew_if_due(
    api: &Api<Secret>,
    source: &CertSource,
    existing: Secret,
    now: Timestamp,
) -> Result<TlsBundle, CertError> {
    let bundle = bundle_from_secret(&existing)?;
    if !needs_renewal(&bundle, now, RENEW_BEFORE) {
        return Ok(bundle);
    }
    let renewed = renew(&bundle, &source.identity, now).map_err(|e| CertError::Tls {
        secret: source.display(),
        source: e,
    })?;
    let mut secret = secret_from_bundle(&source.namespace, &source.secret, &renewed);
    secret.metadata.resource_version = existing.resource_version();
    match api
        .replace(&source.secret, &PostParams::default(), &secret)
        .await
    {
        Ok(_) => {
            tracing::info!(secret = %source.display(), "renewed the webhook's serving certificate");
            Ok(renewed)
        }
        Err(e) if is_status(&e, 409) => {
            let winner = api.get(&source.secret).await.map_err(|e| CertError::Kube {
                action: "get",
                object: format!("Secret {}", source.display()),
                source: e,
            })?;
            bundle_from_secret(&winner)
        }
        Err(e) => Err(CertError::Kube {
            action: "update",
            object: format!("Secret {}", source.display()),
            source: e,
        }),
    }
}

/// What [`ensure_ca_bundle`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaBundleOutcome {
    /// Every webhook already trusted the CA.
    Unchanged,
    /// This many webhooks were patched.
    Patched(usize),
    /// The configuration does not exist (yet).
    Missing,
}

/// Writes `ca_pem` into the `caBundle` of every webhook of configuration `name` that does not
/// already carry it. A JSON patch that tests each webhook's name keeps a concurrent reorder
/// from putting the bundle on the wrong webhook.
pub async fn ensure_ca_bundle(
    client: &Client,
    name: &str,
    ca_pem: &str,
) -> Result<CaBundleOutcome, CertError> {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let object = format!("ValidatingWebhookConfiguration {name}");
    let Some(config) = api.get_opt(name).await.map_err(|e| CertError::Kube {
        action: "get",
        object: object.clone(),
        source: e,
    })?
    else {
        return Ok(CaBundleOutcome::Missing);
    };
    let encoded = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let mut ops = Vec::new();
    for (i, hook) in config.webhooks.iter().flatten().enumerate() {
        if hook
            .client_config
            .ca_bundle
            .as_ref()
            .map(|b| b.0.as_slice())
            == Some(ca_pem.as_bytes())
        {
            continue;
        }
        ops.push(serde_json::json!({"op": "test", "path": format!("/webhooks/{i}/name"), "value": hook.name}));
        ops.push(serde_json::json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": encoded}));
    }
    if ops.is_empty() {
        return Ok(CaBundleOutcome::Unchanged);
    }
    let patched = ops.len() / 2;
    let patch: json_patch::Patch =
        serde_json::from_value(serde_json::Value::Array(ops)).map_err(|e| CertError::Kube {
            action: "build the caBundle patch of",
            object: object.clone(),
            source: kube::Error::SerdeError(e),
        })?;
    api.patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
        .map_err(|e| CertError::Kube {
            action: "patch the caBundle of",
            object,
            source: e,
        })?;
    Ok(CaBundleOutcome::Patched(patched))
}

/// Publishes the CA of `bundle` to the configuration, logging instead of failing: the webhook
/// keeps serving, and the next event or check tries again.
async fn publish_ca(client: &Client, source: &CertSource, bundle: &TlsBundle) {
    let (Some(name), Some(ca)) = (&source.config_name, &bundle.ca_pem) else {
        return;
    };
    match ensure_ca_bundle(client, name, ca).await {
        Ok(CaBundleOutcome::Patched(n)) => {
            tracing::info!(config = %name, webhooks = n, "wrote the webhook CA into caBundle")
        }
        Ok(CaBundleOutcome::Missing) => {
            tracing::warn!(config = %name, "ValidatingWebhookConfiguration not found; caBundle will be written when it appears")
        }
        Ok(CaBundleOutcome::Unchanged) => {}
        Err(e) => tracing::warn!(error = %e, "cannot write the webhook CA into caBundle"),
    }
}

/// Keeps the served certificate and `caBundle` in step with the Secret until `shutdown`:
/// reloads on every change of the Secret, recreates it when deleted, renews a generated
/// certificate before it expires, and re-publishes the CA when the configuration changes.
pub async fn maintain(
    client: Client,
    source: CertSource,
    served: Arc<ReloadingCert>,
    mut current: TlsBundle,
    shutdown: impl std::future::Future<Output = ()>,
) {
    publish_ca(&client, &source, &current).await;
    let by_name = |name: &str| watcher::Config::default().fields(&format!("metadata.name={name}"));
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &source.namespace);
    let mut secret_events = watcher(secrets, by_name(&source.secret))
        .default_backoff()
        .boxed();
    let mut config_events = match &source.config_name {
        Some(name) => {
            let configs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
            watcher(configs, by_name(name))
                .default_backoff()
                .applied_objects()
                .map(|r| r.map(|_| ()))
                .boxed()
        }
        None => futures::stream::pending().boxed(),
    };
    let mut renewal = tokio::time::interval(RENEWAL_CHECK);
    renewal.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        let next = tokio::select! {
            _ = &mut shutdown => return,
            event = secret_events.next() => match event {
                Some(Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s))) => bundle_from_secret(&s).map(Some),
                // Deleted (by hand, or by a re-issuing tool): make a new one so a restart is
                // not needed; the other replicas reload it through their own watch.
                Some(Ok(watcher::Event::Delete(_))) => load_or_create(&client, &source, Timestamp::now()).await.map(Some),
                Some(Ok(_)) => Ok(None),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "watch of the webhook certificate Secret failed");
                    Ok(None)
                }
                None => return,
            },
            event = config_events.next() => {
                if let Some(Ok(())) = event {
                    publish_ca(&client, &source, &current).await;
                }
                Ok(None)
            },
            _ = renewal.tick() => {
                if needs_renewal(&current, Timestamp::now(), RENEW_BEFORE) {
                    load_or_create(&client, &source, Timestamp::now()).await.map(Some)
                } else {
                    Ok(None)
                }
            },
        };
        match next {
            Ok(Some(bundle)) if bundle != current => match served.replace(&bundle) {
                Ok(()) => {
                    tracing::info!(secret = %source.display(), "reloaded the webhook's serving certificate");
                    current = bundle;
                    publish_ca(&client, &source, &current).await;
                }
                Err(e) => {
                    tracing::warn!(secret = %source.display(), error = %e, "the new webhook certificate does not load; still serving the previous one")
                }
            },
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot reload the webhook certificate"),
        }
    }
}
