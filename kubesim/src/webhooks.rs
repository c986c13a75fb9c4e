//! Calls ValidatingWebhookConfigurations' webhooks over HTTPS on matching writes.
//!
//! Reproduces <https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/>:
//! `rules` (operations, apiGroups, apiVersions, resources incl. `*` and `x/status`, scope),
//! `namespaceSelector`, `objectSelector`, `clientConfig.url` with `caBundle`,
//! `timeoutSeconds` and `failurePolicy` (`Fail` by default). `clientConfig.service` cannot be
//! resolved without cluster DNS and is treated as a failed call; `matchConditions` are not
//! evaluated (every webhook whose rules match is called).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::http::Shared;
use crate::objects::{Operation, Plan};
use crate::registry::{ResourceType, StorageKey};
use crate::selectors::LabelSelector;
use crate::store::Mutation;

/// The webhook caller (stateless; configurations are read from the store on each write).
#[derive(Debug, Default)]
pub struct Webhooks;

fn vwc_storage() -> StorageKey {
    StorageKey {
        group: "admissionregistration.k8s.io".into(),
        resource: "validatingwebhookconfigurations".into(),
    }
}

fn list_matches(list: Option<&Value>, want: &str) -> bool {
    list.and_then(Value::as_array).is_some_and(|a| {
        a.iter()
            .filter_map(Value::as_str)
            .any(|x| x == "*" || x == want)
    })
}

fn resource_matches(list: Option<&Value>, resource: &str, sub: Option<&str>) -> bool {
    let full = match sub {
        Some(s) => format!("{resource}/{s}"),
        None => resource.to_string(),
    };
    list.and_then(Value::as_array).is_some_and(|a| {
        a.iter().filter_map(Value::as_str).any(|r| {
            r == "*/*"
                || r == full
                || (sub.is_none() && r == "*")
                || (sub.is_some() && r.strip_prefix("*/") == sub)
                || (sub.is_some() && r.strip_suffix("/*") == Some(resource))
        })
    })
}

fn rule_matches(rule: &Value, rt: &ResourceType, op: Operation, sub: Option<&str>) -> bool {
    let scope_ok = match rule["scope"].as_str().unwrap_or("*") {
        "Cluster" => !rt.namespaced,
        "Namespaced" => rt.namespaced,
        _ => true,
    };
    scope_ok
        && list_matches(rule.get("operations"), op.as_str())
        && list_matches(rule.get("apiGroups"), &rt.group)
        && list_matches(rule.get("apiVersions"), &rt.version)
        && resource_matches(rule.get("resources"), &rt.plural, sub)
}

/// A webhook call that failed (connection, TLS, timeout or a malformed answer).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct CallError(String);

impl Webhooks {
    /// Runs every matching validating webhook; an `Err` rejects the write.
    pub async fn admit(
        &self,
        shared: &Arc<Shared>,
        rt: &ResourceType,
        sub: Option<&str>,
        plan: &Plan,
    ) -> Result<(), ApiError> {
        let Plan::Write {
            mutation,
            old,
            operation,
            dry_run,
            ..
        } = plan
        else {
            return Ok(());
        };
        let store = shared.objects.store();
        if store.count(&vwc_storage()) == 0 {
            return Ok(());
        }
        let (configs, _) = store.list(&vwc_storage(), None, None);
        let key = match mutation {
            Mutation::Put { key, .. } | Mutation::Delete { key, .. } => key.clone(),
        };
        let object = (*operation != Operation::Delete)
            .then(|| plan.preview().cloned())
            .flatten();
        let old_object = old.as_ref().map(|o| (**o).clone());
        let ns_labels = if key.namespace.is_empty() {
            None
        } else {
            let reg = store.registry();
            reg.get("", "v1", "namespaces").and_then(|ns_rt| {
                store.get(&crate::objects::Objects::key(&ns_rt, "", &key.namespace))
            })
        };
        for cfg in configs {
            for hook in cfg["webhooks"].as_array().cloned().unwrap_or_default() {
                let rules = hook["rules"].as_array().cloned().unwrap_or_default();
                if !rules.iter().any(|r| rule_matches(r, rt, *operation, sub)) {
                    continue;
                }
                if !key.namespace.is_empty() || (rt.group.is_empty() && rt.plural == "namespaces") {
                    let sel = LabelSelector::from_object(hook.get("namespaceSelector"), false)
                        .map_err(|e| ApiError::internal(e.0))?;
                    let labels_of = if rt.group.is_empty() && rt.plural == "namespaces" {
                        object.clone().or(old_object.clone())
                    } else {
                        ns_labels.as_deref().cloned()
                    };
                    if !sel.matches_object(&labels_of.unwrap_or(json!({}))) {
                        continue;
                    }
                }
                let osel = LabelSelector::from_object(hook.get("objectSelector"), false)
                    .map_err(|e| ApiError::internal(e.0))?;
                let obj_match = object.as_ref().is_some_and(|o| osel.matches_object(o))
                    || old_object.as_ref().is_some_and(|o| osel.matches_object(o));
                if !obj_match {
                    continue;
                }
                let name = hook["name"].as_str().unwrap_or_default().to_string();
                let review = review_request(
                    rt,
                    &key,
                    *operation,
                    object.as_ref(),
                    old_object.as_ref(),
                    *dry_run,
                );
                let fail_closed = hook["failurePolicy"].as_str() != Some("Ignore");
                match call(&hook, &review).await {
                    Ok(resp) => {
                        if resp.pointer("/response/allowed").and_then(Value::as_bool) != Some(true)
                        {
                            let status = resp
                                .pointer("/response/status")
                                .cloned()
                                .unwrap_or(json!({}));
                            let code = status["code"]
                                .as_u64()
                                .and_then(|c| u16::try_from(c).ok())
                                .unwrap_or(403);
                            let msg = status["message"].as_str().unwrap_or_default();
                            let reason = status["reason"].as_str().unwrap_or("Forbidden");
                            let mut e = ApiError::new(
                                code,
                                reason,
                                format!("admission webhook \"{name}\" denied the request: {msg}"),
                            );
                            if msg.is_empty() {
                                e.message = format!(
                                    "admission webhook \"{name}\" denied the request without explanation"
                                );
                            }
                            return Err(e);
                        }
                    }
                    Err(err) if fail_closed => {
                        return Err(ApiError::internal(format!(
                            "failed calling webhook \"{name}\": {err}"
                        )));
                    }
                    Err(err) => {
                        tracing::warn!(webhook = %name, error = %err, "webhook call failed; failurePolicy Ignore")
                    }
                }
            }
        }
        Ok(())
    }
}

