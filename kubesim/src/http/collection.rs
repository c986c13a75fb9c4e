//! Collection reads: list (with pagination, selectors and Tables) and watch.
//!
//! See <https://kubernetes.io/docs/reference/using-api/api-concepts/#retrieving-large-results-sets-in-chunks>
//! and <https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes>.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use http::Response;
use serde_json::{Value, json};

use super::table::{IncludeObject, table};
use super::watch::{WatchParams, gone_event};
use super::{Body, Shared, json_response, param, stream_response};
use crate::convert;
use crate::error::ApiError;
use crate::registry::ResourceType;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::store::WatchFrom;

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: u64,
    ns: String,
    name: String,
}

#[allow(clippy::too_many_arguments)]
pub(super) fn list(
    shared: &Arc<Shared>,
    rt: &Arc<ResourceType>,
    namespace: Option<&str>,
    labels: &LabelSelector,
    fields: &FieldSelector,
    query: &[(String, String)],
    as_table: bool,
    include: IncludeObject,
    as_metadata: bool,
) -> Result<Response<Body>, ApiError> {
    let limit = match param(query, "limit") {
        None | Some("") => None,
        Some(l) => Some(
            l.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("limit: invalid value {l:?}")))?,
        ),
    }
    .filter(|l| *l > 0)
    .map(|l| l as usize);
    let token = match param(query, "continue") {
        None | Some("") => None,
        Some(c) => Some(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(c)
                .ok()
                .and_then(|b| serde_json::from_slice::<ContinueToken>(&b).ok())
                .ok_or_else(|| {
                    ApiError::bad_request("continue key is not valid: illegal base64 data")
                })?,
        ),
    };
    if let Some(rv) = param(query, "resourceVersion").filter(|v| !v.is_empty())
        && rv.parse::<u64>().is_err()
    {
        return Err(ApiError::new(
            400,
            "BadRequest",
            format!(
                "resourceVersion: Invalid value: {rv:?}: strconv.ParseUint: parsing {rv:?}: invalid syntax"
            ),
        ));
    }
    let after = token.as_ref().map(|t| (t.ns.clone(), t.name.clone()));
    let (items, now_rv) = shared
        .objects
        .store()
        .list(&rt.storage, namespace, after.as_ref());
    let list_rv = token.as_ref().map(|t| t.rv).unwrap_or(now_rv);
    let identity = convert::is_identity(rt);
    let mut out: Vec<std::borrow::Cow<'_, Value>> = Vec::new();
    let mut next = None;
    let mut remaining = 0usize;
    for item in &items {
        let served = if identity {
            std::borrow::Cow::Borrowed(item.as_ref())
        } else {
            std::borrow::Cow::Owned(convert::to_served(rt, item))
        };
        if !labels.matches_object(&served) || !fields.matches(&served) {
            continue;
        }
        if let Some(l) = limit
            && out.len() >= l
        {
            remaining += 1;
            continue;
        }
        out.push(served);
    }
    if remaining > 0
        && let Some(last) = out.last()
    {
        let t = ContinueToken {
            rv: list_rv,
            ns: last
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            name: last
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        };
        next = Some(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(serde_json::to_vec(&t).unwrap_or_default()),
        );
    }
    let rv = list_rv.to_string();
    if as_table {
        let owned: Vec<Value> = out.iter().map(|v| v.clone().into_owned()).collect();
        return Ok(json_response(
            200,
            &table(rt, &owned, &rv, next.as_deref(), include),
        ));
    }
    if as_metadata {
        let items: Vec<Value> = out.iter().map(|o| super::table::partial(o)).collect();
        let mut meta = json!({"resourceVersion": rv});
        if let Some(n) = next {
            meta["continue"] = json!(n);
        }
        return Ok(json_response(
            200,
            &json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "items": items}),
        ));
    }
    let mut meta = json!({"resourceVersion": rv});
    if let Some(n) = next {
        meta["continue"] = json!(n);
        meta["remainingItemCount"] = json!(remaining);
    }
    // Serialised by hand so the items (often thousands) are written without another copy.
    let head = json!({"kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(), "metadata": meta});
    let mut bytes = serde_json::to_vec(&head).unwrap_or_default();
    bytes.pop();
    bytes.extend_from_slice(b",\"items\":[");
    for (i, item) in out.iter().enumerate() {
        if i > 0 {
            bytes.push(b',');
        }
        let _ = serde_json::to_writer(&mut bytes, item.as_ref());
    }
    bytes.extend_from_slice(b"]}");
    Ok(super::bytes_response(200, bytes))
}

#[allow(clippy::too_many_arguments)]
pub(super) fn watch(
    shared: &Arc<Shared>,
    rt: &Arc<ResourceType>,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    query: &[(String, String)],
    table: Option<IncludeObject>,
    metadata_only: bool,
) -> Result<Response<Body>, ApiError> {
    let send_initial = param(query, "sendInitialEvents") == Some("true");
    let bookmarks = param(query, "allowWatchBookmarks") == Some("true");
    if send_initial && !bookmarks {
        return Err(ApiError::invalid(
            "",
            "ListOptions",
            "",
            &[crate::validation::FieldError::new(
                "sendInitialEvents",
                crate::validation::FieldErrorKind::Forbidden,
                None,
                "sendInitialEvents is forbidden for watch unless allowWatchBookmarks=true",
            )],
        ));
    }
    let from = match param(query, "resourceVersion").unwrap_or_default() {
        "" | "0" => WatchFrom::CurrentState,
        _ if send_initial => WatchFrom::CurrentState,
        rv => WatchFrom::After(rv.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!("resourceVersion: Invalid value: {rv:?}: strconv.ParseUint: parsing {rv:?}: invalid syntax"))
        })?),
    };
    let timeout = param(query, "timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .filter(|t| *t > 0)
        .map(Duration::from_secs);
    let params = WatchParams {
        rt: rt.clone(),
        namespace,
        labels,
        fields,
        bookmarks,
        initial_events_end: send_initial,
        timeout,
        table,
        metadata_only,
    };
    match shared.objects.store().watch(&rt.storage, from) {
        Ok(start) => Ok(stream_response(super::watch::stream(
            shared.clone(),
            params,
            start,
        ))),
        Err(too_old) => Ok(stream_response(futures::stream::iter(vec![gone_event(
            &too_old.to_string(),
        )]))),
    }
}
