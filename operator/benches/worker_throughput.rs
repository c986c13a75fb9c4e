//! Worker throughput against the practical limit, side by side in one run.
//!
//! For a synthetic FHIR NDJSON file of Patient and Observation resources and a synthetic lab
//! CSV (1,000,000 records each by default, generated into a temporary directory), it times:
//! - the full worker pipeline (read, validate, de-identify, link, write, commit) and
//! - a plain parse-and-serialize pass over the same file (`serde_json` / `csv`),
//!
//! interleaved, and prints the medians in records/s and MB/s and their ratio, and the CPU time
//! each spends per record with the cores it kept busy. It then runs the pipeline in child
//! processes on growing inputs and prints each one's peak resident memory.
//!
//! ```sh
//! cargo bench -p medplat --bench worker_throughput            # 1,000,000 records, 3 rounds
//! cargo bench -p medplat --bench worker_throughput -- 200000 5 # records, rounds
//! cargo bench -p medplat --bench worker_throughput -- 200000 5 csv # one input kind only
//! MEDPLAT_BENCH_STEPS=read-write cargo bench -p medplat --bench worker_throughput -- 200000 3 csv
//! ```
//!
//! Under `scripts/lib/with-services.sh` (which sets `MEDPLAT_TEST_PG_URL` and
//! `MEDPLAT_TEST_MYSQL_URL`) it also reads the CSV's rows from a PostgreSQL table, against the
//! same cursor read with each row's JSON text parsed and serialised by `serde_json`, and from a
//! MySQL table, against the worker's query with each row serialised as a JSON object.
//!
//! `MEDPLAT_BENCH_ROWS_PER_PATIENT` sets how many consecutive CSV rows share a patient (3).
//!
//! `MEDPLAT_BENCH_STEPS` runs one stage instead of the whole pipeline, to see what each costs:
//! `read-write` (a map step that renames one field: reading, decoding, writing, the output's
//! checksum), `validate` and `link` (CSV only), or `deidentify`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use medplat::api::audit::AuditEmitter;
use medplat::api::resolved::ResolvedPipeline;
use medplat::worker::engine::{self, RunOptions};
use medplat::worker::identifiers::resident_id_check_char;
use medplat::worker::local::resolve_from_manifests;

#[path = "worker_throughput/mysql.rs"]
mod mysql;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Fhir,
    Csv,
    /// The CSV's rows in a PostgreSQL table (needs `MEDPLAT_TEST_PG_URL`).
    Postgres,
    /// The CSV's rows in a MySQL table (needs `MEDPLAT_TEST_MYSQL_URL`).
    Mysql,
}

/// The bench argument that selects one kind.
fn kind_arg(kind: Kind) -> &'static str {
    match kind {
        Kind::Fhir => "fhir",
        Kind::Csv => "csv",
        Kind::Postgres => "postgres",
        Kind::Mysql => "mysql",
    }
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Fhir => "FHIR NDJSON",
            Kind::Csv => "CSV",
            Kind::Postgres => "PostgreSQL",
            Kind::Mysql => "MySQL",
        }
    }
}

fn id_card(i: u64) -> String {
    let first17 = format!(
        "110105{:04}{:02}{:02}{:03}",
        1940 + i % 60,
        1 + i % 12,
        1 + i % 28,
        i % 1000
    );
    format!(
        "{first17}{}",
        resident_id_check_char(first17.as_bytes()).unwrap() as char
    )
}

/// How many consecutive CSV rows share one patient (`MEDPLAT_BENCH_ROWS_PER_PATIENT`, default
/// 3, as a lab export lists a patient's results together). 1 makes every row's identity values
/// new, which the worker's memo of recent keyed-hash tags cannot help with.
fn rows_per_patient() -> u64 {
    std::env::var("MEDPLAT_BENCH_ROWS_PER_PATIENT")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(3)
}

