//! Custom-resource admission without a server: prune, default, validate and run CEL rules.
//!
//! This module is usable on its own (no [`crate::Sim`] needed), e.g. by an offline
//! `medplat check`. It follows the API server's order for custom resources
//! (<https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#validation>):
//! prune unknown fields and non-nullable nulls, apply defaults, validate against
//! `openAPIV3Schema`, then evaluate `x-kubernetes-validations` (CEL, through `kube::core::cel`),
//! including transition rules on `oldSelf` when an old object is given.

mod field_error;
mod structural;

pub use field_error::{FieldError, FieldErrorKind};

use kube::core::cel::{CompiledSchema, ErrorKind, RootContext, compile_schema};
use serde_json::Value;

/// Why a CRD could not be turned into a validator.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SchemaError {
    /// The CRD has no version of that name (or none at all).
    #[error("CustomResourceDefinition {crd:?} has no version {version:?}")]
    NoSuchVersion {
        /// CRD name.
        crd: String,
        /// Version asked for (or `<storage>` when none was given).
        version: String,
    },
    /// The version has no `schema.openAPIV3Schema`.
    #[error("CustomResourceDefinition {crd:?} version {version:?} has no schema.openAPIV3Schema")]
    NoSchema {
        /// CRD name.
        crd: String,
        /// Version.
        version: String,
    },
}

/// The result of admitting an object: the defaulted, pruned object, and what was pruned.
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted {
    /// The object as the API server would store it.
    pub object: Value,
    /// Paths of unknown fields that were pruned (a `fieldValidation=Strict` request rejects these).
    pub unknown_fields: Vec<String>,
}

/// A compiled `openAPIV3Schema` for one CRD version; cheap to reuse across objects.
pub struct SchemaValidator {
    schema: Value,
    cel: CompiledSchema,
    root: RootContext,
}

impl std::fmt::Debug for SchemaValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaValidator")
            .field("apiVersion", &self.root.api_version)
            .field("kind", &self.root.kind)
            .finish()
    }
}

impl SchemaValidator {
    /// Compiles a version's `openAPIV3Schema` for objects of `group/version` `kind`.
    pub fn new(schema: Value, group: &str, version: &str, kind: &str) -> Self {
        let cel = compile_schema(&schema);
        let api_version = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        SchemaValidator {
            schema,
            cel,
            root: RootContext {
                api_version,
                api_group: group.to_string(),
                kind: kind.to_string(),
            },
        }
    }

    /// Compiles the schema of `version` (or the storage version when `None`) of a CRD object.
    pub fn from_crd(crd: &Value, version: Option<&str>) -> Result<Self, SchemaError> {
        let crd_name = crd
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let versions = crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let chosen = versions.iter().find(|v| match version {
            Some(name) => v.get("name").and_then(Value::as_str) == Some(name),
            None => v.get("storage").and_then(Value::as_bool) == Some(true),
        });
        let Some(chosen) = chosen.or(if version.is_none() {
            versions.first()
        } else {
            None
        }) else {
            return Err(SchemaError::NoSuchVersion {
                crd: crd_name,
                version: version.unwrap_or("<storage>").to_string(),
            });
        };
        let version_name = chosen
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(schema) = chosen.pointer("/schema/openAPIV3Schema") else {
            return Err(SchemaError::NoSchema {
                crd: crd_name,
                version: version_name.to_string(),
            });
        };
        let group = crd
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = crd
            .pointer("/spec/names/kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        Ok(Self::new(schema.clone(), group, version_name, kind))
    }

    /// The schema this validator checks against.
    pub fn schema(&self) -> &Value {
        &self.schema
    }

    /// One message per CEL rule (or `messageExpression`) that does not compile.
    pub fn rule_compile_errors(&self) -> Vec<String> {
        self.cel
            .compilation_errors()
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    /// Prunes, defaults and validates `object`; `old` enables CEL transition rules.
    pub fn admit(&self, object: &Value, old: Option<&Value>) -> Result<Admitted, Vec<FieldError>> {
        let mut obj = object.clone();
        let mut unknown_fields = Vec::new();
        structural::prune(&self.schema, &mut obj, "", true, &mut unknown_fields);
        structural::apply_defaults(&self.schema, &mut obj);
        let mut errors = Vec::new();
        structural::validate(&self.schema, &obj, "", &mut errors);
        if errors.is_empty() {
            let old_pruned = old.map(|o| {
                let mut o = o.clone();
                structural::prune(&self.schema, &mut o, "", true, &mut Vec::new());
                structural::apply_defaults(&self.schema, &mut o);
                o
            });
            errors.extend(self.cel_errors(&obj, old_pruned.as_ref()));
        }
        if errors.is_empty() {
            Ok(Admitted {
                object: obj,
                unknown_fields,
            })
        } else {
            Err(errors)
        }
    }

    fn cel_errors(&self, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
        let result = CEL_VALIDATOR.with(|validator| {
            validator.validate_compiled_with_context(&self.cel, obj, old, Some(&self.root))
        });
        let Err(errs) = result else {
            return Vec::new();
        };
        errs.into_iter()
            .map(|e| {
                let kind = match e.kind {
                    ErrorKind::ValidationFailure => e
                        .reason
                        .as_deref()
                        .and_then(FieldErrorKind::from_reason)
                        .unwrap_or(FieldErrorKind::Invalid),
                    _ => FieldErrorKind::Invalid,
                };
                let type_name = value_at(obj, &e.field_path)
                    .map(field_error::json_type_name)
                    .unwrap_or("object");
                let value = match kind {
                    FieldErrorKind::Invalid | FieldErrorKind::Duplicate => {
                        Some(Value::String(type_name.to_string()))
                    }
                    _ => None,
                };
                FieldError::new(&e.field_path, kind, value, e.message)
            })
            .collect()
    }
}

thread_local! {
    /// Registering every Kubernetes CEL function is costly; do it once per thread.
    static CEL_VALIDATOR: kube::core::cel::Validator = kube::core::cel::Validator::new();
}

/// Finds the value at a field path like `spec.steps[2].name`.
fn value_at<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = root;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (name, indices) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            cur = cur.get(name)?;
        }
        for idx in indices.split('[').filter(|s| !s.is_empty()) {
            let n: usize = idx.trim_end_matches(']').parse().ok()?;
            cur = cur.get(n)?;
        }
    }
    Some(cur)
}

/// Admits one custom resource against a CRD without a server: returns the defaulted and pruned
/// object, or the field errors the API server would report (422 Invalid causes).
///
/// The version is taken from the object's `apiVersion` when the CRD serves it, else the
/// CRD's storage version is used.
pub fn validate_custom_resource(
    crd: &Value,
    object: &Value,
    old: Option<&Value>,
) -> Result<Value, Vec<FieldError>> {
    let version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .and_then(|av| av.rsplit('/').next())
        .map(str::to_string);
    let validator = match version
        .as_deref()
        .map(|v| SchemaValidator::from_crd(crd, Some(v)))
    {
        Some(Ok(v)) => v,
        _ => SchemaValidator::from_crd(crd, None).map_err(|e| {
            vec![FieldError::invalid(
                "apiVersion",
                object.get("apiVersion").cloned().unwrap_or(Value::Null),
                e.to_string(),
            )]
        })?,
    };
    validator.admit(object, old).map(|a| a.object)
}

#[cfg(test)]
mod tests;
