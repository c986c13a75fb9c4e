//! The Pipeline decision at admission: the policy engine of the controller and `medplat check`
//! over the cached sources, tiers and policies of the pipeline's namespace.
//!
//! A violation the existing objects prove refuses the write; a violation that an object applied
//! later may resolve (a missing source, tier or grant) only warns. `kubectl apply -f dir/`
//! applies files in name order, Argo CD applies custom kinds in alphabetical order (Pipeline
//! before StorageTier) and Flux dry-runs a whole set before applying any of it, so refusing a
//! Pipeline for a reference that arrives in the same sync would make GitOps repositories fail
//! on their first sync. The controller still runs nothing until every violation is resolved.

use jiff::Timestamp;
use kube::ResourceExt;

use super::catalog::Catalog;
use super::findings::{Finding, Findings};
use crate::api::Pipeline;
use crate::api::worker_resources::{INVALID_RESOURCES, WorkerSizing};
use crate::controller::pipeline::decide;
use crate::policy::{Enforcement, PipelineDecision, ViolationReason};

/// Why a blocking violation is admitted with a warning instead of refused.
pub const AWAITING_REFERENCE: &str =
    "admitted because it may be applied later; nothing runs until it is resolved";

/// Whether an object applied later (a DataSource, StorageTier or AccessPolicy) could resolve
/// the violation without changing the Pipeline.
pub fn awaits_another_object(reason: ViolationReason) -> bool {
    match reason {
        ViolationReason::SourceNotFound
        | ViolationReason::TierNotFound
        | ViolationReason::ReadNotGranted
        | ViolationReason::WriteNotGranted
        | ViolationReason::CrossDomainNotGranted => true,
        // The tier and sources exist and say no, or a policy in force covers the access and
        // its constraint says no.
        ViolationReason::TierLevelTooLow
        | ViolationReason::TierNotEncrypted
        | ViolationReason::GrantExpired
        | ViolationReason::GrantRequiresDeidentified
        | ViolationReason::GrantLevelTooLow => false,
    }
}

/// Runs the policy engine over the catalog's view of the pipeline's namespace.
pub fn decide_in(pipeline: &Pipeline, catalog: &dyn Catalog, now: Timestamp) -> PipelineDecision {
    let ns = pipeline.namespace().unwrap_or_default();
    decide(
        pipeline,
        &catalog.sources(Some(&ns)),
        &catalog.tiers(),
        &catalog.policies(&ns),
        now,
    )
}

/// Judges a Pipeline create or update. `old` is the stored object on update.
pub fn pipeline_findings(
    pipeline: &Pipeline,
    old: Option<&Pipeline>,
    catalog: &dyn Catalog,
    now: Timestamp,
) -> Findings {
    let decision = decide_in(pipeline, catalog, now);
    let mut findings = Findings::default();
    for v in &decision.violations {
        let finding = Finding::from(v);
        match v.enforcement {
            Enforcement::Block if awaits_another_object(v.reason) => {
                findings.warn(Finding {
                    message: format!("{} ({AWAITING_REFERENCE})", finding.message),
                    ..finding
                });
            }
            Enforcement::Block => findings.deny(finding),
            Enforcement::Warn | Enforcement::Audit => findings.warn(Finding {
                message: format!(
                    "{} (not enforced: the governing AccessPolicy mode is {:?})",
                    finding.message, v.enforcement
                ),
                ..finding
            }),
        }
    }
    // Nothing applied later can fix a request above its limit: the pipeline itself says no.
    if let Err(e) = WorkerSizing::of(pipeline.spec.resources.as_ref()) {
        findings.deny(Finding::new(INVALID_RESOURCES, e.field(), e.to_string()));
    }
    // A write that leaves the spec alone (labels, annotations such as a run request, finalizer
    // removal during deletion) cannot make the pipeline less compliant; refusing it would only
    // stop people from labelling or deleting a pipeline a policy change has since blocked.
    let spec_unchanged = old.is_some_and(|o| o.spec == pipeline.spec);
    if spec_unchanged || pipeline.metadata.deletion_timestamp.is_some() {
        findings.demote_denials(
            "admitted because the spec is unchanged; nothing runs until it is resolved",
        );
    }
    findings
}
