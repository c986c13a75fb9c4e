//! The `files` connector and the sink on object-store tiers: CSV, HL7 v2 and FHIR NDJSON read
//! from an in-memory store, a round trip through a real S3 endpoint (moto, started by
//! `scripts/lib/with-services.sh`), requests signed with the Secret's keys, and an HTTPS-only
//! endpoint whose certificate the worker binary must trust.

use std::path::Path;
use std::sync::Arc;

use medplat::api::data_source::Charset;
use medplat::api::resolved::ResolvedPipeline;
use medplat::worker::charset::encode;
use medplat::worker::local::resolve_from_manifests;

use super::{doc, output_rows, run, run_with_store, runtime, secret, service_env, write_manifests};

/// An object-store tier; tests give the run an in-memory store for it.
const LAKE_TIER: &str = r#"
apiVersion: medplat.io/v1alpha1
kind: StorageTier
metadata: {name: lake}
spec:
  domain: clinical
  maxLevel: L4
  encryption: required
  backend: {objectStore: {endpoint: "http://127.0.0.1:1", bucket: lake, accessKeyId: {name: lake-keys, key: id}, secretAccessKey: {name: lake-keys, key: secret}, serverSideEncryption: true}}
  retentionDays: 30
"#;

#[test]
fn worker_reads_csv_hl7_and_ndjson_files_from_an_object_store_tier() {
    use object_store::ObjectStoreExt;
    let rt = runtime();
    let store: Arc<dyn object_store::ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let lab = "specimen,patient\nS1,P1\nS2,\"P,2\"\nS3\n";
    let adt = "MSH|^~\\&|HIS|H|||20261128||ADT^A01|1|P|2.5\rPID|1||P7||王^五\r";
    for (path, body) in [
        ("landing/lab/a.csv", lab.as_bytes().to_vec()),
        (
            "landing/lab/.uploading.csv",
            b"specimen,patient\nX,X\n".to_vec(),
        ),
        (
            "landing/adt/a.hl7",
            encode(adt, Charset::Gb18030).into_owned(),
        ),
        (
            "landing/fhir/a.ndjson",
            b"{\"resourceType\":\"Patient\",\"id\":\"p1\"}\n{\"id\":\"x\"}\n".to_vec(),
        ),
    ] {
        rt.block_on(store.put(&path.into(), bytes::Bytes::from(body).into()))
            .unwrap();
    }
    // (the connector after its location, records kept, records quarantined)
    let cases = [
        ("landing/lab}, format: csv, pattern: \"*.csv\"", 2, 1),
        (
            "landing/adt}, format: hl7v2, charset: GB18030, pattern: \"*.hl7\"",
            1,
            0,
        ),
        (
            "landing/fhir}, format: fhir-ndjson, pattern: \"*.ndjson\"",
            1,
            1,
        ),
    ];
    for (location, kept, quarantined) in cases {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        secret(d, "lake-keys", "id", "dev-only-id");
        secret(d, "lake-keys", "secret", "dev-only-secret");
        let source = format!(
            "  system: LIS\n  connector: {{files: {{location: {{tier: lake, path: {location}}}}}"
        );
        write_manifests(d, &source, "[]");
        let all = d.join("manifests/all.yaml");
        let mut manifests = std::fs::read_to_string(&all).unwrap();
        // The source's tier, an object store; the sink stays the volume tier `out`.
        manifests.push_str("---");
        manifests.push_str(LAKE_TIER);
        std::fs::write(&all, manifests).unwrap();
        let report = run_with_store(&rt, &doc(d), Some(store.clone()));
        assert!(report.error.is_none(), "{location}: {:?}", report.summary);
        let m = report.manifest.unwrap();
        assert_eq!(
            (m.counts.records_out, m.counts.quarantined),
            (kept, quarantined),
            "{location}"
        );
        let rows = output_rows(d);
        assert_eq!(rows.len() as u64, kept, "{location}");
        if location.contains("csv") {
            assert_eq!(rows[1]["patient"], "P,2");
        }
        if location.contains("hl7") {
            assert_eq!(rows[0]["PID"]["5"]["1"], "王");
        }
    }
}

/// The loopback S3 endpoint (moto's server).
fn s3_endpoint() -> Option<String> {
    service_env("MEDPLAT_TEST_S3_ENDPOINT", "S3")
}

/// Two volume tiers (`raw`, `out`), an S3 tier `lake`, a CSV DataSource on `raw`, a
/// DataSource `back` on what a pipeline wrote to `lake`, and pipelines `to-lake` (raw → lake
/// dataset `lab`) and `from-lake` (lake → out dataset `data`).
fn s3_manifests(endpoint: &str, bucket: &str, back_path: &str) -> String {
    s3_manifests_trusting(endpoint, bucket, back_path, None)
}

