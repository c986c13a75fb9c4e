//! Enforcement before reading: the worker asks the policy engine the same question the
//! operator asked, on the resolved document's own contents, and refuses what it would refuse
//! (a source the pipeline's ServiceAccount was not granted, a sink that does not allow the
//! output level, an expired grant). Rules live in `crate::policy` only.

use std::collections::BTreeMap;

use crate::api::resolved::ResolvedPipeline;
use crate::policy::{NamedPolicy, PipelineContext, PipelineDecision, Violation, evaluate_pipeline};

/// One access the bundle refused, for audit events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeniedAccess {
    /// `DataSource` or `StorageTier`.
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// Whether it was a write.
    pub write: bool,
    /// The violation, as text.
    pub reason: String,
}

/// Evaluates the pipeline exactly as the operator does.
pub fn decide(doc: &ResolvedPipeline, now: jiff::Timestamp) -> PipelineDecision {
    let tiers = doc.tier_specs();
    let policies: Vec<NamedPolicy<'_>> = doc
        .policies
        .iter()
        .map(|p| NamedPolicy {
            namespace: &p.namespace,
            name: &p.name,
            spec: &p.spec,
        })
        .collect();
    let sources: &BTreeMap<_, _> = &doc.sources;
    let ctx = PipelineContext {
        namespace: &doc.namespace,
        name: &doc.name,
        spec: &doc.spec,
        service_account: &doc.service_account,
        sources,
        tiers: &tiers,
        policies: &policies,
    };
    evaluate_pipeline(&ctx, now)
}

/// The accesses behind the blocking violations: `spec.sources[i]` is a read of that source,
/// `spec.sink.tier` a write of the sink tier.
pub fn denied_accesses(doc: &ResolvedPipeline, decision: &PipelineDecision) -> Vec<DeniedAccess> {
    decision
        .blocking()
        .map(|v: &Violation| {
            let source = v
                .field
                .strip_prefix("spec.sources[")
                .and_then(|s| s.strip_suffix(']'))
                .and_then(|i| i.parse::<usize>().ok())
                .and_then(|i| doc.spec.sources.get(i));
            match source {
                Some(name) => DeniedAccess {
                    kind: "DataSource",
                    name: name.clone(),
                    write: false,
                    reason: v.to_string(),
                },
                None => DeniedAccess {
                    kind: "StorageTier",
                    name: doc.spec.sink.tier.clone(),
                    write: true,
                    reason: v.to_string(),
                },
            }
        })
        .collect()
}
