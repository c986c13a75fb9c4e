//! Offline validation of a set of manifests, as a GitOps repository holds them: every medplat
//! object against its CRD schema and CEL rules, then the policy engine across the set.
//!
//! Pure over loaded objects; `medplat check` (in `cli/check.rs`) does the reading and printing.

use std::collections::BTreeMap;
use std::path::PathBuf;

use jiff::Timestamp;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::Serialize;
use serde_json::Value;

use crate::api::worker_resources::{INVALID_RESOURCES, WorkerSizing};
use crate::api::{self, AccessPolicy, DataSource, Pipeline, Platform, StorageTier};
use crate::manifests::LoadedObject;
use crate::policy::placement::{audit_tier_problem, source_placement};
use crate::policy::{Enforcement, NamedPolicy, PipelineContext, evaluate_pipeline};

/// How serious a problem is.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Reported, does not fail the check (Warn/Audit-mode policy findings).
    Warning,
    /// Fails the check.
    Error,
}

/// One problem found in the manifests.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The file and document, `path:N`.
    pub file: String,
    /// The object, `Kind/namespace/name`.
    pub object: String,
    /// The field path inside the object, e.g. `spec.sink.tier`.
    pub field: String,
    /// A stable CamelCase reason.
    pub reason: String,
    /// What is wrong.
    pub message: String,
    /// Error or warning.
    pub severity: Severity,
}

/// The result of checking a set of manifests.
#[derive(Serialize, Clone, Debug, Default)]
pub struct Report {
    /// Objects examined.
    pub objects: usize,
    /// Pipelines evaluated by the policy engine.
    pub pipelines: usize,
    /// Everything found, errors first.
    pub problems: Vec<Problem>,
}

impl Report {
    /// Whether any problem fails the check.
    pub fn has_errors(&self) -> bool {
        self.problems.iter().any(|p| p.severity == Severity::Error)
    }
}

/// Validates one object against its CRD with the same admission code kubesim serves: the
/// structural schema (types, enums, formats, ranges, required and unknown fields) and the CEL
/// rules. Returns `(field, message)` per problem.
pub fn validate_against_crd(
    crd: &CustomResourceDefinition,
    object: &Value,
) -> Vec<(String, String)> {
    let crd = match serde_json::to_value(crd) {
        Ok(c) => c,
        Err(e) => return vec![(String::new(), format!("the CRD cannot be read: {e}"))],
    };
    match kubesim::validation::validate_custom_resource(&crd, object, None) {
        // Like `kubectl apply`'s default strict field validation: a field the schema prunes
        // is a mistake (a typo, or an inline secret where a reference belongs).
        Ok(admitted) => {
            let mut unknown = Vec::new();
            pruned_fields(object, &admitted, "", &mut unknown);
            unknown
                .into_iter()
                .map(|path| (path.clone(), format!("unknown field \"{path}\"")))
                .collect()
        }
        Err(errors) => errors
            .into_iter()
            .map(|e| (e.path.clone(), e.message_without_path()))
            .collect(),
    }
}

