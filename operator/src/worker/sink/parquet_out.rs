//! Parquet output through Arrow: one row group per 64Ki records, Snappy compression, typed
//! columns (Int64, Float64, Boolean, Utf8), all nullable. The writer's metadata is fixed, so
//! the same records give the same bytes.

use std::io::BufWriter;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Float64Builder, Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde_json::Value;

use super::columns::{ColumnKind, ColumnSet};
use super::{HashingWriter, SinkError, WrittenFile, csv_cell, seal};
use crate::worker::spill::SpillReader;

/// Records per row group (and per Arrow batch).
pub const ROW_GROUP: usize = 64 * 1024;

enum Builder {
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Text(StringBuilder),
}

impl Builder {
    fn new(kind: ColumnKind) -> Self {
        match kind {
            ColumnKind::Integer => Builder::Int(Int64Builder::new()),
            ColumnKind::Float => Builder::Float(Float64Builder::new()),
            ColumnKind::Boolean => Builder::Bool(BooleanBuilder::new()),
            ColumnKind::Text | ColumnKind::Null => Builder::Text(StringBuilder::new()),
        }
    }

    fn push(&mut self, v: Option<&Value>) {
        let v = v.filter(|v| !v.is_null());
        match self {
            Builder::Int(b) => b.append_option(v.and_then(Value::as_i64)),
            Builder::Float(b) => b.append_option(v.and_then(Value::as_f64)),
            Builder::Bool(b) => b.append_option(v.and_then(Value::as_bool)),
            Builder::Text(b) => match v {
                None => b.append_null(),
                Some(v) => b.append_value(csv_cell(Some(v))),
            },
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Int(b) => Arc::new(b.finish()),
            Builder::Float(b) => Arc::new(b.finish()),
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Text(b) => Arc::new(b.finish()),
        }
    }
}

fn data_type(kind: ColumnKind) -> DataType {
    match kind {
        ColumnKind::Integer => DataType::Int64,
        ColumnKind::Float => DataType::Float64,
        ColumnKind::Boolean => DataType::Boolean,
        ColumnKind::Text | ColumnKind::Null => DataType::Utf8,
    }
}

/// Writes the spilled records as one Parquet file.
pub fn write_parquet(
    mut reader: SpillReader,
    columns: &ColumnSet,
    path: &Path,
    name: &str,
    records: u64,
) -> Result<WrittenFile, SinkError> {
    let perr = |e: &dyn std::fmt::Display| SinkError::Parquet {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let schema = Arc::new(Schema::new(
        columns
            .names()
            .iter()
            .zip(columns.kinds())
            .map(|(n, k)| Field::new(n, data_type(*k), true))
            .collect::<Vec<_>>(),
    ));
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP))
        .set_created_by("medplat worker".to_string())
        .build();
    let file = super::create(path)?;
    let out = BufWriter::with_capacity(256 * 1024, HashingWriter::new(file));
    let mut writer =
        ArrowWriter::try_new(out, schema.clone(), Some(props)).map_err(|e| perr(&e))?;
    let mut builders: Vec<Builder> = columns.kinds().iter().map(|k| Builder::new(*k)).collect();
    let mut rows = 0usize;
    let flush =
        |builders: &mut Vec<Builder>, writer: &mut ArrowWriter<_>| -> Result<(), SinkError> {
            let arrays: Vec<ArrayRef> = builders.iter_mut().map(Builder::finish).collect();
            let batch = RecordBatch::try_new(schema.clone(), arrays).map_err(|e| perr(&e))?;
            writer.write(&batch).map_err(|e| perr(&e))
        };
    while let Some((rec, _)) = reader.next_record()? {
        for (b, name) in builders.iter_mut().zip(columns.names()) {
            b.push(rec.get(name));
        }
        rows += 1;
        if rows == ROW_GROUP {
            flush(&mut builders, &mut writer)?;
            rows = 0;
        }
    }
    if rows > 0 {
        flush(&mut builders, &mut writer)?;
    }
    let out = writer.into_inner().map_err(|e| perr(&e))?;
    seal(out, path, name, records)
}

#[cfg(test)]
mod tests {
    use crate::api::pipeline::SinkFormat;
    use crate::worker::record::Record;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use serde_json::json;
    use std::fs::File;

    #[test]
    fn parquet_round_trips_typed_columns_deterministically() {
        let rows = [
            json!({"id": 1, "v": 5.6, "name": "王", "ok": true}),
            json!({"id": 2, "v": 7, "name": null, "ok": false, "x": {"a": 1}}),
        ];
        let mut sums = Vec::new();
        for _ in 0..2 {
            let dir = tempfile::tempdir().unwrap();
            let mut w = super::super::open(SinkFormat::Parquet, dir.path(), "", 0);
            for r in &rows {
                w.write(&Record::from(r.as_object().unwrap().clone()))
                    .unwrap();
            }
            let files = w.finish().unwrap();
            sums.push(files[0].sha256.clone());
            let reader = SerializedFileReader::new(
                File::open(dir.path().join("part-00000.parquet")).unwrap(),
            )
            .unwrap();
            assert_eq!(reader.metadata().file_metadata().num_rows(), 2);
            let schema = reader.metadata().file_metadata().schema_descr();
            let names: Vec<&str> = schema.columns().iter().map(|c| c.name()).collect();
            assert_eq!(names, ["id", "name", "ok", "v", "x"]);
            let rows: Vec<String> = reader
                .get_row_iter(None)
                .unwrap()
                .map(|r| r.unwrap().to_string())
                .collect();
            assert_eq!(rows[0], "{id: 1, name: \"王\", ok: true, v: 5.6, x: null}");
            assert_eq!(
                rows[1],
                r#"{id: 2, name: null, ok: false, v: 7.0, x: "{"a":1}"}"#
            );
        }
        assert_eq!(sums[0], sums[1]);
    }
}
