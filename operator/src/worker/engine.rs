//! One run of one pipeline: enforce, compile, open, stream, stage, commit, audit.
//!
//! Order matters for safety: the policy check and every key load happen before any source is
//! read; every source is opened before any record moves; output is staged and committed in one
//! atomic step at the very end, with the checkpoint inside the committed manifest. Any failure
//! before the commit leaves the previous version untouched.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::enforce;
use super::manifest::{Counts, KeyVersion, MANIFEST_KIND, RunManifest, SourceRead, WriteMode};
use super::parallel::{self, Fed, Processed, Verdict};
use super::record::Record;
use super::secrets::{SecretError, SecretStore};
use super::sink::{self, NdjsonWriter, SinkError};
use super::source::files::{FileLayout, FileSource};
use super::source::object_files::ObjectFileSource;
use super::source::{RecordSource, SourceError, SourceItem, fhir_rest, mysql, postgres};
use super::steps::{
    self, BarrierError, BarrierRun, CompileContext, CompiledStep, Dictionary, RecordStep, Replay,
    StepError,
};
use super::store::{DatasetStore, ObjectStoreDataset, StoreError, VolumeStore};
use super::summary::{RunOutcome, RunSummary};
use crate::api::audit::{AuditAction, AuditData, AuditEmitter, AuditEvent, AuditResult};
use crate::api::classification::{Classification, Level};
use crate::api::data_source::{DataSourceSpec, FileFormat};
use crate::api::resolved::{ResolvedPipeline, TierLocation};

/// How a run is made.
pub struct RunOptions {
    /// The run's id; generated when unset.
    pub run_id: Option<String>,
    /// The logical date, for ages computed from birth dates.
    pub as_of: jiff::civil::Date,
    /// Where audit events go.
    pub audit: Arc<AuditEmitter>,
    /// The runtime async sources and object stores run on. The engine itself must not run on
    /// one of its threads.
    pub runtime: tokio::runtime::Handle,
    /// Use this store for object-store tiers instead of connecting to their endpoint (tests).
    pub object_store_override: Option<Arc<dyn object_store::ObjectStore>>,
    /// Threads applying the per-record steps; `None` means the CPUs this process may use.
    /// One runs everything on the calling thread. Output is the same for any number.
    pub parallelism: Option<NonZeroUsize>,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The policy bundle refuses the pipeline.
    #[error("access denied by the policy bundle: {}", reasons.join("; "))]
    Denied {
        /// The blocking violations.
        reasons: Vec<String>,
        /// How many accesses were refused.
        accesses: u64,
    },
    /// A step could not be compiled, or failed the run.
    #[error(transparent)]
    Step(#[from] StepError),
    /// A source could not be read.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A barrier (dedupe, privacy gate) failed the run.
    #[error(transparent)]
    Barrier(#[from] BarrierError),
    /// Output could not be written.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The dataset could not be read or committed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A credential could not be read.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The document names something it does not contain.
    #[error("resolved pipeline document: {0}")]
    Document(String),
    /// A worker thread failed (it could not serialise a record, or it panicked).
    #[error("worker thread: {0}")]
    Worker(String),
    /// The audit trail could not be written; no data moves unaudited.
    #[error("cannot write the audit trail")]
    Audit(#[source] std::io::Error),
}

/// What a finished run produced.
#[derive(Debug)]
pub struct RunReport {
    /// The committed manifest (`None` when the run failed).
    pub manifest: Option<RunManifest>,
    /// The summary, for stdout and the termination log.
    pub summary: RunSummary,
    /// The error, when the run failed.
    pub error: Option<RunError>,
}

/// A fresh run id: UTC time and 32 random bits, so ids sort by start time.
pub fn new_run_id(now: jiff::Timestamp) -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 4];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    format!(
        "{}-{}",
        now.strftime("%Y%m%dT%H%M%SZ"),
        super::crypto::hex(&b)
    )
}

struct Auditor<'a> {
    doc: &'a ResolvedPipeline,
    emitter: &'a AuditEmitter,
    run_id: &'a str,
}

