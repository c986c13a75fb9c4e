//! Secrets never leak. Distinctive values are planted in every Secret medplat touches (the HIS
//! database password, the de-identification and linkage keys, an object store's secret key and
//! the webhook's TLS key); then
//! - the operator and its admission webhook run the hospital against kubesim, with failure
//!   paths (a missing Secret, an unreachable object store, a refused Pipeline, a deleted one);
//! - the worker runs the example pipelines as a process, with failure paths (a wrong database
//!   password, a missing key, an unreachable object store) and, when `MEDPLAT_TEST_PG_URL` is
//!   set, a real PostgreSQL source;
//!
//! and no planted value may appear, raw, base64 or hex, in any log line (debug level), API object
//! other than a Secret (every version kubesim stored: Events, status, ConfigMaps with the
//! resolved-pipeline documents and policy bundles, Jobs, …), metric, admission answer, worker
//! output, manifest, quarantine or summary. Positive controls: the same scan finds every value
//! in the Secrets themselves, a decoy leaked on purpose (base64 in a ConfigMap, hex in a debug
//! line) is found where it was put, and the worker really sent the planted password.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use kube::api::{DeleteParams, Patch, PatchParams};
use kubesim::store::WatchFrom;
use medplat::webhook::FailurePolicy;
use medplat_integration::canary::{Artifact, Canary, Finding, files_under, scan};
use medplat_integration::{
    Cluster, OPERATOR_NAMESPACE, WEBHOOK_SECRET, eventually, repo_root, test_settings,
};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(60);
const V: &str = "medplat.io/v1alpha1";
/// Set in the environment of the worker processes this binary starts of itself.
const CHILD_ARGS: &str = "MEDPLAT_LEAK_TEST_WORKER_ARGS";

const DB_PASSWORD: &str = "canary-HIS-db-pw-7hQ2xV9kLm";
const S3_SECRET_KEY: &str = "canary-s3-SecretKey-Zr8Lm2Qe5TnWq";
const S3_ACCESS_KEY_ID: &str = "MEDPLATCANARYAKID";

/// A value leaked on purpose by the operator test, into a ConfigMap (base64) and a debug log
/// line (hex): the scan must find it there, which proves those channels really are captured
/// and scanned. It is no Secret's value, so finding it is not a leak.
const DECOY: &str = "decoy-leaked-on-purpose-4fJ8sPq2Wn";
const DECOY_NAME: &str = "decoy (leaked on purpose)";

/// The planted Secrets as `(secret, key, value)`, in the layout of `examples/hospital/secrets`.
fn planted() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        ("his-db-readonly", "username", "his_readonly"),
        ("his-db-readonly", "password", DB_PASSWORD),
        (
            "lab-deid-keys",
            "hmac-key",
            "d2a8265b1b1c35158e4edf61ae9401398cfc790cf43e6de8983d590e6526ed5f",
        ),
        (
            "lab-deid-keys",
            "encryption-key",
            "4192263ab89318b256061de915931796a3b024e4f78ebd4f3f04dce629800929",
        ),
        (
            "lab-deid-keys",
            "date-shift-key",
            "3f61ba5e89c6ba2fddaf42d69ecfc365065d0fbc79110b4a00ea834c82312a9e",
        ),
        (
            "research-deid-keys",
            "hmac-key",
            "8c4883efe6c1b6b6bc3d968f16d9b77cbb8806abc651664e9f477a4cac9e36b2",
        ),
        (
            "research-deid-keys",
            "encryption-key",
            "81e93aceefa9ba562f928719e82d517e332dfa42cb531de8899a96df46a7dd7e",
        ),
        (
            "research-deid-keys",
            "date-shift-key",
            "d84fa5e01fef1c3aa5eaa2814a4c21c6d477c1e1e39ddb2f456b986c900ad73d",
        ),
        (
            "linkage-key",
            "hmac-key",
            "80c53cc325e13762179f5f82758ce9ca4fe2f975d0c46d3223b103d8850dfc21",
        ),
        ("archive-s3-creds", "access-key-id", S3_ACCESS_KEY_ID),
        ("archive-s3-creds", "secret-access-key", S3_SECRET_KEY),
    ]
}

