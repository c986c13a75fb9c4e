//! The HTTP front: authentication, fault injection, routing, request logging.
//!
//! Handlers are thin: they decode the request, call [`crate::objects::Objects`], and encode
//! the answer. Nothing here panics on any input; every failure becomes a `Status`.

pub mod admin;
pub mod collection;
pub mod discovery;
pub mod openapi;
pub mod resources;
pub mod route;
pub mod table;
pub mod watch;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::Value;

use crate::error::ApiError;
use crate::faults::Faults;
use crate::objects::Objects;
use crate::request_log::{RequestLog, RequestRecord};
use crate::webhooks::Webhooks;

/// The response body type: whole JSON documents or a watch stream.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// State every request handler shares.
#[derive(Debug)]
pub struct Shared {
    /// Object semantics and the store.
    pub objects: Objects,
    /// Fault injection.
    pub faults: Faults,
    /// The request log.
    pub log: RequestLog,
    /// Bearer token required on every request, when set.
    pub token: Option<String>,
    /// How often watches with `allowWatchBookmarks` get a bookmark.
    pub bookmark_interval: Duration,
    /// Largest accepted request body (bytes); the real server's limit is 3 MiB.
    pub max_body: usize,
    /// `host:port` reported by `/api`.
    pub server_address: String,
    /// Admission webhook caller.
    pub webhooks: Webhooks,
    /// Asks the server to drop every connection (restart).
    pub restart: tokio::sync::watch::Sender<u64>,
}

/// A JSON response.
pub fn json_response(code: u16, v: &Value) -> Response<Body> {
    json_response_typed(code, v, "application/json")
}

/// A JSON response with a specific content type.
pub fn json_response_typed(code: u16, v: &Value, content_type: &str) -> Response<Body> {
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(bytes)).boxed_unsync());
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(ct) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    r
}

/// A JSON response from already-serialised bytes.
pub fn bytes_response(code: u16, bytes: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(bytes)).boxed_unsync());
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A `Status` error response.
pub fn error_response(e: &ApiError) -> Response<Body> {
    let mut r = json_response(e.code, &e.to_status());
    if e.code == 429
        && let Ok(v) = HeaderValue::from_str("1")
    {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// A streaming response of newline-delimited JSON.
pub fn stream_response(s: impl futures::Stream<Item = Bytes> + Send + 'static) -> Response<Body> {
    let body = StreamBody::new(s.map(|b| Ok::<_, Infallible>(Frame::data(b))));
    let mut r = Response::new(BodyExt::boxed_unsync(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        header::TRANSFER_ENCODING,
        HeaderValue::from_static("chunked"),
    );
    r
}

/// Parsed query string (last value wins, as Go's `url.Values.Get` takes the first; duplicates are rare).
pub fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                route::percent_decode(&k.replace('+', " ")),
                route::percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

/// Looks up a query parameter.
pub fn param<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// What the request log and fault rules need to know before dispatch.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    /// Kubernetes verb.
    pub verb: String,
    /// API group.
    pub group: String,
    /// Plural resource.
    pub resource: String,
    /// Subresource.
    pub subresource: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

fn request_info(
    method: &http::Method,
    route: &route::Route,
    query: &[(String, String)],
) -> RequestInfo {
    let route::Route::Resource(rp) = route else {
        return RequestInfo {
            verb: method.as_str().to_lowercase(),
            ..RequestInfo::default()
        };
    };
    let watching = rp.legacy_watch || matches!(param(query, "watch"), Some("true" | "1"));
    let verb = match (method.as_str(), rp.name.is_some()) {
        ("GET", true) if watching => "watch",
        ("GET", true) => "get",
        ("GET", false) if watching => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        (m, _) => {
            return RequestInfo {
                verb: m.to_lowercase(),
                group: rp.group.clone(),
                resource: rp.resource.clone(),
                ..RequestInfo::default()
            };
        }
    };
    RequestInfo {
        verb: verb.to_string(),
        group: rp.group.clone(),
        resource: rp.resource.clone(),
        subresource: rp.subresource.clone().unwrap_or_default(),
        namespace: rp.namespace.clone().unwrap_or_default(),
        name: rp.name.clone().unwrap_or_default(),
    }
}

fn authorized(shared: &Shared, req: &Request<Incoming>) -> bool {
    let Some(token) = &shared.token else {
        return true;
    };
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t.trim() == token)
}

/// Reads the body, refusing more than `limit` bytes with 413.
async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, ApiError> {
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::too_large(limit))
        }
        Err(e) => Err(ApiError::bad_request(format!(
            "failed to read the request body: {e}"
        ))),
    }
}