/// [`s3_manifests`], with the `lake` tier's `caBundle` set to `ca_bundle`.
fn s3_manifests_trusting(
    endpoint: &str,
    bucket: &str,
    back_path: &str,
    ca_bundle: Option<&str>,
) -> String {
    let ca = ca_bundle
        .map(|pem| format!(", caBundle: {}", serde_json::to_string(pem).unwrap()))
        .unwrap_or_default();
    let volume = "backend: {volume: {storageClassName: s, size: 1Gi}}";
    let grants = |p: &str, src: &str, sink: &str| {
        format!(
            "apiVersion: medplat.io/v1alpha1\nkind: AccessPolicy\nmetadata: {{name: {p}, namespace: t}}\nspec:\n  purpose: Treatment\n  subjects: [{{kind: ServiceAccount, name: medplat-pipeline-{p}}}]\n  rules:\n    - {{resources: {{kind: DataSource, names: [{src}]}}, verbs: [read]}}\n    - {{resources: {{kind: StorageTier, names: [{sink}]}}, verbs: [write]}}\n"
        )
    };
    let tier = |name: &str, backend: &str| {
        format!(
            "apiVersion: medplat.io/v1alpha1\nkind: StorageTier\nmetadata: {{name: {name}}}\nspec: {{domain: clinical, maxLevel: L4, encryption: required, {backend}, retentionDays: 30}}\n"
        )
    };
    let source = |name: &str, files: &str| {
        format!(
            "apiVersion: medplat.io/v1alpha1\nkind: DataSource\nmetadata: {{name: {name}, namespace: t}}\nspec:\n  system: LIS\n  connector: {{files: {files}}}\n  classification: {{level: L4, domain: clinical}}\n  fields: []\n"
        )
    };
    let pipeline = |name: &str, src: &str, sink: &str, dataset: &str| {
        format!(
            "apiVersion: medplat.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: {name}, namespace: t}}\nspec:\n  purpose: Treatment\n  sources: [{src}]\n  steps: []\n  sink: {{tier: {sink}, dataset: {dataset}}}\n"
        )
    };
    [
        tier("raw", volume),
        tier("out", volume),
        tier(
            "lake",
            &format!(
                "backend: {{objectStore: {{endpoint: \"{endpoint}\", bucket: {bucket}, accessKeyId: {{name: lake-keys, key: id}}, secretAccessKey: {{name: lake-keys, key: secret}}, serverSideEncryption: true{ca}}}}}"
            ),
        ),
        source(
            "lis",
            "{location: {tier: raw, path: in}, format: csv, pattern: \"*.csv\"}",
        ),
        source(
            "back",
            &format!(
                "{{location: {{tier: lake, path: \"{back_path}\"}}, format: ndjson, pattern: \"*.ndjson\"}}"
            ),
        ),
        pipeline("to-lake", "lis", "lake", "lab"),
        pipeline("from-lake", "back", "out", "data"),
        grants("to-lake", "lis", "lake"),
        grants("from-lake", "back", "out"),
    ]
    .join("---\n")
}

/// Writes [`s3_manifests`] under `d` and resolves `pipeline` from them.
fn resolve_s3(
    d: &Path,
    endpoint: &str,
    bucket: &str,
    pipeline: &str,
    back_path: &str,
) -> ResolvedPipeline {
    std::fs::create_dir_all(d.join("manifests")).unwrap();
    std::fs::write(
        d.join("manifests/all.yaml"),
        s3_manifests(endpoint, bucket, back_path),
    )
    .unwrap();
    resolve_from_manifests(
        &d.join("manifests"),
        "t",
        pipeline,
        &d.join("data"),
        &d.join("secrets"),
    )
    .unwrap()
}

/// The test's own client of a bucket, to see what a reader of it sees; it trusts `ca_pem` as
/// well as the system's roots.
fn s3_store(
    endpoint: &str,
    bucket: &str,
    key_id: &str,
    secret: &str,
    ca_pem: Option<&[u8]>,
) -> impl object_store::ObjectStore {
    let mut client = object_store::ClientOptions::new().with_allow_http(true);
    if let Some(pem) = ca_pem {
        client = client.with_root_certificate(object_store::Certificate::from_pem(pem).unwrap());
    }
    object_store::aws::AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_bucket_name(bucket)
        .with_region("us-east-1")
        .with_access_key_id(key_id)
        .with_secret_access_key(secret)
        .with_client_options(client)
        .build()
        .unwrap()
}

