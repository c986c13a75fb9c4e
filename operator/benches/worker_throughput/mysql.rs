//! The bench's MySQL table: the CSV's rows in a database of its own on the test MariaDB
//! (`MEDPLAT_TEST_MYSQL_URL`), and its limit, the worker's own query read through the same
//! client with each row turned into a JSON object and serialised by `serde_json`.

use std::io::Write;
use std::path::Path;

use mysql_async::prelude::Queryable;

const COLUMNS: [&str; 10] = [
    "specimen_id",
    "patient_id",
    "patient_name",
    "id_card",
    "gender",
    "birth_date",
    "test_code",
    "result_value",
    "unit",
    "collected_at",
];

/// Rows per INSERT while loading.
const LOAD_ROWS: usize = 1000;

pub struct MyTable {
    opts: mysql_async::Opts,
    db: String,
}

impl MyTable {
    pub fn new(url: &str) -> Self {
        MyTable {
            opts: mysql_async::Opts::from_url(url).unwrap(),
            db: format!("medplat_bench_{}", std::process::id()),
        }
    }

    async fn connect(&self) -> mysql_async::Conn {
        mysql_async::Conn::new(self.opts.clone()).await.unwrap()
    }

    /// Creates the database afresh, loads the CSV file into `lab` (every column text) and
    /// writes the credentials Secret `my` under `secrets`; returns the bytes of the rows' values.
    pub async fn load(&self, csv_file: &Path, secrets: &Path) -> u64 {
        let mut conn = self.connect().await;
        let db = &self.db;
        let columns: Vec<String> = COLUMNS.iter().map(|c| format!("{c} varchar(64)")).collect();
        conn.query_drop(format!(
            "DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db} CHARACTER SET utf8mb4; USE {db}; CREATE TABLE lab ({})",
            columns.join(", ")
        ))
        .await
        .unwrap();
        let row = format!("({})", vec!["?"; COLUMNS.len()].join(","));
        let mut reader = csv::Reader::from_path(csv_file).unwrap();
        let (mut bytes, mut params, mut rows) = (0u64, Vec::new(), 0);
        let mut records = reader.records();
        loop {
            let next = records.next().map(Result::unwrap);
            if let Some(record) = &next {
                for field in record {
                    bytes += field.len() as u64;
                    params.push(mysql_async::Value::from(field));
                }
                rows += 1;
            }
            if rows == LOAD_ROWS || (next.is_none() && rows > 0) {
                let values = vec![row.as_str(); rows].join(",");
                conn.exec_drop(
                    format!("INSERT INTO lab VALUES {values}"),
                    std::mem::take(&mut params),
                )
                .await
                .unwrap();
                rows = 0;
            }
            if next.is_none() {
                break;
            }
        }
        conn.disconnect().await.unwrap();
        std::fs::create_dir_all(secrets.join("my")).unwrap();
        std::fs::write(secrets.join("my/username"), self.opts.user().unwrap()).unwrap();
        std::fs::write(secrets.join("my/password"), self.opts.pass().unwrap()).unwrap();
        bytes
    }

    /// The DataSource's connector and credentials, as the bench's manifests take them.
    pub fn source(&self) -> String {
        format!(
            "mysql: {{host: 127.0.0.1, port: {}, database: {}, table: lab, sslMode: disable}}}}\n  credentials: {{secretName: my",
            self.opts.tcp_port(),
            self.db
        )
    }

    /// The limit: the worker's query (no watermark, so ordered by every column), each row a
    /// JSON object of its text columns, serialised as NDJSON.
    pub async fn baseline(&self, w: &mut impl Write) -> u64 {
        let mut conn = self.connect().await;
        let order: Vec<String> = (1..=COLUMNS.len()).map(|i| i.to_string()).collect();
        let mut result = conn
            .exec_iter(
                format!(
                    "SELECT t.* FROM {}.`lab` AS t ORDER BY {}",
                    self.db,
                    order.join(", ")
                ),
                (),
            )
            .await
            .unwrap();
        let mut n = 0;
        while let Some(row) = result.next().await.unwrap() {
            let object: serde_json::Map<String, serde_json::Value> = COLUMNS
                .iter()
                .zip(row.unwrap_raw())
                .map(|(name, v)| {
                    let text = match v {
                        Some(mysql_async::Value::Bytes(b)) => String::from_utf8(b).unwrap(),
                        other => panic!("{name}: {other:?}"),
                    };
                    (name.to_string(), serde_json::Value::String(text))
                })
                .collect();
            serde_json::to_writer(&mut *w, &object).unwrap();
            w.write_all(b"\n").unwrap();
            n += 1;
        }
        drop(result);
        conn.disconnect().await.unwrap();
        n
    }

    pub async fn drop_database(&self) {
        let mut conn = self.connect().await;
        conn.query_drop(format!("DROP DATABASE IF EXISTS {}", self.db))
            .await
            .unwrap();
        conn.disconnect().await.unwrap();
    }
}
