//! The `postgres` connector: a table or a read-only query, streamed through a server-side
//! portal in batches (never loaded whole), ordered by the watermark column, and resumed from
//! the last committed watermark.
//!
//! Every row is turned into JSON by the server (`row_to_json`), so every column type arrives
//! in its JSON form without client-side type mapping; the rows go on as batches of JSON text,
//! parsed on the worker threads like NDJSON lines. The password comes from a Secret file and
//! appears in no message.

use tokio_postgres::config::SslMode as PgSslMode;

use super::SourceError;
use super::channel::{BATCHES_IN_FLIGHT, ChannelSource, JsonLineBatches, Producer};
use crate::api::data_source::{SqlConnector, SslMode};
use crate::worker::secrets::SecretValue;

/// Rows fetched per round trip.
pub const BATCH_ROWS: i32 = 2000;

/// Everything one database read needs (the `postgres` and the `mysql` connector alike).
#[derive(Clone, Debug)]
pub struct SqlRead {
    /// The DataSource's name.
    pub source_name: String,
    /// The connector spec.
    pub connector: SqlConnector,
    /// The login user.
    pub user: String,
    /// The password (never printed).
    pub password: SecretValue,
    /// An extra CA certificate (PEM) for `verify-full`.
    pub ca_pem: Option<SecretValue>,
    /// Read only rows whose watermark is above this (the last committed checkpoint).
    pub after: Option<String>,
}

