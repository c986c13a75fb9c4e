//! Resource endpoints: get, list, watch, create, update, patch, delete, deletecollection, and
//! the status, scale, eviction and finalize subresources.
//!
//! Reproduces <https://kubernetes.io/docs/reference/using-api/api-concepts/#api-verbs> with
//! pagination (`#retrieving-large-results-sets-in-chunks`), dry-run (`#dry-run`) and field
//! validation (`#field-validation`).

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Response};
use serde_json::{Value, json};

use super::table::{IncludeObject, table, wants_table};
use super::{Body, Shared, json_response, param};
use crate::convert;
use crate::error::{ApiError, Subject};
use crate::objects::{DeleteOptions, Outcome, PatchKind, Plan, WriteOptions, default_manager};
use crate::registry::ResourceType;
use crate::selectors::{FieldSelector, LabelSelector};

use super::route::ResourcePath;

fn not_found_route() -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
}

/// Decodes a JSON or YAML body.
pub fn decode_body(content_type: &str, bytes: &[u8]) -> Result<Value, ApiError> {
    if content_type.contains("protobuf") {
        return crate::protobuf::decode(bytes).map_err(|e| match e {
            crate::protobuf::ProtoError::Malformed(_) => ApiError::bad_request(e.to_string()),
            crate::protobuf::ProtoError::UnsupportedKind(_) => {
                ApiError::new(415, "UnsupportedMediaType", e.to_string())
            }
        });
    }
    if content_type.contains("cbor") {
        return Err(ApiError::unsupported_media_type(content_type));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "the request body is empty: an object is required",
        ));
    }
    let yaml = content_type.contains("yaml");
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => Ok(v),
        Err(_) if yaml => serde_yaml::from_slice::<Value>(bytes).map_err(|e| {
            ApiError::bad_request(format!("error converting YAML to JSON: yaml: {e}"))
        }),
        Err(e) => Err(ApiError::bad_request(format!(
            "couldn't get version/kind; json parse error: {e}"
        ))),
    }
}

fn write_options(
    shared: &Shared,
    parts: &http::request::Parts,
    query: &[(String, String)],
) -> Result<WriteOptions, ApiError> {
    let ua = parts
        .headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let strict = match param(query, "fieldValidation") {
        None | Some("") | Some("Warn") | Some("Ignore") => false,
        Some("Strict") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "fieldValidation must be one of \"Ignore\", \"Warn\", or \"Strict\", got {other:?}"
            )));
        }
    };
    let dry_run = match param(query, "dryRun") {
        None | Some("") => false,
        Some("All") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unsupported dry run value {other:?}: only \"All\" is supported"
            )));
        }
    };
    let _ = shared;
    Ok(WriteOptions {
        manager: param(query, "fieldManager")
            .map(str::to_string)
            .unwrap_or_else(|| default_manager(ua)),
        dry_run,
        strict,
        force: matches!(param(query, "force"), Some("true" | "1")),
    })
}

/// Plans, runs admission webhooks, commits; replans when a concurrent write won.
async fn write(
    shared: &Arc<Shared>,
    rt: &ResourceType,
    sub: Option<&str>,
    mut plan: impl FnMut() -> Result<Plan, ApiError>,
) -> Result<Outcome, ApiError> {
    for _ in 0..16 {
        let p = plan()?;
        if let Plan::Write { .. } = &p {
            shared.webhooks.admit(shared, rt, sub, &p).await?;
        }
        match shared.objects.commit(rt, p) {
            Ok(o) => return Ok(o),
            Err(crate::objects::CommitFailure::Retry) => continue,
            Err(crate::objects::CommitFailure::Api(e)) => return Err(e),
        }
    }
    Err(ApiError::internal(
        "too many concurrent writes to one object",
    ))
}

fn with_warnings(mut r: Response<Body>, warnings: &[String]) -> Response<Body> {
    for w in warnings {
        if let Ok(v) = HeaderValue::from_str(&format!("299 - {:?}", w)) {
            r.headers_mut().append(http::header::WARNING, v);
        }
    }
    r
}

