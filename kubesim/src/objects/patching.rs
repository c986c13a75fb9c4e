//! PATCH planning: JSON merge, JSON patch, strategic merge and server-side apply.
//!
//! See <https://kubernetes.io/docs/tasks/manage-kubernetes-objects/update-api-object-kubectl-patch/>
//! and <https://kubernetes.io/docs/reference/using-api/server-side-apply/>.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{Objects, PatchKind, Plan, WriteOptions, shape_of, subject};
use crate::apply::{ApplyOptions, Conflict, conflicts_covered_by_last_applied, server_side_apply};
use crate::error::ApiError;
use crate::meta;
use crate::patch::{self, PatchError};
use crate::registry::ResourceType;
use crate::store::rv_of;

impl Objects {
    /// Plans a PATCH of any kind (apply may create).
    #[allow(clippy::too_many_arguments)]
    pub fn plan_patch(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        kind: PatchKind,
        patch_body: &Value,
        subresource: Option<&str>,
        opts: &WriteOptions,
    ) -> Result<Plan, ApiError> {
        let current = self.store.get(&Self::key(rt, namespace, name));
        if kind == PatchKind::Apply {
            return self.plan_apply(rt, namespace, name, current, patch_body, subresource, opts);
        }
        let Some(current) = current else {
            return Err(ApiError::not_found(subject(rt, name)));
        };
        let mut target = (*current).clone();
        let result = match kind {
            PatchKind::Merge => {
                if !patch_body.is_object() {
                    return Err(ApiError::bad_request(
                        "json: cannot unmarshal into Go value of type map[string]interface {}",
                    ));
                }
                patch::merge_patch(&mut target, patch_body);
                Ok(())
            }
            PatchKind::Json => patch::json_patch(&mut target, patch_body),
            PatchKind::Strategic => {
                if rt.is_custom() {
                    return Err(ApiError::new(
                        415,
                        "UnsupportedMediaType",
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                    ));
                }
                patch::strategic_merge_patch(&mut target, patch_body)
            }
            PatchKind::Apply => Ok(()),
        };
        match result {
            Ok(()) => {}
            Err(PatchError::Malformed(m)) => return Err(ApiError::bad_request(m)),
            Err(PatchError::Failed(m)) => return Err(ApiError::new(422, "Invalid", m)),
        }
        // A patch that sets resourceVersion is a precondition; otherwise it applies to "now".
        let patch_rv = match kind {
            PatchKind::Json => None,
            _ => patch_body
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string),
        };
        if patch_rv.is_none()
            && let Some(m) = target.get_mut("metadata").and_then(Value::as_object_mut)
        {
            m.insert("resourceVersion".into(), json!(rv_of(&current).to_string()));
        }
        self.plan_replace(rt, current, target, subresource, opts, false, false)
    }

    #[allow(clippy::too_many_arguments)]
    fn plan_apply(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        current: Option<Arc<Value>>,
        applied: &Value,
        subresource: Option<&str>,
        opts: &WriteOptions,
    ) -> Result<Plan, ApiError> {
        if opts.manager.is_empty() || opts.manager == "unknown" {
            return Err(ApiError::bad_request(
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            ));
        }
        if !applied.is_object() {
            return Err(ApiError::bad_request(
                "error decoding YAML: the apply patch must be an object",
            ));
        }
        for (field, what) in [("apiVersion", "apiVersion"), ("kind", "kind")] {
            if applied
                .get(field)
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                return Err(ApiError::bad_request(format!(
                    "invalid object type: {what} must be set in an apply request"
                )));
            }
        }
        Self::check_type(rt, applied)?;
        if let Some(n) = applied.pointer("/metadata/name").and_then(Value::as_str)
            && n != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        let now = meta::now();
        let aopts = ApplyOptions {
            manager: &opts.manager,
            force: opts.force,
            subresource,
            status_split: rt.status_subresource,
            now: &now,
        };
        let merged = match server_side_apply(current.as_deref(), applied, shape_of(rt), &aopts) {
            Ok(m) => m,
            Err(conflicts)
                if opts.manager == "kubectl"
                    && current.as_deref().is_some_and(|live| {
                        conflicts_covered_by_last_applied(live, &conflicts, shape_of(rt))
                    }) =>
            {
                let forced = ApplyOptions {
                    force: true,
                    ..aopts.clone()
                };
                server_side_apply(current.as_deref(), applied, shape_of(rt), &forced)
                    .map_err(|c| conflict_error(rt, name, &c))?
            }
            Err(conflicts) => return Err(conflict_error(rt, name, &conflicts)),
        };
        match current {
            None => {
                if subresource.is_some() {
                    return Err(ApiError::not_found(subject(rt, name)));
                }
                let mut obj = merged;
                obj["metadata"]["name"] = json!(name);
                self.plan_create(rt, namespace, obj, opts, true)
            }
            Some(cur) => self.plan_replace(rt, cur, merged, subresource, opts, true, false),
        }
    }
}

/// The 409 a conflicting apply gets, worded as the API server words it.
pub fn conflict_error(rt: &ResourceType, name: &str, conflicts: &[Conflict]) -> ApiError {
    let n = conflicts.len();
    let message = if n == 1 {
        let c = &conflicts[0];
        format!(
            "Apply failed with 1 conflict: conflict with \"{}\" using {}: {}",
            c.manager, c.api_version, c.field
        )
    } else {
        let mut by_manager: Vec<(String, String, Vec<String>)> = Vec::new();
        for c in conflicts {
            match by_manager
                .iter_mut()
                .find(|(m, a, _)| *m == c.manager && *a == c.api_version)
            {
                Some(entry) => entry.2.push(c.field.clone()),
                None => by_manager.push((
                    c.manager.clone(),
                    c.api_version.clone(),
                    vec![c.field.clone()],
                )),
            }
        }
        let parts: Vec<String> = by_manager
            .iter()
            .map(|(m, a, fields)| {
                let list: Vec<String> = fields.iter().map(|f| format!("- {f}")).collect();
                format!("conflicts with \"{m}\" using {a}:\n{}", list.join("\n"))
            })
            .collect();
        format!("Apply failed with {n} conflicts: {}", parts.join("\n"))
    };
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|c| {
            json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with \"{}\" using {}", c.manager, c.api_version),
                "field": c.field,
            })
        })
        .collect();
    let mut details = json!({"name": name, "kind": rt.plural, "causes": causes});
    if !rt.group.is_empty() {
        details["group"] = json!(rt.group);
    }
    ApiError {
        code: 409,
        reason: "Conflict".into(),
        message,
        details: Some(details),
    }
}