#[test]
fn worker_writes_to_and_reads_from_a_real_s3_endpoint() {
    let Some(endpoint) = s3_endpoint() else {
        return;
    };
    let rt = runtime();
    let bucket = format!("medplat-test-{}", std::process::id());
    // moto keeps no accounts: any key pair is accepted, and a PUT makes the bucket.
    let created = rt
        .block_on(
            reqwest::Client::new()
                .put(format!("{endpoint}/{bucket}"))
                .send(),
        )
        .unwrap();
    assert!(created.status().is_success(), "{:?}", created.status());

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    secret(d, "lake-keys", "id", "dev-only-key-id");
    secret(d, "lake-keys", "secret", "dev-only-secret-key");
    let rows = 3_000;
    let mut csv = String::from("specimen,patient\n");
    for i in 0..rows {
        csv.push_str(&format!("S{i},患者{i}\n"));
    }
    std::fs::create_dir_all(d.join("data/raw/in")).unwrap();
    std::fs::write(d.join("data/raw/in/a.csv"), csv).unwrap();
    let resolve =
        |pipeline: &str, back_path: &str| resolve_s3(d, &endpoint, &bucket, pipeline, back_path);

    // Volume → S3, through the worker's own S3 client (no store given to the run).
    let wrote = run(&rt, &resolve("to-lake", "unused"));
    assert!(wrote.error.is_none(), "{:?}", wrote.summary);
    let m = wrote.manifest.unwrap();
    assert_eq!(m.counts.records_out, rows);

    // What a reader of the bucket sees: the pointer written last names that version.
    let store = s3_store(
        &endpoint,
        &bucket,
        "dev-only-key-id",
        "dev-only-secret-key",
        None,
    );
    let current: serde_json::Value = rt.block_on(async {
        use object_store::ObjectStoreExt;
        let b = store
            .get(&"lab/_CURRENT".into())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        serde_json::from_slice(&b).unwrap()
    });
    assert_eq!(current["runId"], m.run_id.as_str());
    let part = current["files"][0]["path"].as_str().unwrap();
    let version = format!("_versions/{}", m.run_id);
    assert_eq!(part, format!("{version}/{}", m.files[0].path));
    let listed: Vec<String> = rt.block_on(async {
        use futures::TryStreamExt;
        use object_store::ObjectStore;
        store
            .list(Some(&"lab".into()))
            .map_ok(|o| o.location.to_string())
            .try_collect()
            .await
            .unwrap()
    });
    assert!(
        listed.contains(&format!("lab/{part}")),
        "{part} in {listed:?}"
    );

    // S3 → volume: the version's part files read back as a source.
    let read = run(&rt, &resolve("from-lake", &format!("lab/{version}")));
    assert!(read.error.is_none(), "{:?}", read.summary);
    assert_eq!(read.manifest.unwrap().counts.records_in, rows);
    let back = output_rows(d);
    assert_eq!(back.len() as u64, rows);
    assert_eq!(back[7]["patient"], "患者7");
}

/// The signature-checking moto: its endpoint, and the only key pair it accepts (for bucket
/// `medplat-signed`).
fn signed_s3() -> Option<(String, String, String)> {
    let v = service_env("MEDPLAT_TEST_S3_SIGNED", "signed S3")?;
    let mut parts = v.split(' ').map(str::to_string);
    Some((parts.next()?, parts.next()?, parts.next()?))
}

