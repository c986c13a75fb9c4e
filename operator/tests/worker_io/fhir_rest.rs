//! The `fhir` REST connector against an in-test FHIR server: paging through `next` links,
//! bearer-token credentials, a clean failure on a server error or a refused token, and HTTPS
//! with a private CA given as `ca.crt` in the credentials Secret.

use super::{doc, output_rows, run, runtime, secret, write_manifests};

async fn fhir_server() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/fhir", listener.local_addr().unwrap());
    let app = fhir_app(base.clone());
    let handle = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (base, handle)
}

/// The same server over HTTPS only, with `tls` (a certificate for `localhost`).
async fn fhir_https_server(
    tls: std::sync::Arc<rustls::ServerConfig>,
) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!(
        "https://localhost:{}/fhir",
        listener.local_addr().unwrap().port()
    );
    let app = fhir_app(base.clone());
    let handle = tokio::spawn(medplat::webhook::server::serve(
        listener,
        tls,
        app,
        std::future::pending(),
    ));
    (base, handle)
}

/// A FHIR server at `base`: two pages of Patients and one of Observations for token `t0ken`,
/// HTTP 500 for any other type, HTTP 401 for any other token.
fn fhir_app(base: String) -> axum::Router {
    use axum::extract::{Path as AxPath, Query};
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::get;
    let base2 = base;
    axum::Router::new().route(
        "/fhir/{rt}",
        get(move |AxPath(rt): AxPath<String>, Query(q): Query<std::collections::HashMap<String, String>>, headers: HeaderMap| {
            let base = base2.clone();
            async move {
                if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer t0ken") {
                    return (StatusCode::UNAUTHORIZED, String::new());
                }
                let page: u32 = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
                let body = match (rt.as_str(), page) {
                    ("Patient", 1) => serde_json::json!({"resourceType": "Bundle", "entry": [
                        {"resource": {"resourceType": "Patient", "id": "1", "name": [{"family": "王"}]}},
                        {"resource": {"resourceType": "Patient", "id": "2"}}],
                        "link": [{"relation": "self", "url": format!("{base}/Patient")}, {"relation": "next", "url": format!("{base}/Patient?page=2&_count=2")}]}),
                    ("Patient", 2) => serde_json::json!({"resourceType": "Bundle", "entry": [
                        {"resource": {"resourceType": "Patient", "id": "3"}}, {"fullUrl": "x"}]}),
                    ("Observation", _) => serde_json::json!({"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Observation", "id": "o1"}}]}),
                    _ => return (StatusCode::INTERNAL_SERVER_ERROR, "boom".to_string()),
                };
                (StatusCode::OK, body.to_string())
            }
        }),
    )
}

#[test]
fn worker_fhir_rest_follows_paging_and_fails_cleanly_on_server_errors() {
    let rt = runtime();
    let (base, server) = rt.block_on(fhir_server());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    secret(d, "fhir", "token", "t0ken\n");
    let source = |types: &str| {
        format!(
            "  system: CDR\n  connector: {{fhir: {{baseUrl: \"{base}\", resourceTypes: [{types}], pageSize: 2}}}}\n  credentials: {{secretName: fhir, tokenKey: token}}"
        )
    };
    write_manifests(d, &source("Patient, Observation"), "[]");
    let report = run(&rt, &doc(d));
    assert!(report.error.is_none(), "{:?}", report.error);
    assert_eq!(report.summary.records.records_out, 4);
    assert_eq!(report.summary.records.quarantined, 1);
    let ids: Vec<_> = output_rows(d)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["1", "2", "3", "o1"]);

    // A server error fails the run and keeps the committed version.
    write_manifests(d, &source("Patient, Encounter"), "[]");
    let failed = run(&rt, &doc(d));
    assert!(
        failed
            .summary
            .message
            .as_deref()
            .unwrap()
            .contains("HTTP 500"),
        "{:?}",
        failed.summary.message
    );
    assert_eq!(output_rows(d).len(), 4);
    // A wrong token is refused by the server: the run fails, naming no secret value.
    secret(d, "fhir", "token", "wrong");
    write_manifests(d, &source("Patient"), "[]");
    let denied = run(&rt, &doc(d));
    let msg = denied.summary.message.unwrap();
    assert!(msg.contains("HTTP 401") && !msg.contains("wrong"), "{msg}");
    server.abort();
}

/// Over HTTPS, the connector trusts a private CA only when the credentials Secret holds it as
/// `ca.crt`; without it the run fails naming the certificate, and a `ca.crt` that is not one
/// fails naming the file.
#[test]
fn worker_fhir_rest_over_https_trusts_the_ca_in_the_credentials_secret() {
    use medplat::webhook::tls::{ReloadingCert, ServingIdentity, generate};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = runtime();
    let identity = ServingIdentity {
        service: "fhir".into(),
        namespace: "test".into(),
        extra_dns: vec!["localhost".into()],
        extra_ips: Vec::new(),
    };
    let bundle = generate(&identity, jiff::Timestamp::now()).unwrap();
    let tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_cert_resolver(ReloadingCert::new(&bundle).unwrap());
    let (base, server) = rt.block_on(fhir_https_server(std::sync::Arc::new(tls)));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    secret(d, "fhir", "token", "t0ken");
    write_manifests(
        d,
        &format!(
            "  system: CDR\n  connector: {{fhir: {{baseUrl: \"{base}\", resourceTypes: [Patient], pageSize: 2}}}}\n  credentials: {{secretName: fhir, tokenKey: token}}"
        ),
        "[]",
    );

    let untrusted = run(&rt, &doc(d));
    let msg = untrusted.summary.message.unwrap_or_default();
    assert!(msg.contains("invalid peer certificate"), "{msg}");

    secret(
        d,
        "fhir",
        "ca.crt",
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
    );
    let garbage = run(&rt, &doc(d));
    let msg = garbage.summary.message.unwrap_or_default();
    assert!(
        msg.contains("ca.crt of the credentials Secret certificate 1"),
        "{msg}"
    );

    secret(d, "fhir", "ca.crt", bundle.ca_pem.as_deref().unwrap());
    let trusted = run(&rt, &doc(d));
    assert!(trusted.error.is_none(), "{:?}", trusted.summary.message);
    assert_eq!(trusted.summary.records.records_out, 3);
    server.abort();
}
