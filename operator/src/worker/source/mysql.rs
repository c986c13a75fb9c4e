//! The `mysql` connector (MySQL and MariaDB): a table or a read-only query, streamed row by row
//! inside a read-only, consistent-snapshot transaction, ordered by the watermark column and
//! resumed from the last committed watermark.
//!
//! Rows come over the binary protocol, so numbers and dates arrive typed and are mapped to JSON
//! on the reading side: integers and floating-point numbers as numbers, `DECIMAL` as a number, dates as ISO
//! 8601 text, text as strings. A column whose bytes are not UTF-8 text (a `BLOB` of an image)
//! quarantines the row with the column's name instead of passing on bytes no step can read.
//! The password comes from a Secret file and appears in no message.

use mysql_async::consts::ColumnType;
use mysql_async::prelude::Queryable;
use mysql_async::{Column, OptsBuilder, SslOpts, TxOpts, Value as SqlValue};
use serde_json::{Number, Value};

use super::channel::{BATCHES_IN_FLIGHT, ChannelSource, JsonLineBatches, Producer};
use super::postgres::SqlRead;
use super::{SourceError, SourceItem, bounded_raw};
use crate::api::ca_bundle::ca_certificates;
use crate::api::data_source::SslMode;

/// Quotes a possibly database-qualified identifier (`his.patient` → `` `his`.`patient` ``).
pub fn quote_ident(name: &str) -> String {
    name.split('.')
        .map(|p| format!("`{}`", p.replace('`', "``")))
        .collect::<Vec<_>>()
        .join(".")
}

/// Starts the read on `runtime`; records arrive through the returned source.
pub fn open(runtime: &tokio::runtime::Handle, read: SqlRead) -> ChannelSource {
    let description = read.describe("mysql");
    ChannelSource::spawn(runtime, description, BATCHES_IN_FLIGHT, move |producer| {
        produce(read, producer)
    })
}

fn remote(read: &SqlRead, what: &str, e: mysql_async::Error) -> SourceError {
    SourceError::Remote {
        source_name: read.source_name.clone(),
        message: format!("{what} ({}): {e}", read.describe("mysql")),
    }
}

fn config_error(read: &SqlRead, message: String) -> SourceError {
    SourceError::Config {
        source_name: read.source_name.clone(),
        message,
    }
}

/// TLS as the connector's `sslMode` asks: none, encrypted without checking the server, or
/// checked against the Secret's `ca.crt` and Mozilla's root list (webpki-roots), and the host
/// name. A `ca.crt` that is not PEM certificates (or holds a private key) is refused with its
/// name, as the PostgreSQL and FHIR connectors refuse it.
fn ssl_opts(read: &SqlRead) -> Result<Option<SslOpts>, SourceError> {
    Ok(match read.connector.ssl_mode {
        SslMode::Disable => None,
        SslMode::Require => Some(
            SslOpts::default()
                .with_danger_accept_invalid_certs(true)
                .with_danger_skip_domain_validation(true),
        ),
        SslMode::VerifyFull => {
            let what = "ca.crt of the credentials Secret";
            let roots = match &read.ca_pem {
                None => Vec::new(),
                Some(ca) => {
                    let text = std::str::from_utf8(ca.expose())
                        .map_err(|_| config_error(read, format!("{what} is not PEM text")))?;
                    ca_certificates(text, what)
                        .map_err(|e| config_error(read, e))?
                        .into_iter()
                        .map(|cert| cert.as_ref().to_vec().into())
                        .collect()
                }
            };
            Some(SslOpts::default().with_root_certs(roots))
        }
    })
}

async fn connect(read: &SqlRead) -> Result<mysql_async::Conn, SourceError> {
    let c = &read.connector;
    let password = read
        .password
        .expose_text()
        .map_err(|e| config_error(read, format!("the database password: {e}")))?;
    let opts = OptsBuilder::default()
        .ip_or_hostname(c.host.clone())
        .tcp_port(c.port)
        .db_name(Some(c.database.clone()))
        .user(Some(read.user.clone()))
        .pass(Some(password.to_string()))
        // A worker pod has no server socket; the connection is always the TCP one above.
        .prefer_socket(false)
        .ssl_opts(ssl_opts(read)?);
    let connecting = mysql_async::Conn::new(opts);
    match tokio::time::timeout(std::time::Duration::from_secs(15), connecting).await {
        Ok(conn) => conn.map_err(|e| remote(read, "cannot connect", e)),
        Err(_) => Err(config_error(
            read,
            "cannot connect: timed out after 15 s".into(),
        )),
    }
}