/// Handles a resource URL.
pub async fn handle(
    shared: &Arc<Shared>,
    parts: &http::request::Parts,
    body: Bytes,
    rp: &ResourcePath,
    query: &[(String, String)],
    accept: &str,
) -> Result<Response<Body>, ApiError> {
    let reg = shared.objects.store().registry();
    let rt = reg
        .get(&rp.group, &rp.version, &rp.resource)
        .ok_or_else(not_found_route)?;
    let srt = if convert::is_identity(&rt) {
        rt.clone()
    } else {
        reg.by_storage(&rt.storage).ok_or_else(not_found_route)?
    };
    if !rt.namespaced && rp.namespace.is_some() {
        return Err(not_found_route());
    }
    let ns = rp.namespace.clone().unwrap_or_default();
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let watching = rp.legacy_watch || matches!(param(query, "watch"), Some("true" | "1"));
    let as_table = wants_table(accept);
    let as_metadata = !as_table && super::table::wants_metadata(accept);
    let include = match param(query, "includeObject") {
        Some("None") => IncludeObject::None,
        Some("Object") => IncludeObject::Object,
        _ => IncludeObject::Metadata,
    };
    let sub = rp.subresource.as_deref();
    match sub {
        None => {}
        Some("status") if rt.status_subresource => {}
        Some("scale") if rt.scale_subresource => {
            return scale(
                shared,
                parts,
                &body,
                &srt,
                &rt,
                &ns,
                rp,
                query,
                &content_type,
            )
            .await;
        }
        Some("eviction")
            if rt.group.is_empty() && rt.plural == "pods" && parts.method == Method::POST =>
        {
            let name = rp.name.clone().unwrap_or_default();
            let eviction = if body.iter().all(u8::is_ascii_whitespace) {
                None
            } else {
                Some(decode_body(&content_type, &body)?)
            };
            return super::admin::evict(shared, &srt, &ns, &name, eviction.as_ref());
        }
        Some("finalize")
            if rt.group.is_empty() && rt.plural == "namespaces" && parts.method == Method::PUT =>
        {
            let name = rp.name.clone().unwrap_or_default();
            let sent = decode_body(&content_type, &body)?;
            let fins = sent
                .pointer("/spec/finalizers")
                .cloned()
                .unwrap_or(json!([]));
            let opts = write_options(shared, parts, query)?;
            let patch = json!({"spec": {"finalizers": fins}});
            let out = write(shared, &srt, None, || {
                shared
                    .objects
                    .plan_patch(&srt, "", &name, PatchKind::Merge, &patch, None, &opts)
            })
            .await?;
            return Ok(json_response(200, &convert::to_served(&rt, &out.object)));
        }
        Some(_) => return Err(not_found_route()),
    }
    let name = rp.name.clone();
    match (&parts.method, name) {
        (&Method::GET, Some(name)) if !watching => {
            let obj = shared
                .objects
                .get(&srt, &ns, &name)
                .map_err(|e| rename_subject(e, &rt, &name))?;
            let served = convert::to_served(&rt, &obj);
            if as_table {
                let rv = served
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                return Ok(json_response(
                    200,
                    &table(&rt, &[served], &rv, None, include),
                ));
            }
            if as_metadata {
                return Ok(json_response(200, &super::table::partial(&served)));
            }
            Ok(json_response(200, &served))
        }
        (&Method::GET, name) => {
            let namespace = (rt.namespaced && !ns.is_empty()).then(|| ns.clone());
            let labels = LabelSelector::parse(param(query, "labelSelector").unwrap_or_default())
                .map_err(|e| ApiError::bad_request(e.0))?;
            let mut field_str = param(query, "fieldSelector")
                .unwrap_or_default()
                .to_string();
            if let Some(n) = &name {
                if !field_str.is_empty() {
                    field_str.push(',');
                }
                field_str.push_str(&format!("metadata.name={n}"));
            }
            let fields = FieldSelector::parse(&field_str, &rt.group, &rt.plural)
                .map_err(|e| ApiError::bad_request(e.0))?;
            if watching {
                super::collection::watch(
                    shared,
                    &rt,
                    namespace,
                    labels,
                    fields,
                    query,
                    as_table.then_some(include),
                    as_metadata,
                )
            } else {
                super::collection::list(
                    shared,
                    &rt,
                    namespace.as_deref(),
                    &labels,
                    &fields,
                    query,
                    as_table,
                    include,
                    as_metadata,
                )
            }
        }
        (&Method::POST, None) => {
            if rt.namespaced && ns.is_empty() {
                return Err(not_found_route());
            }
            let opts = write_options(shared, parts, query)?;
            let obj = convert::to_storage(&rt, decode_body(&content_type, &body)?);
            let out = write(shared, &srt, None, || {
                shared
                    .objects
                    .plan_create(&srt, &ns, obj.clone(), &opts, false)
            })
            .await?;
            let r = json_response(201, &convert::to_served(&rt, &out.object));
            Ok(with_warnings(r, &out.warnings))
        }
        (&Method::PUT, Some(name)) => {
            let opts = write_options(shared, parts, query)?;
            let obj = convert::to_storage(&rt, decode_body(&content_type, &body)?);
            let out = write(shared, &srt, sub, || {
                shared
                    .objects
                    .plan_update(&srt, &ns, &name, obj.clone(), sub, &opts)
            })
            .await
            .map_err(|e| rename_subject(e, &rt, &name))?;
            Ok(with_warnings(
                json_response(200, &convert::to_served(&rt, &out.object)),
                &out.warnings,
            ))
        }
        (&Method::PATCH, Some(name)) => {
            let kind = match content_type.split(';').next().unwrap_or_default().trim() {
                "application/json-patch+json" => PatchKind::Json,
                "application/merge-patch+json" => PatchKind::Merge,
                "application/strategic-merge-patch+json" => PatchKind::Strategic,
                "application/apply-patch+yaml" | "application/apply-patch+cbor" => PatchKind::Apply,
                other => {
                    return Err(ApiError::new(
                        415,
                        "UnsupportedMediaType",
                        format!(
                            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other:?})"
                        ),
                    ));
                }
            };
            let opts = write_options(shared, parts, query)?;
            let mut patch_body = decode_body(
                if kind == PatchKind::Apply {
                    "application/yaml"
                } else {
                    &content_type
                },
                &body,
            )?;
            if kind != PatchKind::Json {
                patch_body = convert::to_storage(&rt, patch_body);
                if kind != PatchKind::Apply
                    && rt.conversion == crate::registry::Conversion::EventsV1
                    && let Some(m) = patch_body.as_object_mut()
                {
                    m.remove("apiVersion");
                    m.remove("kind");
                }
            }
            let out = write(shared, &srt, sub, || {
                shared
                    .objects
                    .plan_patch(&srt, &ns, &name, kind, &patch_body, sub, &opts)
            })
            .await
            .map_err(|e| rename_subject(e, &rt, &name))?;
            let code = if out.created { 201 } else { 200 };
            Ok(with_warnings(
                json_response(code, &convert::to_served(&rt, &out.object)),
                &out.warnings,
            ))
        }
        (&Method::DELETE, Some(name)) => {
            let opts = delete_options(&body, query)?;
            let out = write(shared, &srt, None, || {
                shared.objects.plan_delete(&srt, &ns, &name, &opts)
            })
            .await
            .map_err(|e| rename_subject(e, &rt, &name))?;
            let still_there = out.object.pointer("/metadata/deletionTimestamp").is_some()
                && shared
                    .objects
                    .store()
                    .get(&crate::objects::Objects::key(&srt, &ns, &name))
                    .is_some();
            Ok(json_response(
                if still_there { 202 } else { 200 },
                &convert::to_served(&rt, &out.object),
            ))
        }
        (&Method::DELETE, None) => {
            let opts = delete_options(&body, query)?;
            let labels = LabelSelector::parse(param(query, "labelSelector").unwrap_or_default())
                .map_err(|e| ApiError::bad_request(e.0))?;
            let fields = FieldSelector::parse(
                param(query, "fieldSelector").unwrap_or_default(),
                &rt.group,
                &rt.plural,
            )
            .map_err(|e| ApiError::bad_request(e.0))?;
            let namespace = (rt.namespaced && !ns.is_empty()).then(|| ns.clone());
            let (items, _) = shared
                .objects
                .store()
                .list(&srt.storage, namespace.as_deref(), None);
            let mut deleted = Vec::new();
            for item in items {
                let served = convert::to_served(&rt, &item);
                if !labels.matches_object(&served) || !fields.matches(&served) {
                    continue;
                }
                let iname = item
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let ins = item
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                match write(shared, &srt, None, || {
                    shared.objects.plan_delete(&srt, &ins, &iname, &opts)
                })
                .await
                {
                    Ok(o) => deleted.push(convert::to_served(&rt, &o.object)),
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(json_response(
                200,
                &json!({"kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(), "metadata": {}, "items": deleted}),
            ))
        }
        (m, _) => Err(ApiError::method_not_allowed(m.as_str(), &rt.kind)),
    }
}

/// Errors from storage name the stored resource; rename to what the client asked for.
fn rename_subject(e: ApiError, rt: &ResourceType, name: &str) -> ApiError {
    if e.code == 404 && e.reason == "NotFound" {
        return ApiError::not_found(Subject {
            group: &rt.group,
            resource: &rt.plural,
            name,
        });
    }
    e
}

fn delete_options(body: &[u8], query: &[(String, String)]) -> Result<DeleteOptions, ApiError> {
    let from_body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
    };
    let propagation = param(query, "propagationPolicy")
        .map(str::to_string)
        .or_else(|| from_body["propagationPolicy"].as_str().map(str::to_string))
        .or_else(|| {
            match from_body["orphanDependents"]
                .as_bool()
                .or_else(|| param(query, "orphanDependents").map(|v| v == "true"))
            {
                Some(true) => Some("Orphan".to_string()),
                _ => None,
            }
        });
    let dry_run = param(query, "dryRun") == Some("All")
        || from_body["dryRun"]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == "All"));
    Ok(DeleteOptions {
        propagation,
        uid: from_body
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string),
        resource_version: from_body
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string),
        dry_run,
    })
}