impl Auditor<'_> {
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &self,
        action: AuditAction,
        kind: &str,
        name: &str,
        dataset: Option<String>,
        level: Level,
        result: AuditResult,
        records: Option<u64>,
        reason: Option<String>,
    ) -> Result<(), RunError> {
        self.emitter
            .emit(&AuditEvent {
                audit: true,
                time: jiff::Timestamp::now().to_string(),
                who: AuditEvent::service_account(&self.doc.namespace, &self.doc.service_account),
                action,
                data: AuditData {
                    kind: kind.into(),
                    name: name.into(),
                    dataset,
                    level,
                },
                purpose: self.doc.spec.purpose,
                result,
                pipeline: Some(format!("{}/{}", self.doc.namespace, self.doc.name)),
                run_id: Some(self.run_id.to_string()),
                records,
                reason,
            })
            .map_err(RunError::Audit)
    }
}

/// One opened source with its running totals.
struct OpenSource {
    name: String,
    connector: String,
    level: Level,
    reader: Box<dyn RecordSource>,
    records: u64,
}

fn tier_path(doc: &ResolvedPipeline, tier: &str, what: &str) -> Result<PathBuf, RunError> {
    match doc.tiers.get(tier).map(|t| &t.location) {
        Some(TierLocation::Volume { path }) => Ok(PathBuf::from(path)),
        Some(TierLocation::ObjectStore { .. }) => Err(RunError::Source(SourceError::Config {
            source_name: what.into(),
            message: format!(
                "the HL7 v2 listener lands messages in a volume tier, and {tier} is an object-store tier"
            ),
        })),
        None => Err(RunError::Document(format!(
            "{what} uses StorageTier {tier}, which the document does not contain"
        ))),
    }
}

fn open_source(
    doc: &ResolvedPipeline,
    name: &str,
    spec: &DataSourceSpec,
    secrets: &SecretStore,
    after: Option<String>,
    opts: &RunOptions,
) -> Result<Box<dyn RecordSource>, RunError> {
    let runtime = &opts.runtime;
    let c = &spec.connector;
    if let Some(f) = &c.files {
        let label = format!("{}/{}", f.location.tier, f.location.path);
        let layout = FileLayout::new(name, f.format, f.charset, f.delimiter.as_deref())?;
        if let Some(location @ TierLocation::ObjectStore { .. }) =
            doc.tiers.get(&f.location.tier).map(|t| &t.location)
        {
            let store = tier_object_store(location, opts)?;
            return Ok(Box::new(ObjectFileSource::open(
                name,
                store,
                runtime.clone(),
                &f.location.path,
                &label,
                &f.pattern,
                layout,
            )?));
        }
        let dir = tier_path(doc, &f.location.tier, name)?.join(&f.location.path);
        return Ok(Box::new(FileSource::open(
            name, &dir, &label, &f.pattern, layout,
        )?));
    }
    if let Some(h) = &c.hl7v2 {
        let dir = tier_path(doc, &h.landing.tier, name)?.join(&h.landing.path);
        let label = format!("{}/{}", h.landing.tier, h.landing.path);
        let layout = FileLayout::new(name, FileFormat::Hl7v2, h.charset, None)?;
        return Ok(Box::new(FileSource::open(
            name, &dir, &label, "*.hl7", layout,
        )?));
    }
    let creds = spec.credentials.as_ref();
    if let Some(sql) = c.postgres.as_ref().or(c.mysql.as_ref()) {
        let cred = creds
            .ok_or_else(|| RunError::Document(format!("DataSource {name} has no credentials")))?;
        let user = secrets.read(&cred.secret_name, &cred.username_key)?;
        let password = secrets.read(&cred.secret_name, &cred.password_key)?;
        let ca_pem = secrets.read(&cred.secret_name, "ca.crt").ok();
        let read = postgres::SqlRead {
            source_name: name.into(),
            connector: sql.clone(),
            user: user.expose_text()?.to_string(),
            password,
            ca_pem,
            after: if sql.watermark_column.is_some() {
                after
            } else {
                None
            },
        };
        return Ok(if c.postgres.is_some() {
            Box::new(postgres::open(runtime, read))
        } else {
            Box::new(mysql::open(runtime, read))
        });
    }
    if let Some(fhir) = &c.fhir {
        let token = match creds.and_then(|cr| cr.token_key.as_ref().map(|k| (cr, k))) {
            Some((cr, k)) => Some(secrets.read(&cr.secret_name, k)?),
            None => None,
        };
        // As for the database connectors, a private CA comes as `ca.crt` in the credentials
        // Secret.
        let ca_pem = creds.and_then(|cr| secrets.read(&cr.secret_name, "ca.crt").ok());
        let read = fhir_rest::FhirRead {
            source_name: name.into(),
            base_url: fhir.base_url.clone(),
            resource_types: fhir.resource_types.clone(),
            page_size: fhir.page_size,
            token,
            ca_pem,
        };
        return Ok(Box::new(fhir_rest::open(runtime, read)));
    }
    Err(RunError::Source(SourceError::Config {
        source_name: name.into(),
        message: format!("the {} connector is not supported by this worker", c.kind()),
    }))
}

