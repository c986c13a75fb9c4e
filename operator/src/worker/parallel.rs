//! The per-record part of a segment on several threads, in the input's order.
//!
//! One thread (the caller) reads the input and cuts it into batches; worker threads apply the
//! segment's steps to each record and, when the segment ends at an NDJSON sink, serialise the
//! kept records into one buffer per batch. The caller settles batches strictly in sequence
//! (writes lines, quarantines, pushes to a barrier), so the output is byte-for-byte what one
//! thread would write. At most `4 × workers + 4` batches are in flight, so memory stays flat.
//!
//! Rows that the source read but did not decode ([`RowBatch`]) are decoded by the worker that
//! processes them, so decoding is spread over the workers and each record lives and dies on
//! one thread.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use std::sync::mpsc;

use super::flat::FlatPlan;
use super::record::Record;
use super::source::rows::{self, Decoded, RowBatch};
use super::steps::{Outcome, RecordStep};

/// Records per batch: large enough to amortise the hand-offs, small enough to keep memory flat.
pub const BATCH: usize = 512;

/// One item read from the input.
pub enum Fed {
    /// A record and its location.
    Record(Record, String),
    /// Input that is not a record, quarantined as read.
    Malformed {
        /// Where it came from.
        location: String,
        /// Why it is malformed.
        reason: String,
        /// The raw text (bounded).
        raw: String,
    },
    /// Rows not decoded yet; each becomes a record or a malformed item where it is processed.
    Rows(RowBatch),
}

impl Fed {
    /// How many records this item counts as in a batch: rows count by number and by size, so
    /// a batch of long rows is a full batch even with few rows (memory stays bounded by bytes
    /// as well as by records).
    fn weight(&self) -> usize {
        match self {
            Fed::Rows(rows) => rows
                .len()
                .max((rows.byte_len().saturating_mul(BATCH)).div_ceil(rows::BYTES)),
            _ => 1,
        }
    }
}

/// What the steps of a segment decided about one record.
#[derive(Debug)]
pub enum Verdict {
    /// Every step kept it.
    Keep,
    /// Step `step` (an index into the segment's steps) set it aside.
    Quarantine {
        /// The step's index.
        step: usize,
        /// The rule that failed.
        rule: String,
        /// Why.
        reason: String,
    },
    /// A step dropped it.
    Drop,
}

/// Applies `steps` in order until one does not keep the record.
pub fn apply_steps(steps: &[&dyn RecordStep], record: &mut Record) -> Verdict {
    for (i, step) in steps.iter().enumerate() {
        match step.apply(record) {
            Outcome::Keep => {}
            Outcome::Quarantine { rule, reason } => {
                return Verdict::Quarantine {
                    step: i,
                    rule,
                    reason,
                };
            }
            Outcome::Drop { .. } => return Verdict::Drop,
        }
    }
    Verdict::Keep
}

/// One processed item, for the caller to settle in order. A kept record that was serialised
/// is not an item: its line is in the batch's buffer.
pub enum Processed {
    /// Malformed input, passed through.
    Malformed {
        /// Where it came from.
        location: String,
        /// Why it is malformed.
        reason: String,
        /// The raw text.
        raw: String,
    },
    /// A record with its verdict (kept records only when they were not serialised).
    Record {
        /// The record after the steps that ran.
        record: Record,
        /// Where it came from.
        location: String,
        /// What the steps decided.
        verdict: Verdict,
    },
}

/// The two ends of a parallel segment, both run on the calling thread.
pub trait Ends {
    /// The error that stops the run.
    type Error;
    /// The next input item, `None` at the end.
    fn next(&mut self) -> Result<Option<Fed>, Self::Error>;
    /// Settles one processed item (quarantine, drop, barrier or writer).
    fn settle(&mut self, item: Processed) -> Result<(), Self::Error>;
    /// Writes `count` kept records already serialised as NDJSON lines.
    fn lines(&mut self, bytes: &[u8], count: u64) -> Result<(), Self::Error>;
    /// The error for a worker that failed (a serialisation error or a panic).
    fn worker_failed(&self, message: String) -> Self::Error;
}

struct Done {
    items: Vec<Processed>,
    lines: Vec<u8>,
    line_count: u64,
}

