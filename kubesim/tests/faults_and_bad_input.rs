//! Fault injection (library and admin endpoint), the request log, restarts, and the API
//! server's answers to bad input — plus a fuzz-style corpus run through the router.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use futures::StreamExt;
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::PostParams;
use kube::runtime::{WatchStreamExt, watcher};
use kubesim::Sim;
use serde_json::{Value, json};

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}),
    )
    .unwrap()
}

fn no_retry_client(sim: &Sim) -> kube::Client {
    let mut cfg = sim.kube_config();
    cfg.default_retry = false;
    kube::Client::try_from(cfg).unwrap()
}

async fn raw(
    client: &kube::Client,
    method: &str,
    path: &str,
    ct: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", ct)
        .body(kube::client::Body::from(body))
        .unwrap();
    let resp = client.send(req).await.unwrap();
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn client_for_agent(sim: &Sim) -> kube::Client {
    no_retry_client(sim)
}

async fn raw_with_agent(client: &kube::Client, path: &str, agent: &str) -> (u16, Value) {
    let req = http::Request::get(path)
        .header("user-agent", agent)
        .body(kube::client::Body::empty())
        .unwrap();
    let resp = client.send(req).await.unwrap();
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn fail_next_counts_down_and_the_log_records_it() {
    let sim = Sim::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(no_retry_client(&sim), "default");
    sim.faults().fail_next(2, "create", "configmaps", 500);
    for _ in 0..2 {
        match api.create(&PostParams::default(), &cm("f")).await {
            Err(kube::Error::Api(s)) => {
                assert_eq!((s.code, s.reason.as_str()), (500, "InternalError"))
            }
            other => panic!("expected an injected 500, got {other:?}"),
        }
    }
    api.create(
        &PostParams {
            field_manager: Some("tester".into()),
            ..Default::default()
        },
        &cm("f"),
    )
    .await
    .unwrap();
    let creates: Vec<_> = sim
        .request_log()
        .into_iter()
        .filter(|r| r.verb == "create")
        .collect();
    let codes: Vec<u16> = creates.iter().map(|r| r.code).collect();
    assert_eq!(codes, vec![500, 500, 201]);
    let last = creates.last().unwrap();
    assert_eq!(
        (
            last.resource.as_str(),
            last.namespace.as_str(),
            last.field_manager.as_str()
        ),
        ("configmaps", "default", "tester")
    );
    let (code, _) = raw_with_agent(
        &client_for_agent(&sim),
        "/api/v1/namespaces/default/configmaps",
        "medplat/0.1 (test)",
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(
        sim.request_log().last().unwrap().user_agent,
        "medplat/0.1 (test)"
    );
    // kube retries 429 by default (with Retry-After), so an injected 429 is absorbed.
    sim.faults().fail_next(1, "create", "configmaps", 429);
    let retrying: Api<ConfigMap> = Api::namespaced(sim.client(), "default");
    retrying
        .create(&PostParams::default(), &cm("g"))
        .await
        .unwrap();
    let tail: Vec<u16> = sim
        .request_log()
        .iter()
        .rev()
        .take(2)
        .map(|r| r.code)
        .collect();
    assert_eq!(tail, vec![201, 429]);
    sim.shutdown().await;
}

#[tokio::test]
async fn admin_endpoint_faults_delay_and_log() {
    let sim = Sim::start().await.unwrap();
    let client = no_retry_client(&sim);
    let (code, _) = raw(
        &client,
        "POST",
        "/kubesim/faults/fail",
        "application/json",
        serde_json::to_vec(&json!({"count": 1, "verb": "list", "resource": "pods", "code": 409}))
            .unwrap(),
    )
    .await;
    assert_eq!(code, 200);
    let (code, status) = raw(
        &client,
        "GET",
        "/api/v1/namespaces/default/pods",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!((code, status["reason"].as_str()), (409, Some("Conflict")));
    let (code, _) = raw(
        &client,
        "GET",
        "/api/v1/namespaces/default/pods",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 200);
    raw(
        &client,
        "POST",
        "/kubesim/faults/delay",
        "application/json",
        br#"{"millis": 300}"#.to_vec(),
    )
    .await;
    let t = Instant::now();
    raw(&client, "GET", "/version", "application/json", vec![]).await;
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "responses are delayed"
    );
    raw(
        &client,
        "POST",
        "/kubesim/faults/clear",
        "application/json",
        vec![],
    )
    .await;
    let (code, log) = raw(
        &client,
        "GET",
        "/kubesim/requests",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 200);
    let entries = log.as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["verb"] == "list" && e["code"] == 409),
        "{log}"
    );
    assert!(
        entries
            .iter()
            .all(|e| !e["path"].as_str().unwrap().starts_with("/kubesim")),
        "admin calls are not logged"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn admin_endpoint_random_faults() {
    let sim = Sim::start().await.unwrap();
    let client = no_retry_client(&sim);
    let post = |body: Value| {
        let client = client.clone();
        async move {
            raw(
                &client,
                "POST",
                "/kubesim/faults/random",
                "application/json",
                serde_json::to_vec(&body).unwrap(),
            )
            .await
        }
    };
    let (code, _) = post(json!({"percent": 5, "codes": []})).await;
    assert_eq!(code, 400, "codes are required");
    let (code, _) = post(json!({"percent": 101, "codes": [500]})).await;
    assert_eq!(code, 400, "percent is 0-100");
    let (code, body) = post(
        json!({"percent": 100, "verb": "list", "resource": "pods", "codes": [429], "seed": 3}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let pods = "/api/v1/namespaces/default/pods";
    let (code, _) = raw(&client, "GET", pods, "application/json", vec![]).await;
    assert_eq!(code, 429);
    let (code, _) = raw(
        &client,
        "GET",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 200, "only matching requests fail");
    let (_, faults) = raw(
        &client,
        "GET",
        "/kubesim/faults",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(faults["random"][0]["codes"], json!([429]), "{faults}");
    raw(
        &client,
        "POST",
        "/kubesim/faults/clear",
        "application/json",
        vec![],
    )
    .await;
    let (code, _) = raw(&client, "GET", pods, "application/json", vec![]).await;
    assert_eq!(code, 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn closed_watches_and_restarts_are_survived_by_the_watcher() {
    let sim = Sim::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(sim.client(), "default");
    let mut stream = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    api.create(&PostParams::default(), &cm("one"))
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.metadata.name.as_deref(), Some("one"));
    sim.faults().close_watches();
    tokio::time::sleep(Duration::from_millis(100)).await;
    api.create(&PostParams::default(), &cm("two"))
        .await
        .unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(second.metadata.name.as_deref(), Some("two"));
    sim.restart().await;
    api.create(&PostParams::default(), &cm("three"))
        .await
        .unwrap();
    loop {
        let o = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if o.metadata.name.as_deref() == Some("three") {
            break;
        }
    }
    assert!(
        api.get_opt("one").await.unwrap().is_some(),
        "a restart forgets nothing"
    );
    let watches = sim
        .request_log()
        .iter()
        .filter(|r| r.verb == "watch")
        .count();
    assert!(
        watches >= 2,
        "the watch was re-established ({watches} watch requests)"
    );
    sim.shutdown().await;
}

// Bad input gets the real server's status codes and Status shapes.
// https://kubernetes.io/docs/reference/using-api/api-concepts/ (HTTP status codes) and
// https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/status/
#[tokio::test]
async fn bad_input_matrix() {
    let sim = Sim::builder().max_body(4096).start().await.unwrap();
    let c = no_retry_client(&sim);
    let cms = "/api/v1/namespaces/default/configmaps";
    let big = serde_json::to_vec(
        &json!({"metadata": {"name": "big"}, "data": {"x": "y".repeat(10_000)}}),
    )
    .unwrap();
    // (method, path, content type, body, code, reason, message fragment)
    type Case<'a> = (&'a str, &'a str, &'a str, Vec<u8>, u16, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            "POST",
            cms,
            "application/json",
            b"{not json".to_vec(),
            400,
            "BadRequest",
            "json parse error",
        ),
        (
            "POST",
            cms,
            "application/json",
            b"[1,2]".to_vec(),
            400,
            "BadRequest",
            "JSON object",
        ),
        (
            "POST",
            cms,
            "application/json",
            b"".to_vec(),
            400,
            "BadRequest",
            "empty",
        ),
        (
            "POST",
            cms,
            "application/yaml",
            b"metadata: {name: from-yaml}\n".to_vec(),
            201,
            "",
            "",
        ),
        (
            "POST",
            cms,
            "application/yaml",
            b"metadata: [unclosed\n".to_vec(),
            400,
            "BadRequest",
            "yaml",
        ),
        (
            "POST",
            cms,
            "application/vnd.kubernetes.protobuf",
            b"k8s\x00\x0a\x0f\x0a\x08batch/v1\x12\x03Job".to_vec(),
            415,
            "UnsupportedMediaType",
            "protobuf",
        ),
        (
            "POST",
            cms,
            "application/vnd.kubernetes.protobuf",
            b"k8s".to_vec(),
            400,
            "BadRequest",
            "protobuf",
        ),
        (
            "POST",
            cms,
            "application/json",
            br#"{"apiVersion":"v2","kind":"ConfigMap","metadata":{"name":"x"}}"#.to_vec(),
            400,
            "BadRequest",
            "does not match the expected API version (v1)",
        ),
        (
            "POST",
            cms,
            "application/json",
            br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}"#.to_vec(),
            400,
            "BadRequest",
            "does not match the expected kind",
        ),
        (
            "POST",
            cms,
            "application/json",
            big,
            413,
            "RequestEntityTooLarge",
            "too large",
        ),
        (
            "GET",
            "/api/v1/namespaces/default/widgets",
            "application/json",
            vec![],
            404,
            "NotFound",
            "the server could not find the requested resource",
        ),
        (
            "GET",
            "/apis/nope.io/v1/things",
            "application/json",
            vec![],
            404,
            "NotFound",
            "could not find",
        ),
        (
            "GET",
            "/api/v1/nodes/x/y/z/w",
            "application/json",
            vec![],
            404,
            "NotFound",
            "",
        ),
        (
            "GET",
            "/api/v1/namespaces/default/configmaps?labelSelector=a%3D(b",
            "application/json",
            vec![],
            400,
            "BadRequest",
            "unable to parse requirement",
        ),
        (
            "GET",
            "/api/v1/namespaces/default/configmaps?fieldSelector=spec.x%3Dy",
            "application/json",
            vec![],
            400,
            "BadRequest",
            "field label not supported",
        ),
        (
            "GET",
            "/api/v1/namespaces/default/configmaps?limit=abc",
            "application/json",
            vec![],
            400,
            "BadRequest",
            "limit",
        ),
        (
            "GET",
            "/api/v1/namespaces/default/configmaps?continue=%21%21",
            "application/json",
            vec![],
            400,
            "BadRequest",
            "continue",
        ),
        (
            "GET",
            "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=xyz",
            "application/json",
            vec![],
            400,
            "BadRequest",
            "resourceVersion",
        ),
        (
            "PATCH",
            "/api/v1/namespaces/default/configmaps/from-yaml",
            "text/plain",
            b"{}".to_vec(),
            415,
            "UnsupportedMediaType",
            "unknown format",
        ),
        (
            "PATCH",
            "/api/v1/namespaces/default/configmaps/from-yaml",
            "application/json-patch+json",
            b"{\"op\":1}".to_vec(),
            400,
            "BadRequest",
            "JSON patch",
        ),
        (
            "PATCH",
            "/api/v1/namespaces/default/configmaps/missing",
            "application/merge-patch+json",
            b"{}".to_vec(),
            404,
            "NotFound",
            "configmaps \"missing\" not found",
        ),
        (
            "PUT",
            cms,
            "application/json",
            b"{}".to_vec(),
            405,
            "MethodNotAllowed",
            "",
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps?fieldValidation=Bogus",
            "application/json",
            b"{}".to_vec(),
            400,
            "BadRequest",
            "fieldValidation",
        ),
        (
            "DELETE",
            "/api/v1/namespaces/default/configmaps/from-yaml",
            "application/json",
            br#"{"propagationPolicy":"Sideways"}"#.to_vec(),
            422,
            "Invalid",
            "propagationPolicy",
        ),
    ];
    for (method, path, ct, body, code, reason, fragment) in cases {
        let (got, status) = raw(&c, method, path, ct, body).await;
        assert_eq!(got, code, "{method} {path} ({ct}): {status}");
        if !reason.is_empty() {
            assert_eq!(status["kind"], "Status", "{method} {path}: {status}");
            assert_eq!(status["status"], "Failure");
            assert_eq!(status["code"], code);
            assert_eq!(status["reason"], reason, "{method} {path}: {status}");
            assert!(
                status["message"].as_str().unwrap().contains(fragment),
                "{method} {path}: {status}"
            );
        }
    }
    sim.shutdown().await;
}

/// A small deterministic generator (xorshift) so the corpus is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

// The router never panics and the server keeps answering, whatever the path, method, query or body.
#[tokio::test]
async fn fuzz_corpus_never_breaks_the_router() {
    let sim = Sim::builder().max_body(64 * 1024).start().await.unwrap();
    let c = no_retry_client(&sim);
    let prefixes = [
        "/api/v1",
        "/apis/apps/v1",
        "/apis/batch/v1",
        "/apis/apiextensions.k8s.io/v1",
        "/apis/events.k8s.io/v1",
        "/apis/policy/v1",
        "/apis/nope.io/v1",
        "/apis/apps",
        "/api",
        "/openapi/v3/apis/apps/v1",
        "/kubesim",
        "/%zz",
    ];
    let namespaces = [
        "",
        "/namespaces/default",
        "/namespaces/kube-system",
        "/namespaces/missing",
        "/namespaces/%2F..",
        "/watch/namespaces/default",
    ];
    let resources = [
        "/pods",
        "/configmaps",
        "/namespaces",
        "/nodes",
        "/deployments",
        "/jobs",
        "/events",
        "/customresourcedefinitions",
        "/poddisruptionbudgets",
        "/widgets",
        "/requests",
        "",
        "/secrets",
    ];
    let names = [
        "",
        "/fz",
        "/default",
        "/kubesim-node",
        "/x%00y",
        "/UPPER",
        "/a.b.c",
    ];
    let subs = [
        "",
        "/status",
        "/scale",
        "/eviction",
        "/finalize",
        "/log",
        "/x/y",
    ];
    let queries = [
        "",
        "?watch=true&timeoutSeconds=1",
        "?limit=-1",
        "?limit=99999999999999999999",
        "?continue=eyJ4Ijox",
        "?labelSelector=!!",
        "?labelSelector=a%20in%20(",
        "?fieldSelector===",
        "?resourceVersion=-5&watch=1&timeoutSeconds=1",
        "?dryRun=All",
        "?force=maybe",
        "?propagationPolicy=x",
        "?sendInitialEvents=true&watch=1&timeoutSeconds=1",
        "?includeObject=Object",
        "?%zz=%zz",
    ];
    let methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"];
    let types = [
        "application/json",
        "application/yaml",
        "application/merge-patch+json",
        "application/json-patch+json",
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
        "application/vnd.kubernetes.protobuf",
        "",
    ];
    let bodies: Vec<Vec<u8>> = vec![
        vec![],
        b"{}".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"{\"metadata\":{\"name\":\"fz\",\"labels\":{\"a\":1}},\"spec\":{\"containers\":\"no\"}}".to_vec(),
        b"{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"fz\",\"ownerReferences\":[{\"uid\":5}],\"finalizers\":[1,2]}}".to_vec(),
        b"[{\"op\":\"remove\",\"path\":\"/metadata\"}]".to_vec(),
        b"{\"metadata\":{\"generateName\":\"\"}}".to_vec(),
        b"{\"spec\":{\"replicas\":1e400}}".to_vec(),
        "[".repeat(200).into_bytes(),
        "a: &a [*a, *a]\n".as_bytes().to_vec(),
        vec![0xff, 0xfe, 0x00, 0x7b],
        format!("{{\"metadata\":{{\"name\":\"{}\"}}}}", "n".repeat(300)).into_bytes(),
    ];
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..600 {
        let mut path = format!(
            "{}{}{}{}{}",
            rng.pick(&prefixes),
            rng.pick(&namespaces),
            rng.pick(&resources),
            rng.pick(&names),
            rng.pick(&subs)
        );
        path.push_str(rng.pick(&queries));
        let Ok(uri) = path.parse::<http::Uri>() else {
            continue;
        };
        let body = bodies[(rng.next() % bodies.len() as u64) as usize].clone();
        let req = http::Request::builder()
            .method(rng.pick(&methods))
            .uri(uri)
            .header("content-type", rng.pick(&types))
            .body(kube::client::Body::from(body))
            .unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(5), c.send(req))
            .await
            .expect("answered in time")
            .expect("answered");
        let code = resp.status().as_u16();
        assert_ne!(code, 500, "no internal errors from bad input: {path}");
        let _ = tokio::time::timeout(Duration::from_secs(3), resp.into_body().collect()).await;
        *seen.entry(code).or_insert(0) += 1;
    }
    let (code, _) = raw(&c, "GET", "/version", "application/json", vec![]).await;
    assert_eq!(
        code, 200,
        "still serving after the corpus; codes seen: {seen:?}"
    );
    assert!(
        seen.len() >= 4,
        "the corpus exercises several paths: {seen:?}"
    );
    sim.shutdown().await;
}