/// The object store of an object-store tier: S3-compatible, with the keys from the tier's
/// Secret files (or the store a test put in `RunOptions`).
fn tier_object_store(
    location: &TierLocation,
    opts: &RunOptions,
) -> Result<Arc<dyn object_store::ObjectStore>, RunError> {
    let TierLocation::ObjectStore {
        endpoint,
        bucket,
        region,
        access_key_id_file,
        secret_access_key_file,
        ca_bundle,
    } = location
    else {
        return Err(RunError::Document(
            "a volume tier has no object store".into(),
        ));
    };
    if let Some(s) = &opts.object_store_override {
        return Ok(s.clone());
    }
    let key = SecretStore::read_file(access_key_id_file)?;
    let secret = SecretStore::read_file(secret_access_key_file)?;
    let store_err = |message: String| StoreError::Object {
        location: format!("{endpoint}/{bucket}"),
        message,
    };
    // One ClientOptions for everything the client needs: a later `with_client_options` would
    // replace settings such as allow-http made on the builder.
    let mut client =
        object_store::ClientOptions::new().with_allow_http(endpoint.starts_with("http://"));
    let ders = match ca_bundle {
        Some(pem) => crate::api::ca_bundle::ca_certificates(pem, "caBundle")
            .map_err(|e| store_err(format!("the tier's {e}")))?,
        None => Vec::new(),
    };
    for der in ders {
        let cert = object_store::Certificate::from_der(&der)
            .map_err(|e| store_err(format!("the tier's caBundle: {e}")))?;
        client = client.with_root_certificate(cert);
    }
    let s3 = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_bucket_name(bucket)
        .with_region(region.clone().unwrap_or_else(|| "us-east-1".into()))
        .with_access_key_id(key.expose_text()?)
        .with_secret_access_key(secret.expose_text()?)
        .with_client_options(client)
        .build()
        .map_err(|e| store_err(e.to_string()))?;
    Ok(Arc::new(s3))
}

fn open_store(
    doc: &ResolvedPipeline,
    opts: &RunOptions,
) -> Result<Box<dyn DatasetStore>, RunError> {
    let sink = &doc.spec.sink;
    let tier = doc
        .tiers
        .get(&sink.tier)
        .ok_or_else(|| RunError::Document(format!("sink tier {} is missing", sink.tier)))?;
    match &tier.location {
        TierLocation::Volume { path } => Ok(Box::new(VolumeStore::new(
            &sink.tier,
            Path::new(path),
            &sink.dataset,
        ))),
        location @ TierLocation::ObjectStore { .. } => {
            let store = tier_object_store(location, opts)?;
            Ok(Box::new(ObjectStoreDataset::new(
                &sink.tier,
                &sink.dataset,
                store,
                opts.runtime.clone(),
            )))
        }
    }
}

/// A quarantine entry, one NDJSON line in `_quarantine/`.
#[derive(Serialize)]
struct QuarantineEntry<'a> {
    location: &'a str,
    step: &'a str,
    rule: &'a str,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<&'a Record>,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'static str>,
}

/// Where the quarantine goes and whether it may hold record content.
struct Quarantine {
    writer: NdjsonWriter,
    /// The sink tier may hold the input's level and domain, so content is kept.
    keep_content: bool,
    count: u64,
}

const WITHHELD: &str = "withheld: the sink tier may not hold the input's level or domain; the location points at the original";

impl Quarantine {
    fn put(
        &mut self,
        location: &str,
        step: &str,
        rule: &str,
        reason: &str,
        record: Option<&Record>,
        raw: Option<&str>,
    ) -> Result<(), RunError> {
        let keep = self.keep_content;
        self.writer.write_value(&QuarantineEntry {
            location,
            step,
            rule,
            reason,
            record: record.filter(|_| keep),
            raw: raw.filter(|_| keep),
            content: (!keep).then_some(WITHHELD),
        })?;
        self.count += 1;
        Ok(())
    }
}