fn review_request(
    rt: &ResourceType,
    key: &crate::store::ObjKey,
    op: Operation,
    object: Option<&Value>,
    old: Option<&Value>,
    dry_run: bool,
) -> Value {
    let gvk = json!({"group": rt.group, "version": rt.version, "kind": rt.kind});
    let gvr = json!({"group": rt.group, "version": rt.version, "resource": rt.plural});
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": crate::meta::new_uid(),
            "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
            "name": key.name,
            "namespace": key.namespace,
            "operation": op.as_str(),
            "userInfo": {"username": "kubesim-admin", "groups": ["system:masters", "system:authenticated"]},
            "object": object.cloned().unwrap_or(Value::Null),
            "oldObject": old.cloned().unwrap_or(Value::Null),
            "dryRun": dry_run,
        }
    })
}

fn tls_config(ca_bundle_b64: Option<&str>) -> Result<rustls::ClientConfig, CallError> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(b64) = ca_bundle_b64 {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| CallError(format!("caBundle is not base64: {e}")))?;
        for cert in rustls_pemfile_certs(&pem) {
            roots
                .add(cert)
                .map_err(|e| CallError(format!("caBundle certificate rejected: {e}")))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CallError(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Extracts the DER certificates from PEM text.
fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
}

async fn call(hook: &Value, review: &Value) -> Result<Value, CallError> {
    let cc = &hook["clientConfig"];
    let Some(url) = cc["url"].as_str() else {
        return Err(CallError(
            "clientConfig.service cannot be resolved by kubesim (no cluster DNS); use clientConfig.url".into(),
        ));
    };
    if !url.starts_with("https://") {
        return Err(CallError(format!(
            "webhook URL {url:?} must use the https scheme"
        )));
    }
    let timeout = Duration::from_secs(hook["timeoutSeconds"].as_u64().unwrap_or(10).clamp(1, 30));
    let tls = tls_config(cc["caBundle"].as_str())?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector);
    let body = serde_json::to_vec(review).map_err(|e| CallError(e.to_string()))?;
    let req = http::Request::post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| CallError(format!("failed to build the request to {url}: {e}")))?;
    let fut = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| CallError(format!("failed to call webhook: Post {url:?}: {e}")))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| CallError(format!("failed to read the webhook response: {e}")))?
            .to_bytes();
        if !status.is_success() {
            return Err(CallError(format!("webhook answered HTTP {status}")));
        }
        serde_json::from_slice::<Value>(&bytes).map_err(|e| {
            CallError(format!(
                "the webhook response is not an AdmissionReview: {e}"
            ))
        })
    };
    tokio::time::timeout(timeout, fut).await.map_err(|_| {
        CallError(format!(
            "failed to call webhook: Post {url:?}: context deadline exceeded"
        ))
    })?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    // https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#matching-requests-rules
    #[test]
    fn rules_matrix() {
        let reg = Registry::with_builtins();
        let pods = reg.get("", "v1", "pods").expect("pods");
        let cases = [
            (
                json!({"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}),
                Operation::Create,
                None,
                true,
            ),
            (
                json!({"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}),
                Operation::Update,
                None,
                false,
            ),
            (
                json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]}),
                Operation::Delete,
                None,
                true,
            ),
            (
                json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]}),
                Operation::Update,
                Some("status"),
                false,
            ),
            (
                json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["pods/status"]}),
                Operation::Update,
                Some("status"),
                true,
            ),
            (
                json!({"operations": ["*"], "apiGroups": ["apps"], "apiVersions": ["*"], "resources": ["*"]}),
                Operation::Create,
                None,
                false,
            ),
            (
                json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"], "scope": "Cluster"}),
                Operation::Create,
                None,
                false,
            ),
        ];
        for (rule, op, sub, want) in cases {
            assert_eq!(
                rule_matches(&rule, &pods, op, sub),
                want,
                "{rule} {op:?} {sub:?}"
            );
        }
    }
}
