//! The governance steps of a Pipeline other than de-identification: map, cleanse, validate,
//! link and dedupe.

use std::collections::BTreeMap;

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::deidentify::{DeidentifyStep, HashAlgorithm};
use super::refs::SecretKeyRef;

/// A dot-separated field path pattern, shared by every step.
pub const FIELD_PATH_PATTERN: &str = r"^[A-Za-z_][A-Za-z0-9_\-]*(\.[A-Za-z0-9_\-]+)*$";

/// One ordered step of a pipeline: exactly one of the step kinds.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.map), has(self.cleanse), has(self.validate), has(self.deidentify), has(self.link), has(self.dedupe)].filter(x, x).size() == 1").message("each step must set exactly one of map, cleanse, validate, deidentify, link or dedupe"))]
pub struct Step {
    /// A name for the step, shown in run manifests and quarantine reasons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: Option<String>,
    /// Rename, cast and derive fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map: Option<MapStep>,
    /// Trim, normalise codes and dates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanse: Option<CleanseStep>,
    /// Check records; failing records are quarantined with the rule and reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validate: Option<ValidateStep>,
    /// De-identify by ordered rules; may lower the output level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deidentify: Option<DeidentifyStep>,
    /// Add a keyed pseudonymous person id so records from several sources join.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<LinkStep>,
    /// Drop duplicate records by key, keeping the latest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedupe: Option<DedupeStep>,
}

impl Step {
    /// The step's kind, for messages and manifests.
    pub fn kind(&self) -> &'static str {
        if self.map.is_some() {
            "map"
        } else if self.cleanse.is_some() {
            "cleanse"
        } else if self.validate.is_some() {
            "validate"
        } else if self.deidentify.is_some() {
            "deidentify"
        } else if self.link.is_some() {
            "link"
        } else if self.dedupe.is_some() {
            "dedupe"
        } else {
            "none"
        }
    }
}

/// Rename, cast and derive fields by path.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MapStep {
    /// Field mappings, applied in order.
    #[schemars(length(min = 1, max = 256))]
    pub fields: Vec<FieldMapping>,
    /// Whether fields not named by any mapping are kept (`true`) or dropped.
    #[serde(default = "default_true")]
    pub keep_unmapped: bool,
}

/// One mapping: the target field, from a source field, a constant or a template.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.from), has(self.value), has(self.template)].filter(x, x).size() == 1").message("exactly one of from, value or template must be set"))]
pub struct FieldMapping {
    /// The field to write.
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_\-]*(\.[A-Za-z0-9_\-]+)*$"))]
    pub to: String,
    /// The field to read; it is moved (renamed) unless `copy` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_\-]*(\.[A-Za-z0-9_\-]+)*$"))]
    pub from: Option<String>,
    /// A constant value to write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// A template deriving the value from other fields, e.g. `${family}${given}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Convert the value to this type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cast: Option<ValueType>,
    /// Keep the source field as well (copy instead of rename).
    #[serde(default)]
    pub copy: bool,
}

/// A value type for casts and type checks.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum ValueType {
    /// Text.
    String,
    /// A whole number.
    Integer,
    /// A decimal number.
    Number,
    /// `true` or `false`.
    Boolean,
    /// An ISO 8601 date (`2024-03-01`).
    Date,
    /// An RFC 3339 timestamp.
    DateTime,
}

/// Trim, normalise codes by lookup table and normalise dates.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CleanseStep {
    /// Cleansing rules, applied in order.
    #[schemars(length(min = 1, max = 256))]
    pub rules: Vec<CleanseRule>,
}

/// How to cleanse one field.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CleanseRule {
    /// The field to cleanse.
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_\-]*(\.[A-Za-z0-9_\-]+)*$"))]
    pub field: String,
    /// Trim surrounding whitespace (including full-width spaces).
    #[serde(default)]
    pub trim: bool,
    /// Change letter case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case: Option<LetterCase>,
    /// Replace values by this table (e.g. local lab codes to LOINC).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lookup: BTreeMap<String, String>,
    /// The value for codes missing from `lookup`; when unset they are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookup_default: Option<String>,
    /// Input date formats (strftime, e.g. `%Y%m%d`, `%Y/%m/%d`) to normalise to ISO 8601.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub date_formats: Vec<String>,
    /// Values that mean "missing" (`NULL`, `-`, `未知`) and become null.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub null_values: Vec<String>,
}

/// Letter case for cleansing.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum LetterCase {
    /// UPPER CASE.
    Upper,
    /// lower case.
    Lower,
}

/// Check records against rules.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ValidateStep {
    /// Validation rules; a record fails when any rule fails.
    #[schemars(length(min = 1, max = 256))]
    pub rules: Vec<ValidationRule>,
    /// What to do with a failing record: `quarantine` (default), `drop`, or `fail` the run.
    #[serde(default)]
    pub on_fail: OnFail,
}

/// What happens to a record that fails validation.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum OnFail {
    /// Write it to `<dataset>/_quarantine/` with the rule and the reason.
    #[default]
    Quarantine,
    /// Drop it, counting it in the run's metrics.
    Drop,
    /// Fail the whole run; nothing is committed.
    Fail,
}

/// One validation rule on one field.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ValidationRule {
    /// The rule's name, reported in quarantine reasons.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// The field to check.
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_\-]*(\.[A-Za-z0-9_\-]+)*$"))]
    pub field: String,
    /// The field must be present and not null.
    #[serde(default)]
    pub required: bool,
    /// The value must have this type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<ValueType>,
    /// The smallest allowed number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// The largest allowed number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// A regular expression the text must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub pattern: Option<String>,
    /// The allowed values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_values: Vec<String>,
    /// A built-in check: `residentId` is the GB 11643 身份证号 checksum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<BuiltinCheck>,
}

/// Built-in validation checks.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum BuiltinCheck {
    /// An 18-character resident identity number (身份证号) with a valid GB 11643 check digit.
    ResidentId,
    /// A mainland mobile number, `1[3-9]` followed by nine digits.
    MobilePhone,
}

/// Add a stable pseudonymous person id from a keyed hash of identity fields.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LinkStep {
    /// The identity fields hashed together, after normalisation (e.g. `idCard`).
    #[schemars(length(min = 1, max = 8))]
    pub identity_fields: Vec<String>,
    /// The field that receives the pseudonym; `personId` by default.
    #[serde(default = "default_person_id")]
    pub output_field: String,
    /// The HMAC key, from a Secret. The same key in every pipeline makes pseudonyms join.
    pub key: SecretKeyRef,
    /// The keyed hash algorithm.
    #[serde(default)]
    pub algorithm: HashAlgorithm,
}

fn default_person_id() -> String {
    "personId".into()
}

/// Drop duplicates by key, keeping the latest record.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DedupeStep {
    /// The fields that together identify a record.
    #[schemars(length(min = 1, max = 8))]
    pub key: Vec<String>,
    /// The field that orders duplicates; the record with the greatest value is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_latest_by: Option<String>,
}

fn default_true() -> bool {
    true
}
