//! The desired children of a Pipeline: ServiceAccount, the resolved-pipeline ConfigMap the
//! worker reads, a CronJob (scheduled) or a Job (on demand), and a default-deny NetworkPolicy.
//!
//! Pure: from the Pipeline, the policy decision and the dereferenced sources and tiers.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    ObjectFieldSelector, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec,
    SecretVolumeSource, ServiceAccount, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::common::{
    AUDIT, Child, DOMAIN, LEVEL, Owner, PIPELINE, RenderError, SERVICE_ACCOUNT, child_name,
    hardened_affinity, short_hash, source_label, truncate_label,
};
use super::network::{dns_egress, endpoint_egress};
use super::pod_security::{restricted_container_security_context, restricted_pod_security_context};
use super::settings::{WorkloadSettings, resources};
use super::tier_claim::tier_claim_name;
use crate::api::pipeline::Pipeline;
#[cfg(doc)]
use crate::api::resolved::Mounts;
use crate::api::resolved::{ResolvedPipeline, TierLocation};
use crate::api::worker_resources::WorkerSizing;
use crate::policy::PipelineDecision;

/// Where the resolved-pipeline document is mounted in worker pods. Secrets and tiers are
/// mounted where [`Mounts::in_cluster`] says, outside this directory: nothing may mount inside
/// a ConfigMap volume.
pub const CONFIG_DIR: &str = "/etc/medplat/config";
/// The file name of the resolved-pipeline document in its ConfigMap.
pub const CONFIG_FILE: &str = "pipeline.json";
/// Where each volume tier is mounted, as `<dir>/<tier-name>` (see [`Mounts::in_cluster`]).
pub const TIERS_DIR: &str = "/data/tiers";
/// Job TTL: finished runs stay a week for inspection, then are garbage collected.
const JOB_TTL_SECONDS: i32 = 7 * 24 * 3600;

/// What the pipeline renderer needs besides the Pipeline itself.
#[derive(Clone, Debug)]
pub struct PipelineRenderInput<'a> {
    /// The Pipeline, with its metadata (name, namespace, uid).
    pub pipeline: &'a Pipeline,
    /// The policy decision for it.
    pub decision: &'a PipelineDecision,
    /// The resolved-pipeline document the worker reads, with where every tier and Secret is
    /// mounted; `None` when a reference is missing (then nothing can run).
    pub resolved: Option<&'a ResolvedPipeline>,
    /// Images and pull policy.
    pub settings: &'a WorkloadSettings,
    /// Whether the pipeline may run now: the policy engine allows it and everything it needs
    /// (every Secret) exists. When false there is no Job and a CronJob is suspended.
    pub may_run: bool,
    /// Whether a CronJob for this pipeline exists now (it is suspended, not deleted, while the
    /// pipeline is non-compliant).
    pub cronjob_exists: bool,
    /// A run request (the `medplat.io/run-requested-at` value) not yet turned into a Job.
    pub pending_run_request: Option<&'a str>,
}

/// The name of the pipeline's ConfigMap, CronJob and NetworkPolicy.
pub fn pipeline_child_name(pipeline: &str) -> String {
    child_name("medplat-pipeline", pipeline, 52)
}

/// The Job name for one run request: the same request always gives the same name, so a Job is
/// never created twice for it.
pub fn run_job_name(pipeline: &str, request: &str) -> String {
    format!(
        "{}-{}",
        child_name("medplat-run", pipeline, 54),
        short_hash(request)
    )
}