async fn produce(read: SqlRead, producer: Producer) -> Result<(), SourceError> {
    let relation = read.relation("mysql", quote_ident)?;
    let mut conn = connect(&read).await?;
    let mut opts = TxOpts::default();
    opts.with_readonly(Some(true))
        .with_consistent_snapshot(true);
    let mut tx = conn
        .start_transaction(opts)
        .await
        .map_err(|e| remote(&read, "cannot start a read-only transaction", e))?;

    let wm_col = read.connector.watermark_column.as_deref().map(quote_ident);
    let (sql, params) = match &wm_col {
        // Without a watermark every column orders the rows, so reruns write the same output.
        None => {
            let columns = column_count(&mut tx, &relation, &read).await?;
            let order: Vec<String> = (1..=columns).map(|i| i.to_string()).collect();
            (
                format!(
                    "SELECT t.* FROM {relation} AS t ORDER BY {}",
                    order.join(", ")
                ),
                Vec::new(),
            )
        }
        // The server renders the watermark as text, so the checkpoint compares as the
        // column's own type when it is bound back as a string.
        Some(col) => {
            let filter = if read.after.is_some() {
                format!(" WHERE t.{col} > ?")
            } else {
                String::new()
            };
            (
                format!(
                    "SELECT t.*, CAST(t.{col} AS CHAR) FROM {relation} AS t{filter} ORDER BY t.{col}"
                ),
                read.after
                    .iter()
                    .map(|a| SqlValue::from(a.as_str()))
                    .collect(),
            )
        }
    };
    let label = read
        .connector
        .table
        .clone()
        .unwrap_or_else(|| "query".into());
    let mut watermark = read.after.clone();
    {
        let mut result = tx
            .exec_iter(sql, params)
            .await
            .map_err(|e| remote(&read, "cannot run the read", e))?;
        let columns = result.columns().map(|c| c.to_vec()).unwrap_or_default();
        let data_columns = columns.len() - usize::from(wm_col.is_some()).min(columns.len());
        let mut row_no: u64 = 0;
        let mut batches = JsonLineBatches::new(&label);
        let mut line = Vec::with_capacity(512);
        while let Some(row) = result
            .next()
            .await
            .map_err(|e| remote(&read, "read failed", e))?
        {
            row_no += 1;
            // Every value is still in the row: none was taken out of it before.
            let mut values: Vec<SqlValue> = row
                .unwrap_raw()
                .into_iter()
                .map(|v| v.unwrap_or(SqlValue::NULL))
                .collect();
            if wm_col.is_some()
                && let Some(SqlValue::Bytes(w)) = values.pop()
            {
                watermark = Some(String::from_utf8_lossy(&w).into_owned());
            }
            line.clear();
            match write_row_json(&columns[..data_columns], values, &mut line) {
                Ok(bytes) => {
                    producer.bytes.add(bytes);
                    if !batches.push(&producer, row_no, &line).await {
                        return Ok(());
                    }
                }
                Err(reason) => {
                    // The rows before it go first, so the output keeps the table's order.
                    let malformed = SourceItem::Malformed {
                        location: format!("{label}#{row_no}"),
                        raw: bounded_raw(reason.clone()),
                        reason,
                    };
                    if !batches.send(&producer).await || !producer.send(Ok(malformed)).await {
                        return Ok(());
                    }
                }
            }
        }
        if !batches.send(&producer).await {
            return Ok(());
        }
    }
    producer.set_watermark(watermark);
    tx.commit()
        .await
        .map_err(|e| remote(&read, "cannot end the read", e))?;
    Ok(())
}

