//! The DataSource reconciler.
//!
//! dereference (credentials Secret, landing tier) → validate → build (ServiceAccount, egress
//! NetworkPolicy, listener for push sources; the landing tier's claim) → apply and prune →
//! probe → status.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use super::context::Context;
use super::error::{Error, Result};
use super::invalid::report_invalid;
use super::status::{Outcome, conditions_for};
use crate::api::conditions::REACHABLE;
use crate::api::data_source::{DataSource, DataSourceStatus};
use crate::api::storage_tier::StorageTier;
use crate::policy::source_level;
use crate::render::data_source::render_data_source_children;
use crate::render::network::parse_url;
use crate::render::tier_claim::render_tier_claim;

/// The controller's name, in metrics and its field manager.
pub const CONTROLLER: &str = "datasource";
const FIELD_MANAGER: &str = "medplat-datasource";
/// Tier claims are applied identically by every controller that needs them, under one manager.
pub const CLAIM_FIELD_MANAGER: &str = "medplat-tier-claims";
const PRUNE: &[&str] = &["ServiceAccount", "NetworkPolicy", "Deployment", "Service"];

/// A reachability probe result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// Whether the source answered.
    pub reachable: bool,
    /// CamelCase reason.
    pub reason: &'static str,
    /// What was tried and what happened.
    pub message: String,
}

async fn tcp_probe(host: &str, port: u16, timeout: Duration) -> Probe {
    let target = format!("{host}:{port}");
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&target)).await {
        Ok(Ok(_)) => Probe {
            reachable: true,
            reason: "Connected",
            message: format!("TCP connection to {target} succeeded"),
        },
        Ok(Err(e)) => Probe {
            reachable: false,
            reason: "ConnectFailed",
            message: format!("TCP connection to {target} failed: {e}"),
        },
        Err(_) => Probe {
            reachable: false,
            reason: "Timeout",
            message: format!(
                "TCP connection to {target} timed out after {}s",
                timeout.as_secs()
            ),
        },
    }
}

async fn probe(
    ctx: &Context,
    ds: &DataSource,
    tier_exists: impl Fn(&str) -> bool,
) -> Result<Probe> {
    let c = &ds.spec.connector;
    let timeout = ctx.settings.probe_timeout;
    if let Some(sql) = c.postgres.as_ref().or(c.mysql.as_ref()) {
        return Ok(tcp_probe(&sql.host, sql.port, timeout).await);
    }
    if let Some(f) = &c.fhir {
        return Ok(match parse_url(&f.base_url) {
            Some(e) => tcp_probe(&e.host, e.port, timeout).await,
            None => Probe {
                reachable: false,
                reason: "InvalidURL",
                message: format!("spec.connector.fhir.baseUrl {} is not a URL", f.base_url),
            },
        });
    }
    if c.hl7v2.is_some() {
        let ns = ds.namespace().unwrap_or_default();
        let name = crate::render::data_source::source_child_name(&ds.name_any());
        let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
        let ready = api
            .get_opt(&name)
            .await
            .map_err(|e| Error::kube("get", format!("Deployment {ns}/{name}"), e))?
            .and_then(|d| d.status)
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0);
        return Ok(Probe {
            reachable: ready > 0,
            reason: if ready > 0 {
                "ListenerReady"
            } else {
                "ListenerNotReady"
            },
            message: format!("{ready} listener replicas ready"),
        });
    }
    if let Some(f) = &c.files {
        let ok = tier_exists(&f.location.tier);
        return Ok(Probe {
            reachable: ok,
            reason: if ok { "TierFound" } else { "TierNotFound" },
            message: format!(
                "files in StorageTier {} at {}",
                f.location.tier, f.location.path
            ),
        });
    }
    Ok(Probe {
        reachable: false,
        reason: "NoConnector",
        message: "spec.connector sets no connector".into(),
    })
}

/// When a pipeline last read this source successfully, and how many records that run read
/// (counted only when the pipeline reads this source alone, so the figure is this source's).
fn last_successful_read(
    ctx: &Context,
    ns: &str,
    name: &str,
) -> (
    Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    Option<i64>,
) {
    use crate::api::pipeline::RunResult;
    let mut best: Option<(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
        Option<i64>,
    )> = None;
    let readers = ctx
        .parents
        .pipelines_by_source
        .lookup(&super::triggers::source_key(ns, name));
    for (_, pipeline) in readers {
        let Some(g) = ctx
            .parents
            .pipelines
            .get(&ObjectRef::new(&pipeline).within(ns))
        else {
            continue;
        };
        let Ok(p) = &g.0 else { continue };
        // The index may run a step ahead of or behind the cache: ask the cached spec.
        if !p.spec.sources.iter().any(|s| s == name) {
            continue;
        }
        let Some(run) = p.status.as_ref().and_then(|s| s.last_run.as_ref()) else {
            continue;
        };
        if run.result != Some(RunResult::Succeeded) {
            continue;
        }
        let Some(done) = run.completion_time.clone() else {
            continue;
        };
        let records = (p.spec.sources.len() == 1)
            .then_some(run.records_in)
            .flatten();
        if best.as_ref().is_none_or(|(t, _)| done.0 > t.0) {
            best = Some((done, records));
        }
    }
    match best {
        Some((t, r)) => (Some(t), r),
        None => (None, None),
    }
}

