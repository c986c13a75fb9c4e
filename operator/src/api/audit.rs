//! The audit event: one JSON line on stdout, marked `"audit": true`, for every read and write of
//! governed data. The worker and the operator both emit this shape; the log collector routes
//! lines with `audit: true` to the audit tier (kept at least 180 days, 网络安全法 Art. 21).

use std::io::Write;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::classification::{Level, Purpose};

/// What was done to the data.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum AuditAction {
    /// Data was read.
    Read,
    /// Data was written.
    Write,
}

/// How the access ended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum AuditResult {
    /// The access happened.
    Success,
    /// The policy bundle refused it; nothing was read or written.
    Denied,
    /// It was allowed but failed.
    Failure,
}

/// Which data an event is about.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AuditData {
    /// `DataSource` or `StorageTier`.
    pub kind: String,
    /// The source's or tier's name.
    pub name: String,
    /// The dataset path inside a tier, or the file/table/resource read from a source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    /// The classification level of the data moved.
    pub level: Level,
}

/// One audit event.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// Always `true`: the marker the log collector routes on.
    pub audit: bool,
    /// When it happened (RFC 3339, UTC).
    pub time: String,
    /// Who: `system:serviceaccount:<namespace>:<name>`.
    pub who: String,
    /// What: read or write.
    pub action: AuditAction,
    /// Which data.
    pub data: AuditData,
    /// Why: the purpose of the pipeline or grant.
    pub purpose: Purpose,
    /// How it ended.
    pub result: AuditResult,
    /// The pipeline, as `namespace/name`, when a pipeline made the access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
    /// The run's id, when a worker run made the access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Records moved, when counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
    /// A short reason for a denial or failure (never data values or secrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl AuditEvent {
    /// The `who` of a ServiceAccount, as Kubernetes names it in its own audit log.
    pub fn service_account(namespace: &str, name: &str) -> String {
        format!("system:serviceaccount:{namespace}:{name}")
    }
}

/// Writes audit events as JSON lines to a writer (stdout in the worker and operator).
///
/// Each event is written and flushed whole under a lock, so lines never interleave.
pub struct AuditEmitter {
    out: Mutex<Box<dyn Write + Send>>,
}

impl std::fmt::Debug for AuditEmitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditEmitter")
    }
}

impl AuditEmitter {
    /// An emitter that writes to standard output.
    pub fn stdout() -> Self {
        Self::to_writer(Box::new(std::io::stdout()))
    }

    /// An emitter that writes to any writer (tests use a shared buffer).
    pub fn to_writer(out: Box<dyn Write + Send>) -> Self {
        AuditEmitter {
            out: Mutex::new(out),
        }
    }

    /// Writes one event as one line. An audit trail that cannot be written is an error the
    /// caller must act on (a run fails rather than move data unaudited).
    pub fn emit(&self, event: &AuditEvent) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(event).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut out = self
            .out
            .lock()
            .map_err(|_| std::io::Error::other("audit writer lock poisoned"))?;
        out.write_all(&line)?;
        out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn emits_one_marked_json_line_per_event() {
        let buf = Shared::default();
        let emitter = AuditEmitter::to_writer(Box::new(buf.clone()));
        let event = AuditEvent {
            audit: true,
            time: "2026-11-28T00:00:00Z".into(),
            who: AuditEvent::service_account("clinical", "medplat-pipeline-x"),
            action: AuditAction::Read,
            data: AuditData {
                kind: "DataSource".into(),
                name: "lis-results".into(),
                dataset: Some("lis/results".into()),
                level: Level::L4,
            },
            purpose: Purpose::Treatment,
            result: AuditResult::Success,
            pipeline: Some("clinical/x".into()),
            run_id: Some("r1".into()),
            records: Some(3),
            reason: None,
        };
        emitter.emit(&event).unwrap();
        emitter.emit(&event).unwrap();
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["audit"], true);
        assert_eq!(
            v["who"],
            "system:serviceaccount:clinical:medplat-pipeline-x"
        );
        assert_eq!(v["action"], "read");
        assert_eq!(v["data"]["level"], "L4");
        assert_eq!(v["purpose"], "Treatment");
        assert_eq!(v["runId"], "r1");
        assert_eq!(serde_json::from_value::<AuditEvent>(v).unwrap(), event);
    }
}
