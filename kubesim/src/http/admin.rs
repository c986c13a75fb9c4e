//! The `/kubesim/...` admin endpoints (request log, faults, restart) and pod eviction.
//!
//! Admin endpoints are kubesim's own; they are not part of the Kubernetes API:
//! - `GET /kubesim/requests` → the request log; `DELETE /kubesim/requests` clears it;
//! - `POST /kubesim/faults/fail` `{"count":N,"verb":"create","resource":"pods","code":500}`;
//! - `POST /kubesim/faults/random` `{"percent":5,"verb":"*","resource":"*","codes":[500,429,409],"seed":1}`;
//! - `POST /kubesim/faults/delay` `{"millis":N}`; `POST /kubesim/faults/close-watches`;
//! - `POST /kubesim/faults/clear`; `GET /kubesim/faults`;
//! - `POST /kubesim/restart` drops every connection (state is kept).

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Response};
use serde_json::{Value, json};

use super::{Body, Shared, json_response};
use crate::error::ApiError;
use crate::objects::DeleteOptions;
use crate::registry::ResourceType;
use crate::selectors::LabelSelector;

/// Handles an admin request.
pub fn handle(
    shared: &Arc<Shared>,
    method: &Method,
    segs: &[String],
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let parse = || -> Result<Value, ApiError> {
        if body.is_empty() {
            return Ok(json!({}));
        }
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
    };
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match (method, segs.as_slice()) {
        (&Method::GET, ["requests"]) => Ok(json_response(
            200,
            &serde_json::to_value(shared.log.snapshot()).unwrap_or(json!([])),
        )),
        (&Method::DELETE, ["requests"]) => {
            shared.log.clear();
            Ok(json_response(200, &json!({"cleared": true})))
        }
        (&Method::GET, ["faults"]) => Ok(json_response(
            200,
            &json!({"rules": shared.faults.rules(), "random": shared.faults.random_rules(), "delayMillis": shared.faults.current_delay().as_millis() as u64}),
        )),
        (&Method::POST, ["faults", "fail"]) => {
            let v = parse()?;
            let count = v["count"].as_u64().unwrap_or(1).min(u32::MAX as u64) as u32;
            let code = v["code"]
                .as_u64()
                .and_then(|c| u16::try_from(c).ok())
                .filter(|c| (400..600).contains(c))
                .ok_or_else(|| {
                    ApiError::bad_request("code must be an HTTP error status (400-599)")
                })?;
            shared.faults.fail_next(
                count,
                v["verb"].as_str().unwrap_or("*"),
                v["resource"].as_str().unwrap_or("*"),
                code,
            );
            Ok(json_response(200, &json!({"rules": shared.faults.rules()})))
        }
        (&Method::POST, ["faults", "random"]) => {
            let v = parse()?;
            let percent = v["percent"]
                .as_f64()
                .filter(|p| (0.0..=100.0).contains(p))
                .ok_or_else(|| ApiError::bad_request("percent must be a number from 0 to 100"))?;
            let codes: Vec<u16> = v["codes"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|c| c.as_u64().and_then(|c| u16::try_from(c).ok()))
                        .collect()
                })
                .unwrap_or_default();
            if codes.is_empty() || codes.iter().any(|c| !(400..600).contains(c)) {
                return Err(ApiError::bad_request(
                    "codes must be a non-empty list of HTTP error statuses (400-599)",
                ));
            }
            shared.faults.fail_randomly(
                percent,
                v["verb"].as_str().unwrap_or("*"),
                v["resource"].as_str().unwrap_or("*"),
                &codes,
                v["seed"].as_u64().unwrap_or(0),
            );
            Ok(json_response(
                200,
                &json!({"random": shared.faults.random_rules()}),
            ))
        }
        (&Method::POST, ["faults", "delay"]) => {
            let v = parse()?;
            shared
                .faults
                .delay(Duration::from_millis(v["millis"].as_u64().unwrap_or(0)));
            Ok(json_response(
                200,
                &json!({"delayMillis": shared.faults.current_delay().as_millis() as u64}),
            ))
        }
        (&Method::POST, ["faults", "close-watches"]) => {
            shared.faults.close_watches();
            Ok(json_response(200, &json!({"closed": true})))
        }
        (&Method::POST, ["faults", "clear"]) => {
            shared.faults.clear();
            Ok(json_response(200, &json!({"cleared": true})))
        }
        (&Method::POST, ["restart"]) => {
            shared.restart.send_modify(|e| *e += 1);
            Ok(json_response(200, &json!({"restarting": true})))
        }
        _ => Err(ApiError::new(
            404,
            "NotFound",
            "unknown kubesim admin endpoint",
        )),
    }
}

