//! The `mysql` connector against a real MariaDB on loopback (started by
//! `scripts/lib/with-services.sh`): full load, incremental load, resume after a failure, typed
//! columns, a binary column quarantined, and TLS with `require` and `verify-full`.

use mysql_async::prelude::Queryable;

use super::{doc, output_rows, run, runtime, secret, service_env, write_manifests};
use medplat::worker::manifest::WriteMode;

/// The server's address and the test user, from `MEDPLAT_TEST_MYSQL_URL`.
struct Server {
    opts: mysql_async::Opts,
}

impl Server {
    fn from_env() -> Option<Server> {
        let url = service_env("MEDPLAT_TEST_MYSQL_URL", "MySQL")?;
        Some(Server {
            opts: mysql_async::Opts::from_url(&url).unwrap(),
        })
    }

    fn port(&self) -> u16 {
        self.opts.tcp_port()
    }

    /// Creates database `db` afresh and returns a connection to it.
    fn fresh_database(&self, rt: &tokio::runtime::Runtime, db: &str) -> mysql_async::Conn {
        rt.block_on(async {
            let mut root = mysql_async::Conn::new(self.opts.clone()).await.unwrap();
            root.query_drop(format!(
                "DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db} CHARACTER SET utf8mb4"
            ))
            .await
            .unwrap();
            root.query_drop(format!("USE {db}")).await.unwrap();
            root
        })
    }

    fn exec(&self, rt: &tokio::runtime::Runtime, conn: &mut mysql_async::Conn, sql: &str) {
        rt.block_on(conn.query_drop(sql)).unwrap();
    }

    fn drop_database(&self, rt: &tokio::runtime::Runtime, mut conn: mysql_async::Conn, db: &str) {
        rt.block_on(async {
            conn.query_drop(format!("DROP DATABASE IF EXISTS {db}"))
                .await
                .unwrap();
            conn.disconnect().await.unwrap();
        });
    }

    /// Credentials Secret `my` and a pipeline reading the connector `mysql: {…}` through
    /// `steps`.
    fn pipeline(&self, d: &std::path::Path, mysql: &str, steps: &str) {
        secret(
            d,
            "my",
            "username",
            &format!("{}\n", self.opts.user().unwrap()),
        );
        secret(
            d,
            "my",
            "password",
            &format!("{}\n", self.opts.pass().unwrap()),
        );
        write_manifests(
            d,
            &format!(
                "  system: HIS\n  connector: {{mysql: {{{mysql}}}}}\n  credentials: {{secretName: my}}"
            ),
            steps,
        );
    }
}