/// Reconciles one DataSource.
pub async fn reconcile(
    guard: Arc<DeserializeGuard<DataSource>>,
    ctx: Arc<Context>,
) -> Result<Action> {
    let ds = match &guard.0 {
        Ok(d) => d,
        Err(invalid) => {
            report_invalid::<DataSource>(&ctx, invalid, FIELD_MANAGER).await?;
            return Ok(Action::requeue(ctx.settings.resync));
        }
    };
    let name = ds.name_any();
    let ns = ds.namespace().ok_or_else(|| Error::MissingMetadata {
        object: format!("DataSource {name}"),
        what: "namespace",
    })?;
    let uid = ds.uid().ok_or_else(|| Error::MissingMetadata {
        object: format!("DataSource {ns}/{name}"),
        what: "uid",
    })?;
    let reference: ObjectReference = ds.object_ref(&());

    // dereference
    let tier = |t: &str| -> Option<StorageTier> {
        ctx.parents
            .tiers
            .get(&ObjectRef::new(t))
            .and_then(|g| g.0.as_ref().ok().cloned())
    };
    let mut problems = Vec::new();
    if let Some(cred) = &ds.spec.credentials {
        let found = ctx
            .secrets
            .exists(&ctx.client, &ns, &cred.secret_name)
            .await
            .map_err(|e| Error::kube("get", format!("Secret {ns}/{}", cred.secret_name), e))?;
        if !found {
            problems.push((
                "SecretNotFound",
                format!(
                    "Secret {ns}/{} (spec.credentials.secretName) does not exist",
                    cred.secret_name
                ),
            ));
        }
    }
    let landing = ds
        .spec
        .connector
        .hl7v2
        .as_ref()
        .map(|h| h.landing.tier.clone());
    let mut landing_claim = None;
    if let Some(t) = &landing {
        match tier(t) {
            Some(tier) => {
                landing_claim = render_tier_claim(&tier, &ns).map_err(|source| Error::Render {
                    object: format!("DataSource {ns}/{name}"),
                    source,
                })?;
            }
            None => problems.push((
                "TierNotFound",
                format!("StorageTier {t} (spec.connector.hl7v2.landing.tier) does not exist"),
            )),
        }
    }
    if let Some(f) = &ds.spec.connector.files
        && tier(&f.location.tier).is_none()
    {
        problems.push((
            "TierNotFound",
            format!(
                "StorageTier {} (spec.connector.files.location.tier) does not exist",
                f.location.tier
            ),
        ));
    }

    // build + apply
    let rendered = render_data_source_children(ds, &ctx.settings.workload).map_err(|source| {
        Error::Render {
            object: format!("DataSource {ns}/{name}"),
            source,
        }
    })?;
    if let Some(claim) = &landing_claim {
        ctx.applier(CLAIM_FIELD_MANAGER)
            .ensure_exists(claim)
            .await?;
    }
    let outcome_apply = ctx
        .applier(FIELD_MANAGER)
        .apply(&uid, rendered.children, PRUNE)
        .await?;
    if !outcome_apply.applied.is_empty() {
        tracing::info!(datasource = %format!("{ns}/{name}"), applied = ?outcome_apply.applied, pruned = ?outcome_apply.pruned, "children applied");
    }

    // probe
    let probe = probe(&ctx, ds, |t| tier(t).is_some()).await?;
    ctx.metrics
        .datasource_reachable
        .with_label_values(&[&ns, &name])
        .set(if probe.reachable { 1.0 } else { 0.0 });

    // status
    let outcome = match problems.first() {
        Some((reason, message)) => Outcome::stalled(reason, message.clone()),
        None => Outcome::ready("Reconciled", "children applied"),
    };
    let mut extra = vec![(
        REACHABLE.to_string(),
        probe.reachable,
        probe.reason.to_string(),
        probe.message.clone(),
    )];
    extra.push(match &rendered.egress_limit {
        Some(msg) => (
            "EgressPinned".into(),
            false,
            "DNSHostWithoutCIDR".into(),
            msg.clone(),
        ),
        None => (
            "EgressPinned".into(),
            true,
            "Pinned".into(),
            "egress is limited to the source's address and port".into(),
        ),
    });
    let seen = ctx.statuses.current(ds, ds.status.as_ref());
    let current = seen.clone().unwrap_or_default();
    let (last_sync, records_seen) = last_successful_read(&ctx, &ns, &name);
    let status = DataSourceStatus {
        observed_generation: ds.metadata.generation,
        conditions: conditions_for(&current.conditions, ds.metadata.generation, &outcome, extra),
        connector: Some(ds.spec.connector.kind().to_string()),
        level: Some(source_level(&ds.spec).to_string()),
        last_sync: last_sync.or(current.last_sync.clone()),
        records_seen: records_seen.or(current.records_seen),
    };
    match &outcome {
        Outcome::Stalled { reason, message } => {
            ctx.event(
                &reference,
                EventType::Warning,
                reason,
                "Reconcile",
                message.clone(),
            )
            .await;
        }
        _ if !probe.reachable && ds.spec.connector.files.is_none() => {
            ctx.event(
                &reference,
                EventType::Warning,
                "Unreachable",
                "Probe",
                probe.message.clone(),
            )
            .await;
        }
        _ => ctx.clear_event(&reference),
    }
    let api: Api<DataSource> = Api::namespaced(ctx.client.clone(), &ns);
    ctx.statuses
        .write_if_changed(&api, ds, FIELD_MANAGER, seen.as_ref(), &status)
        .await?;
    // Secrets are not watched (least privilege), so a missing one is re-checked soon.
    Ok(Action::requeue(if problems.is_empty() {
        ctx.settings.resync
    } else {
        ctx.settings.resync.min(Duration::from_secs(30))
    }))
}