/// The per-record steps up to a barrier, and the barrier.
struct Segment<'a> {
    steps: Vec<&'a dyn RecordStep>,
    barrier: Option<&'a CompiledStep>,
}

fn segments(compiled: &[CompiledStep]) -> Vec<Segment<'_>> {
    let mut out = vec![Segment {
        steps: Vec::new(),
        barrier: None,
    }];
    for step in compiled {
        match step {
            CompiledStep::PerRecord(s) => {
                if let Some(last) = out.last_mut() {
                    last.steps.push(s.as_ref());
                }
            }
            barrier => {
                if let Some(last) = out.last_mut() {
                    last.barrier = Some(barrier);
                }
                out.push(Segment {
                    steps: Vec::new(),
                    barrier: None,
                });
            }
        }
    }
    out
}

enum Input {
    Sources,
    Replay(Box<dyn Replay>),
}

/// Runs the pipeline and always returns a report: on failure the summary says why and nothing
/// was committed.
pub fn run(doc: &ResolvedPipeline, opts: &RunOptions) -> RunReport {
    let started = jiff::Timestamp::now();
    let clock = Instant::now();
    let run_id = opts.run_id.clone().unwrap_or_else(|| new_run_id(started));
    let mut state = RunState::default();
    let result = run_inner(doc, opts, &run_id, started, clock, &mut state);
    let (manifest, error) = match result {
        Ok(m) => (Some(m), None),
        Err(e) => {
            if let Some(dir) = state.staging.take().filter(|d| d.exists()) {
                let _ = std::fs::remove_dir_all(dir);
            }
            (None, Some(e))
        }
    };
    let outcome = match &error {
        None => RunOutcome::Succeeded,
        Some(RunError::Denied { .. }) => RunOutcome::Denied,
        Some(_) => RunOutcome::Failed,
    };
    let summary = RunSummary {
        medplat_run_summary: true,
        namespace: doc.namespace.clone(),
        pipeline: doc.name.clone(),
        run_id,
        result: outcome,
        message: error.as_ref().map(error_chain),
        records: state.counts,
        output_level: state.output.as_ref().map(|c| c.level),
        sink: format!("{}/{}", doc.spec.sink.tier, doc.spec.sink.dataset),
        duration_seconds: clock.elapsed().as_secs_f64(),
        bytes_read: state.bytes_read,
        bytes_written: state.bytes_written,
        access_denied: state.access_denied,
        warnings: std::mem::take(&mut state.warnings),
        metrics: Default::default(),
    }
    .with_metrics();
    RunReport {
        manifest,
        summary,
        error,
    }
}

/// An error with its causes, on one line.
pub fn error_chain(e: &RunError) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(cause) = src {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        src = cause.source();
    }
    s
}

#[derive(Default)]
struct RunState {
    counts: Counts,
    output: Option<Classification>,
    bytes_read: u64,
    bytes_written: u64,
    access_denied: u64,
    /// What the run could not clean up after its commit (old versions left in place).
    warnings: Vec<String>,
    /// The staging directory, removed when the run fails (a killed run's is removed by the next).
    staging: Option<PathBuf>,
}

/// Both ends of one segment: the input (sources or a barrier's replay) and where kept,
/// quarantined and dropped records go.
struct Flow<'a, 'b> {
    input: &'a mut Input,
    sources: &'a mut [OpenSource],
    source_index: &'a mut usize,
    auditor: &'a Auditor<'b>,
    counts: &'a mut Counts,
    steps: &'a [&'b dyn RecordStep],
    barrier: Option<&'a mut Box<dyn BarrierRun>>,
    output: &'a mut dyn sink::OutputWriter,
    quarantine: &'a mut Quarantine,
    out_count: &'a mut u64,
}

impl parallel::Ends for Flow<'_, '_> {
    type Error = RunError;