/// How many columns the relation has (the `ORDER BY` of a read without a watermark).
async fn column_count(
    tx: &mut mysql_async::Transaction<'_>,
    relation: &str,
    read: &SqlRead,
) -> Result<usize, SourceError> {
    let result = tx
        .exec_iter(format!("SELECT t.* FROM {relation} AS t LIMIT 0"), ())
        .await
        .map_err(|e| remote(read, "cannot read the columns", e))?;
    let n = result.columns().map_or(0, |c| c.len());
    result
        .drop_result()
        .await
        .map_err(|e| remote(read, "cannot read the columns", e))?;
    if n == 0 {
        return Err(config_error(read, "the relation has no columns".into()));
    }
    Ok(n)
}

/// Writes a row as a JSON object to `out` and returns the bytes it carried; `Err` names a
/// column that is not text.
fn write_row_json(
    columns: &[Column],
    values: Vec<SqlValue>,
    out: &mut Vec<u8>,
) -> Result<u64, String> {
    let mut bytes = 0u64;
    out.push(b'{');
    for (i, (column, value)) in columns.iter().zip(values).enumerate() {
        let name = column.name_str();
        let json = match value {
            SqlValue::NULL => Value::Null,
            SqlValue::Int(i) => Value::from(i),
            SqlValue::UInt(u) => Value::from(u),
            SqlValue::Float(f) => Number::from_f64(f64::from(f)).map_or(Value::Null, Value::Number),
            SqlValue::Double(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
            SqlValue::Date(y, mo, d, h, mi, s, us) => Value::String(render_date(
                column.column_type(),
                (y, mo, d),
                (h, mi, s, us),
            )),
            SqlValue::Time(neg, days, h, mi, s, us) => {
                let hours = days * 24 + u32::from(h);
                let sign = if neg { "-" } else { "" };
                let frac = if us > 0 {
                    format!(".{us:06}")
                } else {
                    String::new()
                };
                Value::String(format!("{sign}{hours:02}:{mi:02}:{s:02}{frac}"))
            }
            SqlValue::Bytes(b) => {
                bytes += b.len() as u64;
                let text = String::from_utf8(b)
                    .map_err(|_| format!("column {name} is not UTF-8 text (binary data?)"))?;
                match column.column_type() {
                    ColumnType::MYSQL_TYPE_DECIMAL | ColumnType::MYSQL_TYPE_NEWDECIMAL => {
                        match text.parse::<Number>() {
                            Ok(n) => Value::Number(n),
                            Err(_) => Value::String(text),
                        }
                    }
                    _ => Value::String(text),
                }
            }
        };
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, name.as_ref())
            .and_then(|()| {
                out.push(b':');
                serde_json::to_writer(&mut *out, &json)
            })
            .map_err(|e| format!("column {name} cannot be written as JSON: {e}"))?;
    }
    out.push(b'}');
    Ok(bytes)
}

/// A `DATE` as `YYYY-MM-DD`; a `DATETIME` or `TIMESTAMP` as `YYYY-MM-DDTHH:MM:SS[.ffffff]`.
fn render_date(
    kind: ColumnType,
    (y, mo, d): (u16, u8, u8),
    (h, mi, s, us): (u8, u8, u8, u32),
) -> String {
    if kind == ColumnType::MYSQL_TYPE_DATE {
        return format!("{y:04}-{mo:02}-{d:02}");
    }
    let frac = if us > 0 {
        format!(".{us:06}")
    } else {
        String::new()
    };
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_per_part() {
        assert_eq!(quote_ident("his.patient"), "`his`.`patient`");
        assert_eq!(quote_ident("a`b"), "`a``b`");
    }

    #[test]
    fn dates_render_as_iso_8601() {
        assert_eq!(
            render_date(ColumnType::MYSQL_TYPE_DATE, (1980, 1, 2), (0, 0, 0, 0)),
            "1980-01-02"
        );
        assert_eq!(
            render_date(ColumnType::MYSQL_TYPE_DATETIME, (2026, 11, 1), (5, 0, 0, 0)),
            "2026-11-01T05:00:00"
        );
        assert_eq!(
            render_date(
                ColumnType::MYSQL_TYPE_TIMESTAMP,
                (2026, 11, 1),
                (5, 0, 7, 120)
            ),
            "2026-11-01T05:00:07.000120"
        );
    }
}