/// Writes the input file and returns its size in bytes.
fn generate(kind: Kind, n: u64, path: &Path) -> u64 {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    match kind {
        Kind::Fhir => {
            for i in 0..n {
                let pid = i / 2;
                if i % 2 == 0 {
                    writeln!(w, r#"{{"resourceType":"Patient","id":"p{pid}","identifier":[{{"system":"urn:oid:2.16.156.10011.1.1","value":"{}"}}],"name":[{{"family":"王","given":["小明{pid}"]}}],"telecom":[{{"system":"phone","value":"138{:08}"}}],"gender":"{}","birthDate":"{:04}-{:02}-{:02}","address":[{{"text":"北京市朝阳区建国路{}号","postalCode":"100022"}}]}}"#,
                        id_card(pid), pid % 100_000_000, if pid % 2 == 0 { "male" } else { "female" }, 1940 + pid % 60, 1 + pid % 12, 1 + pid % 28, pid % 300).unwrap();
                } else {
                    writeln!(w, r#"{{"resourceType":"Observation","id":"o{i}","status":"final","code":{{"coding":[{{"system":"http://loinc.org","code":"2345-7","display":"Glucose"}}]}},"subject":{{"reference":"Patient/p{pid}"}},"effectiveDateTime":"2026-11-{:02}T08:30:00+08:00","valueQuantity":{{"value":{}.{},"unit":"mmol/L"}},"performer":[{{"display":"检验科 李医生"}}]}}"#,
                        1 + i % 28, 3 + i % 7, i % 10).unwrap();
                }
            }
        }
        Kind::Csv | Kind::Postgres | Kind::Mysql => {
            writeln!(w, "specimen_id,patient_id,patient_name,id_card,gender,birth_date,test_code,result_value,unit,collected_at").unwrap();
            let per_patient = rows_per_patient();
            for i in 0..n {
                let pid = i / per_patient;
                writeln!(w, "S{i:09},P{pid:08},王小明{pid},{},{},{:04}-{:02}-{:02},GLU,{}.{},mmol/L,2026-11-{:02}T08:30:00",
                    id_card(pid), if pid.is_multiple_of(2) { "M" } else { "F" }, 1940 + pid % 60, 1 + pid % 12, 1 + pid % 28, 3 + i % 7, i % 10, 1 + i % 28).unwrap();
            }
        }
    }
    w.flush().unwrap();
    std::fs::metadata(path).unwrap().len()
}

const CSV_VALIDATE: &str = "    - validate: {rules: [{name: id, field: id_card, check: residentId}, {name: v, field: result_value, type: number}]}\n";
const CSV_LINK: &str = "    - link: {identityFields: [id_card], outputField: person, key: {name: keys, key: hmac-key}}\n";
const SECRET: &str = "11111111111111111111111111111111111111111111111111111111111111aa";