/// Renders the desired children. The Job, when present, is created once and never pruned.
pub fn render_pipeline_children(
    input: &PipelineRenderInput<'_>,
) -> Result<Vec<Child>, RenderError> {
    let p = input.pipeline;
    let name = p
        .metadata
        .name
        .clone()
        .ok_or_else(|| RenderError::Missing("the Pipeline has no name".into()))?;
    let owner = Owner {
        api_version: crate::api::API_VERSION.into(),
        kind: "Pipeline".into(),
        name: name.clone(),
        namespace: p.metadata.namespace.clone(),
        uid: p.metadata.uid.clone().unwrap_or_default(),
    };
    let child = pipeline_child_name(&name);
    let mut out = Vec::new();

    if p.spec.service_account_name.is_none() {
        let sa = ServiceAccount {
            metadata: owner.child_meta(&p.service_account(), "pipeline"),
            automount_service_account_token: Some(false),
            ..ServiceAccount::default()
        };
        out.push(Child::from_typed(&sa)?);
    }

    out.push(Child::from_typed(&render_network_policy(
        input, &owner, &child,
    ))?);
    let Some(resolved) = input.resolved else {
        return Ok(out);
    };
    let cm = ConfigMap {
        metadata: owner.child_meta(&child, "pipeline"),
        data: Some(BTreeMap::from([(
            CONFIG_FILE.to_string(),
            resolved.to_json(),
        )])),
        ..ConfigMap::default()
    };
    out.push(Child::from_typed(&cm)?);

    let allowed = input.may_run;
    let template = render_pod_template(input, resolved, &owner, &child)?;
    let job_spec = |suffix_labels: BTreeMap<String, String>| {
        let mut t = template.clone();
        if let Some(meta) = t.metadata.as_mut() {
            meta.labels
                .get_or_insert_with(BTreeMap::new)
                .extend(suffix_labels);
        }
        let parallel = i32::try_from(p.spec.parallelism).unwrap_or(1);
        JobSpec {
            backoff_limit: Some(i32::try_from(p.spec.backoff_limit).unwrap_or(2)),
            completions: Some(parallel),
            parallelism: Some(parallel),
            completion_mode: Some(
                if parallel > 1 {
                    "Indexed"
                } else {
                    "NonIndexed"
                }
                .into(),
            ),
            ttl_seconds_after_finished: Some(JOB_TTL_SECONDS),
            template: t,
            ..JobSpec::default()
        }
    };

    if let Some(schedule) = &p.spec.schedule
        && (allowed || input.cronjob_exists)
    {
        let cj = CronJob {
            metadata: owner.child_meta(&child, "pipeline"),
            spec: Some(CronJobSpec {
                schedule: schedule.clone(),
                suspend: Some(p.spec.suspend || !allowed),
                concurrency_policy: Some("Forbid".into()),
                successful_jobs_history_limit: Some(3),
                failed_jobs_history_limit: Some(3),
                job_template: JobTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(owner.labels("pipeline-run")),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(job_spec(BTreeMap::new())),
                },
                ..CronJobSpec::default()
            }),
            ..CronJob::default()
        };
        out.push(Child::from_typed(&cj)?);
    }

    if allowed
        && p.spec.schedule.is_none()
        && let Some(request) = input.pending_run_request
    {
        let job_name = run_job_name(&name, request);
        let mut meta = owner.child_meta(&job_name, "pipeline-run");
        meta.annotations = Some(BTreeMap::from([(
            crate::api::pipeline::RUN_REQUESTED_AT.to_string(),
            request.to_string(),
        )]));
        let job = Job {
            metadata: meta,
            spec: Some(job_spec(BTreeMap::from([(
                "medplat.io/run".to_string(),
                short_hash(request),
            )]))),
            ..Job::default()
        };
        out.push(Child::from_typed(&job)?);
    }
    Ok(out)
}

