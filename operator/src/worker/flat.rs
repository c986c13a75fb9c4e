//! Steps run on a flat row's columns, without building a record: the path CSV rows take.
//!
//! A CSV row is a list of text fields under one header. Building a [`Record`] for it means
//! copying every field into its own string, laying the fields out by name and looking each one
//! up again by name in every step, then freeing it all once the line is written: on a quiet
//! machine that was most of what a row cost beyond the rules themselves. Here a row is a
//! column-indexed list of [`Cell`]s that borrow the batch's bytes; each step resolves the
//! columns it reads and writes once per batch ([`RecordStep::flat`]) and only the values a rule
//! changes become strings.
//!
//! The record path stays the authority. A step's flat form calls the same functions as its
//! record form and must give the same result; whenever it would not keep the row as it is
//! (a validation failure, a missing identity field, a rule that errs), it declines, and the
//! row is decoded and run through the record path, which says what happens to it. A step with
//! no flat form (or a field path with dots) means the whole batch takes the record path. The
//! tests hold both paths to the same bytes over a matrix of steps and rows.
//!
//! [`Record`]: crate::worker::record::Record

use serde_json::Value;

use super::fields::{write_json_str, write_json_value};
use super::source::rows::{RowBatch, RowDecoder};
use super::steps::RecordStep;

/// One column of a flat row.
#[derive(Debug)]
pub enum Cell<'r> {
    /// Text borrowed from the row as read.
    Text(&'r str),
    /// A value a step (or a charset decoder) made.
    Value(Value),
    /// No value: the column is not in the row, or a step removed it.
    Absent,
}

/// The columns of the rows a flat plan runs on: the header's, then those steps add.
#[derive(Debug, Default)]
pub struct FlatSchema {
    names: Vec<String>,
}

impl FlatSchema {
    /// The column of a top-level field `name`; `None` when there is none, and for a name with
    /// a path in it: the record path reads `a.b` as field `b` of `a`, even when a CSV header
    /// is literally `a.b`.
    pub fn column(&self, name: &str) -> Option<usize> {
        if !is_plain(name) {
            return None;
        }
        self.names.iter().position(|n| n == name)
    }

    /// The column a step writes field `name` to, added when it is new; `None` for a path.
    pub fn column_to_write(&mut self, name: &str) -> Option<usize> {
        if name.contains('.') {
            return None;
        }
        Some(self.column(name).unwrap_or_else(|| {
            self.names.push(name.to_string());
            self.names.len() - 1
        }))
    }

    /// The name of column `i`.
    pub fn name(&self, i: usize) -> &str {
        self.names.get(i).map_or("", String::as_str)
    }

    /// The number of columns.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there is no column.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Whether a flat field name is usable: a plain top-level name, not a path.
pub fn is_plain(name: &str) -> bool {
    !name.contains('.')
}

/// A step's flat form, bound to one schema's columns.
pub trait FlatStep: Send + Sync {
    /// Applies the step to one row's cells; `false` declines the row, which then takes the
    /// record path (the cells may have been changed and are thrown away).
    fn apply(&self, cells: &mut [Cell<'_>]) -> bool;
}

/// The steps of a segment bound to one file's columns, and the order its lines name them in.
pub struct FlatPlan<'a> {
    steps: Vec<Box<dyn FlatStep + 'a>>,
    /// Every column, by name as a record orders its fields, with its `"name":` prefix.
    order: Vec<(usize, Vec<u8>)>,
    width: usize,
}

impl<'a> FlatPlan<'a> {
    /// The plan for rows of `decoder` through `steps`, when the decoder gives flat rows and
    /// every step has a flat form for its columns.
    pub fn compile(steps: &[&'a dyn RecordStep], decoder: &dyn RowDecoder) -> Option<Self> {
        let mut schema = FlatSchema {
            names: decoder.columns()?.to_vec(),
        };
        let flat_steps = steps
            .iter()
            .map(|s| s.flat(&mut schema))
            .collect::<Option<Vec<_>>>()?;
        let mut order: Vec<usize> = (0..schema.len()).collect();
        order.sort_by(|a, b| schema.name(*a).as_bytes().cmp(schema.name(*b).as_bytes()));
        let order = order
            .into_iter()
            .map(|i| {
                let mut key = Vec::new();
                write_json_str(schema.name(i), &mut key);
                key.push(b':');
                (i, key)
            })
            .collect();
        Some(FlatPlan {
            steps: flat_steps,
            order,
            width: schema.len(),
        })
    }

    /// Runs row `i` of `rows` through the steps and appends its NDJSON line to `out`;
    /// `false` (with `out` unchanged) when the row must take the record path. `cells` is
    /// scratch space, reused from row to row.
    pub fn write_row<'r>(
        &self,
        rows: &'r RowBatch,
        i: usize,
        cells: &mut Vec<Cell<'r>>,
        out: &mut Vec<u8>,
    ) -> bool {
        cells.clear();
        let Some(row) = rows.raw_row(i) else {
            return false;
        };
        if !rows.decoder().cells(row, cells) {
            return false;
        }
        cells.resize_with(self.width, || Cell::Absent);
        if !self.steps.iter().all(|s| s.apply(cells)) {
            return false;
        }
        out.push(b'{');
        let mut first = true;
        for (column, key) in &self.order {
            let value = match cells.get(*column) {
                None | Some(Cell::Absent) => continue,
                Some(v) => v,
            };
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(key);
            match value {
                Cell::Text(t) => write_json_str(t, out),
                Cell::Value(Value::String(s)) => write_json_str(s, out),
                Cell::Value(v) => write_json_value(v, out),
                Cell::Absent => {}
            }
        }
        out.extend_from_slice(b"}\n");
        true
    }
}

#[cfg(test)]
#[path = "flat_tests.rs"]
mod tests;