fn manifests(kind: Kind, pg: Option<&PgTable>, my: Option<&mysql::MyTable>) -> String {
    let my_source = my.map(mysql::MyTable::source).unwrap_or_default();
    let pg_source = pg.map(|t| format!("postgres: {{host: 127.0.0.1, port: {}, database: {}, table: his.lab, sslMode: disable}}}}\n  credentials: {{secretName: pg", t.port, t.db)).unwrap_or_default();
    let (source, fields, rules) = match kind {
        Kind::Fhir => (
            "files: {location: {tier: raw, path: in}, format: fhir-ndjson, pattern: \"*.ndjson\"}",
            r#"
    - {path: id, identifier: direct, category: PersonalAttributes}
    - {path: identifier, identifier: direct, category: PersonalAttributes}
    - {path: name, identifier: direct, category: PersonalAttributes}
    - {path: telecom, identifier: direct, category: PersonalAttributes}
    - {path: address, identifier: direct, category: PersonalAttributes}
    - {path: performer, identifier: direct, category: MedicalApplication}
    - {path: subject.reference, identifier: direct, category: PersonalAttributes}
    - {path: gender, identifier: quasi, category: PersonalAttributes}
    - {path: birthDate, identifier: quasi, category: PersonalAttributes}
    - {path: effectiveDateTime, identifier: quasi, category: MedicalApplication}
    - {path: code, identifier: none, category: HealthStatus}
    - {path: valueQuantity, identifier: none, category: HealthStatus}
    - {path: status, identifier: none, category: HealthStatus}
    - {path: resourceType, identifier: none, category: HealthResources}"#,
            r#"
          - {field: id, method: cryptoHash}
          - {field: subject.reference, method: cryptoHash, cryptoHash: {referenceIdOnly: true}}
          - {field: birthDate, method: generalize, generalize: {to: year}}
          - {field: effectiveDateTime, method: dateShift, dateShift: {maxDays: 30, patientIdField: subject.reference}}
          - {field: person, method: keep}
          - {identifier: direct, method: redact}
          - {identifier: quasi, method: keep}
          - {identifier: none, method: keep}"#,
        ),
        Kind::Csv | Kind::Postgres | Kind::Mysql => (
            match kind {
                Kind::Csv => {
                    "files: {location: {tier: raw, path: in}, format: csv, pattern: \"*.csv\"}"
                }
                Kind::Mysql => my_source.as_str(),
                _ => pg_source.as_str(),
            },
            r#"
    - {path: specimen_id, identifier: direct, category: MedicalApplication}
    - {path: patient_id, identifier: direct, category: PersonalAttributes}
    - {path: patient_name, identifier: direct, category: PersonalAttributes}
    - {path: id_card, identifier: direct, category: PersonalAttributes}
    - {path: gender, identifier: quasi, category: PersonalAttributes}
    - {path: birth_date, identifier: quasi, category: PersonalAttributes}
    - {path: collected_at, identifier: quasi, category: MedicalApplication}
    - {path: test_code, identifier: none, category: HealthStatus}
    - {path: result_value, identifier: none, category: HealthStatus}
    - {path: unit, identifier: none, category: HealthStatus}"#,
            r#"
          - {field: patient_id, method: cryptoHash, cryptoHash: {algorithm: HMAC-SM3}}
          - {field: specimen_id, method: cryptoHash}
          - {field: birth_date, method: generalize, generalize: {to: year}}
          - {field: collected_at, method: dateShift, dateShift: {maxDays: 30, patientIdField: patient_id}}
          - {field: person, method: keep}
          - {identifier: direct, method: redact}
          - {identifier: quasi, method: keep}
          - {identifier: none, method: keep}"#,
        ),
    };
    // One stage alone, to see what each costs (`MEDPLAT_BENCH_STEPS`); validate and link are
    // the CSV rows' steps.
    let deidentify =
        format!("    - deidentify:\n        keys: {{secretName: keys}}\n        rules:{rules}\n");
    let steps = match (kind, std::env::var("MEDPLAT_BENCH_STEPS").as_deref()) {
        (_, Ok("read-write")) => "    - map: {fields: [{from: unit, to: unit2}]}\n".to_string(),
        (Kind::Csv | Kind::Postgres | Kind::Mysql, Ok("validate")) => CSV_VALIDATE.to_string(),
        (Kind::Csv | Kind::Postgres | Kind::Mysql, Ok("link")) => CSV_LINK.to_string(),
        (_, Ok("deidentify")) => deidentify,
        (Kind::Csv | Kind::Postgres | Kind::Mysql, _) => {
            format!("{CSV_VALIDATE}{CSV_LINK}{deidentify}")
        }
        (Kind::Fhir, _) => deidentify,
    };
    format!(
        r#"
apiVersion: medplat.io/v1alpha1
kind: StorageTier
metadata: {{name: raw}}
spec: {{domain: clinical, maxLevel: L4, encryption: required, backend: {{volume: {{storageClassName: s, size: 1Gi}}}}, retentionDays: 30}}
---
apiVersion: medplat.io/v1alpha1
kind: StorageTier
metadata: {{name: curated}}
spec: {{domain: clinical, maxLevel: L4, encryption: required, backend: {{volume: {{storageClassName: s, size: 1Gi}}}}, retentionDays: 30}}
---
apiVersion: medplat.io/v1alpha1
kind: DataSource
metadata: {{name: src, namespace: b}}
spec:
  system: CDR
  connector: {{{source}}}
  classification: {{level: L4, domain: clinical}}
  fields:{fields}
---
apiVersion: medplat.io/v1alpha1
kind: Pipeline
metadata: {{name: p, namespace: b}}
spec:
  purpose: Treatment
  sources: [src]
  steps:
{steps}  sink: {{tier: curated, dataset: out, format: ndjson}}
---
apiVersion: medplat.io/v1alpha1
kind: AccessPolicy
metadata: {{name: g, namespace: b}}
spec:
  purpose: Treatment
  subjects: [{{kind: ServiceAccount, name: medplat-pipeline-p}}]
  rules:
    - {{resources: {{kind: DataSource, names: [src]}}, verbs: [read]}}
    - {{resources: {{kind: StorageTier, names: [curated]}}, verbs: [write]}}
"#
    )
}

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    input: PathBuf,
    bytes: u64,
    doc: ResolvedPipeline,
    pg: Option<PgTable>,
    my: Option<mysql::MyTable>,
}

