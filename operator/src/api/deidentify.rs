//! The `deidentify` step: ordered rules (first match wins), the methods of GB/T 37964 and the
//! privacy gate (k-anonymity, leftover-identifier scan).

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::classification::{Category, IdentifierClass};

/// De-identify records by ordered rules. Fields no rule matches are removed unless
/// `unmatched: keep` is set (fail closed).
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!self.rules.exists(r, r.method in ['cryptoHash', 'encrypt', 'dateShift']) || has(self.keys)").message("cryptoHash, encrypt and dateShift rules need keys (a Secret reference)").field_path(".keys"))]
pub struct DeidentifyStep {
    /// Ordered rules; the first rule whose selector matches a field decides its method.
    #[schemars(length(min = 1, max = 256))]
    pub rules: Vec<DeidentifyRule>,
    /// What happens to fields no rule matches: `redact` (default, fail closed) or `keep`.
    #[serde(default)]
    pub unmatched: Unmatched,
    /// The Secret that holds the keys of this step. Keys are global to the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<DeidentifyKeys>,
    /// The release gate: k-anonymity and the leftover-identifier scan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<PrivacyGate>,
    /// What a processing error on one record does: `quarantine` it (default) or `fail` the run.
    #[serde(default)]
    pub on_error: OnError,
}

/// What happens to fields that no rule matches.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum Unmatched {
    /// Remove them (fail closed). The default.
    #[default]
    Redact,
    /// Pass them through unchanged; the output level cannot be lowered for such fields.
    Keep,
}

/// What a de-identification error on one record does.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum OnError {
    /// Quarantine the record with the reason and go on.
    #[default]
    Quarantine,
    /// Fail the run; nothing is committed.
    Fail,
}

/// One de-identification rule: a selector (exactly one of `field`, `identifier`, `category`)
/// and a method with its parameters.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.field), has(self.identifier), has(self.category)].filter(x, x).size() == 1").message("exactly one selector (field, identifier or category) must be set"))]
#[x_kube(validation = Rule::new("!(has(self.identifier) && self.identifier == 'direct' && self.method in ['keep', 'generalize', 'perturb', 'dateShift'])").message("direct identifiers may only be redacted, masked, substituted, hashed or encrypted").field_path(".method"))]
#[x_kube(validation = Rule::new("self.method != 'perturb' || has(self.field)").message("perturb applies to one numeric field: use a field selector").field_path(".method"))]
#[x_kube(validation = Rule::new("self.method != 'mask' || has(self.mask)").message("method mask needs the mask parameters").field_path(".mask"))]
#[x_kube(validation = Rule::new("self.method != 'substitute' || has(self.substitute)").message("method substitute needs the substitute parameters").field_path(".substitute"))]
#[x_kube(validation = Rule::new("self.method != 'dateShift' || has(self.dateShift)").message("method dateShift needs the dateShift parameters").field_path(".dateShift"))]
#[x_kube(validation = Rule::new("self.method != 'generalize' || has(self.generalize)").message("method generalize needs the generalize parameters").field_path(".generalize"))]
#[x_kube(validation = Rule::new("self.method != 'perturb' || has(self.perturb)").message("method perturb needs the perturb parameters").field_path(".perturb"))]
#[x_kube(validation = Rule::new("[has(self.mask) ? 'mask' : '', has(self.substitute) ? 'substitute' : '', has(self.cryptoHash) ? 'cryptoHash' : '', has(self.encrypt) ? 'encrypt' : '', has(self.dateShift) ? 'dateShift' : '', has(self.generalize) ? 'generalize' : '', has(self.perturb) ? 'perturb' : ''].all(p, p == '' || p == self.method)").message("only the parameters of the chosen method may be set"))]
pub struct DeidentifyRule {
    /// Select one field by its path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_\-]*(\.[A-Za-z0-9_\-]+)*$"))]
    pub field: Option<String>,
    /// Select every field of an identifier class from the data dictionary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<IdentifierClass>,
    /// Select every field of a GB/T 39725 category from the data dictionary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<Category>,
    /// The de-identification method.
    pub method: Method,
    /// Parameters of `mask`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<MaskParams>,
    /// Parameters of `substitute`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub substitute: Option<SubstituteParams>,
    /// Parameters of `cryptoHash`; HMAC-SHA256 by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crypto_hash: Option<CryptoHashParams>,
    /// Parameters of `encrypt`; AES-256-GCM by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypt: Option<EncryptParams>,
    /// Parameters of `dateShift`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_shift: Option<DateShiftParams>,
    /// Parameters of `generalize`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generalize: Option<GeneralizeParams>,
    /// Parameters of `perturb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perturb: Option<PerturbParams>,
}

/// A de-identification method (GB/T 37964-2019; the names follow common FHIR anonymizers).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum Method {
    /// Leave the value as it is.
    Keep,
    /// Remove the field.
    Redact,
    /// Keep part of the value, e.g. the last 4 characters.
    Mask,
    /// Replace the value with a fixed value.
    Substitute,
    /// Replace the value with a keyed HMAC; deterministic, so linkage still works.
    CryptoHash,
    /// Encrypt the value with a random nonce; reversible with the key.
    Encrypt,
    /// Shift a date by a per-patient offset derived from the key, keeping intervals.
    DateShift,
    /// Coarsen the value: year only, an age band, or a region-code prefix.
    Generalize,
    /// Add bounded noise to a number.
    Perturb,
}

