//! The `postgres` connector against a real PostgreSQL on loopback (started by
//! `scripts/lib/with-services.sh`): full load, incremental load, resume after a failure, a
//! connection cut mid-stream by a proxy, and TLS with `require` and `verify-full`.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use medplat::worker::manifest::WriteMode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{doc, output_rows, run, runtime, secret, service_env, write_manifests};

fn pg_url() -> Option<String> {
    service_env("MEDPLAT_TEST_PG_URL", "PostgreSQL")
}

/// Credentials Secret `pg` (trust auth: the password is not checked) and a pipeline reading
/// the PostgreSQL connector `postgres` (the fields inside `postgres: {…}`) through `steps`.
fn pg_pipeline(d: &Path, postgres: &str, steps: &str) {
    secret(d, "pg", "username", "medplat\n");
    secret(d, "pg", "password", "unused-with-trust-auth\n");
    write_manifests(
        d,
        &format!(
            "  system: HIS\n  connector: {{postgres: {{{postgres}}}}}\n  credentials: {{secretName: pg}}"
        ),
        steps,
    );
}

/// Creates database `db` afresh and returns a client of the server's default database (to drop
/// it afterwards) and one of `db`.
fn fresh_database(
    rt: &tokio::runtime::Runtime,
    config: &tokio_postgres::Config,
    db: &str,
) -> (tokio_postgres::Client, tokio_postgres::Client) {
    let connect = |db: Option<&str>| {
        let mut c = config.clone();
        if let Some(d) = db {
            c.dbname(d);
        }
        rt.block_on(async move {
            let (client, conn) = c.connect(tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            client
        })
    };
    let root = connect(None);
    rt.block_on(async {
        root.batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))
            .await
            .unwrap();
        root.batch_execute(&format!("CREATE DATABASE {db}"))
            .await
            .unwrap();
    });
    let client = connect(Some(db));
    (root, client)
}

fn drop_database(rt: &tokio::runtime::Runtime, root: &tokio_postgres::Client, db: &str) {
    rt.block_on(async {
        root.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .await
            .unwrap();
    });
}

