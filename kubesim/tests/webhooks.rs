//! ValidatingWebhookConfigurations: kubesim calls the webhook over HTTPS (trusting `caBundle`)
//! for matching writes, honouring `namespaceSelector` and `failurePolicy`.
//! <https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/>
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::PostParams;
use kubesim::Sim;
use serde_json::{Value, json};

/// A webhook that denies ConfigMaps carrying `data.forbidden`, over HTTPS.
async fn start_webhook(calls: Arc<AtomicUsize>) -> (u16, String) {
    let tls = kubesim::server::self_signed().unwrap();
    let cfg = kubesim::server::server_config(&tls).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let calls = calls.clone();
            tokio::spawn(async move {
                let Ok(tls_stream) = acceptor.accept(stream).await else {
                    return;
                };
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let calls = calls.clone();
                    async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let review: Value = serde_json::from_slice(&body).unwrap();
                        let request = &review["request"];
                        let denied = request["object"]["data"].get("forbidden").is_some();
                        let mut response = json!({"uid": request["uid"], "allowed": !denied});
                        if denied {
                            response["status"] = json!({"code": 403, "message": format!("{} {} carries a forbidden key", request["operation"].as_str().unwrap_or(""), request["name"].as_str().unwrap_or(""))});
                        }
                        let out = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response});
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(
                            serde_json::to_vec(&out).unwrap(),
                        ))))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls_stream), svc)
                    .await;
            });
        }
    });
    (port, tls.ca_pem)
}

fn vwc(name: &str, url: &str, ca_pem: &str, failure_policy: &str) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [{
            "name": format!("{name}.kubesim.io"),
            "clientConfig": {"url": url, "caBundle": base64::engine::general_purpose::STANDARD.encode(ca_pem)},
            "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
            "namespaceSelector": {"matchLabels": {"webhooks": "on"}},
            "failurePolicy": failure_policy,
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
        }]
    })
}

fn cm(name: &str, data: Value) -> ConfigMap {
    serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}),
    )
    .unwrap()
}

#[tokio::test]
async fn webhooks_are_called_and_honour_selectors_and_failure_policy() {
    let sim = Sim::start().await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let (port, ca) = start_webhook(calls.clone()).await;
    sim.seed(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "guarded", "labels": {"webhooks": "on"}}})).unwrap();
    sim.seed(&vwc(
        "deny",
        &format!("https://127.0.0.1:{port}/validate"),
        &ca,
        "Fail",
    ))
    .unwrap();
    let guarded: Api<ConfigMap> = Api::namespaced(sim.client(), "guarded");
    let open: Api<ConfigMap> = Api::namespaced(sim.client(), "default");
    let pp = PostParams::default();

    guarded
        .create(&pp, &cm("fine", json!({"a": "b"})))
        .await
        .unwrap();
    match guarded
        .create(&pp, &cm("bad", json!({"forbidden": "x"})))
        .await
    {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403);
            assert_eq!(
                s.message,
                "admission webhook \"deny.kubesim.io\" denied the request: CREATE bad carries a forbidden key"
            );
        }
        other => panic!("expected a denial, got {other:?}"),
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    open.create(&pp, &cm("elsewhere", json!({"forbidden": "x"})))
        .await
        .unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "namespaceSelector excludes unlabelled namespaces"
    );

    // A webhook that cannot be reached: Fail rejects with 500, Ignore lets the write through.
    let vwcs: Api<kube::api::DynamicObject> = Api::all_with(
        sim.client(),
        &kube::core::ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk(
                "admissionregistration.k8s.io",
                "v1",
                "ValidatingWebhookConfiguration",
            ),
            "validatingwebhookconfigurations",
        ),
    );
    vwcs.delete("deny", &Default::default()).await.unwrap();
    sim.seed(&vwc("down", "https://127.0.0.1:1/validate", &ca, "Fail"))
        .unwrap();
    match guarded.create(&pp, &cm("blocked", json!({}))).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 500);
            assert!(
                s.message
                    .contains("failed calling webhook \"down.kubesim.io\""),
                "{}",
                s.message
            );
        }
        other => panic!("expected failurePolicy Fail to reject, got {other:?}"),
    }
    vwcs.delete("down", &Default::default()).await.unwrap();
    sim.seed(&vwc(
        "down-ignored",
        "https://127.0.0.1:1/validate",
        &ca,
        "Ignore",
    ))
    .unwrap();
    guarded
        .create(&pp, &cm("through", json!({})))
        .await
        .unwrap();
    // A caBundle that does not sign the server's certificate is a failed call too.
    let other_ca = kubesim::server::self_signed().unwrap().ca_pem;
    sim.seed(&vwc(
        "wrong-ca",
        &format!("https://127.0.0.1:{port}/validate"),
        &other_ca,
        "Fail",
    ))
    .unwrap();
    assert!(
        guarded
            .create(&pp, &cm("untrusted", json!({})))
            .await
            .is_err()
    );
    sim.shutdown().await;
}