/// Handles one request end to end.
pub async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let time = jiff::Timestamp::now();
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let method = parts.method.as_str().to_string();
    let query_str = parts.uri.query().unwrap_or_default().to_string();
    let query = parse_query(Some(&query_str));
    let route = route::parse(&path);
    let info = request_info(&parts.method, &route, &query);
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let req_for_auth = Request::from_parts(parts, body);
    let response = if !authorized(&shared, &req_for_auth) {
        error_response(&ApiError::unauthorized())
    } else {
        let (parts, body) = req_for_auth.into_parts();
        let delay = shared.faults.current_delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let is_admin = matches!(route, route::Route::Admin(_));
        match (!is_admin)
            .then(|| shared.faults.take(&info.verb, &info.resource))
            .flatten()
        {
            Some(code) => error_response(&ApiError::from_code(
                code,
                format!(
                    "kubesim injected fault: {} {} answered {code}",
                    info.verb, info.resource
                ),
            )),
            None => dispatch(&shared, &parts, body, &route, &query).await,
        }
    };
    if !matches!(route, route::Route::Admin(_)) {
        shared.log.push(RequestRecord {
            time: time.to_string(),
            verb: info.verb,
            method,
            path,
            query: query_str,
            group: info.group,
            resource: info.resource,
            subresource: info.subresource,
            namespace: info.namespace,
            name: info.name,
            field_manager: param(&query, "fieldManager")
                .unwrap_or_default()
                .to_string(),
            user_agent,
            code: response.status().as_u16(),
        });
    }
    Ok(response)
}

async fn dispatch(
    shared: &Arc<Shared>,
    parts: &http::request::Parts,
    body: Incoming,
    route: &route::Route,
    query: &[(String, String)],
) -> Response<Body> {
    let accept = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let reg = shared.objects.store().registry();
    let get_only = parts.method == http::Method::GET;
    let not_found = || {
        error_response(&ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ))
    };
    match route {
        route::Route::Version if get_only => json_response(200, &discovery::version()),
        route::Route::Health => {
            let mut r = Response::new(Full::new(Bytes::from_static(b"ok")).boxed_unsync());
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            r
        }
        route::Route::CoreVersions if get_only => match discovery::wants_aggregated(&accept) {
            Some(v) => aggregated_response(&discovery::aggregated(&reg, true, v), v),
            None => json_response(200, &discovery::core_versions(&shared.server_address)),
        },
        route::Route::Groups if get_only => match discovery::wants_aggregated(&accept) {
            Some(v) => aggregated_response(&discovery::aggregated(&reg, false, v), v),
            None => json_response(200, &discovery::group_list(&reg)),
        },
        route::Route::Group(g) if get_only => match discovery::group(&reg, g) {
            Some(v) => json_response(200, &v),
            None => not_found(),
        },
        route::Route::ResourceList { group, version } if get_only => {
            match discovery::resource_list(&reg, group, version) {
                Some(v) => json_response(200, &v),
                None => not_found(),
            }
        }
        route::Route::OpenApiV2 if get_only => {
            if accept.contains("application/json") || accept.contains("*/*") {
                json_response(200, &openapi::v2(&reg))
            } else {
                error_response(&ApiError::new(
                    406,
                    "NotAcceptable",
                    "only application/json is served for /openapi/v2",
                ))
            }
        }
        route::Route::OpenApiV3Index if get_only => json_response(200, &openapi::v3_index(&reg)),
        route::Route::OpenApiV3 { group, version } if get_only => {
            match openapi::v3_group_version(&reg, group, version) {
                Some(v) => json_response(200, &v),
                None => not_found(),
            }
        }
        route::Route::Resource(rp) => {
            let limit = shared.max_body;
            let bytes = match read_body(body, limit).await {
                Ok(b) => b,
                Err(e) => return error_response(&e),
            };
            resources::handle(shared, parts, bytes, rp, query, &accept)
                .await
                .unwrap_or_else(|e| error_response(&e))
        }
        route::Route::Admin(segs) => {
            let bytes = match read_body(body, shared.max_body).await {
                Ok(b) => b,
                Err(e) => return error_response(&e),
            };
            admin::handle(shared, &parts.method, segs, &bytes)
                .unwrap_or_else(|e| error_response(&e))
        }
        route::Route::Unknown => not_found(),
        _ => error_response(&ApiError::new(
            405,
            "MethodNotAllowed",
            format!(
                "the server does not allow this method on the requested resource ({})",
                parts.method
            ),
        )),
    }
}

fn aggregated_response(v: &Value, version: &str) -> Response<Body> {
    json_response_typed(
        200,
        v,
        &format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"),
    )
}