#[test]
fn worker_mysql_full_incremental_resume_typed_columns_and_binary_quarantine() {
    let Some(server) = Server::from_env() else {
        return;
    };
    let rt = runtime();
    let db = format!("medplat_worker_{}", std::process::id());
    let mut conn = server.fresh_database(&rt, &db);
    server.exec(
        &rt,
        &mut conn,
        "CREATE TABLE patient (patient_id varchar(16), name varchar(32), birth_date date,
             weight decimal(5,1), visits int, updated_at datetime);
         INSERT INTO patient VALUES
             ('P1', '患者1', '1980-01-02', 60.5, 3, '2026-11-01 01:00:00'),
             ('P2', '患者2', '1980-01-03', 61.0, 1, '2026-11-01 02:00:00'),
             ('P3', '患者3', '1980-01-04', NULL, 0, '2026-11-01 03:00:00'),
             ('P4', '患者4', '1980-01-05', 63.5, 2, '2026-11-01 04:00:00'),
             ('P5', '患者5', '1980-01-06', 64.0, 5, '2026-11-01 05:00:00');",
    );
    let port = server.port();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    server.pipeline(
        d,
        &format!(
            "host: 127.0.0.1, port: {port}, database: {db}, table: patient, watermarkColumn: updated_at, sslMode: disable"
        ),
        "[{validate: {onFail: fail, rules: [{name: no-poison, field: name, pattern: \"[^!]*\"}]}}]",
    );

    // Full load, with each column type mapped to its JSON form.
    let first = run(&rt, &doc(d));
    assert!(first.error.is_none(), "{:?}", first.summary);
    let m = first.manifest.unwrap();
    assert_eq!(m.mode, WriteMode::Replace);
    assert_eq!(m.counts.records_out, 5);
    assert_eq!(m.watermarks["src"], "2026-11-01 05:00:00");
    let rows = output_rows(d);
    assert_eq!(
        rows[0],
        serde_json::json!({"patient_id": "P1", "name": "患者1", "birth_date": "1980-01-02",
            "weight": 60.5, "visits": 3, "updated_at": "2026-11-01T01:00:00"})
    );
    assert_eq!(rows[2]["weight"], serde_json::Value::Null);

    // Incremental: only the new rows are read, appended as a new part.
    server.exec(
        &rt,
        &mut conn,
        "INSERT INTO patient VALUES ('P6', '患者6', '1990-01-01', 70, 1, '2026-11-02 00:00:00'),
             ('P7', '患者7', '1990-01-02', 71, 1, '2026-11-02 01:00:00');",
    );
    let second = run(&rt, &doc(d));
    let m2 = second.manifest.unwrap();
    assert_eq!(m2.mode, WriteMode::Append);
    assert_eq!(m2.counts.records_in, 2);
    assert_eq!(output_rows(d).len(), 7);

    // A run that fails after reading commits nothing and does not move the checkpoint.
    server.exec(
        &rt,
        &mut conn,
        "INSERT INTO patient VALUES ('P8', '患者8', '1990-01-03', 72, 1, '2026-11-03 00:00:00'),
             ('P9', 'bad!', '1990-01-04', 73, 1, '2026-11-03 01:00:00');",
    );
    let failed = run(&rt, &doc(d));
    let message = failed.summary.message.clone().unwrap_or_default();
    assert!(message.contains("rule no-poison failed"), "{message}");
    assert_eq!(output_rows(d).len(), 7);
    // Resume: fix the row; the rerun picks up both rows since the last committed watermark.
    server.exec(
        &rt,
        &mut conn,
        "UPDATE patient SET name = '患者9' WHERE patient_id = 'P9';",
    );
    let resumed = run(&rt, &doc(d));
    let m3 = resumed.manifest.unwrap();
    assert_eq!(m3.counts.records_in, 2);
    assert_eq!(m3.watermarks["src"], "2026-11-03 01:00:00");
    let ids: Vec<String> = output_rows(d)
        .iter()
        .map(|r| r["patient_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, (1..=9).map(|i| format!("P{i}")).collect::<Vec<_>>());

    // Binary data is not text: that row is quarantined with the column's name, the rest go on.
    server.exec(
        &rt,
        &mut conn,
        "CREATE TABLE scan (id int, photo blob);
         INSERT INTO scan VALUES (1, NULL), (2, X'FFFE00'), (3, 'plain text');",
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    server.pipeline(
        d,
        &format!("host: 127.0.0.1, port: {port}, database: {db}, table: scan, sslMode: disable"),
        "[]",
    );
    let report = run(&rt, &doc(d));
    assert!(report.error.is_none(), "{:?}", report.summary);
    let counts = report.summary.records;
    assert_eq!((counts.records_out, counts.quarantined), (2, 1));
    let quarantine = std::fs::read_dir(d.join("data/out/data/_quarantine"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect::<String>();
    assert!(
        quarantine.contains("column photo is not UTF-8 text") && quarantine.contains("scan#2"),
        "{quarantine}"
    );

    server.drop_database(&rt, conn, &db);
}

#[test]
fn worker_mysql_over_tls_encrypts_and_verify_full_checks_the_ca_and_the_name() {
    let (Some(server), Some(ca_path)) = (
        Server::from_env(),
        service_env("MEDPLAT_TEST_PG_CA", "MySQL TLS"),
    ) else {
        return;
    };
    // with-services.sh gives MariaDB the certificate its throw-away CA signed for PostgreSQL.
    let ca = std::fs::read_to_string(ca_path).unwrap();
    let rt = runtime();
    let db = format!("medplat_worker_tls_{}", std::process::id());
    let mut conn = server.fresh_database(&rt, &db);
    server.exec(
        &rt,
        &mut conn,
        "CREATE TABLE visit (id int, note varchar(16));
         INSERT INTO visit VALUES (1, '复诊1'), (2, '复诊2'), (3, '复诊3');",
    );
    // The server reports the session's own cipher, so the output proves the encryption.
    let query = "SELECT v.id, (SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'Ssl_cipher') AS cipher FROM visit v";
    let port = server.port();

    // (host, sslMode, ca.crt in the credentials Secret, connects)
    let cases = [
        ("localhost", "verify-full", true, true),
        ("127.0.0.1", "require", false, true),
        // The certificate names localhost only.
        ("127.0.0.1", "verify-full", true, false),
        // The system roots do not know the test CA.
        ("localhost", "verify-full", false, false),
    ];
    for (host, mode, with_ca, connects) in cases {
        let case = format!("{host} {mode} ca={with_ca}");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        server.pipeline(
            d,
            &format!(
                "host: {host}, port: {port}, database: {db}, query: {query:?}, sslMode: {mode}"
            ),
            "[]",
        );
        if with_ca {
            secret(d, "my", "ca.crt", &ca);
        }
        let report = run(&rt, &doc(d));
        if connects {
            assert!(report.error.is_none(), "{case}: {:?}", report.summary);
            let rows = output_rows(d);
            assert_eq!(rows.len(), 3, "{case}");
            for r in rows {
                assert!(
                    r["cipher"].as_str().is_some_and(|c| !c.is_empty()),
                    "{case}: no TLS cipher in {r}"
                );
            }
        } else {
            let message = report.summary.message.clone().unwrap_or_default();
            assert!(report.error.is_some(), "{case} connected");
            assert!(message.contains("cannot connect"), "{case}: {message}");
            assert!(
                !message.contains("medplat-test-password"),
                "{case}: {message}"
            );
            assert!(
                !d.join("data/out/data").exists(),
                "{case}: output committed"
            );
        }
    }
    // A ca.crt that is not a certificate, or holds a private key, is refused by name before
    // any connection, as the PostgreSQL and FHIR connectors refuse it.
    for (bad, says) in [
        (
            "not a certificate\n".to_string(),
            "holds no PEM certificate",
        ),
        (
            format!("{ca}-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
            "holds a private key",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        server.pipeline(
            d,
            &format!("host: localhost, port: {port}, database: {db}, query: {query:?}, sslMode: verify-full"),
            "[]",
        );
        secret(d, "my", "ca.crt", &bad);
        let report = run(&rt, &doc(d));
        let message = report.summary.message.clone().unwrap_or_default();
        assert!(report.error.is_some(), "{says}: connected");
        assert!(
            message.contains("ca.crt of the credentials Secret") && message.contains(says),
            "{says}: {message}"
        );
        assert!(!message.contains("AAAA"), "{message}");
    }
    server.drop_database(&rt, conn, &db);
}