#[test]
fn worker_signs_s3_requests_with_the_secrets_keys_and_a_wrong_key_fails_before_any_output() {
    let Some((endpoint, key_id, key_secret)) = signed_s3() else {
        return;
    };
    let bucket = "medplat-signed";
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("data/raw/in")).unwrap();
    std::fs::write(
        d.join("data/raw/in/a.csv"),
        "specimen,patient\nS1,患者1\nS2,患者2\n",
    )
    .unwrap();
    let resolve = |pipeline: &str, back_path: &str, id: &str, secret_key: &str| {
        secret(d, "lake-keys", "id", id);
        secret(d, "lake-keys", "secret", secret_key);
        resolve_s3(d, &endpoint, bucket, pipeline, back_path)
    };
    let store = s3_store(&endpoint, bucket, &key_id, &key_secret, None);
    let objects = || -> Vec<String> {
        rt.block_on(async {
            use futures::TryStreamExt;
            use object_store::ObjectStore;
            let mut names: Vec<String> = store
                .list(None)
                .map_ok(|o| o.location.to_string())
                .try_collect()
                .await
                .unwrap();
            names.sort();
            names
        })
    };

    // The Secret's key pair, correctly signed: every part, the version's manifest and the
    // pointer are PUT, each signature checked by the store.
    let wrote = run(&rt, &resolve("to-lake", "unused", &key_id, &key_secret));
    assert!(wrote.error.is_none(), "{:?}", wrote.error);
    let manifest = wrote.manifest.unwrap();
    // moto 5.2.1 miscomputes the signature of a listing with a prefix (getmoto/moto#5948),
    // so removing old versions after the commit fails there: the run has committed and
    // says so in a warning instead of failing.
    for w in &wrote.summary.warnings {
        assert!(w.contains("lab/_versions"), "{w}");
    }
    let part = format!(
        "lab/_versions/{}/{}",
        manifest.run_id, manifest.files[0].path
    );
    let (pointer, rows) = rt.block_on(async {
        use object_store::ObjectStoreExt;
        let get = |p: String| {
            let store = &store;
            async move { store.get(&p.into()).await.unwrap().bytes().await.unwrap() }
        };
        (get("lab/_CURRENT".into()).await, get(part.clone()).await)
    });
    let pointer: serde_json::Value = serde_json::from_slice(&pointer).unwrap();
    assert_eq!(pointer["runId"], manifest.run_id.as_str());
    assert_eq!(String::from_utf8_lossy(&rows).lines().count(), 2);
    let before = objects();
    assert!(before.contains(&part), "{part} in {before:?}");

    // A wrong secret, and a key id the store does not know: the store refuses the first
    // request, the run fails naming the tier, and the bucket is as it was.
    let wrong_secret = "wrong-secret-for-a-known-key-id";
    for (id, secret_key, refusal) in [
        (key_id.as_str(), wrong_secret, "SignatureDoesNotMatch"),
        (
            "AKIAUNKNOWNKEY000000",
            key_secret.as_str(),
            "InvalidAccessKeyId",
        ),
    ] {
        let failed = run(&rt, &resolve("to-lake", "unused", id, secret_key));
        let error = format!("{}", failed.error.expect("a refused key must fail the run"));
        assert!(error.contains(refusal), "{refusal} in: {error}");
        assert!(failed.manifest.is_none());
        let summary = serde_json::to_string(&failed.summary).unwrap();
        // The key id is part of the Secret too: real S3 echoes it in SignatureDoesNotMatch.
        for value in [wrong_secret, key_secret.as_str(), key_id.as_str()] {
            assert!(!error.contains(value), "a secret in the error: {error}");
            assert!(
                !summary.contains(value),
                "a secret in the summary: {summary}"
            );
        }
        assert_eq!(objects(), before);
    }
}

/// The HTTPS moto (a certificate for `localhost` from the throw-away CA) and that CA's file.
fn tls_s3() -> Option<(String, String)> {
    let endpoint = service_env("MEDPLAT_TEST_S3_TLS", "S3 over TLS")?;
    let ca = service_env("MEDPLAT_TEST_PG_CA", "S3 over TLS")?;
    Some((endpoint, ca))
}

/// `medplat worker run` on the `to-lake` pipeline of [`s3_manifests`] under `d`, with
/// `SSL_CERT_FILE` set to `trust` (or the system's trust store when `None`).
fn worker_binary(d: &Path, trust: Option<&str>) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_medplat"));
    cmd.args(["worker", "run", "--manifests"])
        .arg(d.join("manifests"))
        .args(["--pipeline", "to-lake", "--namespace", "t", "--local-root"])
        .arg(d.join("data"))
        .arg("--secrets")
        .arg(d.join("secrets"))
        .arg("--termination-log")
        .arg(d.join("termination-log"))
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR");
    if let Some(file) = trust {
        cmd.env("SSL_CERT_FILE", file);
    }
    cmd.output().unwrap()
}

