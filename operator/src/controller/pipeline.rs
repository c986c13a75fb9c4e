//! The Pipeline reconciler.
//!
//! dereference (sources, tiers, policies, Secrets) → validate (the policy engine) → build
//! (resolved document, ConfigMap, CronJob or Job, NetworkPolicy; the tiers' claims) → apply
//! and prune → status (classification, lineage, last run). While the policy engine says no,
//! nothing runs: no Job is created and an existing CronJob is suspended.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use super::context::Context;
use super::data_source::CLAIM_FIELD_MANAGER;
use super::error::{Error, Result};
use super::invalid::report_invalid;
use super::last_run::{last_run, observe_run};
use super::status::{Outcome, conditions_for};
use crate::api::conditions::POLICY_COMPLIANT;
use crate::api::pipeline::{Lineage, Pipeline, PipelineStatus, RUN_REQUESTED_AT};
use crate::api::resolved::{Mounts, ResolvedPipeline};
use crate::api::worker_resources::{INVALID_RESOURCES, WorkerSizing};
use crate::api::{AccessPolicy, DataSource, StorageTier};
use crate::policy::{
    NamedPolicy, PipelineContext, PipelineDecision, evaluate_pipeline, source_level,
};
use crate::render::pipeline::{PipelineRenderInput, pipeline_child_name, render_pipeline_children};
use crate::render::tier_claim::render_tier_claim;

/// The controller's name, in metrics and its field manager.
pub const CONTROLLER: &str = "pipeline";
const FIELD_MANAGER: &str = "medplat-pipeline";
const PRUNE: &[&str] = &["ServiceAccount", "ConfigMap", "NetworkPolicy", "CronJob"];
/// At most this many violation lines are kept in status.
const MAX_VIOLATIONS: usize = 50;

/// Everything the pipeline refers to, dereferenced from the caches.
struct Dereferenced {
    sources: Vec<DataSource>,
    tiers: Vec<StorageTier>,
    policies: Vec<AccessPolicy>,
}

fn ok<K: Clone>(g: &Arc<DeserializeGuard<K>>) -> Option<K> {
    g.0.as_ref().ok().cloned()
}

/// The pipeline's own sources, every tier, and the namespace's policies (sorted by name, so
/// the decision does not depend on cache order), from the caches.
fn dereference(ctx: &Context, pipeline: &Pipeline, ns: &str) -> Dereferenced {
    Dereferenced {
        sources: pipeline
            .spec
            .sources
            .iter()
            .filter_map(|s| ctx.parents.sources.get(&ObjectRef::new(s).within(ns)))
            .filter_map(|g| ok(&g))
            .collect(),
        tiers: ctx.parents.tiers.state().iter().filter_map(ok).collect(),
        policies: {
            let mut p: Vec<AccessPolicy> = ctx
                .parents
                .policies
                .state()
                .iter()
                .filter(|p| p.namespace().as_deref() == Some(ns))
                .filter_map(ok)
                .collect();
            p.sort_by_key(|p| p.name_any());
            p
        },
    }
}

/// Runs the policy engine over the dereferenced objects.
pub fn decide(
    pipeline: &Pipeline,
    sources: &[DataSource],
    tiers: &[StorageTier],
    policies: &[AccessPolicy],
    now: Timestamp,
) -> PipelineDecision {
    let ns = pipeline.namespace().unwrap_or_default();
    let source_specs: BTreeMap<_, _> = sources
        .iter()
        .map(|s| (s.name_any(), s.spec.clone()))
        .collect();
    let tier_specs: BTreeMap<_, _> = tiers
        .iter()
        .map(|t| (t.name_any(), t.spec.clone()))
        .collect();
    let names: Vec<String> = policies.iter().map(|p| p.name_any()).collect();
    let named: Vec<NamedPolicy<'_>> = policies
        .iter()
        .zip(&names)
        .map(|(p, n)| NamedPolicy {
            namespace: &ns,
            name: n,
            spec: &p.spec,
        })
        .collect();
    let sa = pipeline.service_account();
    let name = pipeline.name_any();
    evaluate_pipeline(
        &PipelineContext {
            namespace: &ns,
            name: &name,
            spec: &pipeline.spec,
            service_account: &sa,
            sources: &source_specs,
            tiers: &tier_specs,
            policies: &named,
        },
        now,
    )
}

