//! The `fhir` REST connector against an in-test FHIR server: paging through `next` links,
//! bearer-token credentials, and a clean failure on a server error or a refused token.

use super::{doc, output_rows, run, runtime, secret, write_manifests};

async fn fhir_server() -> (String, tokio::task::JoinHandle<()>) {
    use axum::extract::{Path as AxPath, Query};
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/fhir", listener.local_addr().unwrap());
    let base2 = base.clone();
    let app = axum::Router::new().route(
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
    );
    let handle = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (base, handle)
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