/// Collects the paths present in `original` but pruned from `admitted`.
fn pruned_fields(original: &Value, admitted: &Value, prefix: &str, out: &mut Vec<String>) {
    match (original, admitted) {
        (Value::Object(o), Value::Object(a)) => {
            for (k, v) in o {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match a.get(k) {
                    Some(av) => pruned_fields(v, av, &path, out),
                    None if !v.is_null() => out.push(path),
                    None => {}
                }
            }
        }
        (Value::Array(o), Value::Array(a)) => {
            for (i, (ov, av)) in o.iter().zip(a).enumerate() {
                pruned_fields(ov, av, &format!("{prefix}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Checks every object: schema and CEL for medplat kinds, then the policy engine.
pub fn check_objects(objects: &[LoadedObject], now: Timestamp) -> Report {
    let crds: BTreeMap<String, CustomResourceDefinition> = api::all_crds()
        .into_iter()
        .map(|c| (c.spec.names.kind.clone(), c))
        .collect();
    let mut report = Report {
        objects: objects.len(),
        ..Report::default()
    };
    let mut world = World::default();

    for obj in objects {
        let group = obj.api_version().split('/').next().unwrap_or_default();
        if group != api::GROUP {
            continue;
        }
        let problem = |field: String, reason: &str, message: String| Problem {
            file: obj.location(),
            object: obj.display_name(),
            field: if field.is_empty() {
                "<root>".into()
            } else {
                field
            },
            reason: reason.into(),
            message,
            severity: Severity::Error,
        };
        if obj.api_version() != api::API_VERSION {
            report.problems.push(problem(
                "apiVersion".into(),
                "UnknownVersion",
                format!(
                    "{} is not served; use {}",
                    obj.api_version(),
                    api::API_VERSION
                ),
            ));
            continue;
        }
        let Some(crd) = crds.get(obj.kind()) else {
            report.problems.push(problem(
                "kind".into(),
                "UnknownKind",
                format!("{} is not a medplat kind", obj.kind()),
            ));
            continue;
        };
        let schema_errors = validate_against_crd(crd, &obj.value);
        if !schema_errors.is_empty() {
            for (field, message) in schema_errors {
                report
                    .problems
                    .push(problem(field, "SchemaInvalid", message));
            }
            continue;
        }
        if let Err(e) = world.add(obj) {
            report.problems.push(problem(String::new(), "Invalid", e));
        }
    }

    report.problems.extend(world.source_problems());
    report.problems.extend(world.platform_problems());
    for (obj, pipeline) in &world.pipelines {
        report.pipelines += 1;
        report
            .problems
            .extend(world.pipeline_problems(obj, pipeline, now));
    }
    report
        .problems
        .sort_by(|a, b| b.severity.cmp(&a.severity).then(a.file.cmp(&b.file)));
    report
}

/// The typed objects of the set, for resolving references.
#[derive(Default)]
struct World {
    tiers: BTreeMap<String, StorageTier>,
    sources: BTreeMap<String, BTreeMap<String, DataSource>>,
    policies: BTreeMap<String, Vec<AccessPolicy>>,
    pipelines: Vec<(LoadedObject, Pipeline)>,
    platforms: Vec<(LoadedObject, Platform)>,
    source_objects: Vec<(LoadedObject, DataSource)>,
}

impl World {
    fn add(&mut self, obj: &LoadedObject) -> Result<(), String> {
        let ns = obj.namespace().unwrap_or("default").to_string();
        match obj.kind() {
            "StorageTier" => {
                self.tiers.insert(obj.name().into(), obj.typed()?);
            }
            "DataSource" => {
                let source: DataSource = obj.typed()?;
                self.source_objects.push((obj.clone(), source.clone()));
                self.sources
                    .entry(ns)
                    .or_default()
                    .insert(obj.name().into(), source);
            }
            "AccessPolicy" => self.policies.entry(ns).or_default().push(obj.typed()?),
            "Pipeline" => {
                let mut p: Pipeline = obj.typed()?;
                p.metadata.namespace = Some(ns);
                self.pipelines.push((obj.clone(), p));
            }
            "Platform" => self.platforms.push((obj.clone(), obj.typed()?)),
            _ => {}
        }
        Ok(())
    }

    /// Where each source's data lands or rests, against the tiers of the set.
    fn source_problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        for (obj, source) in &self.source_objects {
            let tier = |name: &str| self.tiers.get(name).map(|t| &t.spec);
            for p in source_placement(&source.spec, tier) {
                out.push(Problem {
                    file: obj.location(),
                    object: obj.display_name(),
                    field: p.field.into(),
                    reason: p.problem.reason.into(),
                    message: p.problem.message,
                    severity: if p.blocks {
                        Severity::Error
                    } else {
                        Severity::Warning
                    },
                });
            }
        }
        out
    }

    fn platform_problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        for (i, (obj, platform)) in self.platforms.iter().enumerate() {
            let mut problem = |field: &str, reason: &str, message: String| {
                out.push(Problem {
                    file: obj.location(),
                    object: obj.display_name(),
                    field: field.into(),
                    reason: reason.into(),
                    message,
                    severity: Severity::Error,
                })
            };
            if i > 0 {
                problem(
                    "metadata.name",
                    "DuplicatePlatform",
                    "there must be exactly one Platform".into(),
                );
            }
            let audit = &platform.spec.logging.audit_tier;
            match self.tiers.get(audit) {
                None if !self.tiers.is_empty() => problem(
                    "spec.logging.auditTier",
                    "TierNotFound",
                    format!("StorageTier {audit} is not in the manifests"),
                ),
                Some(t) => {
                    if let Some(p) = audit_tier_problem(&platform.spec.logging, audit, &t.spec) {
                        problem("spec.logging.auditTier", p.reason, p.message)
                    }
                }
                None => {}
            }
        }
        out
    }

    fn pipeline_problems(
        &self,
        obj: &LoadedObject,
        pipeline: &Pipeline,
        now: Timestamp,
    ) -> Vec<Problem> {
        let ns = pipeline.metadata.namespace.as_deref().unwrap_or("default");
        let empty = BTreeMap::new();
        let sources: BTreeMap<String, _> = self
            .sources
            .get(ns)
            .unwrap_or(&empty)
            .iter()
            .map(|(n, s)| (n.clone(), s.spec.clone()))
            .collect();
        let tiers: BTreeMap<String, _> = self
            .tiers
            .iter()
            .map(|(n, t)| (n.clone(), t.spec.clone()))
            .collect();
        let policies = self.policies.get(ns).map(Vec::as_slice).unwrap_or_default();
        let named: Vec<NamedPolicy<'_>> = policies
            .iter()
            .map(|p| NamedPolicy {
                namespace: ns,
                name: p.metadata.name.as_deref().unwrap_or_default(),
                spec: &p.spec,
            })
            .collect();
        let sa = pipeline.service_account();
        let ctx = PipelineContext {
            namespace: ns,
            name: obj.name(),
            spec: &pipeline.spec,
            service_account: &sa,
            sources: &sources,
            tiers: &tiers,
            policies: &named,
        };
        let mut problems: Vec<Problem> = evaluate_pipeline(&ctx, now)
            .violations
            .into_iter()
            .map(|v| Problem {
                file: obj.location(),
                object: obj.display_name(),
                field: v.field,
                reason: v.reason.as_str().into(),
                message: v.message,
                severity: if v.enforcement == Enforcement::Block {
                    Severity::Error
                } else {
                    Severity::Warning
                },
            })
            .collect();
        // What the operator would stall the pipeline for, beyond policy.
        if let Err(e) = WorkerSizing::of(pipeline.spec.resources.as_ref()) {
            problems.push(Problem {
                file: obj.location(),
                object: obj.display_name(),
                field: e.field(),
                reason: INVALID_RESOURCES.into(),
                message: e.to_string(),
                severity: Severity::Error,
            });
        }
        problems
    }
}

/// Where a problem came from, for callers that group by file.
pub fn problem_path(p: &Problem) -> PathBuf {
    PathBuf::from(p.file.rsplit_once(':').map(|(f, _)| f).unwrap_or(&p.file))
}