/// Reconciles one Pipeline.
pub async fn reconcile(
    guard: Arc<DeserializeGuard<Pipeline>>,
    ctx: Arc<Context>,
) -> Result<Action> {
    let pipeline = match &guard.0 {
        Ok(p) => p,
        Err(invalid) => {
            report_invalid::<Pipeline>(&ctx, invalid, FIELD_MANAGER).await?;
            return Ok(Action::requeue(ctx.settings.resync));
        }
    };
    let name = pipeline.name_any();
    let ns = pipeline.namespace().ok_or_else(|| Error::MissingMetadata {
        object: format!("Pipeline {name}"),
        what: "namespace",
    })?;
    let uid = pipeline.uid().ok_or_else(|| Error::MissingMetadata {
        object: format!("Pipeline {ns}/{name}"),
        what: "uid",
    })?;
    let display = format!("Pipeline {ns}/{name}");
    let reference: ObjectReference = pipeline.object_ref(&());
    let now = Timestamp::now();

    // dereference
    let refs = dereference(&ctx, pipeline, &ns);
    let resolved = ResolvedPipeline::build(
        pipeline,
        &refs.sources,
        &refs.tiers,
        &refs.policies,
        &Mounts::in_cluster(),
    )
    .ok();

    // validate
    let decision = decide(pipeline, &refs.sources, &refs.tiers, &refs.policies, now);
    let mut missing_secrets = Vec::new();
    if let Some(r) = &resolved {
        for secret in r.secrets.keys() {
            let found = ctx
                .secrets
                .exists(&ctx.client, &ns, secret)
                .await
                .map_err(|e| Error::kube("get", format!("Secret {ns}/{secret}"), e))?;
            if !found {
                missing_secrets.push(secret.clone());
            }
        }
    }
    let sizing = WorkerSizing::of(pipeline.spec.resources.as_ref());
    let runnable =
        decision.allowed() && missing_secrets.is_empty() && resolved.is_some() && sizing.is_ok();

    // build
    let status_seen = ctx.statuses.current(pipeline, pipeline.status.as_ref());
    let status_now = status_seen.clone().unwrap_or_default();
    let request = pipeline.annotations().get(RUN_REQUESTED_AT).cloned();
    let pending = request
        .as_deref()
        .filter(|r| status_now.last_handled_run_request.as_deref() != Some(*r) && runnable);
    let cronjob_exists = ctx
        .children
        .get("CronJob", Some(&ns), &pipeline_child_name(&name))
        .is_some();
    let children = render_pipeline_children(&PipelineRenderInput {
        pipeline,
        decision: &decision,
        resolved: resolved.as_ref(),
        settings: &ctx.settings.workload,
        may_run: runnable,
        cronjob_exists,
        pending_run_request: pending,
    })
    .map_err(|source| Error::Render {
        object: display.clone(),
        source,
    })?;

    // apply: tier claims first (a pod must not wait on a missing claim), then children
    if let Some(r) = &resolved {
        let claims = ctx.applier(CLAIM_FIELD_MANAGER);
        for tier in r.tiers.keys() {
            let Some(t) = refs.tiers.iter().find(|t| t.name_any() == *tier) else {
                continue;
            };
            if let Some(claim) = render_tier_claim(t, &ns).map_err(|source| Error::Render {
                object: display.clone(),
                source,
            })? {
                claims.ensure_exists(&claim).await?;
            }
        }
    }
    let created_job = children
        .iter()
        .find(|c| c.kind == "Job")
        .map(|c| c.name.clone());
    let applied = ctx
        .applier(FIELD_MANAGER)
        .apply(&uid, children, PRUNE)
        .await?;
    if !applied.applied.is_empty() || !applied.pruned.is_empty() {
        tracing::info!(pipeline = %format!("{ns}/{name}"), applied = ?applied.applied, pruned = ?applied.pruned, "children changed");
    }
    if let Some(job) = &created_job {
        ctx.event(
            &reference,
            EventType::Normal,
            "RunStarted",
            "Run",
            format!(
                "Job {job} started for run request {}",
                pending.unwrap_or_default()
            ),
        )
        .await;
    }

    // last run
    let last = last_run(&ctx, &ns, &uid).await?;
    let (last_run, summary) = match last {
        Some((r, s)) => (Some(r), s),
        None => (status_now.last_run.clone(), None),
    };
    observe_run(
        &ctx,
        &ns,
        &name,
        last_run.as_ref(),
        summary.as_ref(),
        &reference,
    )
    .await;

    // status
    let blocking: Vec<String> = decision.blocking().map(|v| v.to_string()).collect();
    ctx.metrics
        .policy_violations
        .with_label_values(&[&ns, &name])
        .set(blocking.len() as f64);
    let compliant = decision.allowed();
    let (compliant_reason, compliant_message) = if compliant {
        (
            "Compliant".to_string(),
            format!(
                "output {} may flow to StorageTier {}",
                decision.output.level, pipeline.spec.sink.tier
            ),
        )
    } else {
        (
            decision
                .blocking()
                .next()
                .map(|v| v.reason.as_str())
                .unwrap_or("PolicyViolation")
                .to_string(),
            blocking.join("; "),
        )
    };
    let outcome = if !compliant {
        Outcome::stalled("PolicyViolation", compliant_message.clone())
    } else if let Err(e) = &sizing {
        Outcome::stalled(INVALID_RESOURCES, e.to_string())
    } else if resolved.is_none() {
        Outcome::stalled(
            "MissingReference",
            "a source or tier the pipeline refers to does not exist",
        )
    } else if !missing_secrets.is_empty() {
        Outcome::stalled(
            "SecretNotFound",
            format!(
                "Secret(s) {} in namespace {ns} do not exist",
                missing_secrets.join(", ")
            ),
        )
    } else {
        let when = match &pipeline.spec.schedule {
            Some(s) => format!("scheduled {s}"),
            None => "runs on demand (annotation medplat.io/run-requested-at)".to_string(),
        };
        let parallel = if pipeline.spec.parallelism > 1 {
            format!(
                "; an Indexed Job of {} pods where index 0 runs the whole pipeline (partitioned runs are not implemented)",
                pipeline.spec.parallelism
            )
        } else {
            String::new()
        };
        Outcome::ready("Reconciled", format!("{when}{parallel}"))
    };
    match &outcome {
        Outcome::Stalled { reason, message } => {
            let new = ctx
                .event(
                    &reference,
                    EventType::Warning,
                    reason,
                    "Reconcile",
                    message.clone(),
                )
                .await;
            if new && !compliant {
                audit_refusals(&ctx, pipeline, &decision, &refs.sources, now);
            }
        }
        _ if created_job.is_none() => ctx.clear_event(&reference),
        _ => {}
    }
    let mut violations: Vec<String> = decision.violations.iter().map(|v| v.to_string()).collect();
    violations.truncate(MAX_VIOLATIONS);
    let status = PipelineStatus {
        observed_generation: pipeline.metadata.generation,
        conditions: conditions_for(
            &status_now.conditions,
            pipeline.metadata.generation,
            &outcome,
            vec![(
                POLICY_COMPLIANT.into(),
                compliant,
                compliant_reason,
                compliant_message,
            )],
        ),
        output_classification: Some(decision.output.clone()),
        violations,
        lineage: Some(lineage(pipeline, &refs.sources, &decision)),
        last_run,
        last_handled_run_request: match (&created_job, pending) {
            (Some(_), Some(r)) => Some(r.to_string()),
            _ => status_now.last_handled_run_request.clone(),
        },
    };
    let api: Api<Pipeline> = Api::namespaced(ctx.client.clone(), &ns);
    ctx.statuses
        .write_if_changed(&api, pipeline, FIELD_MANAGER, status_seen.as_ref(), &status)
        .await?;
    Ok(Action::requeue(applied.requeue_within(ctx.settings.resync)))
}

