//! The run summary: one JSON line on stdout at the end of every run, also written to the
//! container's termination-message file so the operator reads the outcome from the pod status
//! (Jobs are short-lived; nothing scrapes them). It carries the run's metrics under their
//! catalogue names (`crate::api::metrics`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::manifest::Counts;
use crate::api::classification::Level;
use crate::api::metrics::{
    LABEL_NAMESPACE, LABEL_OUTCOME, LABEL_PIPELINE, OUTCOME_IN, OUTCOME_OUT, OUTCOME_QUARANTINED,
    PIPELINE_LAST_RUN_RECORDS, WORKER_ACCESS_DENIED_TOTAL,
};

/// Kubernetes keeps at most 4096 bytes of a termination message.
pub const TERMINATION_MESSAGE_LIMIT: usize = 4096;

/// How a run ended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunOutcome {
    /// The output was committed.
    Succeeded,
    /// Something failed; nothing was committed.
    Failed,
    /// The policy bundle refused the run before anything was read.
    Denied,
}

/// The summary of one run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// Always true: marks the line for the operator and log collectors.
    pub medplat_run_summary: bool,
    /// The pipeline's namespace.
    pub namespace: String,
    /// The pipeline's name.
    pub pipeline: String,
    /// The run's id.
    pub run_id: String,
    /// How it ended.
    pub result: RunOutcome,
    /// Why it failed or was denied (bounded; never data values or secrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Counts by outcome.
    pub records: Counts,
    /// The output level, when the policy engine computed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_level: Option<Level>,
    /// `tier/dataset`.
    pub sink: String,
    /// Wall time in seconds.
    pub duration_seconds: f64,
    /// Bytes read from the sources.
    pub bytes_read: u64,
    /// Bytes of data and quarantine files written.
    pub bytes_written: u64,
    /// Accesses the policy bundle refused.
    pub access_denied: u64,
    /// What went wrong after the commit, which the run survived: old versions it could not
    /// remove (they stay until a later commit removes them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The run's metrics, keyed `name{label="value",...}`.
    pub metrics: BTreeMap<String, f64>,
}

impl RunSummary {
    /// Fills [`RunSummary::metrics`] from the other fields.
    pub fn with_metrics(mut self) -> Self {
        let labels = |extra: &str| {
            format!(
                "{{{LABEL_NAMESPACE}=\"{}\",{LABEL_PIPELINE}=\"{}\"{extra}}}",
                self.namespace, self.pipeline
            )
        };
        let mut m = BTreeMap::new();
        for (outcome, n) in [
            (OUTCOME_IN, self.records.records_in),
            (OUTCOME_OUT, self.records.records_out),
            (OUTCOME_QUARANTINED, self.records.quarantined),
        ] {
            m.insert(
                format!(
                    "{PIPELINE_LAST_RUN_RECORDS}{}",
                    labels(&format!(",{LABEL_OUTCOME}=\"{outcome}\""))
                ),
                n as f64,
            );
        }
        m.insert(
            format!("{WORKER_ACCESS_DENIED_TOTAL}{}", labels("")),
            self.access_denied as f64,
        );
        self.metrics = m;
        self
    }

    /// The summary as one JSON line, within the termination-message limit.
    pub fn to_line(&self) -> String {
        let mut s = self.clone();
        let mut omitted = 0;
        loop {
            let line = serde_json::to_string(&s).unwrap_or_default();
            if line.len() < TERMINATION_MESSAGE_LIMIT {
                return line;
            }
            // Warnings go first, last first, counted in a note that takes the last place. The
            // note itself stays, so a run with warnings always says it had some.
            let shown = s.warnings.len() - usize::from(omitted > 0);
            if shown > 0 {
                s.warnings.truncate(shown - 1);
                omitted += 1;
                s.warnings
                    .push(format!("{omitted} more warnings not shown"));
                continue;
            }
            // Then the message is halved.
            match s.message.as_mut() {
                Some(msg) if msg.len() > 64 => {
                    let mut cut = msg.len() / 2;
                    while !msg.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    msg.truncate(cut);
                    msg.push('…');
                }
                _ => return line,
            }
        }
    }