/// The values that must never leak (user names and access key ids are identifiers, not secrets).
fn canaries() -> Vec<Canary> {
    planted()
        .into_iter()
        .filter(|(_, key, _)| !matches!(*key, "username" | "access-key-id"))
        .map(|(secret, key, value)| Canary::new(format!("{secret}/{key}"), value))
        .collect()
}

/// Writes the planted Secrets as files, `<dir>/<secret>/<key>`.
fn plant(dir: &Path) {
    for (secret, key, value) in planted() {
        std::fs::create_dir_all(dir.join(secret)).unwrap();
        std::fs::write(dir.join(secret).join(key), format!("{value}\n")).unwrap();
    }
}

/// Fails with every finding, one per line.
fn assert_no_leak(findings: &[Finding]) {
    let lines: Vec<String> = findings.iter().map(ToString::to_string).collect();
    assert!(
        lines.is_empty(),
        "planted secret values leaked:\n{}",
        lines.join("\n")
    );
}

/// The positive control: every canary is found in `control`, so the scan can see each value.
fn assert_found_in_control(canaries: &[Canary], control: &[Artifact]) {
    let found = scan(canaries, control);
    for c in canaries {
        assert!(
            found.iter().any(|f| f.canary == c.name),
            "positive control: {} was not found where it was planted; the scan is blind",
            c.name
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The operator and the webhook against kubesim.

/// Every log line of this process at debug level.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_ansi(false)
            .with_writer(move || Capture(sink.clone()))
            .try_init();
        buffer
    })
    .clone()
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Objects beyond the hospital: an object-store tier whose credentials hold a canary and whose
/// endpoint does not answer, a DataSource and a Pipeline whose Secrets do not exist.
fn failure_objects(s3_endpoint: &str) -> Vec<Value> {
    let lab = hospital_object("Pipeline", "lab-results-curated");
    let mut missing_keys = lab.clone();
    missing_keys["metadata"] = json!({"name": "lab-missing-keys", "namespace": "clinical"});
    for step in missing_keys["spec"]["steps"].as_array_mut().unwrap() {
        if step.get("deidentify").is_some() {
            step["deidentify"]["keys"]["secretName"] = json!("no-such-keys");
        }
    }
    let mut archive = lab;
    archive["metadata"] = json!({"name": "lab-archive", "namespace": "clinical"});
    archive["spec"]["sink"] =
        json!({"tier": "archive-s3", "dataset": "lab/archive", "format": "ndjson"});
    let mut orphan = hospital_object("DataSource", "his-patients");
    orphan["metadata"] = json!({"name": "his-orphan", "namespace": "clinical"});
    orphan["spec"]["credentials"]["secretName"] = json!("no-such-secret");
    vec![
        json!({
            "apiVersion": V, "kind": "StorageTier", "metadata": {"name": "archive-s3"},
            "spec": {
                "domain": "clinical", "maxLevel": "L4", "encryption": "required",
                "retentionDays": 3650,
                "backend": {"objectStore": {
                    "endpoint": s3_endpoint, "bucket": "lab-archive",
                    "accessKeyId": {"name": "archive-s3-creds", "key": "access-key-id"},
                    "secretAccessKey": {"name": "archive-s3-creds", "key": "secret-access-key"},
                    "serverSideEncryption": true,
                }},
            },
        }),
        json!({
            "apiVersion": V, "kind": "AccessPolicy",
            "metadata": {"name": "lab-archive-grants", "namespace": "clinical"},
            "spec": {
                "purpose": "Treatment", "mode": "Enforce",
                "subjects": [{"kind": "ServiceAccount", "name": "medplat-pipeline-lab-archive"}],
                "rules": [
                    {"resources": {"kind": "DataSource", "names": ["lis-results"]}, "verbs": ["read"]},
                    {"resources": {"kind": "StorageTier", "names": ["archive-s3"]}, "verbs": ["write"]},
                ],
            },
        }),
        archive,
        missing_keys,
        orphan,
    ]
}

fn hospital_object(kind: &str, name: &str) -> Value {
    medplat::manifests::load(&[repo_root().join("examples/hospital")])
        .unwrap()
        .into_iter()
        .map(|o| o.value)
        .find(|v| v["kind"] == kind && v["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("examples/hospital has no {kind} {name}"))
}

/// The hospital's manifests (`examples/hospital/*.yaml`, not recursive, as `kubectl apply -f`).
fn hospital_manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join("examples/hospital"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// Every version of every object kubesim stored, split into Secrets and everything else.
fn stored_objects(c: &Cluster) -> (Vec<Artifact>, Vec<Artifact>) {
    let store = c.sim.objects().store();
    let mut secrets = Vec::new();
    let mut others = Vec::new();
    for rt in store.registry().all() {
        let Ok(history) = store.watch(&rt.storage, WatchFrom::After(0)) else {
            panic!("{}: the watch window no longer starts at 0", rt.plural);
        };
        for event in history.initial {
            let o = &event.object;
            let origin = format!(
                "{} {}/{} (resourceVersion {})",
                rt.kind,
                o["metadata"]["namespace"].as_str().unwrap_or_default(),
                o["metadata"]["name"].as_str().unwrap_or_default(),
                event.rv
            );
            let a = Artifact::new(origin, serde_json::to_vec(&**o).unwrap());
            if rt.group.is_empty() && rt.plural == "secrets" {
                secrets.push(a);
            } else {
                others.push(a);
            }
        }
    }
    (secrets, others)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_and_webhook_never_reveal_a_planted_secret() {
    let logs = captured_logs();
    let secrets_dir = tempfile::tempdir().unwrap();
    plant(secrets_dir.path());

    let c = Cluster::start(Cluster::default_nodes()).await;
    c.apply_yaml(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {OPERATOR_NAMESPACE}}}"
    ))
    .await;
    for file in hospital_manifests() {
        for obj in medplat::manifests::load(&[file]).unwrap() {
            c.apply(&obj.value).await;
        }
    }
    for secret in medplat::manifests::secrets_from_dir(secrets_dir.path(), "clinical").unwrap() {
        c.apply(&secret).await;
    }
    for obj in failure_objects(&format!("http://127.0.0.1:{}", closed_port())) {
        c.apply(&obj).await;
    }

    // The deliberate leak (see DECOY): a ConfigMap holding it base64-encoded, and a debug line
    // holding it in hex.
    let decoy_b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, DECOY);
    c.apply(&json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "leak-decoy", "namespace": "clinical"},
        "data": {"note": format!("wrapped {decoy_b64} here")},
    }))
    .await;
    let decoy_hex: String = DECOY.bytes().map(|b| format!("{b:02x}")).collect();
    tracing::debug!(target: "secrets_leak", "decoy {decoy_hex}");

    let op = c.start_operator(test_settings());

    // Converged: every parent's status is of its generation, and the failure paths reported.
    eventually(T, "every medplat object to be reconciled", || async {
        for (kind, ns) in [
            ("Pipeline", Some("clinical")),
            ("DataSource", Some("clinical")),
            ("StorageTier", None),
        ] {
            let list = match c.api(V, kind, ns).list(&Default::default()).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("listing {kind}: {e}");
                    return None;
                }
            };
            for o in list.items {
                let o = serde_json::to_value(o).unwrap();
                if o["status"]["observedGeneration"] != o["metadata"]["generation"] {
                    return None;
                }
            }
        }
        Some(())
    })
    .await;

    // The webhook starts once the operator's caches are ready: on main, a webhook waiting
    // for them at the same time as the controllers may never be woken (fixed on the webhook
    // branch by readiness flags).
    let wh = c.start_webhook(&op).await;
    c.register_webhook(&wh.url(), FailurePolicy::Fail).await;

    // The webhook refuses a Pipeline that names the planted keys: its answer must not carry them.
    let mut refused = hospital_object("Pipeline", "his-patients-sync");
    refused["metadata"]["name"] = json!("his-into-research");
    refused["spec"]["sink"]["tier"] = json!("research-l2");
    refused["spec"]["steps"].as_array_mut().unwrap().push(
        json!({"name": "pseudonymise", "deidentify": {
            "keys": {"secretName": "research-deid-keys"},
            "rules": [{"identifier": "direct", "method": "cryptoHash"}]}}),
    );
    let denial = eventually(T, "the webhook to refuse a Pipeline", || async {
        match c
            .api_for(&refused)
            .patch(
                "his-into-research",
                &PatchParams::apply("leak-test").force(),
                &Patch::Apply(&refused),
            )
            .await
        {
            Err(e) if e.to_string().contains("denied") => Some(e.to_string()),
            _ => None,
        }
    })
    .await;

    // Pruning: a deleted Pipeline's children go.
    c.api(V, "Pipeline", Some("clinical"))
        .delete("adt-curated", &DeleteParams::default())
        .await
        .unwrap();
    // research-extract runs on demand (its example carries a run request): its Job mounts the
    // planted keys and its run's outcome is written to the Pipeline's status.
    eventually(
        T,
        "the run's Job and the deletion to be reconciled",
        || async {
            let jobs = c
                .api("batch/v1", "Job", Some("clinical"))
                .list(&Default::default())
                .await
                .ok()?;
            let gone = c
                .get(V, "Pipeline", Some("clinical"), "adt-curated")
                .await
                .is_none();
            let ran = jobs.items.iter().any(|j| {
                serde_json::to_string(j)
                    .unwrap()
                    .contains("research-deid-keys")
            });
            (ran && gone).then_some(())
        },
    )
    .await;
    // One periodic resync (3 s in the test settings) of everything, failures included.
    tokio::time::sleep(Duration::from_secs(4)).await;

    let metrics = op.operator.context.metrics.encode().unwrap();
    wh.stop().await;
    op.stop().await;

    let webhook_key = c
        .get("v1", "Secret", Some(OPERATOR_NAMESPACE), WEBHOOK_SECRET)
        .await
        .expect("the webhook wrote its certificate Secret");
    let webhook_key = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        webhook_key["data"][medplat::webhook::certs::TLS_KEY]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let mut canaries = canaries();
    canaries.push(Canary::new("webhook tls.key", webhook_key.clone()));
    // A PEM line alone (64 characters of the key's DER) must not appear either.
    let pem = String::from_utf8(webhook_key).unwrap();
    let body: Vec<&str> = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    canaries.push(Canary::new(
        "webhook tls.key PEM line",
        body[body.len() / 2],
    ));

    let (secrets, objects) = stored_objects(&c);
    let log_text = logs.lock().unwrap().clone();
    let mut artifacts = objects.clone();
    artifacts.push(Artifact::new("operator /metrics", metrics.clone()));
    artifacts.push(Artifact::new("webhook denial", denial.clone()));
    artifacts.push(Artifact::new("log (debug)", log_text.clone()));

    // The capture really saw what it claims to have seen.
    let log_text = String::from_utf8_lossy(&log_text);
    assert!(log_text.contains("DEBUG"), "no debug line was captured");
    assert!(denial.contains("research-l2"), "{denial}");
    assert!(metrics.contains("medplat_"), "{metrics}");
    let seen = |kind: &str, needle: &str| {
        objects.iter().any(|a| {
            a.origin.starts_with(kind) && String::from_utf8_lossy(&a.bytes).contains(needle)
        })
    };
    assert!(
        seen("ConfigMap", "lab-deid-keys"),
        "no resolved-pipeline ConfigMap names its keys"
    );
    assert!(
        seen("Event", "no-such-secret"),
        "no Event reports the missing Secret"
    );
    assert!(
        seen("StorageTier", "ObjectStoreUnreachable"),
        "the object store was not probed"
    );
    assert!(seen("Job", "research-deid-keys"), "no Job mounts the keys");

    // The decoy is scanned for with the rest: it must be found where it was leaked on purpose
    // (so the ConfigMap history and the debug log really are scanned, encodings included), and
    // nothing else may be found.
    assert_found_in_control(&canaries, &secrets);
    canaries.push(Canary::new(DECOY_NAME, DECOY));
    let (decoy, leaks): (Vec<Finding>, Vec<Finding>) = scan(&canaries, &artifacts)
        .into_iter()
        .partition(|f| f.canary == DECOY_NAME);
    assert_no_leak(&leaks);
    for (origin, form) in [
        ("ConfigMap clinical/leak-decoy", "base64"),
        ("log (debug)", "hex"),
    ] {
        assert!(
            decoy
                .iter()
                .any(|f| f.origin.starts_with(origin) && f.form.starts_with(form)),
            "the decoy leaked on purpose as {form} into {origin} was not found: {decoy:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The worker, as a process.

/// Runs `medplat` with the arguments in `CHILD_ARGS` when this binary is started as a worker.
#[test]
fn worker_process() {
    let Ok(args) = std::env::var(CHILD_ARGS) else {
        return;
    };
    let args: Vec<String> = serde_json::from_str(&args).unwrap();
    use clap::Parser as _;
    let cli = medplat::cli::Cli::parse_from(std::iter::once("medplat".to_string()).chain(args));
    let code = medplat::cli::run(cli);
    std::io::stdout().flush().unwrap();
    std::process::exit(if code == std::process::ExitCode::SUCCESS {
        0
    } else {
        1
    });
}

/// One worker run: (stdout, stderr, termination log, success).
fn worker(args: &[String], termination_log: &Path) -> (Vec<u8>, Vec<u8>, Vec<u8>, bool) {
    let mut all = args.to_vec();
    all.extend([
        "--termination-log".into(),
        termination_log.display().to_string(),
    ]);
    all.extend(["--as-of".into(), "2026-11-28".into()]);
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "worker_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ARGS, serde_json::to_string(&all).unwrap())
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    let term = std::fs::read(termination_log).unwrap_or_default();
    (out.stdout, out.stderr, term, out.status.success())
}

/// A PostgreSQL server that asks for a cleartext password and refuses it: what the worker
/// sends is kept, to prove the planted password really was used.
fn refusing_postgres() -> (u16, Arc<Mutex<Vec<Vec<u8>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let seen = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            if let Some(password) = refuse_login(&mut s) {
                seen.lock().unwrap().push(password);
            }
        }
    });
    (port, received)
}

