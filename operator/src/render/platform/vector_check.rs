//! Validation of a Platform's logging settings and of the Vector configurations generated from
//! them, before rollout: a bad Platform gets typed problems naming the field, and never
//! replaces a working configuration.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::Value;

use crate::api::platform::Platform;
use crate::api::storage_tier::StorageTierSpec;

use super::alerts::AUDIT_SINK_PREFIX;
use super::vector::{VECTOR_MIN_DISK_BUFFER_BYTES, VectorConfigs};

/// Audit logs are kept at least this long (网络安全法 Art. 21, REFERENCE.md).
pub const MIN_AUDIT_RETENTION_DAYS: u32 = 180;

/// One thing wrong with the logging settings or the generated configuration.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigProblem {
    /// The field at fault: a Platform path (`spec.logging.sinks[1].tier.tier`) or a path in a
    /// generated config (`aggregator.sinks.audit_tier_store.inputs`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn problem(field: impl Into<String>, message: impl Into<String>) -> ConfigProblem {
    ConfigProblem {
        field: field.into(),
        message: message.into(),
    }
}

/// Whether `url` is `http(s)://host[...]` with a non-empty host and no whitespace.
fn valid_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(r) => {
            let host = r.split(['/', '?', '#']).next().unwrap_or("");
            !host.is_empty() && !host.starts_with(':') && !url.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

/// Whether `s` is a Kubernetes quantity like `20Gi`.
pub fn valid_quantity(s: &str) -> bool {
    let digits_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(digits_end);
    !num.is_empty()
        && num.parse::<f64>().is_ok_and(|v| v > 0.0)
        && [
            "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "M", "G", "T", "P", "E",
        ]
        .contains(&suffix)
}

fn valid_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Checks the Platform's logging settings against the resolved tiers.
pub fn validate_spec(
    platform: &Platform,
    tiers: &BTreeMap<String, StorageTierSpec>,
) -> Vec<ConfigProblem> {
    let logging = &platform.spec.logging;
    let mut out = Vec::new();
    let retention = logging.audit_retention_days;
    if !(MIN_AUDIT_RETENTION_DAYS..=36_500).contains(&retention) {
        out.push(problem(
            "spec.logging.auditRetentionDays",
            format!("{retention} days is out of range: audit logs are kept 180 to 36500 days"),
        ));
    }
    match tiers.get(&logging.audit_tier) {
        None => out.push(problem(
            "spec.logging.auditTier",
            format!("StorageTier {:?} does not exist", logging.audit_tier),
        )),
        Some(t) if t.retention_days < retention.max(MIN_AUDIT_RETENTION_DAYS) => out.push(problem(
            "spec.logging.auditTier",
            format!(
                "StorageTier {:?} keeps data {} days; audit logs need at least {}",
                logging.audit_tier,
                t.retention_days,
                retention.max(MIN_AUDIT_RETENTION_DAYS)
            ),
        )),
        Some(_) => {}
    }
    let mut names = BTreeSet::new();
    for (i, sink) in logging.sinks.iter().enumerate() {
        let f = |rest: &str| format!("spec.logging.sinks[{i}]{rest}");
        if !valid_dns_label(&sink.name) {
            out.push(problem(
                f(".name"),
                format!("{:?} is not a DNS label", sink.name),
            ));
        }
        if !names.insert(sink.name.as_str()) {
            out.push(problem(
                f(".name"),
                format!("sink name {:?} is used twice", sink.name),
            ));
        }
        if sink.streams.is_empty() {
            out.push(problem(f(".streams"), "names no stream"));
        }
        let unique: BTreeSet<_> = sink.streams.iter().map(|s| format!("{s:?}")).collect();
        if unique.len() != sink.streams.len() {
            out.push(problem(f(".streams"), "names a stream twice"));
        }
        let set = [
            sink.tier.is_some(),
            sink.loki.is_some(),
            sink.elasticsearch.is_some(),
            sink.http.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if set != 1 {
            out.push(problem(
                f(""),
                format!("exactly one of tier, loki, elasticsearch or http must be set ({set} are)"),
            ));
        }
        if let Some(t) = &sink.tier {
            if !tiers.contains_key(&t.tier) {
                out.push(problem(
                    f(".tier.tier"),
                    format!("StorageTier {:?} does not exist", t.tier),
                ));
            }
            if t.path.split('/').any(|seg| seg == ".." || seg.is_empty()) {
                out.push(problem(
                    f(".tier.path"),
                    format!("{:?} is not a clean relative path", t.path),
                ));
            }
        }
        for (kind, e) in [
            ("loki", &sink.loki),
            ("elasticsearch", &sink.elasticsearch),
            ("http", &sink.http),
        ] {
            if let Some(e) = e
                && !valid_url(&e.url)
            {
                out.push(problem(
                    f(&format!(".{kind}.url")),
                    format!("{:?} is not an http(s) URL", e.url),
                ));
            }
        }
    }
    let mib = logging.buffer.max_size_mib;
    if !(256..=1_048_576).contains(&mib) {
        out.push(problem(
            "spec.logging.buffer.maxSizeMiB",
            format!("{mib} is out of range 256..=1048576"),
        ));
    }
    if !valid_quantity(&logging.aggregator_storage.size) {
        out.push(problem(
            "spec.logging.aggregatorStorage.size",
            format!(
                "{:?} is not a quantity like 20Gi",
                logging.aggregator_storage.size
            ),
        ));
    }
    for (field, image) in [
        ("spec.logging.agentImage", &logging.agent_image),
        ("spec.logging.aggregatorImage", &logging.aggregator_image),
    ] {
        if image.is_empty() || image.chars().any(char::is_whitespace) {
            out.push(problem(
                field,
                format!("{image:?} is not an image reference"),
            ));
        }
    }
    out
}

/// Checks one generated Vector configuration's structure: inputs resolve, sinks have inputs,
/// buffers are large enough, and audit sinks block and acknowledge.
pub fn validate_structure(name: &str, config: &Value) -> Vec<ConfigProblem> {
    let mut out = Vec::new();
    let section = |s: &str| config.get(s).and_then(Value::as_object);
    let mut outputs: BTreeSet<String> = BTreeSet::new();
    if let Some(sources) = section("sources") {
        outputs.extend(sources.keys().cloned());
    }
    if let Some(transforms) = section("transforms") {
        for (id, t) in transforms {
            outputs.insert(id.clone());
            if let Some(routes) = t.get("route").and_then(Value::as_object) {
                outputs.extend(routes.keys().map(|r| format!("{id}.{r}")));
            }
        }
    }
    let mut consumed: BTreeSet<String> = BTreeSet::new();
    for kind in ["transforms", "sinks"] {
        for (id, c) in section(kind).into_iter().flatten() {
            let field = format!("{name}.{kind}.{id}");
            let inputs: Vec<&str> = c
                .get("inputs")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if inputs.is_empty() {
                out.push(problem(format!("{field}.inputs"), "has no inputs"));
            }
            for input in inputs {
                consumed.insert(input.split('.').next().unwrap_or(input).to_string());
                if !outputs.contains(input) {
                    out.push(problem(
                        format!("{field}.inputs"),
                        format!("input {input:?} does not exist"),
                    ));
                }
            }
            if kind != "sinks" {
                continue;
            }
            if let Some(buffer) = c.get("buffer") {
                let size = buffer.get("max_size").and_then(Value::as_u64).unwrap_or(0);
                if buffer.get("type").and_then(Value::as_str) == Some("disk")
                    && size < VECTOR_MIN_DISK_BUFFER_BYTES
                {
                    out.push(problem(
                        format!("{field}.buffer.max_size"),
                        format!(
                            "{size} bytes is below Vector's minimum {VECTOR_MIN_DISK_BUFFER_BYTES}"
                        ),
                    ));
                }
            }
            if id.starts_with(AUDIT_SINK_PREFIX) {
                let blocks = c.pointer("/buffer/type").and_then(Value::as_str) == Some("disk")
                    && c.pointer("/buffer/when_full").and_then(Value::as_str) == Some("block");
                if !blocks {
                    out.push(problem(
                        format!("{field}.buffer"),
                        "an audit sink needs a disk buffer with when_full: block",
                    ));
                }
                if c.pointer("/acknowledgements/enabled")
                    .and_then(Value::as_bool)
                    != Some(true)
                {
                    out.push(problem(
                        format!("{field}.acknowledgements"),
                        "an audit sink needs end-to-end acknowledgements",
                    ));
                }
            }
        }
    }
    for source in section("sources").into_iter().flatten().map(|(id, _)| id) {
        if !consumed.contains(source) {
            out.push(problem(
                format!("{name}.sources.{source}"),
                "is read by nothing",
            ));
        }
    }
    out
}

/// Validates the settings and both generated configurations; empty when safe to roll out.
pub fn validate(
    platform: &Platform,
    tiers: &BTreeMap<String, StorageTierSpec>,
    configs: &VectorConfigs,
) -> Vec<ConfigProblem> {
    let mut out = validate_spec(platform, tiers);
    out.extend(validate_structure("agent", &configs.agent));
    out.extend(validate_structure("aggregator", &configs.aggregator));
    out.sort();
    out.dedup();
    out
}