/// `desiredHealthy` of a PodDisruptionBudget for `expected` matching pods.
fn desired_healthy(pdb: &Value, expected: i64) -> i64 {
    let resolve = |v: &Value| -> i64 {
        match v {
            Value::Number(n) => n.as_i64().unwrap_or(0),
            Value::String(s) if s.ends_with('%') => {
                let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
                (expected * pct + 99) / 100
            }
            Value::String(s) => s.parse().unwrap_or(0),
            _ => 0,
        }
    };
    if let Some(min) = pdb.pointer("/spec/minAvailable") {
        resolve(min)
    } else if let Some(max) = pdb.pointer("/spec/maxUnavailable") {
        expected - resolve(max)
    } else {
        expected
    }
}

fn healthy(pod: &Value) -> bool {
    pod.pointer("/status/phase").and_then(Value::as_str) == Some("Running")
        && pod
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
}

/// `POST pods/{name}/eviction`: deletes the pod unless a PodDisruptionBudget forbids it (429).
///
/// Reproduces <https://kubernetes.io/docs/concepts/scheduling-eviction/api-eviction/>.
pub fn evict(
    shared: &Arc<Shared>,
    pods: &ResourceType,
    ns: &str,
    name: &str,
    eviction: Option<&Value>,
) -> Result<Response<Body>, ApiError> {
    if let Some(n) = eviction
        .and_then(|v| v.pointer("/metadata/name"))
        .and_then(Value::as_str)
        && n != name
    {
        return Err(ApiError::bad_request(format!(
            "name in URL does not match name in Eviction object: {n}"
        )));
    }
    let pod = shared.objects.get(pods, ns, name)?;
    let store = shared.objects.store();
    let reg = store.registry();
    if let Some(pdb_rt) = reg.get("policy", "v1", "poddisruptionbudgets") {
        let (pdbs, _) = store.list(&pdb_rt.storage, Some(ns), None);
        let (all_pods, _) = store.list(&pods.storage, Some(ns), None);
        for pdb in pdbs {
            let Ok(sel) = LabelSelector::from_object(pdb.pointer("/spec/selector"), true) else {
                continue;
            };
            if !sel.matches_object(&pod) {
                continue;
            }
            let covered: Vec<_> = all_pods.iter().filter(|p| sel.matches_object(p)).collect();
            let expected = covered.len() as i64;
            let current = covered.iter().filter(|p| healthy(p)).count() as i64;
            let desired = desired_healthy(&pdb, expected);
            let allowed = (current - desired).max(0);
            if allowed < 1 && healthy(&pod) {
                let pdb_name = pdb
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let mut e = ApiError::new(
                    429,
                    "TooManyRequests",
                    "Cannot evict pod as it would violate the pod's disruption budget.",
                );
                e.details = Some(
                    json!({"causes": [{"reason": "DisruptionBudget", "message": format!("The disruption budget {pdb_name} needs {desired} healthy pods and has {current} currently")}]}),
                );
                return Err(e);
            }
        }
    }
    shared.objects.run(pods, || {
        shared
            .objects
            .plan_delete(pods, ns, name, &DeleteOptions::default())
    })?;
    Ok(json_response(
        201,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}