    fn next(&mut self) -> Result<Option<Fed>, RunError> {
        let sources = match &mut *self.input {
            Input::Replay(r) => return Ok(r.next_record()?.map(|(r, l)| Fed::Record(r, l))),
            Input::Sources => &mut *self.sources,
        };
        loop {
            let Some(src) = sources.get_mut(*self.source_index) else {
                return Ok(None);
            };
            // The end of a source and its failure are audited alike, once, as the read's outcome.
            let failure = match src.reader.next_item() {
                None => None,
                Some(Err(e)) => Some(e),
                Some(Ok(item)) => {
                    let records = match &item {
                        SourceItem::Rows(rows) => rows.len() as u64,
                        _ => 1,
                    };
                    src.records += records;
                    self.counts.records_in += records;
                    return Ok(Some(match item {
                        SourceItem::Rows(mut rows) => {
                            rows.prefix_locations(&src.name);
                            Fed::Rows(rows)
                        }
                        SourceItem::Record { record, location } => {
                            Fed::Record(record, source_location(&src.name, &location))
                        }
                        SourceItem::Malformed {
                            location,
                            reason,
                            raw,
                        } => Fed::Malformed {
                            location: source_location(&src.name, &location),
                            reason,
                            raw,
                        },
                    }));
                }
            };
            self.auditor.emit(
                AuditAction::Read,
                "DataSource",
                &src.name,
                Some(src.reader.describe()),
                src.level,
                if failure.is_some() {
                    AuditResult::Failure
                } else {
                    AuditResult::Success
                },
                Some(src.records),
                failure.as_ref().map(ToString::to_string),
            )?;
            if let Some(e) = failure {
                return Err(e.into());
            }
            *self.source_index += 1;
        }
    }

    fn settle(&mut self, item: Processed) -> Result<(), RunError> {
        let (record, location, verdict) = match item {
            Processed::Malformed {
                location,
                reason,
                raw,
            } => {
                return self.quarantine.put(
                    &location,
                    "read",
                    "well-formed",
                    &reason,
                    None,
                    Some(&raw),
                );
            }
            Processed::Record {
                record,
                location,
                verdict,
            } => (record, location, verdict),
        };
        match verdict {
            Verdict::Keep => match self.barrier.as_mut() {
                Some(b) => b.push(&record, &location)?,
                None => {
                    self.output.write(&record)?;
                    *self.out_count += 1;
                }
            },
            Verdict::Quarantine { step, rule, reason } => {
                let Some(step) = self.steps.get(step) else {
                    return Err(RunError::Document(format!("no step {step} in the segment")));
                };
                if step.fails_run() {
                    return Err(StepError::RecordFailed {
                        step: step.name().into(),
                        rule,
                        location,
                        reason,
                    }
                    .into());
                }
                self.quarantine
                    .put(&location, step.name(), &rule, &reason, Some(&record), None)?;
            }
            Verdict::Drop => self.counts.dropped += 1,
        }
        Ok(())
    }

    fn lines(&mut self, bytes: &[u8], count: u64) -> Result<(), RunError> {
        if count == 0 {
            return Ok(());
        }
        match self.output.as_lines() {
            Some(w) => w.write_lines(bytes, count)?,
            None => {
                return Err(RunError::Document(
                    "serialised lines for a sink that is not NDJSON".into(),
                ));
            }
        }
        *self.out_count += count;
        Ok(())
    }

    fn worker_failed(&self, message: String) -> RunError {
        RunError::Worker(message)
    }
}

/// `<source>: <location>`, the location quarantine entries and errors show.
fn source_location(source: &str, location: &str) -> String {
    let mut s = String::with_capacity(source.len() + 2 + location.len());
    s.push_str(source);
    s.push_str(": ");
    s.push_str(location);
    s
}

