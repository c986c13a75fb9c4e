//! The worker against real components on loopback, one file per service under `worker_io/`:
//! `postgres.rs` (full and incremental load, resume after a failure, a connection cut
//! mid-stream, TLS), `mysql.rs` (the same against MariaDB, typed columns, a binary column,
//! TLS), `fhir_rest.rs` (a FHIR REST server with paging, in-test), `mllp.rs` (the HL7 v2 MLLP
//! listener: ACKs, garbage, half-open connections, over-long and truncated frames) and
//! `object_store.rs` (files on an object-store tier, a real S3 endpoint, signed requests,
//! HTTPS).
//! This file holds what they share: running a pipeline, writing its manifests and Secrets,
//! reading its output, and finding the services `scripts/lib/with-services.sh` started.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::{Arc, Mutex};

use medplat::api::audit::AuditEmitter;
use medplat::api::resolved::ResolvedPipeline;
use medplat::worker::engine::{self, RunOptions, RunReport};
use medplat::worker::local::resolve_from_manifests;

#[path = "worker_io/fhir_rest.rs"]
mod fhir_rest;
#[path = "worker_io/mllp.rs"]
mod mllp;
#[path = "worker_io/mysql.rs"]
mod mysql;
#[path = "worker_io/object_store.rs"]
mod object_store;
#[path = "worker_io/postgres.rs"]
mod postgres;

/// The audit lines a run emits, kept in memory for the tests to read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn runtime() -> tokio::runtime::Runtime {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn run(rt: &tokio::runtime::Runtime, doc: &ResolvedPipeline) -> RunReport {
    run_with_store(rt, doc, None)
}

/// A run whose object-store tiers are `store`.
fn run_with_store(
    rt: &tokio::runtime::Runtime,
    doc: &ResolvedPipeline,
    // `::` because here `object_store` names the test module `worker_io/object_store.rs`.
    store: Option<Arc<dyn ::object_store::ObjectStore>>,
) -> RunReport {
    engine::run(
        doc,
        &RunOptions {
            run_id: None,
            as_of: jiff::civil::date(2026, 11, 28),
            audit: Arc::new(AuditEmitter::to_writer(Box::new(Captured::default()))),
            runtime: rt.handle().clone(),
            object_store_override: store,
            parallelism: None,
        },
    )
}

/// Tiers, a pipeline from `source` (a DataSource body) into `out/data`, and grants.
fn write_manifests(dir: &Path, source: &str, steps: &str) {
    let text = format!(
        r#"
apiVersion: medplat.io/v1alpha1
kind: StorageTier
metadata: {{name: out}}
spec: {{domain: clinical, maxLevel: L4, encryption: required, backend: {{volume: {{storageClassName: s, size: 1Gi}}}}, retentionDays: 30}}
---
apiVersion: medplat.io/v1alpha1
kind: DataSource
metadata: {{name: src, namespace: t}}
spec:
{source}
  classification: {{level: L4, domain: clinical}}
  fields: []
---
apiVersion: medplat.io/v1alpha1
kind: Pipeline
metadata: {{name: p, namespace: t}}
spec:
  purpose: Treatment
  sources: [src]
  steps: {steps}
  sink: {{tier: out, dataset: data}}
---
apiVersion: medplat.io/v1alpha1
kind: AccessPolicy
metadata: {{name: grants, namespace: t}}
spec:
  purpose: Treatment
  subjects: [{{kind: ServiceAccount, name: medplat-pipeline-p}}]
  rules:
    - {{resources: {{kind: DataSource, names: [src]}}, verbs: [read]}}
    - {{resources: {{kind: StorageTier, names: [out]}}, verbs: [write]}}
"#
    );
    std::fs::create_dir_all(dir.join("manifests")).unwrap();
    std::fs::write(dir.join("manifests/all.yaml"), text).unwrap();
}

fn doc(dir: &Path) -> ResolvedPipeline {
    resolve_from_manifests(
        &dir.join("manifests"),
        "t",
        "p",
        &dir.join("data"),
        &dir.join("secrets"),
    )
    .unwrap()
}

fn secret(dir: &Path, name: &str, key: &str, value: &str) {
    std::fs::create_dir_all(dir.join("secrets").join(name)).unwrap();
    std::fs::write(dir.join("secrets").join(name).join(key), value).unwrap();
}

fn output_rows(dir: &Path) -> Vec<serde_json::Value> {
    let data = dir.join("data/out/data");
    let mut names: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("part-"))
        .collect();
    names.sort();
    names
        .iter()
        .flat_map(|n| {
            std::fs::read_to_string(data.join(n))
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The value of `var`, set by `scripts/lib/with-services.sh` for a test that needs a real
/// service; `None` (the test skips, saying so) when unset, unless `MEDPLAT_REQUIRE_REAL_TOOLS=1`
/// makes that a failure.
fn service_env(var: &str, test: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) => Some(v),
        Err(_) => {
            assert!(
                std::env::var("MEDPLAT_REQUIRE_REAL_TOOLS").as_deref() != Ok("1"),
                "{var} is unset but MEDPLAT_REQUIRE_REAL_TOOLS=1"
            );
            eprintln!(
                "SKIPPING worker {test} test: {var} is unset (run under scripts/lib/with-services.sh)"
            );
            None
        }
    }
}