/// The bench's table in a database of its own on the test PostgreSQL.
struct PgTable {
    config: tokio_postgres::Config,
    port: u16,
    db: String,
}

impl PgTable {
    async fn connect(&self, db: Option<&str>) -> tokio_postgres::Client {
        let mut c = self.config.clone();
        if let Some(db) = db {
            c.dbname(db);
        }
        let (client, conn) = c.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        client
    }

    /// Creates the database afresh and loads the CSV file into `his.lab` (every column text);
    /// returns the bytes of the rows' JSON text, which is what the worker reads.
    async fn load(&self, csv_file: &Path) -> u64 {
        use futures::SinkExt;
        let root = self.connect(None).await;
        let db = &self.db;
        root.batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))
            .await
            .unwrap();
        root.batch_execute(&format!("CREATE DATABASE {db}"))
            .await
            .unwrap();
        let client = self.connect(Some(db)).await;
        client
            .batch_execute("CREATE SCHEMA his; CREATE TABLE his.lab (specimen_id text, patient_id text, patient_name text, id_card text, gender text, birth_date text, test_code text, result_value text, unit text, collected_at text)")
            .await
            .unwrap();
        let sink = client
            .copy_in("COPY his.lab FROM STDIN WITH (FORMAT csv, HEADER true)")
            .await
            .unwrap();
        futures::pin_mut!(sink);
        let bytes = std::fs::read(csv_file).unwrap();
        sink.send(bytes::Bytes::from(bytes)).await.unwrap();
        sink.close().await.unwrap();
        let row = client
            .query_one(
                "SELECT sum(length(row_to_json(t)::text::bytea))::int8 FROM his.lab t",
                &[],
            )
            .await
            .unwrap();
        row.get::<_, i64>(0) as u64
    }

    async fn drop_database(&self) {
        let root = self.connect(None).await;
        root.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db))
            .await
            .unwrap();
    }
}

fn setup(kind: Kind, n: u64, rt: &tokio::runtime::Runtime) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let input = root.join("data/raw/in").join(if kind == Kind::Fhir {
        "in.ndjson"
    } else {
        "in.csv"
    });
    let mut bytes = generate(kind, n, &input);
    let pg = (kind == Kind::Postgres).then(|| {
        let config: tokio_postgres::Config = std::env::var("MEDPLAT_TEST_PG_URL")
            .unwrap()
            .parse()
            .unwrap();
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let table = PgTable {
            config,
            port,
            db: format!("medplat_bench_{}", std::process::id()),
        };
        bytes = rt.block_on(table.load(&input));
        std::fs::create_dir_all(root.join("secrets/pg")).unwrap();
        std::fs::write(root.join("secrets/pg/username"), "medplat").unwrap();
        std::fs::write(root.join("secrets/pg/password"), "unused-with-trust-auth").unwrap();
        table
    });
    let my = (kind == Kind::Mysql).then(|| {
        let table = mysql::MyTable::new(&std::env::var("MEDPLAT_TEST_MYSQL_URL").unwrap());
        bytes = rt.block_on(table.load(&input, &root.join("secrets")));
        table
    });
    std::fs::create_dir_all(root.join("secrets/keys")).unwrap();
    for k in ["hmac-key", "date-shift-key"] {
        std::fs::write(root.join("secrets/keys").join(k), SECRET).unwrap();
    }
    std::fs::create_dir_all(root.join("manifests")).unwrap();
    std::fs::write(
        root.join("manifests/m.yaml"),
        manifests(kind, pg.as_ref(), my.as_ref()),
    )
    .unwrap();
    let doc = resolve_from_manifests(
        &root.join("manifests"),
        "b",
        "p",
        &root.join("data"),
        &root.join("secrets"),
    )
    .unwrap();
    Setup {
        _dir: dir,
        root,
        input,
        bytes,
        doc,
        pg,
        my,
    }
}