/// Where a record came from, told only when it is needed (most kept records never need it).
enum Location<'a> {
    /// Already known.
    Known(String),
    /// A row of a batch, by its index.
    Row(&'a RowBatch, usize),
}

impl Location<'_> {
    fn text(self) -> String {
        match self {
            Location::Known(s) => s,
            Location::Row(rows, i) => rows.location(i),
        }
    }
}

/// One record to process, or input that is not one.
enum Input<'a> {
    Record(Record, Location<'a>),
    Malformed(Processed),
}

/// Hands every record of `fed` (rows decoded one at a time) to `each`, in order.
fn each_input<E>(fed: Fed, each: &mut dyn FnMut(Input<'_>) -> Result<(), E>) -> Result<(), E> {
    match fed {
        Fed::Malformed {
            location,
            reason,
            raw,
        } => each(Input::Malformed(Processed::Malformed {
            location,
            reason,
            raw,
        })),
        Fed::Record(record, location) => each(Input::Record(record, Location::Known(location))),
        Fed::Rows(rows) => (0..rows.len()).try_for_each(|i| each(row_input(&rows, i))),
    }
}

/// Row `i` of `rows`, decoded.
fn row_input(rows: &RowBatch, i: usize) -> Input<'_> {
    match rows.decode(i) {
        Decoded::Record(record) => Input::Record(record, Location::Row(rows, i)),
        Decoded::Malformed { reason, raw } => Input::Malformed(Processed::Malformed {
            location: rows.location(i),
            reason,
            raw,
        }),
    }
}

/// Processes a batch on a worker: kept records serialised (when `serialise`), the rest kept
/// as items for the reading thread to settle.
fn process(steps: &[&dyn RecordStep], serialise: bool, batch: Vec<Fed>) -> Result<Done, String> {
    let records: usize = batch.iter().map(Fed::weight).sum();
    let mut done = Done {
        items: Vec::new(),
        // Room for a CSV row's line of JSON (about 340 bytes in the bench) without growing;
        // longer lines grow the buffer once or twice.
        lines: Vec::with_capacity(if serialise { records * 384 } else { 0 }),
        line_count: 0,
    };
    for fed in batch {
        // Rows a flat plan keeps are written straight from their columns (see `flat`); the
        // rest are decoded into records.
        let plan = match &fed {
            Fed::Rows(rows) if serialise => FlatPlan::compile(steps, rows.decoder()),
            _ => None,
        };
        match (plan, fed) {
            (Some(plan), Fed::Rows(rows)) => {
                let mut cells = Vec::new();
                for i in 0..rows.len() {
                    if plan.write_row(&rows, i, &mut cells, &mut done.lines) {
                        done.line_count += 1;
                    } else {
                        done.take(steps, serialise, row_input(&rows, i));
                    }
                }
            }
            (_, fed) => each_input(fed, &mut |input| {
                done.take(steps, serialise, input);
                Ok::<_, String>(())
            })?,
        }
    }
    Ok(done)
}

impl Done {
    /// Applies the steps to one input: a kept record serialised (when `serialise`), the rest
    /// kept as items for the reading thread to settle.
    fn take(&mut self, steps: &[&dyn RecordStep], serialise: bool, input: Input<'_>) {
        let (mut record, location) = match input {
            Input::Malformed(item) => {
                self.items.push(item);
                return;
            }
            Input::Record(record, location) => (record, location),
        };
        let verdict = apply_steps(steps, &mut record);
        if serialise && matches!(verdict, Verdict::Keep) {
            record.write_json(&mut self.lines);
            self.lines.push(b'\n');
            self.line_count += 1;
        } else {
            self.items.push(Processed::Record {
                record,
                location: location.text(),
                verdict,
            });
        }
    }
}

fn settle_done<E: Ends>(ends: &mut E, done: Done) -> Result<(), E::Error> {
    for item in done.items {
        ends.settle(item)?;
    }
    ends.lines(&done.lines, done.line_count)
}