#[test]
fn worker_postgres_full_incremental_and_resume_after_failure() {
    let Some(url) = pg_url() else { return };
    let rt = runtime();
    let config: tokio_postgres::Config = url.parse().unwrap();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = format!("medplat_worker_{}", std::process::id());
    let (root, client) = fresh_database(&rt, &config, &db);
    let exec = |sql: &str| rt.block_on(client.batch_execute(sql)).unwrap();
    exec(
        "CREATE SCHEMA his; CREATE TABLE his.patient (patient_id text, name text, birth_date date, updated_at timestamptz);
         INSERT INTO his.patient SELECT 'P' || i, '患者' || i, DATE '1980-01-01' + i, TIMESTAMPTZ '2026-11-01 00:00:00+00' + i * INTERVAL '1 hour' FROM generate_series(1, 5) i;",
    );

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pg_pipeline(
        d,
        &format!(
            "host: 127.0.0.1, port: {port}, database: {db}, table: his.patient, watermarkColumn: updated_at, sslMode: disable"
        ),
        "[{validate: {onFail: fail, rules: [{name: no-poison, field: name, pattern: \"[^!]*\"}]}}]",
    );

    // Full load.
    let first = run(&rt, &doc(d));
    assert!(first.error.is_none(), "{:?}", first.error);
    let m = first.manifest.unwrap();
    assert_eq!(m.mode, WriteMode::Replace);
    assert_eq!(m.counts.records_out, 5);
    assert!(
        m.watermarks["src"].starts_with("2026-11-01 05:00:00"),
        "{:?}",
        m.watermarks
    );
    assert_eq!(output_rows(d).len(), 5);
    assert_eq!(output_rows(d)[0]["birth_date"], "1980-01-02");

    // Incremental: only the new rows are read, appended as a new part.
    exec(
        "INSERT INTO his.patient VALUES ('P6', '患者6', '1990-01-01', '2026-11-02 00:00:00+00'), ('P7', '患者7', '1990-01-02', '2026-11-02 01:00:00+00');",
    );
    let second = run(&rt, &doc(d));
    let m2 = second.manifest.unwrap();
    assert_eq!(m2.mode, WriteMode::Append);
    assert_eq!(m2.counts.records_in, 2);
    assert_eq!(m2.files.len(), 2);
    assert_eq!(m2.files[1].path, "part-00001.ndjson");
    assert_eq!(output_rows(d).len(), 7);

    // A run that fails after reading commits nothing and does not move the checkpoint.
    exec(
        "INSERT INTO his.patient VALUES ('P8', '患者8', '1990-01-03', '2026-11-03 00:00:00+00'), ('P9', 'bad!', '1990-01-04', '2026-11-03 01:00:00+00');",
    );
    let failed = run(&rt, &doc(d));
    assert!(
        failed
            .summary
            .message
            .as_deref()
            .unwrap()
            .contains("rule no-poison failed"),
        "{:?}",
        failed.summary.message
    );
    assert_eq!(output_rows(d).len(), 7);
    // Resume: fix the row; the rerun picks up both rows since the last committed watermark.
    exec("UPDATE his.patient SET name = '患者9' WHERE patient_id = 'P9';");
    let resumed = run(&rt, &doc(d));
    let m3 = resumed.manifest.unwrap();
    assert_eq!(m3.counts.records_in, 2);
    assert!(m3.watermarks["src"].starts_with("2026-11-03 01:00:00"));
    let rows = output_rows(d);
    assert_eq!(rows.len(), 9);
    let ids: Vec<_> = rows
        .iter()
        .map(|r| r["patient_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, (1..=9).map(|i| format!("P{i}")).collect::<Vec<_>>());

    drop(client);
    drop_database(&rt, &root, &db);
}

/// A loopback TCP proxy to `127.0.0.1:target`. While `cut_after` is above zero, a connection
/// is cut (both sockets dropped, as when a database host goes away) once that many bytes have
/// come back from the server; at zero it only forwards.
async fn cutting_proxy(target: u16, cut_after: Arc<AtomicU64>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let limit = cut_after.load(Ordering::SeqCst);
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else {
                    return;
                };
                let (mut client_rx, mut client_tx) = client.into_split();
                let (mut server_rx, mut server_tx) = server.into_split();
                let upstream = tokio::io::copy(&mut client_rx, &mut server_tx);
                let downstream = async {
                    let mut sent: u64 = 0;
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = server_rx.read(&mut buf).await.unwrap_or(0);
                        if n == 0 || client_tx.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                        sent += n as u64;
                        if limit > 0 && sent >= limit {
                            return;
                        }
                    }
                };
                // Whichever direction ends first drops every socket half with this task.
                tokio::select! {
                    _ = upstream => {},
                    _ = downstream => {},
                }
            });
        }
    });
    port
}

