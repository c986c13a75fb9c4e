//! References to other objects, above all to Secrets: medplat takes credentials and keys only
//! by reference, and never copies a Secret's value into a spec, status, event or log.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A reference to one key of a Secret in the referring object's namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// The Secret's name, in the same namespace as the referring object.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
    /// The key inside the Secret's `data`.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// Credentials held in a Secret: the Secret's name and which of its keys hold what.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsRef {
    /// The Secret's name, in the same namespace as the referring object. Its optional key
    /// `ca.crt` holds the PEM certificates of a private CA that the connection trusts besides
    /// the public roots (databases with `sslMode: verify-full`, FHIR servers).
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub secret_name: String,
    /// The key holding the user name (databases); `username` by default.
    #[serde(default = "default_username_key")]
    pub username_key: String,
    /// The key holding the password (databases); `password` by default.
    #[serde(default = "default_password_key")]
    pub password_key: String,
    /// The key holding a bearer token (FHIR servers), if the source uses one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_key: Option<String>,
}

fn default_username_key() -> String {
    "username".into()
}

fn default_password_key() -> String {
    "password".into()
}

/// A reference to a StorageTier and a path inside it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TierPathRef {
    /// The StorageTier's name.
    #[schemars(length(min = 1, max = 253))]
    pub tier: String,
    /// A relative path inside the tier, e.g. `lis/results`. No `..` segments.
    #[schemars(
        length(min = 1, max = 512),
        regex(pattern = r"^[A-Za-z0-9_\-][A-Za-z0-9_\-.]*(/[A-Za-z0-9_\-][A-Za-z0-9_\-.]*)*$")
    )]
    pub path: String,
}