/// Against an S3 endpoint that speaks only HTTPS, the worker binary verifies the store's
/// certificate (rustls): it writes the dataset when the issuing CA is trusted, through the
/// platform's trust store or the tier's `caBundle`, and fails without committing anything
/// when it is not.
#[test]
fn worker_writes_to_an_https_s3_endpoint_only_when_it_trusts_the_certificate() {
    let Some((endpoint, ca)) = tls_s3() else {
        return;
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = runtime();
    let pem = std::fs::read(&ca).unwrap();
    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    secret(d, "lake-keys", "id", "dev-only-key-id");
    secret(d, "lake-keys", "secret", "dev-only-secret-key");
    std::fs::create_dir_all(d.join("data/raw/in")).unwrap();
    std::fs::write(
        d.join("data/raw/in/a.csv"),
        "specimen,patient\nS1,患者1\nS2,患者2\n",
    )
    .unwrap();
    // What a reader of the bucket sees: the committed run manifest, if any.
    let current = |bucket: &str| {
        let store = s3_store(
            &endpoint,
            bucket,
            "dev-only-key-id",
            "dev-only-secret-key",
            Some(&pem),
        );
        rt.block_on(async {
            use object_store::ObjectStoreExt;
            match store.get(&"lab/_CURRENT".into()).await {
                Ok(got) => Some(
                    serde_json::from_slice::<serde_json::Value>(&got.bytes().await.unwrap())
                        .unwrap(),
                ),
                Err(object_store::Error::NotFound { .. }) => None,
                Err(e) => panic!("reading {bucket}/lab/_CURRENT: {e}"),
            }
        })
    };

    let ca_pem = String::from_utf8(pem.clone()).unwrap();
    for (bucket, trust, ca_bundle) in [
        ("medplat-untrusted", None, None),
        ("medplat-system-trust", Some(ca.as_str()), None),
        ("medplat-tier-trust", None, Some(ca_pem.as_str())),
    ] {
        // moto keeps no accounts: any key pair is accepted, and a PUT makes the bucket.
        let created = rt
            .block_on(trusting.put(format!("{endpoint}/{bucket}")).send())
            .unwrap();
        assert!(created.status().is_success(), "{:?}", created.status());
        std::fs::create_dir_all(d.join("manifests")).unwrap();
        std::fs::write(
            d.join("manifests/all.yaml"),
            s3_manifests_trusting(&endpoint, bucket, "unused", ca_bundle),
        )
        .unwrap();
        let out = worker_binary(d, trust);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let committed = current(bucket);
        if trust.is_some() || ca_bundle.is_some() {
            assert!(out.status.success(), "{bucket}: {stderr}");
            let manifest = committed.expect("the run committed no _CURRENT");
            assert_eq!(manifest["counts"]["recordsOut"], 2, "{manifest}");
        } else {
            assert!(
                !out.status.success(),
                "an untrusted certificate was accepted"
            );
            // The run's own account (the termination message the operator reads), not a
            // library's log line, says what was wrong.
            let summary: serde_json::Value =
                serde_json::from_slice(&std::fs::read(d.join("termination-log")).unwrap()).unwrap();
            let message = summary["message"].as_str().unwrap_or_default();
            assert!(
                message.contains("invalid peer certificate"),
                "the failure does not say what was wrong: {message}"
            );
            assert_eq!(committed, None, "a failed run committed");
        }
    }
}

/// The StorageTier probe over HTTPS: the endpoint is verified only when its certificate's CA
/// is trusted (here through `caBundle`), says why when it is not, and a `caBundle` that is no
/// certificate stalls the tier naming the field.
#[test]
fn the_storage_tier_probe_trusts_the_tier_ca_bundle() {
    use medplat::api::storage_tier::{Encryption, ObjectStoreBackend};
    use medplat::controller::storage_tier::verify_object_store;
    let Some((endpoint, ca)) = tls_s3() else {
        return;
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let backend = |ca_bundle: Option<String>| -> ObjectStoreBackend {
        serde_json::from_value(serde_json::json!({
            "endpoint": endpoint, "bucket": "probe",
            "accessKeyId": {"name": "k", "key": "id"},
            "secretAccessKey": {"name": "k", "key": "secret"},
            "serverSideEncryption": true, "caBundle": ca_bundle,
        }))
        .unwrap()
    };
    let probe = |b: ObjectStoreBackend| {
        runtime().block_on(verify_object_store(
            &b,
            Encryption::Required,
            std::time::Duration::from_secs(10),
        ))
    };
    let trusted = probe(backend(Some(std::fs::read_to_string(&ca).unwrap())));
    assert!(trusted.verified, "{}", trusted.message);
    assert_eq!(trusted.reason, "ObjectStoreReachable");

    let untrusted = probe(backend(None));
    assert!(!untrusted.verified);
    assert_eq!(untrusted.reason, "ObjectStoreUnreachable");
    assert!(
        untrusted.message.contains("invalid peer certificate"),
        "{}",
        untrusted.message
    );

    let garbage = probe(backend(Some(
        "-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n".into(),
    )));
    assert!(!garbage.verified);
    assert_eq!(garbage.reason, "InvalidCABundle");
    assert!(
        garbage
            .message
            .starts_with("spec.backend.objectStore.caBundle"),
        "{}",
        garbage.message
    );
}
