//! The example hospital compiled into the binary, so `medplat sandbox` runs from anywhere.
//!
//! The manifests are `examples/hospital/*.yaml`; the Secrets are the development-only keys of
//! `examples/hospital/secrets/` (public, protecting nothing — see that directory's README).
//! A test checks this list against the directory so the two never drift apart.

/// The example manifests, in the order `kubectl apply -f examples/hospital/` applies them.
pub const MANIFESTS: &[(&str, &str)] = &[
    (
        "00-namespace.yaml",
        include_str!("../../../examples/hospital/00-namespace.yaml"),
    ),
    (
        "01-storageclasses.yaml",
        include_str!("../../../examples/hospital/01-storageclasses.yaml"),
    ),
    (
        "10-tiers.yaml",
        include_str!("../../../examples/hospital/10-tiers.yaml"),
    ),
    (
        "20-sources.yaml",
        include_str!("../../../examples/hospital/20-sources.yaml"),
    ),
    (
        "30-pipelines.yaml",
        include_str!("../../../examples/hospital/30-pipelines.yaml"),
    ),
    (
        "40-policies.yaml",
        include_str!("../../../examples/hospital/40-policies.yaml"),
    ),
    (
        "50-platform.yaml",
        include_str!("../../../examples/hospital/50-platform.yaml"),
    ),
];

/// The development-only Secrets: `(secret, key, value)`.
pub const DEV_SECRETS: &[(&str, &str, &[u8])] = &[
    (
        "his-db-readonly",
        "username",
        include_bytes!("../../../examples/hospital/secrets/his-db-readonly/username"),
    ),
    (
        "his-db-readonly",
        "password",
        include_bytes!("../../../examples/hospital/secrets/his-db-readonly/password"),
    ),
    (
        "lab-deid-keys",
        "hmac-key",
        include_bytes!("../../../examples/hospital/secrets/lab-deid-keys/hmac-key"),
    ),
    (
        "lab-deid-keys",
        "encryption-key",
        include_bytes!("../../../examples/hospital/secrets/lab-deid-keys/encryption-key"),
    ),
    (
        "lab-deid-keys",
        "date-shift-key",
        include_bytes!("../../../examples/hospital/secrets/lab-deid-keys/date-shift-key"),
    ),
    (
        "linkage-key",
        "hmac-key",
        include_bytes!("../../../examples/hospital/secrets/linkage-key/hmac-key"),
    ),
    (
        "research-deid-keys",
        "hmac-key",
        include_bytes!("../../../examples/hospital/secrets/research-deid-keys/hmac-key"),
    ),
    (
        "research-deid-keys",
        "encryption-key",
        include_bytes!("../../../examples/hospital/secrets/research-deid-keys/encryption-key"),
    ),
    (
        "research-deid-keys",
        "date-shift-key",
        include_bytes!("../../../examples/hospital/secrets/research-deid-keys/date-shift-key"),
    ),
];

/// The namespace of the example hospital.
pub const NAMESPACE: &str = "clinical";

/// The development Secrets as Secret objects in [`NAMESPACE`].
pub fn dev_secret_objects() -> Vec<serde_json::Value> {
    use base64::Engine as _;
    let mut by_secret: std::collections::BTreeMap<
        &str,
        serde_json::Map<String, serde_json::Value>,
    > = std::collections::BTreeMap::new();
    for (secret, key, value) in DEV_SECRETS {
        by_secret.entry(secret).or_default().insert(
            (*key).to_string(),
            serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(value)),
        );
    }
    by_secret
        .into_iter()
        .map(|(name, data)| {
            serde_json::json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"medplat.io/development-only": "true"}},
                "type": "Opaque",
                "data": data,
            })
        })
        .collect()
}