/// Runs one segment on the calling thread: read, apply, settle, one record at a time (a
/// record is gone before the next is decoded, which keeps the allocator's work small).
pub fn run_serial<E: Ends>(ends: &mut E, steps: &[&dyn RecordStep]) -> Result<(), E::Error> {
    while let Some(fed) = ends.next()? {
        each_input(fed, &mut |input| {
            let item = match input {
                Input::Malformed(item) => item,
                Input::Record(mut record, location) => {
                    let verdict = apply_steps(steps, &mut record);
                    Processed::Record {
                        record,
                        location: location.text(),
                        verdict,
                    }
                }
            };
            ends.settle(item)
        })?;
    }
    Ok(())
}

/// Runs one segment with `workers` threads applying the steps (and serialising kept records
/// when `serialise`), reading and settling on the calling thread in the input's order.
pub fn run_parallel<E: Ends>(
    ends: &mut E,
    steps: &[&dyn RecordStep],
    serialise: bool,
    workers: usize,
) -> Result<(), E::Error> {
    let (job_tx, job_rx) = mpsc::channel::<(u64, Vec<Fed>)>();
    let job_rx = Mutex::new(job_rx);
    let (done_tx, done_rx) = mpsc::channel::<(u64, Result<Done, String>)>();
    std::thread::scope(|scope| {
        for _ in 0..workers.max(1) {
            let done_tx = done_tx.clone();
            let job_rx = &job_rx;
            scope.spawn(move || {
                loop {
                    // A poisoned lock means another worker panicked; stop taking work.
                    let job = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok((seq, batch)) = job else { return };
                    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        process(steps, serialise, batch)
                    }))
                    .unwrap_or_else(|_| Err("a worker thread panicked".to_string()));
                    if done_tx.send((seq, result)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        // Moving the sender in means it is dropped on every return, which ends the workers.
        feed_and_settle(ends, job_tx, &done_rx, workers)
    })
}

fn feed_and_settle<E: Ends>(
    ends: &mut E,
    job_tx: mpsc::Sender<(u64, Vec<Fed>)>,
    done_rx: &mpsc::Receiver<(u64, Result<Done, String>)>,
    workers: usize,
) -> Result<(), E::Error> {
    // A deeper queue rides out the writer's stalls (page-cache throttling, a sync) without the
    // workers running dry: with 2 × workers + 2, two cores were 1.68–1.75 busy on the CSV bench,
    // with this 1.75–1.81, for about 2 MiB more peak memory.
    let max_in_flight = 4 * workers as u64 + 4;
    let (mut sent, mut settled) = (0u64, 0u64);
    let mut waiting: BTreeMap<u64, Done> = BTreeMap::new();
    let mut at_end = false;
    loop {
        while !at_end && sent - settled < max_in_flight {
            let mut batch = Vec::new();
            let mut records = 0;
            while records < BATCH {
                match ends.next()? {
                    Some(fed) => {
                        records += fed.weight();
                        batch.push(fed);
                    }
                    None => {
                        at_end = true;
                        break;
                    }
                }
            }
            if batch.is_empty() {
                break;
            }
            if job_tx.send((sent, batch)).is_err() {
                return Err(ends.worker_failed("every worker thread stopped".into()));
            }
            sent += 1;
        }
        if settled == sent {
            return Ok(());
        }
        let Ok((seq, result)) = done_rx.recv() else {
            return Err(ends.worker_failed("every worker thread stopped".into()));
        };
        let done = result.map_err(|m| ends.worker_failed(m))?;
        waiting.insert(seq, done);
        while let Some(done) = waiting.remove(&settled) {
            settle_done(ends, done)?;
            settled += 1;
        }
    }
}

/// The default number of worker threads: the CPUs this process may use (its cgroup quota
/// included), or 1 if that cannot be told.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Quarantines multiples of 7, drops multiples of 11, tags the rest.
    struct Sevens;

    impl RecordStep for Sevens {
        fn name(&self) -> &str {
            "sevens"
        }

        fn apply(&self, record: &mut Record) -> Outcome {
            let n = record.get("n").and_then(|v| v.as_u64()).unwrap_or(0);
            if n.is_multiple_of(7) {
                Outcome::Quarantine {
                    rule: "seven".into(),
                    reason: format!("{n} is a multiple of 7"),
                }
            } else if n.is_multiple_of(11) {
                Outcome::Drop {
                    rule: "eleven".into(),
                }
            } else {
                record.insert("tag", json!(format!("t{}", n * 31 % 97)));
                Outcome::Keep
            }
        }
    }

    /// Feeds `n` records (every 13th malformed) and logs what is settled, in order.
    struct Log {
        next: u64,
        n: u64,
        out: Vec<u8>,
        events: Vec<String>,
        fail_at: Option<u64>,
    }

    impl Ends for Log {
        type Error = String;

        fn next(&mut self) -> Result<Option<Fed>, String> {
            if self.next == self.n {
                return Ok(None);
            }
            let i = self.next;
            self.next += 1;
            if Some(i) == self.fail_at {
                return Err(format!("source failed at {i}"));
            }
            Ok(Some(if i.is_multiple_of(13) {
                Fed::Malformed {
                    location: format!("f:{i}"),
                    reason: "bad".into(),
                    raw: String::new(),
                }
            } else {
                let record = json!({"n": i, "z": "王"})
                    .as_object()
                    .map(|m| Record::from(m.clone()))
                    .unwrap();
                Fed::Record(record, format!("f:{i}"))
            }))
        }

        fn settle(&mut self, item: Processed) -> Result<(), String> {
            match item {
                Processed::Malformed { location, .. } => {
                    self.events.push(format!("malformed {location}"))
                }
                Processed::Record {
                    record,
                    location,
                    verdict,
                } => match verdict {
                    Verdict::Keep => {
                        serde_json::to_writer(&mut self.out, &record).unwrap();
                        self.out.push(b'\n');
                    }
                    other => self.events.push(format!("{location} {other:?}")),
                },
            }
            Ok(())
        }

        fn lines(&mut self, bytes: &[u8], _count: u64) -> Result<(), String> {
            self.out.extend_from_slice(bytes);
            Ok(())
        }

        fn worker_failed(&self, message: String) -> String {
            message
        }
    }

    fn log(n: u64, fail_at: Option<u64>) -> Log {
        Log {
            next: 0,
            n,
            out: Vec::new(),
            events: Vec::new(),
            fail_at,
        }
    }

    #[test]
    fn any_number_of_workers_settles_in_the_serial_order() {
        let steps: [&dyn RecordStep; 1] = [&Sevens];
        // Several batches, a partial last one, and an input smaller than one batch.
        for n in [5 * BATCH as u64 + 17, 40] {
            let mut serial = log(n, None);
            run_serial(&mut serial, &steps).unwrap();
            assert!(serial.events.iter().any(|e| e.contains("Quarantine")));
            assert!(serial.events.iter().any(|e| e.contains("Drop")));
            for workers in [1, 2, 3, 8] {
                for serialise in [true, false] {
                    let mut par = log(n, None);
                    run_parallel(&mut par, &steps, serialise, workers).unwrap();
                    assert_eq!(par.events, serial.events, "{workers} workers, {n} records");
                    assert_eq!(par.out, serial.out, "{workers} workers, {n} records");
                }
            }
        }
    }

    struct Lines;

    impl rows::RowDecoder for Lines {
        fn decode(&self, row: rows::RawRow<'_>) -> Decoded {
            let mut r = Record::new();
            r.insert("len", json!(row.bytes.len()));
            Decoded::Record(r)
        }
    }

    #[test]
    fn rows_weigh_by_number_and_by_size() {
        let batch = |rows: usize, row_bytes: usize| {
            let mut b = RowBatch::new(std::sync::Arc::new(Lines), "f:".into());
            for i in 0..rows {
                b.push_line(i as u64, &vec![b'x'; row_bytes]);
            }
            Fed::Rows(b)
        };
        assert_eq!(batch(10, 10).weight(), 10);
        assert_eq!(batch(BATCH, 10).weight(), BATCH);
        // Two rows of half the byte budget make a full batch: a job holds them alone.
        assert_eq!(batch(2, rows::BYTES / 2).weight(), BATCH);
        assert_eq!(batch(1, rows::BYTES / 4).weight(), BATCH / 4);
    }

    #[test]
    fn an_input_error_stops_every_worker_and_is_returned() {
        let steps: [&dyn RecordStep; 1] = [&Sevens];
        let mut par = log(10 * BATCH as u64, Some(3 * BATCH as u64 + 5));
        let err = run_parallel(&mut par, &steps, true, 2).unwrap_err();
        assert_eq!(err, format!("source failed at {}", 3 * BATCH + 5));
    }
}