    /// Prints the line on stdout and writes it to the termination-message file, if given. A
    /// termination file that cannot be written is reported on stderr, not fatal.
    pub fn emit(&self, termination_log: Option<&Path>) {
        let line = self.to_line();
        println!("{line}");
        if let Some(path) = termination_log
            && let Err(e) = std::fs::write(path, &line)
        {
            eprintln!(
                "warning: cannot write the run summary to {}: {e}",
                path.display()
            );
        }
    }

    /// A few lines for a person at a terminal.
    pub fn human(&self) -> String {
        let r = &self.records;
        let mut s = format!(
            "pipeline {}/{} run {}: {:?}\n  records: {} in, {} out, {} quarantined, {} dropped, {} deduplicated, {} suppressed\n  output: {} level {}\n  read {} bytes, wrote {} bytes in {:.2}s\n",
            self.namespace,
            self.pipeline,
            self.run_id,
            self.result,
            r.records_in,
            r.records_out,
            r.quarantined,
            r.dropped,
            r.deduplicated,
            r.suppressed,
            self.sink,
            self.output_level.map(|l| l.as_str()).unwrap_or("?"),
            self.bytes_read,
            self.bytes_written,
            self.duration_seconds
        );
        if let Some(m) = &self.message {
            s.push_str(&format!("  reason: {m}\n"));
        }
        for w in &self.warnings {
            s.push_str(&format!("  warning: {w}\n"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_carries_catalogue_metrics_and_fits_a_termination_message() {
        let s = RunSummary {
            medplat_run_summary: true,
            namespace: "clinical".into(),
            pipeline: "p".into(),
            run_id: "r".into(),
            result: RunOutcome::Failed,
            message: Some("x".repeat(10_000)),
            records: Counts {
                records_in: 10,
                records_out: 7,
                quarantined: 3,
                ..Counts::default()
            },
            output_level: Some(Level::L3),
            sink: "t/d".into(),
            duration_seconds: 1.0,
            bytes_read: 1,
            bytes_written: 2,
            access_denied: 1,
            warnings: vec![],
            metrics: BTreeMap::new(),
        }
        .with_metrics();
        let line = s.to_line();
        assert!(line.len() < TERMINATION_MESSAGE_LIMIT);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            v["metrics"]["medplat_pipeline_last_run_records{namespace=\"clinical\",pipeline=\"p\",outcome=\"quarantined\"}"],
            3.0
        );
        assert_eq!(
            v["metrics"]["medplat_worker_access_denied_total{namespace=\"clinical\",pipeline=\"p\"}"],
            1.0
        );
        assert_eq!(v["medplatRunSummary"], true);
    }

    #[test]
    fn warnings_are_cut_last_first_with_a_count_before_the_message_is() {
        let s = RunSummary {
            medplat_run_summary: true,
            namespace: "clinical".into(),
            pipeline: "p".into(),
            run_id: "r".into(),
            result: RunOutcome::Succeeded,
            message: Some("kept whole".into()),
            records: Counts::default(),
            output_level: None,
            sink: "t/d".into(),
            duration_seconds: 1.0,
            bytes_read: 0,
            bytes_written: 0,
            access_denied: 0,
            warnings: (0..40)
                .map(|i| format!("cannot remove old version v{i}: {}", "x".repeat(200)))
                .collect(),
            metrics: BTreeMap::new(),
        };
        let line = s.to_line();
        assert!(line.len() < TERMINATION_MESSAGE_LIMIT);
        let back: RunSummary = serde_json::from_str(&line).unwrap();
        assert_eq!(back.message.as_deref(), Some("kept whole"));
        let shown = back.warnings.len() - 1;
        assert!(shown >= 1 && back.warnings[0].starts_with("cannot remove old version v0:"));
        assert_eq!(
            back.warnings[shown],
            format!("{} more warnings not shown", 40 - shown)
        );
        assert!(
            s.human()
                .contains("  warning: cannot remove old version v39")
        );
        // A warning too long to show, beside a message that must be cut as well, still
        // leaves the count, so the run says it had one.
        let one = RunSummary {
            message: Some("m".repeat(2 * TERMINATION_MESSAGE_LIMIT)),
            warnings: vec!["x".repeat(2 * TERMINATION_MESSAGE_LIMIT)],
            ..s
        };
        let line = one.to_line();
        assert!(line.len() < TERMINATION_MESSAGE_LIMIT);
        let back: RunSummary = serde_json::from_str(&line).unwrap();
        assert_eq!(back.warnings, ["1 more warnings not shown"]);
    }
}