/// Worker threads: `MEDPLAT_WORKER_THREADS` as the worker reads it, else the engine's default.
fn threads() -> Option<std::num::NonZeroUsize> {
    std::env::var("MEDPLAT_WORKER_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
}

fn run_pipeline(s: &Setup, rt: &tokio::runtime::Runtime) -> u64 {
    let report = engine::run(
        &s.doc,
        &RunOptions {
            run_id: None,
            as_of: jiff::civil::date(2026, 11, 28),
            audit: Arc::new(AuditEmitter::to_writer(Box::new(std::io::sink()))),
            runtime: rt.handle().clone(),
            object_store_override: None,
            parallelism: threads(),
        },
    );
    assert!(report.error.is_none(), "{:?}", report.error);
    report.summary.records.records_in
}

/// The limit for PostgreSQL: the worker's own query through a cursor, each row's JSON text
/// parsed and serialised again with `serde_json`.
async fn pg_baseline(table: &PgTable, w: &mut impl Write) -> u64 {
    let mut client = table.connect(Some(&table.db)).await;
    let tx = client.transaction().await.unwrap();
    let stmt = tx
        .prepare("SELECT row_to_json(t)::text, NULL::text FROM \"his\".\"lab\" AS t ORDER BY 1")
        .await
        .unwrap();
    let portal = tx.bind(&stmt, &[]).await.unwrap();
    let mut n = 0;
    loop {
        let rows = tx.query_portal(&portal, 2000).await.unwrap();
        if rows.is_empty() {
            break;
        }
        for row in rows {
            let json: &str = row.get(0);
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            serde_json::to_writer(&mut *w, &v).unwrap();
            w.write_all(b"\n").unwrap();
            n += 1;
        }
    }
    tx.commit().await.unwrap();
    n
}

fn run_baseline(kind: Kind, s: &Setup, rt: &tokio::runtime::Runtime) -> u64 {
    let out = s.root.join("baseline.out");
    let mut w = BufWriter::with_capacity(1 << 18, std::fs::File::create(&out).unwrap());
    let mut n = 0;
    match kind {
        Kind::Fhir => {
            let mut r = BufReader::with_capacity(1 << 18, std::fs::File::open(&s.input).unwrap());
            let mut line = Vec::new();
            while r.read_until(b'\n', &mut line).unwrap() > 0 {
                let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
                serde_json::to_writer(&mut w, &v).unwrap();
                w.write_all(b"\n").unwrap();
                line.clear();
                n += 1;
            }
        }
        Kind::Csv => {
            let mut r = csv::Reader::from_path(&s.input).unwrap();
            let mut cw = csv::Writer::from_writer(&mut w);
            cw.write_record(r.headers().unwrap()).unwrap();
            let mut rec = csv::StringRecord::new();
            while r.read_record(&mut rec).unwrap() {
                cw.write_record(&rec).unwrap();
                n += 1;
            }
            cw.flush().unwrap();
        }
        Kind::Mysql => {
            let table = s.my.as_ref().unwrap();
            n = rt.block_on(table.baseline(&mut w));
        }
        Kind::Postgres => {
            let table = s.pg.as_ref().unwrap();
            n = rt.block_on(pg_baseline(table, &mut w));
        }
    }
    w.flush().unwrap();
    w.get_ref().sync_all().unwrap();
    n
}

/// User and system CPU time of this process, all threads, from `/proc/self/stat` (clock ticks
/// of 10 ms, fine for runs of seconds); 0 where there is no procfs.
fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start at the state, field 3;
    // utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--bench"))
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();

    // Child mode: run the pipeline once on n records and report peak memory.
    if args.first().map(String::as_str) == Some("peak") {
        let kind = if args[1] == "csv" {
            Kind::Csv
        } else {
            Kind::Fhir
        };
        let n: u64 = args[2].parse().unwrap();
        let s = setup(kind, n, &rt);
        let before = peak_rss_kib();
        run_pipeline(&s, &rt);
        println!("{} {} {}", s.bytes, before, peak_rss_kib());
        return;
    }

    let n: u64 = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let rounds: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    println!(
        "worker throughput: {n} records, {rounds} rounds, medians (pipeline and limit interleaved)"
    );
    let only = args.get(2).map(String::as_str);
    for kind in [Kind::Fhir, Kind::Csv, Kind::Postgres, Kind::Mysql] {
        if only.is_some_and(|o| o != kind_arg(kind)) {
            continue;
        }
        if kind == Kind::Postgres && std::env::var_os("MEDPLAT_TEST_PG_URL").is_none() {
            println!(
                "PostgreSQL: skipped, MEDPLAT_TEST_PG_URL is unset (run under scripts/lib/with-services.sh)"
            );
            continue;
        }
        if kind == Kind::Mysql && std::env::var_os("MEDPLAT_TEST_MYSQL_URL").is_none() {
            println!(
                "MySQL: skipped, MEDPLAT_TEST_MYSQL_URL is unset (run under scripts/lib/with-services.sh)"
            );
            continue;
        }
        let s = setup(kind, n, &rt);
        let mb = s.bytes as f64 / 1e6;
        let (mut pipe, mut base) = (Vec::new(), Vec::new());
        let (mut pipe_cpu, mut base_cpu) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let (t, c) = (Instant::now(), process_cpu_seconds());
            assert_eq!(run_pipeline(&s, &rt), n);
            pipe.push(t.elapsed().as_secs_f64());
            pipe_cpu.push(process_cpu_seconds() - c);
            let (t, c) = (Instant::now(), process_cpu_seconds());
            assert_eq!(run_baseline(kind, &s, &rt), n);
            base.push(t.elapsed().as_secs_f64());
            base_cpu.push(process_cpu_seconds() - c);
        }
        let (p, b) = (median(pipe), median(base));
        let (pc, bc) = (median(pipe_cpu), median(base_cpu));
        println!(
            "{:<12} input {:>8.1} MB | pipeline {:>9.0} rec/s {:>7.1} MB/s | parse+serialize limit {:>9.0} rec/s {:>7.1} MB/s | ratio {:.2}",
            kind.name(),
            mb,
            n as f64 / p,
            mb / p,
            n as f64 / b,
            mb / b,
            b / p
        );
        // Wall time hides where a miss comes from: the throughput ratio is the limit's CPU per
        // record over the pipeline's, times the cores the pipeline keeps busy over the limit's.
        println!(
            "{:<12} CPU per record: pipeline {:.2} µs on {:.2} cores, limit {:.2} µs on {:.2} | pipeline CPU ÷ limit CPU {:.1}",
            "",
            pc / n as f64 * 1e6,
            pc / p,
            bc / n as f64 * 1e6,
            bc / b,
            pc / bc
        );
        if let Some(table) = &s.pg {
            rt.block_on(table.drop_database());
        }
        if let Some(table) = &s.my {
            rt.block_on(table.drop_database());
        }
    }

    println!("peak resident memory of the pipeline (child processes):");
    let exe = std::env::current_exe().unwrap();
    for kind in ["fhir", "csv"] {
        if only.is_some_and(|o| o != kind) {
            continue;
        }
        for size in [n / 10, n / 4, n] {
            let out = std::process::Command::new(&exe)
                .args(["peak", kind, &size.to_string()])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let f: Vec<u64> = text
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            if f.len() == 3 {
                println!(
                    "  {kind:<5} {size:>9} records {:>8.1} MB input: peak RSS {:>7.1} MiB (after setup {:>6.1} MiB)",
                    f[0] as f64 / 1e6,
                    f[2] as f64 / 1024.0,
                    f[1] as f64 / 1024.0
                );
            } else {
                println!(
                    "  {kind} {size}: child failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}
