//! Field errors worded as k8s.io/apimachinery/pkg/util/validation/field words them.

use serde_json::Value;

/// The kind of a field error; each maps to a `FieldValue*` cause reason and a fixed phrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// `Required value`.
    Required,
    /// `Invalid value`.
    Invalid,
    /// `Invalid value` for a value of the wrong JSON type.
    TypeInvalid,
    /// `Unsupported value` (not one of an enum).
    NotSupported,
    /// `Forbidden`.
    Forbidden,
    /// `Too many` (more items than allowed).
    TooMany,
    /// `Too long` (string longer than allowed).
    TooLong,
    /// `Duplicate value` (a set or map list repeats an entry).
    Duplicate,
}

impl FieldErrorKind {
    /// The phrase the API server prints, e.g. `Required value`.
    pub fn phrase(self) -> &'static str {
        match self {
            FieldErrorKind::Required => "Required value",
            FieldErrorKind::Invalid | FieldErrorKind::TypeInvalid => "Invalid value",
            FieldErrorKind::NotSupported => "Unsupported value",
            FieldErrorKind::Forbidden => "Forbidden",
            FieldErrorKind::TooMany => "Too many",
            FieldErrorKind::TooLong => "Too long",
            FieldErrorKind::Duplicate => "Duplicate value",
        }
    }

    /// The `StatusCause.reason`, e.g. `FieldValueRequired`.
    pub fn reason(self) -> &'static str {
        match self {
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Invalid => "FieldValueInvalid",
            FieldErrorKind::TypeInvalid => "FieldValueTypeInvalid",
            FieldErrorKind::NotSupported => "FieldValueNotSupported",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::TooMany => "FieldValueTooMany",
            FieldErrorKind::TooLong => "FieldValueTooLong",
            FieldErrorKind::Duplicate => "FieldValueDuplicate",
        }
    }

    /// Parses a `FieldValue*` reason, as CEL rules name them in `reason:`.
    pub fn from_reason(reason: &str) -> Option<Self> {
        Some(match reason {
            "FieldValueRequired" => FieldErrorKind::Required,
            "FieldValueInvalid" => FieldErrorKind::Invalid,
            "FieldValueForbidden" => FieldErrorKind::Forbidden,
            "FieldValueDuplicate" => FieldErrorKind::Duplicate,
            _ => return None,
        })
    }
}

/// One invalid field: where, what kind of problem, the offending value and a detail.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// Path like `spec.connector` or `spec.steps[2].name`.
    pub path: String,
    /// What is wrong.
    pub kind: FieldErrorKind,
    /// The value printed after `Invalid value:`/`Unsupported value:`, when the kind prints one.
    pub value: Option<Value>,
    /// Free-text detail printed after the value.
    pub detail: String,
}

impl FieldError {
    /// A `Required value` error.
    pub fn required(path: &str, detail: impl Into<String>) -> Self {
        FieldError {
            path: path.to_string(),
            kind: FieldErrorKind::Required,
            value: None,
            detail: detail.into(),
        }
    }

    /// An `Invalid value` error.
    pub fn invalid(path: &str, value: Value, detail: impl Into<String>) -> Self {
        FieldError {
            path: path.to_string(),
            kind: FieldErrorKind::Invalid,
            value: Some(value),
            detail: detail.into(),
        }
    }

    /// An error of any kind.
    pub fn new(
        path: &str,
        kind: FieldErrorKind,
        value: Option<Value>,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            path: path.to_string(),
            kind,
            value,
            detail: detail.into(),
        }
    }

    /// The message without the leading `path: `, as a `StatusCause.message` holds it.
    pub fn message_without_path(&self) -> String {
        let mut out = self.kind.phrase().to_string();
        let prints_value = matches!(
            self.kind,
            FieldErrorKind::Invalid
                | FieldErrorKind::TypeInvalid
                | FieldErrorKind::NotSupported
                | FieldErrorKind::Duplicate
                | FieldErrorKind::TooMany
        );
        if prints_value && let Some(v) = &self.value {
            out.push_str(": ");
            out.push_str(&go_value(v));
        }
        if !self.detail.is_empty() {
            out.push_str(": ");
            out.push_str(&self.detail);
        }
        out
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message_without_path())
        } else {
            write!(f, "{}: {}", self.path, self.message_without_path())
        }
    }
}

/// Prints a value roughly as Go's `%#v` does in field errors: strings quoted, scalars bare.
pub fn go_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(_) => "\"array\"".to_string(),
        Value::Object(_) => "\"object\"".to_string(),
    }
}

/// The JSON type name of a value as OpenAPI names it.
pub fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}