impl Method {
    /// The method's name as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Keep => "keep",
            Method::Redact => "redact",
            Method::Mask => "mask",
            Method::Substitute => "substitute",
            Method::CryptoHash => "cryptoHash",
            Method::Encrypt => "encrypt",
            Method::DateShift => "dateShift",
            Method::Generalize => "generalize",
            Method::Perturb => "perturb",
        }
    }
}

/// Parameters of `mask`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MaskParams {
    /// How many leading characters stay visible.
    #[serde(default)]
    #[schemars(range(max = 64))]
    pub keep_first: u32,
    /// How many trailing characters stay visible.
    #[serde(default)]
    #[schemars(range(max = 64))]
    pub keep_last: u32,
    /// The character that replaces the hidden ones; `*` by default.
    #[serde(default = "default_mask_char")]
    #[schemars(length(min = 1, max = 1))]
    pub mask_char: String,
}

fn default_mask_char() -> String {
    "*".into()
}

/// Parameters of `substitute`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SubstituteParams {
    /// The fixed replacement value.
    #[schemars(length(max = 256))]
    pub value: String,
}

/// A keyed hash algorithm.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HashAlgorithm {
    /// HMAC with SHA-256.
    #[default]
    #[serde(rename = "HMAC-SHA256")]
    HmacSha256,
    /// HMAC with SM3 (GB/T 32905), the Chinese national hash.
    #[serde(rename = "HMAC-SM3")]
    HmacSm3,
}

/// Parameters of `cryptoHash`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CryptoHashParams {
    /// HMAC-SHA256 or HMAC-SM3.
    #[serde(default)]
    pub algorithm: HashAlgorithm,
    /// For FHIR references (`Patient/123`), hash only the id part so references still resolve.
    #[serde(default)]
    pub reference_id_only: bool,
}

/// A symmetric cipher.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CipherAlgorithm {
    /// AES with a 256-bit key in GCM mode.
    #[default]
    #[serde(rename = "AES-256-GCM")]
    Aes256Gcm,
    /// SM4 (GB/T 32907) in GCM mode.
    #[serde(rename = "SM4-GCM")]
    Sm4Gcm,
}

/// Parameters of `encrypt`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct EncryptParams {
    /// AES-256-GCM or SM4-GCM.
    #[serde(default)]
    pub algorithm: CipherAlgorithm,
}

/// Parameters of `dateShift`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DateShiftParams {
    /// The largest shift in days, either way.
    #[schemars(range(min = 1, max = 3650))]
    pub max_days: u32,
    /// The field that identifies the patient; every date of one patient moves by the same offset.
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_\-]*(\.[A-Za-z0-9_\-]+)*$"))]
    pub patient_id_field: String,
}

/// Parameters of `generalize`.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.to != 'regionPrefix' || has(self.prefixLength)").message("regionPrefix needs prefixLength").field_path(".prefixLength"))]
pub struct GeneralizeParams {
    /// `year` (a date becomes its year), `ageBand` (an age or birth date becomes a band, 90+ on
    /// top) or `regionPrefix` (a region code is truncated, e.g. to the city).
    pub to: Generalization,
    /// The width of an age band in years; 5 by default.
    #[serde(default = "default_band")]
    #[schemars(range(min = 1, max = 50))]
    pub band_years: u32,
    /// For `regionPrefix`: how many leading characters of the region code stay (4 = city).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 12))]
    pub prefix_length: Option<u32>,
}

fn default_band() -> u32 {
    5
}

/// A generalization target.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Generalization {
    /// Keep only the year of a date.
    Year,
    /// Replace an age (or a birth date) by a band; ages over 89 become `90+`.
    AgeBand,
    /// Truncate a region code (行政区划代码) to a prefix.
    RegionPrefix,
}

/// Parameters of `perturb`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PerturbParams {
    /// The largest absolute change.
    #[schemars(range(min = 0.0))]
    pub max_abs: f64,
}

/// The Secret holding a step's keys, and which key serves which method.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeidentifyKeys {
    /// The Secret's name, in the pipeline's namespace.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub secret_name: String,
    /// The key holding the HMAC key for `cryptoHash`.
    #[serde(default = "default_hmac_key")]
    pub hmac_key: String,
    /// The key holding the 32-byte (AES) or 16-byte (SM4) key for `encrypt`.
    #[serde(default = "default_encryption_key")]
    pub encryption_key: String,
    /// The key holding the date-shift key.
    #[serde(default = "default_date_shift_key")]
    pub date_shift_key: String,
    /// A version label recorded in run manifests, for key rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Whether recipients of the output can obtain these keys. A keyed hash counts as removal
    /// (for L3→L2) only when they cannot.
    #[serde(default)]
    pub shared_with_recipient: bool,
}

fn default_hmac_key() -> String {
    "hmac-key".into()
}

fn default_encryption_key() -> String {
    "encryption-key".into()
}

fn default_date_shift_key() -> String {
    "date-shift-key".into()
}

/// The release gate run before output is committed.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PrivacyGate {
    /// k of k-anonymity: every combination of quasi identifiers is shared by at least k records.
    #[schemars(range(min = 2, max = 1000))]
    pub k: u32,
    /// The quasi identifiers; by default, every field marked `quasi` in the data dictionary.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quasi_identifiers: Vec<String>,
    /// Records in groups smaller than k are suppressed; the run fails when more than this
    /// percentage of records would be suppressed.
    #[serde(default = "default_max_suppression")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub max_suppression_percent: f64,
    /// Scan the output for leftover identifiers (valid 身份证号, mobile numbers, e-mail) and fail
    /// the run when any is found.
    #[serde(default = "default_true")]
    pub leftover_scan: bool,
}

fn default_max_suppression() -> f64 {
    5.0
}

fn default_true() -> bool {
    true
}