fn read_n(s: &mut std::net::TcpStream, n: usize) -> Option<Vec<u8>> {
    let mut b = vec![0; n];
    s.read_exact(&mut b).ok().map(|_| b)
}

/// One PostgreSQL login, refused: returns the password the client sent.
fn refuse_login(s: &mut std::net::TcpStream) -> Option<Vec<u8>> {
    let length = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    // The startup message, after answering "no" to an SSLRequest.
    let len = length(&read_n(s, 4)?);
    let body = read_n(s, len.saturating_sub(4))?;
    if body.starts_with(&80877103u32.to_be_bytes()) {
        s.write_all(b"N").ok()?;
        let len = length(&read_n(s, 4)?);
        read_n(s, len.saturating_sub(4))?;
    }
    // AuthenticationCleartextPassword, then the PasswordMessage.
    s.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]).ok()?;
    let head = read_n(s, 5)?;
    let password = read_n(s, length(&head[1..]).saturating_sub(4))?;
    let mut fields = Vec::new();
    for (code, text) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', "28P01"),
        (
            b'M',
            "password authentication failed for user \"his_readonly\"",
        ),
    ] {
        fields.push(code);
        fields.extend_from_slice(text.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut msg = vec![b'E'];
    msg.extend_from_slice(&((fields.len() + 4) as u32).to_be_bytes());
    msg.extend_from_slice(&fields);
    s.write_all(&msg).ok()?;
    Some(password)
}

/// Copies the hospital's manifests into `dir`, pointing the HIS database at `host:port/db`
/// without TLS, and adds the object-store tier, its pipeline and its grants.
fn worker_manifests(dir: &Path, host: &str, port: u16, db: &str, s3_endpoint: &str) {
    std::fs::create_dir_all(dir).unwrap();
    for file in hospital_manifests() {
        let mut text = std::fs::read_to_string(&file).unwrap();
        if file.ends_with("20-sources.yaml") {
            let original = "host: his-db.hospital.local\n      port: 5432\n      database: his";
            assert!(
                text.contains(original),
                "20-sources.yaml changed: update this test"
            );
            text = text
                .replace(
                    original,
                    &format!("host: {host}\n      port: {port}\n      database: {db}"),
                )
                .replace("sslMode: require", "sslMode: disable");
        }
        std::fs::write(dir.join(file.file_name().unwrap()), text).unwrap();
    }
    let extras: Vec<String> = failure_objects(s3_endpoint)
        .iter()
        .filter(|o| o["kind"] != "DataSource")
        .map(|o| serde_yaml::to_string(o).unwrap())
        .collect();
    std::fs::write(dir.join("60-leak-test.yaml"), extras.join("---\n")).unwrap();
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Creates database `db` with a `his.patient` table on the server of `url`, with `psql`.
fn postgres_patients(url: &str, db: &str) {
    let psql = |url: &str, sql: &str| {
        let out = std::process::Command::new("psql")
            .args([url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
            .output()
            .expect("psql is installed with PostgreSQL");
        assert!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // The throwaway server trusts loopback logins, so the role needs no password (the planted
    // one is proven sent by the refusing server instead). Roles are per server: create once.
    psql(
        url,
        "DO $$ BEGIN CREATE ROLE his_readonly LOGIN; \
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$",
    );
    psql(url, &format!("DROP DATABASE IF EXISTS {db}"));
    psql(url, &format!("CREATE DATABASE {db}"));
    let db_url = match url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{db}"),
        None => panic!("MEDPLAT_TEST_PG_URL has no database: {url}"),
    };
    psql(
        &db_url,
        "CREATE SCHEMA his; CREATE TABLE his.patient (patient_id text, name text, id_card text, \
         phone text, gender text, birth_date text, address text, region_code text, updated_at timestamptz); \
         INSERT INTO his.patient SELECT 'P' || i, '患者' || i, '11010519491231002X', '13800138000', 'F', \
         '1980-01-01', '北京市', '110105', TIMESTAMPTZ '2026-11-01 00:00:00+00' + i * INTERVAL '1 hour' \
         FROM generate_series(1, 5) i; \
         GRANT USAGE ON SCHEMA his TO his_readonly; GRANT SELECT ON his.patient TO his_readonly;",
    );
}

#[test]
fn worker_never_reveals_a_planted_secret() {
    if std::env::var(CHILD_ARGS).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let secrets = d.join("secrets");
    plant(&secrets);
    // The same Secrets less one key: a run that needs it must fail, naming it but not a value.
    let missing = d.join("secrets-missing-key");
    plant(&missing);
    std::fs::remove_file(missing.join("lab-deid-keys/hmac-key")).unwrap();
    let data = d.join("data");
    copy_tree(&repo_root().join("examples/hospital/data"), &data);

    let s3 = format!("http://127.0.0.1:{}", closed_port());
    let (refusing_port, received) = refusing_postgres();
    worker_manifests(&d.join("m-refused"), "127.0.0.1", refusing_port, "his", &s3);

    let args = |manifests: &str, pipeline: &str, secrets: &Path| -> Vec<String> {
        [
            "worker",
            "run",
            "--manifests",
            &d.join(manifests).display().to_string(),
            "--namespace",
            "clinical",
            "--pipeline",
            pipeline,
            "--local-root",
            &data.display().to_string(),
            "--secrets",
            &secrets.display().to_string(),
        ]
        .map(String::from)
        .to_vec()
    };
    // (label, arguments, whether the run must succeed)
    let mut runs = vec![
        (
            "lab",
            args("m-refused", "lab-results-curated", &secrets),
            true,
        ),
        (
            "research",
            args("m-refused", "research-extract", &secrets),
            true,
        ),
        ("adt", args("m-refused", "adt-curated", &secrets), true),
        (
            "wrong-password",
            args("m-refused", "his-patients-sync", &secrets),
            false,
        ),
        (
            "missing-key",
            args("m-refused", "lab-results-curated", &missing),
            false,
        ),
        (
            "object-store-down",
            args("m-refused", "lab-archive", &secrets),
            false,
        ),
    ];
    match std::env::var("MEDPLAT_TEST_PG_URL") {
        Ok(url) => {
            let db = format!("medplat_leak_{}", std::process::id());
            postgres_patients(&url, &db);
            let port = url
                .rsplit_once(':')
                .and_then(|(_, rest)| rest.split('/').next())
                .and_then(|p| p.parse().ok())
                .unwrap_or(5432);
            worker_manifests(&d.join("m-pg"), "127.0.0.1", port, &db, &s3);
            runs.push((
                "postgres",
                args("m-pg", "his-patients-sync", &secrets),
                true,
            ));
        }
        Err(_) => {
            assert!(
                std::env::var("MEDPLAT_REQUIRE_REAL_TOOLS").as_deref() != Ok("1"),
                "MEDPLAT_TEST_PG_URL is unset but MEDPLAT_REQUIRE_REAL_TOOLS=1"
            );
            eprintln!(
                "NOTE: MEDPLAT_TEST_PG_URL is unset: the real-PostgreSQL run is skipped (scripts/test-all sets it)"
            )
        }
    }

    let mut artifacts = Vec::new();
    for (label, args, must_succeed) in &runs {
        let (stdout, stderr, term, ok) = worker(args, &d.join(format!("termination-{label}")));
        assert_eq!(
            ok,
            *must_succeed,
            "worker run {label}: success {ok}\nstderr:\n{}",
            String::from_utf8_lossy(&stderr)
        );
        // The worker logs through stderr lines (summary, errors), not tracing: RUST_LOG=debug
        // is set so that any debug logging added later is scanned too.
        assert!(
            !stderr.is_empty(),
            "worker run {label} said nothing on stderr"
        );
        artifacts.push(Artifact::new(format!("worker {label} stdout"), stdout));
        artifacts.push(Artifact::new(format!("worker {label} stderr"), stderr));
        artifacts.push(Artifact::new(
            format!("worker {label} termination log"),
            term,
        ));
    }
    artifacts.extend(files_under(&data, "worker output"));
    assert!(
        artifacts
            .iter()
            .any(|a| a.origin.contains("_manifest.json")),
        "no run manifest was written"
    );
    // The planted file ends in a newline; the password sent must not (PasswordMessage is
    // NUL-terminated).
    let sent = received
        .lock()
        .unwrap()
        .first()
        .cloned()
        .unwrap_or_default();
    let sent = sent.strip_suffix(b"\0").unwrap_or(&sent).to_vec();
    assert_eq!(
        String::from_utf8_lossy(&sent),
        DB_PASSWORD,
        "positive control: the worker did not send the planted password"
    );

    let canaries = canaries();
    assert_no_leak(&scan(&canaries, &artifacts));
    assert_found_in_control(&canaries, &files_under(&secrets, "planted secret"));
}
