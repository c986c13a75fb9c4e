//! The worker end to end on files: the hospital examples in local mode, determinism, the
//! de-identification correctness suite, enforcement, fail-before-output, atomic commits (with
//! a real SIGKILL of the binary) and the object-store sink.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use medplat::api::audit::AuditEmitter;
use medplat::api::resolved::ResolvedPipeline;
use medplat::worker::engine::{self, RunOptions, RunReport};
use medplat::worker::identifiers::{resident_id_check_char, scan_text};
use medplat::worker::local::resolve_from_manifests;
use medplat::worker::summary::RunOutcome;
use object_store::ObjectStoreExt;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<serde_json::Value> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

struct Harness {
    rt: tokio::runtime::Runtime,
    audit: Captured,
}

impl Harness {
    fn new() -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Harness {
            rt: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap(),
            audit: Captured::default(),
        }
    }

    fn run(
        &self,
        doc: &ResolvedPipeline,
        store: Option<Arc<dyn object_store::ObjectStore>>,
    ) -> RunReport {
        self.run_threads(doc, store, None)
    }

    fn run_threads(
        &self,
        doc: &ResolvedPipeline,
        store: Option<Arc<dyn object_store::ObjectStore>>,
        threads: Option<usize>,
    ) -> RunReport {
        engine::run(
            doc,
            &RunOptions {
                run_id: None,
                as_of: jiff::civil::date(2026, 11, 28),
                audit: Arc::new(AuditEmitter::to_writer(Box::new(self.audit.clone()))),
                runtime: self.rt.handle().clone(),
                object_store_override: store,
                parallelism: threads.and_then(std::num::NonZeroUsize::new),
            },
        )
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Every file of the committed dataset except the manifest (which holds timestamps).
fn data_files(dataset: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dataset.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if e.file_name() != "_manifest.json" {
                out.insert(
                    p.strip_prefix(dataset).unwrap().display().to_string(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

const EXAMPLES: [(&str, &str); 3] = [
    ("lab-results-curated", "curated-l3/lab/results"),
    (
        "research-extract",
        "research-l2/cardiology/discharge-extract",
    ),
    ("adt-curated", "curated-l3/adt/events"),
];

fn example_doc(pipeline: &str, root: &Path) -> ResolvedPipeline {
    let ex = repo().join("examples/hospital");
    resolve_from_manifests(&ex, "clinical", pipeline, root, &ex.join("secrets")).unwrap()
}

#[test]
fn worker_examples_run_locally_deterministically_and_leave_no_identifier() {
    let h = Harness::new();
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("examples/hospital/data"), first.path());
    copy_dir(&repo().join("examples/hospital/data"), second.path());
    for (pipeline, dataset) in EXAMPLES {
        let a = h.run(&example_doc(pipeline, first.path()), None);
        assert!(a.error.is_none(), "{pipeline}: {:?}", a.error);
        let s = &a.summary;
        assert_eq!(s.result, RunOutcome::Succeeded);
        assert!(
            s.records.records_out > 0 && s.records.quarantined > 0,
            "{pipeline}: {s:?}"
        );
        assert_eq!(
            s.records.records_in,
            s.records.records_out
                + s.records.quarantined
                + s.records.dropped
                + s.records.deduplicated
                + s.records.suppressed,
            "{pipeline}: every record is accounted for"
        );
        let files_a = data_files(&first.path().join(dataset));
        // A rerun over the same input and keys, and a run on a fresh copy, give the same bytes,
        // whatever the number of threads applying the steps.
        let rerun = h.run_threads(&example_doc(pipeline, first.path()), None, Some(1));
        assert!(rerun.error.is_none());
        assert_eq!(
            data_files(&first.path().join(dataset)),
            files_a,
            "{pipeline}: rerun"
        );
        let fresh = h.run_threads(&example_doc(pipeline, second.path()), None, Some(3));
        assert!(fresh.error.is_none());
        assert_eq!(
            data_files(&second.path().join(dataset)),
            files_a,
            "{pipeline}: fresh run"
        );

        for (name, bytes) in &files_a {
            if name.starts_with("_quarantine") {
                continue;
            }
            if name.ends_with(".parquet") {
                assert!(bytes.starts_with(b"PAR1"));
                continue;
            }
            let text = String::from_utf8(bytes.clone()).unwrap();
            assert!(
                scan_text(&text).is_empty(),
                "{pipeline}: leftover identifier in {name}"
            );
        }
    }
    let extract = std::fs::read_to_string(
        first
            .path()
            .join("research-l2/cardiology/discharge-extract/part-00000.csv"),
    )
    .unwrap();
    let header = extract.lines().next().unwrap();
    assert!(
        header.split(',').any(|c| c == "person_id")
            && !header
                .split(',')
                .any(|c| ["id_card", "name", "phone", "address", "inpatient_no"].contains(&c)),
        "{header}"
    );
    let summary_levels: Vec<_> = h
        .audit
        .lines()
        .iter()
        .filter(|l| l["action"] == "write")
        .map(|l| l["data"]["level"].clone())
        .collect();
    assert!(
        summary_levels.contains(&serde_json::json!("L2"))
            && summary_levels.contains(&serde_json::json!("L3"))
    );
}

/// Writes manifests for a two-source corpus with planted identifiers and returns the dir.
struct Corpus {
    dir: tempfile::TempDir,
    planted: Vec<String>,
}

fn valid_id(region: &str, birth: &str, seq: u32) -> String {
    let first17 = format!("{region}{birth}{seq:03}");
    format!(
        "{first17}{}",
        resident_id_check_char(first17.as_bytes()).unwrap() as char
    )
}

fn corpus(link_key: &str) -> Corpus {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut planted = Vec::new();
    let mut emr = String::new();
    let mut lis = String::new();
    let names = ["王建国", "李秀英", "张伟", "欧阳娜娜", "赵敏"];
    for i in 0..50u32 {
        let id = valid_id(
            "440305",
            &format!("19{:02}0{}1{}", 50 + i % 40, 1 + i % 9, i % 10),
            i,
        );
        let phone = format!("139{:08}", 10_000_000 + i * 7919);
        let name = format!("{}{i}", names[i as usize % names.len()]);
        let address = format!("深圳市南山区科技园路{}号", 100 + i);
        let zy = format!("ZY{:07}", 3_000_000 + i);
        planted.extend([
            id.clone(),
            phone.clone(),
            name.clone(),
            address.clone(),
            zy.clone(),
        ]);
        emr.push_str(&format!(
            "{{\"pid\":\"E{i}\",\"name\":\"{name}\",\"id_card\":\"{id}\",\"phone\":\"{phone}\",\"address\":\"{address}\",\"inpatient_no\":\"{zy}\",\"note\":\"患者{name}，电话{phone}\",\"admitted\":\"2026-03-{:02}\",\"discharged\":\"2026-03-{:02}\",\"dx\":\"I21.9\"}}\n",
            1 + i % 9,
            11 + i % 9
        ));
        lis.push_str(&format!("{{\"pid\":\"L{i}\",\"name\":\"{name}\",\"id_card\":\"{}\",\"phone\":\"{phone}\",\"dx\":\"GLU\"}}\n", id.to_lowercase()));
    }
    std::fs::create_dir_all(root.join("data/raw/emr")).unwrap();
    std::fs::create_dir_all(root.join("data/raw/lis")).unwrap();
    std::fs::write(root.join("data/raw/emr/a.ndjson"), emr).unwrap();
    std::fs::write(root.join("data/raw/lis/a.ndjson"), lis).unwrap();
    for (s, keys) in [
        ("deid", vec![("hmac-key", "11"), ("date-shift-key", "22")]),
        ("link", vec![("hmac-key", link_key)]),
    ] {
        std::fs::create_dir_all(root.join("secrets").join(s)).unwrap();
        for (k, byte) in keys {
            std::fs::write(root.join("secrets").join(s).join(k), byte.repeat(32)).unwrap();
        }
    }
    let fields = r#"
    - {path: pid, identifier: direct, category: PersonalAttributes}
    - {path: name, identifier: direct, category: PersonalAttributes}
    - {path: id_card, identifier: direct, category: PersonalAttributes}
    - {path: phone, identifier: direct, category: PersonalAttributes}
    - {path: address, identifier: direct, category: PersonalAttributes}
    - {path: inpatient_no, identifier: direct, category: MedicalApplication}
    - {path: note, identifier: direct, category: MedicalApplication}
    - {path: admitted, identifier: quasi, category: MedicalApplication}
    - {path: discharged, identifier: quasi, category: MedicalApplication}
    - {path: dx, identifier: none, category: HealthStatus}"#;
    let manifests = format!(
        r#"
apiVersion: medplat.io/v1alpha1
kind: StorageTier
metadata: {{name: raw}}
spec: {{domain: clinical, maxLevel: L4, encryption: required, backend: {{volume: {{storageClassName: s, size: 1Gi}}}}, retentionDays: 30}}
---
apiVersion: medplat.io/v1alpha1
kind: StorageTier
metadata: {{name: pseudo}}
spec: {{domain: clinical, maxLevel: L3, encryption: required, backend: {{volume: {{storageClassName: s, size: 1Gi}}}}, retentionDays: 30}}
---
apiVersion: medplat.io/v1alpha1
kind: DataSource
metadata: {{name: emr, namespace: t}}
spec:
  system: EMR
  connector: {{files: {{location: {{tier: raw, path: emr}}, format: ndjson}}}}
  classification: {{level: L4, domain: clinical}}
  fields:{fields}
---
apiVersion: medplat.io/v1alpha1
kind: DataSource
metadata: {{name: lis, namespace: t}}
spec:
  system: LIS
  connector: {{files: {{location: {{tier: raw, path: lis}}, format: ndjson}}}}
  classification: {{level: L4, domain: clinical}}
  fields:{fields}
---
apiVersion: medplat.io/v1alpha1
kind: Pipeline
metadata: {{name: link-both, namespace: t}}
spec:
  purpose: Treatment
  sources: [emr, lis]
  steps:
    - link: {{identityFields: [id_card], outputField: person, key: {{name: link, key: hmac-key}}}}
    - deidentify:
        keys: {{secretName: deid}}
        rules:
          - {{field: pid, method: cryptoHash}}
          - {{field: person, method: keep}}
          - {{field: admitted, method: dateShift, dateShift: {{maxDays: 20, patientIdField: id_card}}}}
          - {{field: discharged, method: dateShift, dateShift: {{maxDays: 20, patientIdField: id_card}}}}
          - {{identifier: direct, method: redact}}
          - {{identifier: none, method: keep}}
        privacy: {{k: 2, quasiIdentifiers: [dx], leftoverScan: true}}
  sink: {{tier: pseudo, dataset: linked}}
---
apiVersion: medplat.io/v1alpha1
kind: AccessPolicy
metadata: {{name: grants, namespace: t}}
spec:
  purpose: Treatment
  subjects: [{{kind: ServiceAccount, name: medplat-pipeline-link-both}}]
  rules:
    - {{resources: {{kind: DataSource, names: [emr, lis]}}, verbs: [read]}}
    - {{resources: {{kind: StorageTier, names: [pseudo]}}, verbs: [write]}}
"#
    );
    std::fs::create_dir_all(root.join("manifests")).unwrap();
    std::fs::write(root.join("manifests/all.yaml"), manifests).unwrap();
    Corpus { dir, planted }
}

fn corpus_doc(c: &Corpus) -> ResolvedPipeline {
    let r = c.dir.path();
    resolve_from_manifests(
        &r.join("manifests"),
        "t",
        "link-both",
        &r.join("data"),
        &r.join("secrets"),
    )
    .unwrap()
}

fn ndjson(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn worker_deidentification_removes_every_planted_identifier_and_links_across_sources() {
    let h = Harness::new();
    let c = corpus("aa");
    let report = h.run(&corpus_doc(&c), None);
    assert!(report.error.is_none(), "{:?}", report.error);
    assert_eq!(report.summary.output_level.map(|l| l.as_str()), Some("L3"));
    let out_path = c.dir.path().join("data/pseudo/linked/part-00000.ndjson");
    let text = std::fs::read_to_string(&out_path).unwrap();
    for p in &c.planted {
        assert!(
            !text.contains(p.as_str()),
            "planted identifier survived: {p}"
        );
        assert!(!text.to_lowercase().contains(&p.to_lowercase()));
    }
    let rows = ndjson(&out_path);
    assert_eq!(rows.len(), 100);
    // Linkage: the EMR and LIS record of person i share a pseudonym.
    let emr: Vec<_> = rows
        .iter()
        .filter(|r| r.get("admitted").is_some())
        .collect();
    let lis: Vec<_> = rows
        .iter()
        .filter(|r| r.get("admitted").is_none())
        .collect();
    for (e, l) in emr.iter().zip(&lis) {
        assert_eq!(e["person"], l["person"]);
        assert_eq!(e["person"].as_str().unwrap().len(), 64);
    }
    // Date shifts keep intervals: every stay is 10 days long, before and after.
    for e in &emr {
        let a: jiff::civil::Date = e["admitted"].as_str().unwrap().parse().unwrap();
        let d: jiff::civil::Date = e["discharged"].as_str().unwrap().parse().unwrap();
        assert_eq!((d - a).get_days(), 10);
    }
    let shifted = emr
        .iter()
        .filter(|e| !e["admitted"].as_str().unwrap().starts_with("2026-03-0"))
        .count();
    assert!(shifted > 0, "dates moved");

    // Another link key gives unrelated pseudonyms.
    let other = corpus("bb");
    assert!(h.run(&corpus_doc(&other), None).error.is_none());
    let rows2 = ndjson(
        &other
            .dir
            .path()
            .join("data/pseudo/linked/part-00000.ndjson"),
    );
    assert_eq!(rows2.len(), rows.len());
    for (a, b) in rows.iter().zip(&rows2) {
        assert_ne!(a["person"], b["person"]);
    }
}

#[test]
fn worker_refuses_what_the_policy_bundle_refuses_and_audits_it() {
    let h = Harness::new();
    let c = corpus("aa");
    let mut doc = corpus_doc(&c);
    doc.policies.clear();
    let report = h.run(&doc, None);
    assert_eq!(report.summary.result, RunOutcome::Denied);
    assert!(report.summary.access_denied >= 1);
    assert!(
        report
            .summary
            .message
            .as_deref()
            .unwrap()
            .contains("ReadNotGranted"),
        "{:?}",
        report.summary.message
    );
    assert_eq!(report.summary.records.records_in, 0, "nothing was read");
    assert!(!c.dir.path().join("data/pseudo/linked").exists());
    let denied: Vec<_> = h
        .audit
        .lines()
        .into_iter()
        .filter(|l| l["result"] == "denied")
        .collect();
    assert!(
        denied
            .iter()
            .any(|l| l["data"]["name"] == "emr" && l["action"] == "read"),
        "{denied:?}"
    );
}

#[test]
fn worker_missing_key_or_source_fails_before_any_output() {
    let h = Harness::new();
    let c = corpus("aa");
    std::fs::remove_file(c.dir.path().join("secrets/deid/date-shift-key")).unwrap();
    let report = h.run(&corpus_doc(&c), None);
    let msg = report.summary.message.clone().unwrap();
    assert!(msg.contains("key date-shift-key of Secret deid"), "{msg}");
    assert_eq!(report.summary.records.records_in, 0);
    assert!(!c.dir.path().join("data/pseudo/linked").exists());

    let c = corpus("aa");
    std::fs::remove_dir_all(c.dir.path().join("data/raw/lis")).unwrap();
    let report = h.run(&corpus_doc(&c), None);
    let msg = report.summary.message.unwrap();
    assert!(msg.contains("source lis: cannot read"), "{msg}");
    assert!(!c.dir.path().join("data/pseudo/linked").exists());
}

#[test]
fn worker_failed_run_keeps_the_previous_version_and_cleans_stale_staging() {
    let h = Harness::new();
    let c = corpus("aa");
    assert!(h.run(&corpus_doc(&c), None).error.is_none());
    let dataset = c.dir.path().join("data/pseudo/linked");
    let before = data_files(&dataset);
    // A stale staging directory from a crashed run is never read and is removed.
    let stale = c
        .dir
        .path()
        .join("data/pseudo/.linked.versions/crashed.staging");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("part-00000.ndjson"), "garbage").unwrap();
    // A planted phone number in a kept field makes the leftover scan fail the next run.
    let emr = c.dir.path().join("data/raw/emr/a.ndjson");
    let text = std::fs::read_to_string(&emr)
        .unwrap()
        .replace("\"dx\":\"I21.9\"", "\"dx\":\"call 13800138000\"");
    std::fs::write(&emr, text).unwrap();
    let report = h.run(&corpus_doc(&c), None);
    let msg = report.summary.message.unwrap();
    assert!(
        msg.contains("leftover identifier: a mobile number in field dx"),
        "{msg}"
    );
    assert!(!msg.contains("13800138000"));
    assert_eq!(data_files(&dataset), before);
    assert!(!stale.exists());
    let versions: Vec<_> = std::fs::read_dir(c.dir.path().join("data/pseudo/.linked.versions"))
        .unwrap()
        .collect();
    assert_eq!(versions.len(), 1, "only the committed version remains");
}

#[test]
fn worker_sigkill_at_any_point_leaves_the_old_or_the_new_dataset() {
    // A bigger corpus so the run takes long enough to be killed in the middle.
    let c = corpus("aa");
    let emr = c.dir.path().join("data/raw/emr/a.ndjson");
    let one = std::fs::read_to_string(&emr).unwrap();
    std::fs::write(&emr, one.repeat(400)).unwrap();
    let r = c.dir.path();
    let args = |run: &str| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_medplat"));
        cmd.args([
            "worker",
            "run",
            "--namespace",
            "t",
            "--pipeline",
            "link-both",
            "--as-of",
            "2026-11-28",
            "--run-id",
            run,
        ])
        .arg("--manifests")
        .arg(r.join("manifests"))
        .arg("--local-root")
        .arg(r.join("data"))
        .arg("--secrets")
        .arg(r.join("secrets"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
        cmd
    };
    let started = std::time::Instant::now();
    assert!(args("r0").status().unwrap().success());
    let clean_run_ms = started.elapsed().as_millis() as u64;
    let dataset = r.join("data/pseudo/linked");
    let good = data_files(&dataset);
    // 20 kill points spread at random over a clean run's length (and a little past it, where
    // the commit happens); the seed is printed so a failure can be replayed.
    let seed: u64 = std::env::var("MEDPLAT_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("kill points: MEDPLAT_KILL_SEED={seed}, clean run {clean_run_ms} ms");
    let mut state = seed | 1;
    let span = clean_run_ms * 6 / 5 + 1;
    let delays: Vec<u64> = (0..20)
        .map(|_| {
            // xorshift64: enough spread for kill points, no dependency.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % span
        })
        .collect();
    for (i, delay_ms) in delays.into_iter().enumerate() {
        let mut child = args(&format!("r{}", i + 1)).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        // Same input, same keys: old and new versions have the same data; either way the
        // dataset is one whole version with its manifest.
        assert_eq!(
            data_files(&dataset),
            good,
            "after a kill at {delay_ms} ms (MEDPLAT_KILL_SEED={seed})"
        );
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dataset.join("_manifest.json")).unwrap())
                .unwrap();
        assert_eq!(manifest["files"][0]["sha256"].as_str().unwrap().len(), 64);
    }
    assert!(
        args("r99").status().unwrap().success(),
        "a run after the kills commits"
    );
    assert_eq!(data_files(&dataset), good);
}

#[test]
fn worker_commits_to_an_object_store_with_a_pointer_written_last() {
    let h = Harness::new();
    let c = corpus("aa");
    let mut doc = corpus_doc(&c);
    let tier = doc.tiers.get_mut("pseudo").unwrap();
    tier.location = medplat::api::resolved::TierLocation::ObjectStore {
        endpoint: "http://127.0.0.1:1".into(),
        bucket: "unused".into(),
        region: None,
        access_key_id_file: "/nonexistent".into(),
        secret_access_key_file: "/nonexistent".into(),
        ca_bundle: None,
    };
    for backend in ["memory", "local"] {
        let local_dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn object_store::ObjectStore> = match backend {
            "memory" => Arc::new(object_store::memory::InMemory::new()),
            _ => Arc::new(
                object_store::local::LocalFileSystem::new_with_prefix(local_dir.path()).unwrap(),
            ),
        };
        let first = h.run(&doc, Some(store.clone()));
        assert!(first.error.is_none(), "{backend}: {:?}", first.error);
        let second = h.run(&doc, Some(store.clone()));
        assert!(second.error.is_none());
        let current: serde_json::Value = h.rt.block_on(async {
            let b = store
                .get(&"linked/_CURRENT".into())
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            serde_json::from_slice(&b).unwrap()
        });
        let m = second.manifest.unwrap();
        assert_eq!(current["runId"], m.run_id.as_str());
        let file = current["files"][0]["path"].as_str().unwrap().to_string();
        assert!(
            file.starts_with(&format!("_versions/{}/", m.run_id)),
            "{file}"
        );
        let listed: Vec<String> = h.rt.block_on(async {
            use futures::TryStreamExt;
            store
                .list(Some(&"linked".into()))
                .map_ok(|o| o.location.to_string())
                .try_collect()
                .await
                .unwrap()
        });
        assert!(
            listed.iter().all(|p| !p.contains(&first.summary.run_id)),
            "{backend}: old version removed: {listed:?}"
        );
        let data = h.rt.block_on(async {
            store
                .get(&format!("linked/{file}").as_str().into())
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
        });
        assert_eq!(
            data.len() as u64,
            current["files"][0]["bytes"].as_u64().unwrap()
        );
    }
}