/// Quotes a possibly schema-qualified identifier (`his.patient` → `"his"."patient"`).
pub fn quote_ident(name: &str) -> String {
    name.split('.')
        .map(|p| format!("\"{}\"", p.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

impl SqlRead {
    /// What the read selects from: the table quoted by `quote`, or the query as a derived
    /// table; `scheme` names the connector in the error.
    pub fn relation(&self, scheme: &str, quote: fn(&str) -> String) -> Result<String, SourceError> {
        match (&self.connector.table, &self.connector.query) {
            (Some(t), None) => Ok(quote(t)),
            (None, Some(q)) => Ok(format!("({})", q.trim().trim_end_matches(';'))),
            _ => Err(SourceError::Config {
                source_name: self.source_name.clone(),
                message: format!("exactly one of connector.{scheme}.table or .query must be set"),
            }),
        }
    }

    /// What the read is about, for audit events (never credentials); `scheme` names the
    /// connector (`postgres`, `mysql`).
    pub fn describe(&self, scheme: &str) -> String {
        let c = &self.connector;
        let what = c.table.clone().unwrap_or_else(|| "query".into());
        format!("{scheme}://{}:{}/{}/{what}", c.host, c.port, c.database)
    }

    fn remote(&self, what: &str, e: tokio_postgres::Error) -> SourceError {
        let detail = match e.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => {
                let mut s = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(cause) = src {
                    s.push_str(&format!(": {cause}"));
                    src = cause.source();
                }
                s
            }
        };
        SourceError::Remote {
            source_name: self.source_name.clone(),
            message: format!("{what} ({}): {detail}", self.describe("postgres")),
        }
    }
}

/// Starts the read on `runtime`; items arrive through the returned source.
pub fn open(runtime: &tokio::runtime::Handle, read: SqlRead) -> ChannelSource {
    let description = read.describe("postgres");
    ChannelSource::spawn(runtime, description, BATCHES_IN_FLIGHT, move |producer| {
        produce(read, producer)
    })
}

async fn connect(read: &SqlRead) -> Result<tokio_postgres::Client, SourceError> {
    let c = &read.connector;
    // Trimmed like the user name: a Secret made with `--from-file` often ends in a newline,
    // which the server would take as part of the password.
    let password = read
        .password
        .expose_text()
        .map_err(|e| SourceError::Config {
            source_name: read.source_name.clone(),
            message: format!("the database password: {e}"),
        })?;
    let mut config = tokio_postgres::Config::new();
    config
        .host(&c.host)
        .port(c.port)
        .dbname(&c.database)
        .user(&read.user)
        .password(password)
        .application_name("medplat-worker")
        .connect_timeout(std::time::Duration::from_secs(15));
    let client = match c.ssl_mode {
        SslMode::Disable => {
            config.ssl_mode(PgSslMode::Disable);
            let (client, conn) = config
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(|e| read.remote("cannot connect", e))?;
            tokio::spawn(conn);
            client
        }
        mode => {
            config.ssl_mode(PgSslMode::Require);
            let ca = read.ca_pem.as_ref().map(|v| v.expose());
            let tls = super::pg_tls::client_config(mode == SslMode::VerifyFull, ca).map_err(
                |message| SourceError::Config {
                    source_name: read.source_name.clone(),
                    message,
                },
            )?;
            let (client, conn) = config
                .connect(super::pg_tls::MakeRustls::new(tls))
                .await
                .map_err(|e| read.remote("cannot connect", e))?;
            tokio::spawn(conn);
            client
        }
    };
    Ok(client)
}

async fn produce(read: SqlRead, producer: Producer) -> Result<(), SourceError> {
    let relation = read.relation("postgres", quote_ident)?;
    let mut client = connect(&read).await?;
    let tx = client
        .build_transaction()
        .read_only(true)
        .start()
        .await
        .map_err(|e| read.remote("cannot start a read-only transaction", e))?;

    let wm_col = read.connector.watermark_column.as_deref().map(quote_ident);
    let (sql, after) = match &wm_col {
        None => (
            format!("SELECT row_to_json(t)::text, NULL::text FROM {relation} AS t ORDER BY 1"),
            None,
        ),
        Some(col) => {
            // The watermark's type, so the checkpoint (kept as text) compares as that type.
            let probe = tx
                .prepare(&format!("SELECT t.{col} FROM {relation} AS t LIMIT 0"))
                .await
                .map_err(|e| read.remote("cannot read the watermark column", e))?;
            let type_name = probe
                .columns()
                .first()
                .map(|c| c.type_().name().to_string())
                .unwrap_or_default();
            if type_name.is_empty()
                || !type_name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(SourceError::Config {
                    source_name: read.source_name.clone(),
                    message: format!("watermark column has an unsupported type {type_name:?}"),
                });
            }
            let filter = if read.after.is_some() {
                format!(" WHERE t.{col} > $1::text::{type_name}")
            } else {
                String::new()
            };
            (
                format!(
                    "SELECT row_to_json(t)::text, t.{col}::text FROM {relation} AS t{filter} ORDER BY t.{col}, 1"
                ),
                read.after.clone(),
            )
        }
    };
    let stmt = tx
        .prepare(&sql)
        .await
        .map_err(|e| read.remote("cannot prepare the read", e))?;
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = match &after {
        Some(a) => vec![a],
        None => vec![],
    };
    let portal = tx
        .bind(&stmt, &params)
        .await
        .map_err(|e| read.remote("cannot open a cursor", e))?;

    let label = read
        .connector
        .table
        .clone()
        .unwrap_or_else(|| "query".into());
    let mut row_no: u64 = 0;
    let mut watermark = read.after.clone();
    let mut batches = JsonLineBatches::new(&label);
    loop {
        let rows = tx
            .query_portal(&portal, BATCH_ROWS)
            .await
            .map_err(|e| read.remote("read failed", e))?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            row_no += 1;
            // A NULL row (it cannot come from row_to_json) would be quarantined as empty JSON.
            let json: Option<&str> = row.try_get(0).map_err(|e| read.remote("bad row", e))?;
            let wm: Option<String> = row.try_get(1).map_err(|e| read.remote("bad row", e))?;
            let json = json.unwrap_or_default();
            producer.bytes.add(json.len() as u64);
            if wm.is_some() {
                watermark = wm;
            }
            if !batches.push(&producer, row_no, json.as_bytes()).await {
                return Ok(());
            }
        }
    }
    if !batches.send(&producer).await {
        return Ok(());
    }
    producer.set_watermark(watermark);
    tx.commit()
        .await
        .map_err(|e| read.remote("cannot end the read", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_per_part() {
        assert_eq!(quote_ident("his.patient"), "\"his\".\"patient\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