/// Leaves an audit trail of each access the policy engine refused (全程留痕): who (the
/// pipeline's ServiceAccount), what (read a source, write the sink), which data, why (the
/// purpose), and the reason.
fn audit_refusals(
    ctx: &Context,
    pipeline: &Pipeline,
    decision: &PipelineDecision,
    sources: &[DataSource],
    now: Timestamp,
) {
    use crate::api::audit::{AuditAction, AuditData, AuditEvent, AuditResult};
    let ns = pipeline.namespace().unwrap_or_default();
    for v in decision.blocking() {
        let (action, data) = match v
            .field
            .strip_prefix("spec.sources[")
            .and_then(|r| r.strip_suffix(']'))
        {
            Some(i) => {
                let name = i
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| pipeline.spec.sources.get(i))
                    .cloned()
                    .unwrap_or_default();
                let level = sources
                    .iter()
                    .find(|s| s.name_any() == name)
                    .map(|s| source_level(&s.spec))
                    .unwrap_or(decision.input_level);
                (
                    AuditAction::Read,
                    AuditData {
                        kind: "DataSource".into(),
                        name,
                        dataset: None,
                        level,
                    },
                )
            }
            None => (
                AuditAction::Write,
                AuditData {
                    kind: "StorageTier".into(),
                    name: pipeline.spec.sink.tier.clone(),
                    dataset: Some(pipeline.spec.sink.dataset.clone()),
                    level: decision.output.level,
                },
            ),
        };
        let event = AuditEvent {
            audit: true,
            time: now.to_string(),
            who: AuditEvent::service_account(&ns, &pipeline.service_account()),
            action,
            data,
            purpose: pipeline.spec.purpose,
            result: AuditResult::Denied,
            pipeline: Some(format!("{ns}/{}", pipeline.name_any())),
            run_id: None,
            records: None,
            reason: Some(format!("{}: {}", v.reason, v.field)),
        };
        if let Err(e) = ctx.audit.emit(&event) {
            tracing::warn!(error = %e, "cannot write an audit event");
        }
    }
}

fn lineage(pipeline: &Pipeline, sources: &[DataSource], decision: &PipelineDecision) -> Lineage {
    let ns = pipeline.namespace().unwrap_or_default();
    Lineage {
        sources: pipeline
            .spec
            .sources
            .iter()
            .map(|s| match sources.iter().find(|d| d.name_any() == *s) {
                Some(d) => format!(
                    "{ns}/{s} ({}, {})",
                    source_level(&d.spec),
                    d.spec.classification.domain
                ),
                None => format!("{ns}/{s} (missing)"),
            })
            .collect(),
        steps: pipeline
            .spec
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| match &s.name {
                Some(n) => format!("{}:{n}", s.kind()),
                None => format!("{}:{i}", s.kind()),
            })
            .collect(),
        sink: format!(
            "{}/{} ({})",
            pipeline.spec.sink.tier, pipeline.spec.sink.dataset, decision.output.level
        ),
    }
}
