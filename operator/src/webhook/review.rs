//! The admission decision as a pure function: an AdmissionReview in, an AdmissionResponse out,
//! reading the other objects only through a [`Catalog`]. The HTTPS server is a thin shell
//! around [`review_body`].

use jiff::Timestamp;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::response::Status;
use serde::de::DeserializeOwned;

use super::catalog::Catalog;
use super::findings::Findings;
use super::pipeline::pipeline_findings;
use super::references::{
    access_policy_findings, data_source_findings, platform_findings, storage_tier_findings,
};
use crate::api::{self, AccessPolicy, DataSource, Pipeline, Platform, StorageTier};

/// At most this many warnings are returned; the API server truncates long lists anyway.
const MAX_WARNINGS: usize = 20;

/// Decides an AdmissionReview body. A body that is not an AdmissionReview is answered with an
/// invalid response, never a panic.
pub fn review_body(
    body: &[u8],
    catalog: &dyn Catalog,
    now: Timestamp,
) -> AdmissionReview<DynamicObject> {
    let parsed: Result<AdmissionReview<DynamicObject>, _> = serde_json::from_slice(body);
    let request: Result<AdmissionRequest<DynamicObject>, String> = match parsed {
        Ok(review) => review
            .try_into()
            .map_err(|_| "the AdmissionReview carries no request".to_string()),
        Err(e) => Err(format!("the request body is not an AdmissionReview: {e}")),
    };
    match request {
        Ok(req) => review(&req, catalog, now).into_review(),
        Err(message) => AdmissionResponse::invalid(message).into_review(),
    }
}

/// Decides one admission request.
pub fn review(
    request: &AdmissionRequest<DynamicObject>,
    catalog: &dyn Catalog,
    now: Timestamp,
) -> AdmissionResponse {
    let allowed = AdmissionResponse::from(request);
    if request.kind.group != api::GROUP
        || !matches!(request.operation, Operation::Create | Operation::Update)
        || request.sub_resource.is_some()
    {
        return allowed;
    }
    let judged = match request.kind.kind.as_str() {
        "Pipeline" => judge::<Pipeline, _>(request, |new, old| {
            pipeline_findings(new, old, catalog, now)
        }),
        "DataSource" => judge::<DataSource, _>(request, |new, old| {
            data_source_findings(new, old, catalog, now)
        }),
        "AccessPolicy" => judge::<AccessPolicy, _>(request, |new, old| {
            access_policy_findings(new, old, catalog, now)
        }),
        "StorageTier" => judge::<StorageTier, _>(request, |new, old| {
            storage_tier_findings(new, old, catalog, now)
        }),
        "Platform" => judge::<Platform, _>(request, |new, _| platform_findings(new, catalog)),
        _ => return allowed,
    };
    match judged {
        Ok(findings) => respond(allowed, request, &findings),
        Err(message) => refuse(allowed, message, 400, "BadRequest"),
    }
}

/// `Kind namespace/name` of the reviewed object.
fn display(request: &AdmissionRequest<DynamicObject>) -> String {
    match request.namespace.as_deref().filter(|n| !n.is_empty()) {
        Some(ns) => format!("{} {ns}/{}", request.kind.kind, request.name),
        None => format!("{} {}", request.kind.kind, request.name),
    }
}

/// Reads the object (and the stored one on update) as `K` and applies `f`.
fn judge<K, F>(request: &AdmissionRequest<DynamicObject>, f: F) -> Result<Findings, String>
where
    K: kube::Resource + DeserializeOwned,
    F: FnOnce(&K, Option<&K>) -> Findings,
{
    let what = display(request);
    let object = request
        .object
        .as_ref()
        .ok_or_else(|| format!("the review of {what} carries no object"))?;
    let new: K = typed(object, request.namespace.as_deref())
        .map_err(|e| format!("{what} cannot be read: {e}"))?;
    // A stored object that no longer reads (written before a schema change) is no reason to
    // refuse the update that fixes it.
    let old: Option<K> = request
        .old_object
        .as_ref()
        .and_then(|o| typed(o, request.namespace.as_deref()).ok());
    Ok(f(&new, old.as_ref()))
}

/// Converts a dynamic object to its typed form, with the request's namespace when the object
/// itself does not carry one. Errors name the offending field path.
fn typed<K: kube::Resource + DeserializeOwned>(
    object: &DynamicObject,
    namespace: Option<&str>,
) -> Result<K, String> {
    let mut value = serde_json::to_value(object).map_err(|e| e.to_string())?;
    if let Some(ns) = namespace.filter(|n| !n.is_empty())
        && value.pointer("/metadata/namespace").is_none()
        && let Some(meta) = value.get_mut("metadata").and_then(|m| m.as_object_mut())
    {
        meta.insert("namespace".into(), ns.into());
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        format!("{path}: {}", e.into_inner())
    })
}

fn refuse(
    mut response: AdmissionResponse,
    message: String,
    code: u16,
    reason: &str,
) -> AdmissionResponse {
    response.allowed = false;
    response.result = Status::failure(&message, reason).with_code(code);
    response
}

fn respond(
    mut response: AdmissionResponse,
    request: &AdmissionRequest<DynamicObject>,
    findings: &Findings,
) -> AdmissionResponse {
    if !findings.warnings.is_empty() {
        let mut warnings: Vec<String> = findings
            .warnings
            .iter()
            .take(MAX_WARNINGS)
            .map(ToString::to_string)
            .collect();
        if findings.warnings.len() > MAX_WARNINGS {
            warnings.push(format!(
                "… and {} more warnings",
                findings.warnings.len() - MAX_WARNINGS
            ));
        }
        response.warnings = Some(warnings);
    }
    if findings.denials.is_empty() {
        return response;
    }
    let reasons: Vec<String> = findings.denials.iter().map(ToString::to_string).collect();
    let message = format!(
        "{} is not compliant: {}",
        display(request),
        reasons.join("; ")
    );
    refuse(response, message, 403, "Forbidden")
}