fn render_pod_template(
    input: &PipelineRenderInput<'_>,
    resolved: &ResolvedPipeline,
    owner: &Owner,
    config_map: &str,
) -> Result<PodTemplateSpec, RenderError> {
    let p = input.pipeline;
    // Sizing the reconciler refused stalls the pipeline (it may not run), so the suspended
    // CronJob it keeps meanwhile carries the defaults.
    let sizing = WorkerSizing::of(p.spec.resources.as_ref()).unwrap_or_default();
    let level = input.decision.processing_level();
    let mut labels = owner.labels("pipeline-run");
    labels.insert(PIPELINE.into(), truncate_label(&owner.name));
    labels.insert(LEVEL.into(), level.to_string());
    labels.insert(DOMAIN.into(), truncate_label(&input.decision.output.domain));
    labels.insert(SERVICE_ACCOUNT.into(), truncate_label(&p.service_account()));
    for s in &p.spec.sources {
        labels.insert(source_label(s), "read".into());
    }

    let mut volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_map.into(),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ];
    let mut mounts = vec![
        VolumeMount {
            name: "config".into(),
            mount_path: CONFIG_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..VolumeMount::default()
        },
    ];
    for (i, (secret, mount)) in resolved.secrets.iter().enumerate() {
        let vol = format!("secret-{i}");
        volumes.push(Volume {
            name: vol.clone(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.clone()),
                default_mode: Some(0o400),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: vol,
            mount_path: mount.path.clone(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    let volume_tiers = resolved
        .tiers
        .iter()
        .filter_map(|(name, t)| match &t.location {
            TierLocation::Volume { path } => Some((name, path)),
            TierLocation::ObjectStore { .. } => None,
        });
    for (i, (tier, path)) in volume_tiers.enumerate() {
        let vol = format!("tier-{i}");
        volumes.push(Volume {
            name: vol.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: tier_claim_name(tier),
                read_only: Some(false),
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: vol,
            mount_path: path.clone(),
            ..VolumeMount::default()
        });
    }

    let container = Container {
        name: "worker".into(),
        image: Some(input.settings.image.clone()),
        image_pull_policy: Some(input.settings.image_pull_policy.clone()),
        args: Some(vec![
            "worker".into(),
            "run".into(),
            "--config".into(),
            format!("{CONFIG_DIR}/{CONFIG_FILE}"),
        ]),
        env: Some(vec![EnvVar {
            name: "MEDPLAT_POD_NAME".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".into(),
                    api_version: None,
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        }]),
        resources: Some(resources(
            &sizing.cpu_request,
            &sizing.memory_request,
            &sizing.cpu_limit,
            &sizing.memory_limit,
        )),
        security_context: Some(restricted_container_security_context()),
        volume_mounts: Some(mounts),
        termination_message_policy: Some("File".into()),
        ..Container::default()
    };

    let affinity = level.is_sensitive().then(hardened_affinity);

    Ok(PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            annotations: Some(BTreeMap::from([
                (AUDIT.to_string(), "true".to_string()),
                ("medplat.io/purpose".to_string(), p.spec.purpose.to_string()),
                (
                    "medplat.io/output-level".to_string(),
                    input.decision.output.level.to_string(),
                ),
            ])),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            service_account_name: Some(p.service_account()),
            automount_service_account_token: Some(false),
            restart_policy: Some("Never".into()),
            security_context: Some(restricted_pod_security_context()),
            affinity,
            containers: vec![container],
            volumes: Some(volumes),
            enable_service_links: Some(false),
            ..PodSpec::default()
        }),
    })
}

fn render_network_policy(
    input: &PipelineRenderInput<'_>,
    owner: &Owner,
    name: &str,
) -> NetworkPolicy {
    let mut egress: Vec<NetworkPolicyEgressRule> = vec![dns_egress()];
    for tier in input.resolved.iter().flat_map(|r| r.tiers.values()) {
        if let TierLocation::ObjectStore { endpoint, .. } = &tier.location
            && let Some(rule) = endpoint_egress(endpoint, None)
        {
            egress.push(rule);
        }
    }
    NetworkPolicy {
        metadata: owner.child_meta(name, "pipeline"),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    PIPELINE.to_string(),
                    truncate_label(&owner.name),
                )])),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(vec![]),
            egress: Some(egress),
        }),
    }
}
