//! DELETE planning: preconditions, propagation policies and the finalizers they add, graceful
//! deletion of namespaces and CRDs.
//!
//! See <https://kubernetes.io/docs/concepts/overview/working-with-objects/finalizers/> and
//! <https://kubernetes.io/docs/concepts/architecture/garbage-collection/#cascading-deletion>.

use serde_json::{Value, json};

use super::{DeleteOptions, Objects, Operation, Plan, strip_for_compare, subject};
use crate::builtin;
use crate::error::ApiError;
use crate::meta;
use crate::registry::ResourceType;
use crate::store::{Expect, Mutation, rv_of};

impl Objects {
    /// Plans a DELETE.
    pub fn plan_delete(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Plan, ApiError> {
        let current = self.get(rt, namespace, name)?;
        let uid = current
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if let Some(want) = &opts.uid
            && want != uid
        {
            return Err(ApiError::conflict(
                subject(rt, name),
                &format!(
                    "Precondition failed: UID in precondition: {want}, UID in object meta: {uid}"
                ),
            ));
        }
        if let Some(want) = &opts.resource_version
            && *want != rv_of(&current).to_string()
        {
            return Err(ApiError::conflict(
                subject(rt, name),
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {}",
                    rv_of(&current)
                ),
            ));
        }
        let policy = opts.propagation.as_deref().unwrap_or("Background");
        if !matches!(policy, "Background" | "Foreground" | "Orphan") {
            return Err(ApiError::invalid(
                "",
                "DeleteOptions",
                "",
                &[crate::validation::FieldError::new(
                    "propagationPolicy",
                    crate::validation::FieldErrorKind::NotSupported,
                    Some(json!(policy)),
                    "supported values: \"Foreground\", \"Background\", \"Orphan\"",
                )],
            ));
        }
        let mut next = (*current).clone();
        let mut finalizers: Vec<Value> = next
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let extra = match policy {
            "Foreground" => Some("foregroundDeletion"),
            "Orphan" => Some("orphan"),
            _ => None,
        };
        if rt.plural == "customresourcedefinitions" && rt.group == "apiextensions.k8s.io" {
            let f = json!("customresourcecleanup.apiextensions.k8s.io");
            if !finalizers.contains(&f) && current.pointer("/metadata/deletionTimestamp").is_none()
            {
                finalizers.push(f);
            }
        }
        if let Some(f) = extra
            && !finalizers.contains(&json!(f))
            && (current.pointer("/metadata/deletionTimestamp").is_none() || policy != "Background")
        {
            finalizers.push(json!(f));
        }
        let is_namespace = rt.group.is_empty() && rt.plural == "namespaces";
        let graceful = !finalizers.is_empty() || is_namespace;
        if !graceful {
            return Ok(Plan::Write {
                preview: None,
                mutation: Mutation::Delete {
                    key: Self::key(rt, namespace, name),
                    expect_rv: rv_of(&current),
                },
                old: Some(current),
                operation: Operation::Delete,
                dry_run: opts.dry_run,
                warnings: Vec::new(),
            });
        }
        if let Some(m) = next.get_mut("metadata").and_then(Value::as_object_mut) {
            if !m.contains_key("deletionTimestamp") {
                m.insert("deletionTimestamp".into(), json!(meta::now()));
                m.insert("deletionGracePeriodSeconds".into(), json!(0));
            }
            if finalizers.is_empty() {
                m.remove("finalizers");
            } else {
                m.insert("finalizers".into(), Value::Array(finalizers));
            }
        }
        if is_namespace {
            next["status"] = json!({"phase": "Terminating"});
        }
        if rt.plural == "customresourcedefinitions" {
            builtin::apply_defaults(rt, &mut next, Some(&current), String::new);
        }
        if strip_for_compare(&next) == strip_for_compare(&current) {
            return Ok(Plan::Unchanged(current));
        }
        Ok(Plan::Write {
            preview: None,
            mutation: Mutation::Put {
                key: Self::key(rt, namespace, name),
                expect: Expect::Rv(rv_of(&current)),
                object: next,
            },
            old: Some(current),
            operation: Operation::Delete,
            dry_run: opts.dry_run,
            warnings: Vec::new(),
        })
    }
}