fn run_inner(
    doc: &ResolvedPipeline,
    opts: &RunOptions,
    run_id: &str,
    started: jiff::Timestamp,
    clock: Instant,
    state: &mut RunState,
) -> Result<RunManifest, RunError> {
    let auditor = Auditor {
        doc,
        emitter: &opts.audit,
        run_id,
    };
    let sink_name = format!("{}/{}", doc.spec.sink.tier, doc.spec.sink.dataset);

    // 1. Refuse what the operator would refuse, before touching any data.
    let decision = enforce::decide(doc, started);
    let input_level = decision.input_level;
    state.output = Some(decision.output.clone());
    if !decision.allowed() {
        let denied = enforce::denied_accesses(doc, &decision);
        for d in &denied {
            let action = if d.write {
                AuditAction::Write
            } else {
                AuditAction::Read
            };
            let (level, dataset) = if d.write {
                (decision.output.level, Some(doc.spec.sink.dataset.clone()))
            } else {
                (
                    doc.sources
                        .get(&d.name)
                        .map(crate::policy::source_level)
                        .unwrap_or(input_level),
                    None,
                )
            };
            auditor.emit(
                action,
                d.kind,
                &d.name,
                dataset,
                level,
                AuditResult::Denied,
                None,
                Some(d.reason.clone()),
            )?;
        }
        state.access_denied = denied.len().max(1) as u64;
        return Err(RunError::Denied {
            reasons: decision.blocking().map(|v| v.to_string()).collect(),
            accesses: state.access_denied,
        });
    }
    let output = decision.output.clone();

    // 2. Compile every step: loads every key, compiles every pattern.
    let secrets = SecretStore::from_document(doc);
    let dictionary = Dictionary::of(doc);
    let compiled = steps::compile(
        &doc.spec.steps,
        &CompileContext {
            dictionary: &dictionary,
            secrets: &secrets,
            as_of: opts.as_of,
        },
    )?;

    // 3. The sink and its current version (checkpoints live in its manifest).
    let mut store = open_store(doc, opts)?;
    let previous = store.current()?;

    // 4. Open every source before any record moves.
    let mut sources = Vec::new();
    let mut incremental = false;
    for name in &doc.spec.sources {
        let spec = doc
            .sources
            .get(name)
            .ok_or_else(|| RunError::Document(format!("DataSource {name} is missing")))?;
        let after = previous
            .as_ref()
            .and_then(|p| p.watermarks.get(name).cloned());
        let c = &spec.connector;
        let sql_incremental = c
            .postgres
            .as_ref()
            .or(c.mysql.as_ref())
            .is_some_and(|p| p.watermark_column.is_some());
        incremental |= sql_incremental && after.is_some();
        let reader = open_source(doc, name, spec, &secrets, after, opts)?;
        sources.push(OpenSource {
            name: name.clone(),
            connector: spec.connector.kind().into(),
            level: crate::policy::source_level(spec),
            reader,
            records: 0,
        });
    }
    let mode = if incremental {
        WriteMode::Append
    } else {
        WriteMode::Replace
    };
    let (carry_files, carry_quarantine) = match (&previous, mode) {
        (Some(p), WriteMode::Append) => (p.files.clone(), p.quarantine_files.clone()),
        _ => (Vec::new(), Vec::new()),
    };

    // 5. Stage.
    let staging = store.staging(run_id)?;
    state.staging = Some(staging.clone());
    let work = staging.join(".work");
    std::fs::create_dir_all(&work).map_err(|source| SinkError::Io {
        path: work.clone(),
        source,
    })?;
    let format = doc.spec.sink.format;
    let mut output_writer = sink::open(format, &staging, "", carry_files.len() as u32);
    let sink_tier = doc.tiers.get(&doc.spec.sink.tier).map(|t| &t.spec);
    let keep_content = sink_tier.is_some_and(|t| {
        t.max_level >= input_level
            && doc
                .sources
                .values()
                .all(|s| s.classification.domain == t.domain)
    });
    let q_name = format!(
        "_quarantine/{}",
        sink::part_name(
            carry_quarantine.len() as u32,
            crate::api::pipeline::SinkFormat::Ndjson
        )
    );
    let mut quarantine = Quarantine {
        writer: NdjsonWriter::new(staging.join(&q_name), q_name),
        keep_content,
        count: 0,
    };

    // 6. Stream records through the segments.
    let segs = segments(&compiled);
    let workers = opts
        .parallelism
        .map_or_else(parallel::default_workers, NonZeroUsize::get);
    let mut input = Input::Sources;
    let mut source_index = 0usize;
    let mut out_count = 0u64;
    for (seg_index, seg) in segs.iter().enumerate() {
        let mut barrier: Option<Box<dyn BarrierRun>> = match seg.barrier {
            Some(CompiledStep::Dedupe(d)) => {
                Some(d.begin(&work.join(format!("dedupe-{seg_index}.spill")))?)
            }
            Some(CompiledStep::Privacy(p)) => {
                Some(p.begin(&work.join(format!("privacy-{seg_index}.spill")))?)
            }
            _ => None,
        };
        // Kept records are serialised on the workers when they go straight to an NDJSON file.
        let serialise = barrier.is_none() && output_writer.as_lines().is_some();
        let mut flow = Flow {
            input: &mut input,
            sources: &mut sources,
            source_index: &mut source_index,
            auditor: &auditor,
            counts: &mut state.counts,
            steps: &seg.steps,
            barrier: barrier.as_mut(),
            output: output_writer.as_mut(),
            quarantine: &mut quarantine,
            out_count: &mut out_count,
        };
        if workers > 1 {
            parallel::run_parallel(&mut flow, &seg.steps, serialise, workers)?;
        } else {
            parallel::run_serial(&mut flow, &seg.steps)?;
        }
        if let Input::Replay(r) = &input {
            account_removed(seg_index, &segs, r.removed(), &mut state.counts);
        }
        input = match barrier {
            Some(b) => Input::Replay(b.finish()?),
            None => break,
        };
    }
    state.counts.quarantined = quarantine.count;
    state.counts.records_out = out_count;
    state.bytes_read = sources.iter().map(|s| s.reader.bytes_read()).sum();

    // 7. Seal the files and commit.
    let new_files = output_writer.finish()?;
    let new_quarantine: Vec<_> = quarantine.writer.finish_file()?.into_iter().collect();
    std::fs::remove_dir_all(&work).map_err(|source| SinkError::Io {
        path: work.clone(),
        source,
    })?;
    state.bytes_written = new_files
        .iter()
        .chain(&new_quarantine)
        .map(|f| f.bytes)
        .sum();

    let mut watermarks = previous
        .as_ref()
        .map(|p| p.watermarks.clone())
        .unwrap_or_default();
    let mut reads = Vec::new();
    for s in &sources {
        let wm = s.reader.watermark();
        if let Some(w) = &wm {
            watermarks.insert(s.name.clone(), w.clone());
        }
        reads.push(SourceRead {
            name: s.name.clone(),
            connector: s.connector.clone(),
            location: s.reader.describe(),
            records: s.records,
            bytes: s.reader.bytes_read(),
            watermark: wm,
        });
    }
    let key_versions = doc
        .spec
        .steps
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let d = s.deidentify.as_ref()?;
            let k = d.keys.as_ref()?;
            Some(KeyVersion {
                step: steps::step_name(s, i),
                secret: k.secret_name.clone(),
                version: k.version.clone(),
            })
        })
        .chain(doc.spec.steps.iter().enumerate().filter_map(|(i, s)| {
            let l = s.link.as_ref()?;
            Some(KeyVersion {
                step: steps::step_name(s, i),
                secret: l.key.name.clone(),
                version: None,
            })
        }))
        .collect();
    let finished = jiff::Timestamp::now();
    let manifest = RunManifest {
        kind: MANIFEST_KIND.into(),
        run_id: run_id.into(),
        pipeline: format!("{}/{}", doc.namespace, doc.name),
        generation: doc.generation,
        started_at: started.to_string(),
        finished_at: finished.to_string(),
        duration_seconds: clock.elapsed().as_secs_f64(),
        as_of: opts.as_of.to_string(),
        sources: reads,
        steps: doc
            .spec
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{}/{}", s.kind(), steps::step_name(s, i)))
            .collect(),
        counts: state.counts,
        output_classification: output.clone(),
        sink: sink_name.clone(),
        format,
        mode,
        files: carry_files.into_iter().chain(new_files).collect(),
        quarantine_files: carry_quarantine.into_iter().chain(new_quarantine).collect(),
        key_versions,
        watermarks,
    };
    let committed = store.commit(run_id, &staging, &manifest);
    let result = if committed.is_ok() {
        AuditResult::Success
    } else {
        AuditResult::Failure
    };
    auditor.emit(
        AuditAction::Write,
        "StorageTier",
        &doc.spec.sink.tier,
        Some(doc.spec.sink.dataset.clone()),
        output.level,
        result,
        Some(out_count),
        committed.as_ref().err().map(|e| e.to_string()),
    )?;
    for left in committed? {
        tracing::warn!(sink = %sink_name, "committed, but {left}");
        state.warnings.push(left);
    }
    Ok(manifest)
}

/// Attributes records a barrier removed to the right counter.
fn account_removed(seg_index: usize, segs: &[Segment<'_>], removed: u64, counts: &mut Counts) {
    // The replay feeding segment `seg_index` belongs to the barrier of the segment before it.
    match seg_index.checked_sub(1).and_then(|i| segs[i].barrier) {
        Some(CompiledStep::Dedupe(_)) => counts.deduplicated += removed,
        Some(CompiledStep::Privacy(_)) => counts.suppressed += removed,
        _ => {}
    }
}