#[test]
fn worker_postgres_cut_mid_stream_commits_nothing_and_the_rerun_reads_exactly_the_rest() {
    let Some(url) = pg_url() else { return };
    let rt = runtime();
    let config: tokio_postgres::Config = url.parse().unwrap();
    let pg_port = config.get_ports().first().copied().unwrap_or(5432);
    let db = format!("medplat_worker_cut_{}", std::process::id());
    let (root, client) = fresh_database(&rt, &config, &db);
    let exec = |sql: &str| rt.block_on(client.batch_execute(sql)).unwrap();
    exec(
        "CREATE SCHEMA his; CREATE TABLE his.patient (patient_id text, name text, updated_at timestamptz);
         INSERT INTO his.patient SELECT 'P' || i, '患者' || i, TIMESTAMPTZ '2026-11-01 00:00:00+00' + i * INTERVAL '1 second' FROM generate_series(1, 5) i;",
    );
    let cut_after = Arc::new(AtomicU64::new(0));
    let proxy_port = rt.block_on(cutting_proxy(pg_port, cut_after.clone()));

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pg_pipeline(
        d,
        &format!(
            "host: 127.0.0.1, port: {proxy_port}, database: {db}, table: his.patient, watermarkColumn: updated_at, sslMode: disable"
        ),
        "[]",
    );

    // A first load through the proxy, which only forwards.
    let first = run(&rt, &doc(d));
    assert!(first.error.is_none(), "{:?}", first.error);
    assert_eq!(output_rows(d).len(), 5);
    let committed = std::fs::read(d.join("data/out/data/_manifest.json")).ok();
    assert!(committed.is_some(), "the first run commits a manifest");

    // 20,000 new rows (several portal batches, about 2 MB on the wire); the connection is cut
    // after 300 kB have come back, in the middle of the stream.
    exec(
        "INSERT INTO his.patient SELECT 'P' || i, '患者' || i, TIMESTAMPTZ '2026-11-02 00:00:00+00' + i * INTERVAL '1 second' FROM generate_series(6, 20005) i;",
    );
    cut_after.store(300_000, Ordering::SeqCst);
    let cut = run(&rt, &doc(d));
    assert!(cut.error.is_some(), "a cut connection must fail the run");
    assert!(cut.manifest.is_none(), "a failed run commits no manifest");
    assert_eq!(output_rows(d).len(), 5, "nothing of the cut run is visible");
    assert_eq!(
        std::fs::read(d.join("data/out/data/_manifest.json")).ok(),
        committed,
        "the committed dataset and its checkpoint are untouched"
    );

    // The database is back: the rerun reads exactly the 20,000 rows after the checkpoint.
    cut_after.store(0, Ordering::SeqCst);
    let rerun = run(&rt, &doc(d));
    assert!(rerun.error.is_none(), "{:?}", rerun.error);
    let m = rerun.manifest.unwrap();
    assert_eq!(m.counts.records_in, 20_000);
    let ids: Vec<String> = output_rows(d)
        .iter()
        .map(|r| r["patient_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        ids,
        (1..=20_005).map(|i| format!("P{i}")).collect::<Vec<_>>()
    );

    drop(client);
    drop_database(&rt, &root, &db);
}

/// The CA of the loopback PostgreSQL's server certificate (issued for `localhost` only).
fn pg_ca() -> Option<String> {
    service_env("MEDPLAT_TEST_PG_CA", "PostgreSQL TLS")
        .map(|path| std::fs::read_to_string(path).unwrap())
}

#[test]
fn worker_postgres_over_tls_encrypts_and_verify_full_checks_the_ca_and_the_name() {
    let (Some(url), Some(ca)) = (pg_url(), pg_ca()) else {
        return;
    };
    let rt = runtime();
    let config: tokio_postgres::Config = url.parse().unwrap();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = format!("medplat_worker_tls_{}", std::process::id());
    let (root, client) = fresh_database(&rt, &config, &db);
    rt.block_on(client.batch_execute(
        "CREATE SCHEMA his; CREATE TABLE his.visit (id int, note text);
         INSERT INTO his.visit SELECT i, '复诊' || i FROM generate_series(1, 3) i;",
    ))
    .unwrap();
    // The server reports the session's own TLS state, so the output proves the encryption.
    let query = "SELECT v.id, s.ssl, s.version FROM his.visit v CROSS JOIN pg_stat_ssl s WHERE s.pid = pg_backend_pid()";

    // (host, sslMode, ca.crt in the credentials Secret, the failure expected)
    let cases: [(&str, &str, bool, Option<&str>); 4] = [
        ("localhost", "verify-full", true, None),
        ("localhost", "require", false, None),
        // The certificate names localhost only.
        ("127.0.0.1", "verify-full", true, Some("not valid for name")),
        // The system roots do not know the test CA.
        ("localhost", "verify-full", false, Some("UnknownIssuer")),
    ];
    for (host, mode, with_ca, failure) in cases {
        let case = format!("{host} {mode} ca={with_ca}");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        pg_pipeline(
            d,
            &format!(
                "host: {host}, port: {port}, database: {db}, query: {query:?}, sslMode: {mode}"
            ),
            "[]",
        );
        if with_ca {
            secret(d, "pg", "ca.crt", &ca);
        }
        let report = run(&rt, &doc(d));
        match failure {
            None => {
                assert!(report.error.is_none(), "{case}: {:?}", report.summary);
                let rows = output_rows(d);
                assert_eq!(rows.len(), 3, "{case}");
                for r in rows {
                    assert_eq!(r["ssl"], true, "{case}: {r}");
                    assert!(
                        r["version"].as_str().unwrap().starts_with("TLSv1."),
                        "{case}: {r}"
                    );
                }
            }
            Some(want) => {
                let message = report.summary.message.clone().unwrap_or_default();
                assert!(report.error.is_some(), "{case} connected");
                assert!(message.contains(want), "{case}: {message}");
                assert!(message.contains("cannot connect"), "{case}: {message}");
                assert!(
                    !d.join("data/out/data").exists(),
                    "{case}: output committed"
                );
            }
        }
    }

    drop(client);
    drop_database(&rt, &root, &db);
}