#[allow(clippy::too_many_arguments)]
async fn scale(
    shared: &Arc<Shared>,
    parts: &http::request::Parts,
    body: &[u8],
    srt: &Arc<ResourceType>,
    rt: &Arc<ResourceType>,
    ns: &str,
    rp: &ResourcePath,
    query: &[(String, String)],
    content_type: &str,
) -> Result<Response<Body>, ApiError> {
    let name = rp.name.clone().ok_or_else(not_found_route)?;
    let render = |obj: &Value| {
        let selector = obj
            .pointer("/spec/selector/matchLabels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        let meta = obj.get("metadata").cloned().unwrap_or(json!({}));
        json!({
            "kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"], "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"]},
            "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
            "status": {"replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)), "selector": selector},
        })
    };
    let _ = rt;
    match parts.method {
        Method::GET => Ok(json_response(
            200,
            &render(&*shared.objects.get(srt, ns, &name)?),
        )),
        Method::PUT | Method::PATCH => {
            let sent = decode_body(content_type, body)?;
            let current = shared.objects.get(srt, ns, &name)?;
            let mut scale_obj = render(&current);
            if parts.method == Method::PUT {
                scale_obj = sent;
            } else {
                crate::patch::merge_patch(&mut scale_obj, &sent);
            }
            let replicas = scale_obj
                .pointer("/spec/replicas")
                .cloned()
                .unwrap_or(json!(0));
            let opts = write_options(shared, parts, query)?;
            let patch = json!({"spec": {"replicas": replicas}});
            let out = write(shared, srt, Some("scale"), || {
                shared
                    .objects
                    .plan_patch(srt, ns, &name, PatchKind::Merge, &patch, None, &opts)
            })
            .await?;
            Ok(json_response(200, &render(&out.object)))
        }
        _ => Err(ApiError::method_not_allowed(parts.method.as_str(), "Scale")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // YAML aliases must not blow up into an exponential document (the "billion laughs").
    #[test]
    fn yaml_alias_bombs_are_refused_quickly() {
        let bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]\ni: [*h, *h, *h, *h, *h, *h, *h, *h, *h]\n";
        let result = decode_body("application/yaml", bomb.as_bytes());
        assert!(result.is_err(), "an alias bomb is rejected");
        assert!(decode_body("application/json", b"{\"a\":").is_err());
        assert_eq!(
            decode_body("application/yaml", b"a: 1").ok(),
            Some(json!({"a": 1}))
        );
    }
}
