//! The Vector configurations of the log agent (DaemonSet) and the aggregator (StatefulSet).
//!
//! Flow: the agent tails the pod logs of medplat-managed workloads and of the operator, and the
//! host's audit logs; it enriches every event with node, namespace, pipeline and
//! classification, splits it into the `audit` and `platform` streams, and forwards both to the
//! aggregator. The aggregator writes the audit stream to the audit tier and each stream to the
//! sinks of `spec.logging.sinks`.
//!
//! Audit streams never drop: every audit sink has a disk buffer with `when_full: block` and
//! end-to-end acknowledgements, so a source only advances its checkpoint once the event is
//! stored. Platform streams use `spec.logging.buffer.whenFull`. Both Vectors export their
//! `internal_metrics` on [`METRICS_PORT`] with a `prometheus_exporter` sink (namespace
//! `vector`), which the log alerts read. Secrets (object-store keys) are referenced as
//! `${ENV}` variables filled from Secret references in the pod spec, never inlined.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::api::platform::{EndpointSink, LogSink, LogStream, Platform, WhenFull};
use crate::api::storage_tier::StorageTierSpec;

use super::alerts::AUDIT_SINK_PREFIX;

/// The default Vector image.
pub const DEFAULT_VECTOR_IMAGE: &str = "timberio/vector:0.41.1-distroless-libc";
/// The port of the aggregator's `vector` source.
pub const AGGREGATOR_PORT: u16 = 6000;
/// The port of both Vectors' Prometheus exporter.
pub const METRICS_PORT: u16 = 9598;
/// The smallest disk buffer Vector accepts, in bytes.
pub const VECTOR_MIN_DISK_BUFFER_BYTES: u64 = 268_435_488;
/// Where the agent mounts the host's `/var/log` (read-only): pod logs and audit logs.
pub const HOST_LOG_MOUNT: &str = "/var/log";
/// Where the aggregator mounts volume-backed tiers: `<TIER_MOUNT_ROOT>/<tier>`.
pub const TIER_MOUNT_ROOT: &str = "/tiers";
/// Vector's data directory (checkpoints, disk buffers) in both pods.
pub const DATA_DIR: &str = "/var/lib/vector";
/// The aggregator's Service name.
pub const AGGREGATOR_NAME: &str = "medplat-log-aggregator";
/// The agent's name.
pub const AGENT_NAME: &str = "medplat-log-agent";
/// Label selector of medplat-managed workload pods.
pub const WORKLOAD_POD_SELECTOR: &str = "app.kubernetes.io/managed-by=medplat";
/// Label selector of the operator's pods (those not already matched as managed workloads).
pub const OPERATOR_POD_SELECTOR: &str = "app.kubernetes.io/name=medplat,app.kubernetes.io/component=operator,app.kubernetes.io/managed-by!=medplat";
/// The pod label naming a pipeline.
pub const PIPELINE_LABEL: &str = "medplat.io/pipeline";
/// Host audit log files; a glob that matches nothing is simply idle.
pub const HOST_AUDIT_LOGS: &[&str] = &["audit/audit.log"];
/// API-server audit logs, where the node runs an API server (kubeadm, k3s, RKE2 layouts).
pub const APISERVER_AUDIT_LOGS: &[&str] = &[
    "kubernetes/audit/*.log",
    "kube-apiserver/audit.log",
    "kubernetes/kube-apiserver-audit.log",
];

/// Both generated configurations.
#[derive(Clone, Debug, PartialEq)]
pub struct VectorConfigs {
    /// The agent's `vector.yaml`, as a value.
    pub agent: Value,
    /// The aggregator's `vector.yaml`, as a value.
    pub aggregator: Value,
    /// Environment variables the aggregator needs: name → (Secret name, key).
    pub aggregator_secret_env: BTreeMap<String, (String, String)>,
    /// Volume-backed tiers the aggregator mounts: tier name → its spec.
    pub tier_volumes: BTreeMap<String, StorageTierSpec>,
}

fn disk_buffer(bytes: u64, when_full: WhenFull) -> Value {
    json!({
        "type": "disk",
        "max_size": bytes.max(VECTOR_MIN_DISK_BUFFER_BYTES),
        "when_full": match when_full {
            WhenFull::Block => "block",
            WhenFull::DropNewest => "drop_newest",
        },
    })
}

fn metrics_pipeline(
    sources: &mut serde_json::Map<String, Value>,
    sinks: &mut serde_json::Map<String, Value>,
) {
    sources.insert(
        "vector_metrics".into(),
        json!({ "type": "internal_metrics", "namespace": "vector" }),
    );
    sinks.insert(
        "prometheus".into(),
        json!({
            "type": "prometheus_exporter",
            "inputs": ["vector_metrics"],
            "address": format!("0.0.0.0:{METRICS_PORT}"),
        }),
    );
}

/// Sets `.medplat` from Kubernetes metadata and decides the stream: a JSON line with
/// `"audit": true` is an audit event (DESIGN: workers and the operator emit them on stdout).
const ENRICH_POD_VRL: &str = r#"parsed, err = parse_json(.message)
if err == null && is_object(parsed) { .event = parsed }
.medplat.node = .kubernetes.pod_node_name
.medplat.namespace = .kubernetes.pod_namespace
.medplat.pod = .kubernetes.pod_name
.medplat.pipeline = .kubernetes.pod_labels."medplat.io/pipeline"
.medplat.classification = .kubernetes.pod_labels."medplat.io/level"
.medplat.stream = if .event.audit == true { "audit" } else { "platform" }
"#;

const ENRICH_HOST_AUDIT_VRL: &str = r#".medplat.node = get_env_var("VECTOR_SELF_NODE_NAME") ?? "unknown"
.medplat.stream = "audit"
.medplat.source = "host-audit"
"#;

/// The agent's configuration.
pub fn agent_config(platform: &Platform, namespace: &str) -> Value {
    let buffer = &platform.spec.logging.buffer;
    let bytes = u64::from(buffer.max_size_mib) * 1024 * 1024;
    let mut sources = serde_json::Map::new();
    let mut transforms = serde_json::Map::new();
    let mut sinks = serde_json::Map::new();
    sources.insert(
        "workload_pods".into(),
        json!({ "type": "kubernetes_logs", "extra_label_selector": WORKLOAD_POD_SELECTOR }),
    );
    sources.insert(
        "operator_pods".into(),
        json!({ "type": "kubernetes_logs", "extra_label_selector": OPERATOR_POD_SELECTOR }),
    );
    let host_files: Vec<String> = HOST_AUDIT_LOGS
        .iter()
        .chain(APISERVER_AUDIT_LOGS)
        .map(|p| format!("{HOST_LOG_MOUNT}/{p}"))
        .collect();
    sources.insert(
        "host_audit".into(),
        json!({ "type": "file", "include": host_files, "read_from": "beginning" }),
    );
    transforms.insert(
        "enrich_pods".into(),
        json!({ "type": "remap", "inputs": ["workload_pods", "operator_pods"], "source": ENRICH_POD_VRL }),
    );
    transforms.insert(
        "enrich_host_audit".into(),
        json!({ "type": "remap", "inputs": ["host_audit"], "source": ENRICH_HOST_AUDIT_VRL }),
    );
    transforms.insert(
        "streams".into(),
        json!({
            "type": "route",
            "inputs": ["enrich_pods"],
            "route": {
                "audit": ".medplat.stream == \"audit\"",
                "platform": ".medplat.stream == \"platform\"",
            },
        }),
    );
    let address = format!("{AGGREGATOR_NAME}.{namespace}.svc:{AGGREGATOR_PORT}");
    sinks.insert(
        format!("{AUDIT_SINK_PREFIX}forward"),
        json!({
            "type": "vector",
            "inputs": ["streams.audit", "enrich_host_audit"],
            "address": address,
            "buffer": disk_buffer(bytes, WhenFull::Block),
            "acknowledgements": { "enabled": true },
        }),
    );
    sinks.insert(
        "platform_forward".into(),
        json!({
            "type": "vector",
            "inputs": ["streams.platform"],
            "address": address,
            "buffer": disk_buffer(bytes, buffer.when_full),
        }),
    );
    metrics_pipeline(&mut sources, &mut sinks);
    json!({
        "data_dir": DATA_DIR,
        "api": { "enabled": false },
        "sources": sources,
        "transforms": transforms,
        "sinks": sinks,
    })
}

/// The Vector sink id of a Platform sink for one stream.
pub fn sink_id(stream: LogStream, name: &str) -> String {
    let stream = match stream {
        LogStream::Audit => AUDIT_SINK_PREFIX,
        LogStream::Platform => "platform_",
    };
    format!("{stream}sink_{}", name.replace('-', "_"))
}

/// The Vector sink id of the audit tier.
pub const AUDIT_TIER_SINK: &str = "audit_tier_store";

/// Environment variable names for an object-store tier's keys.
fn tier_env(tier: &str) -> (String, String) {
    let t: String = tier
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    (
        format!("TIER_{t}_ACCESS_KEY_ID"),
        format!("TIER_{t}_SECRET_ACCESS_KEY"),
    )
}

/// A sink writing NDJSON into a tier at `path`; `None` when the tier is unknown (validation
/// reports it).
fn tier_sink(
    tier_name: &str,
    path: &str,
    stream: &str,
    tiers: &BTreeMap<String, StorageTierSpec>,
    out: &mut VectorConfigs,
) -> Option<Value> {
    let tier = tiers.get(tier_name)?;
    if let Some(os) = &tier.backend.object_store {
        let (id_env, secret_env) = tier_env(tier_name);
        out.aggregator_secret_env.insert(
            id_env.clone(),
            (os.access_key_id.name.clone(), os.access_key_id.key.clone()),
        );
        out.aggregator_secret_env.insert(
            secret_env.clone(),
            (
                os.secret_access_key.name.clone(),
                os.secret_access_key.key.clone(),
            ),
        );
        let mut sink = json!({
            "type": "aws_s3",
            "endpoint": os.endpoint,
            "bucket": os.bucket,
            "key_prefix": format!("{}/{stream}/%Y/%m/%d/", path.trim_matches('/')),
            "encoding": { "codec": "json" },
            "framing": { "method": "newline_delimited" },
            "compression": "gzip",
            "auth": {
                "access_key_id": format!("${{{id_env}}}"),
                "secret_access_key": format!("${{{secret_env}}}"),
            },
        });
        if let Some(region) = &os.region {
            sink["region"] = json!(region);
        }
        // Vector takes the CA inline as PEM in `ca_file`, so no volume is needed for it. A
        // bundle that fails the check (one holding a private key, say) is not copied here: the
        // tier is stalled and says why.
        if let Some(pem) = &os.ca_bundle
            && os.ca_certificates().is_ok()
        {
            sink["tls"] = json!({ "ca_file": pem });
        }
        return Some(sink);
    }
    out.tier_volumes.insert(tier_name.to_string(), tier.clone());
    Some(json!({
        "type": "file",
        "path": format!(
            "{TIER_MOUNT_ROOT}/{tier_name}/{}/{stream}/%Y/%m/%d/{{{{ medplat.node }}}}-%H.ndjson",
            path.trim_matches('/')
        ),
        "encoding": { "codec": "json" },
        "framing": { "method": "newline_delimited" },
    }))
}

fn endpoint_sink(kind: &str, e: &EndpointSink) -> Value {
    match kind {
        "loki" => {
            let mut s = json!({
                "type": "loki",
                "endpoint": e.url,
                "encoding": { "codec": "json" },
                "labels": {
                    "stream": "{{ medplat.stream }}",
                    "namespace": "{{ medplat.namespace }}",
                    "node": "{{ medplat.node }}",
                },
                "out_of_order_action": "accept",
            });
            if let Some(t) = &e.index {
                s["tenant_id"] = json!(t);
            }
            s
        }
        "elasticsearch" => json!({
            "type": "elasticsearch",
            "endpoints": [e.url],
            "bulk": { "index": e.index.clone().unwrap_or_else(|| "medplat-%Y.%m.%d".into()) },
        }),
        _ => json!({
            "type": "http",
            "uri": e.url,
            "method": "post",
            "encoding": { "codec": "json" },
            "framing": { "method": "newline_delimited" },
        }),
    }
}

/// The sink body of a Platform sink, before inputs and buffers.
fn platform_sink_body(
    sink: &LogSink,
    stream: LogStream,
    tiers: &BTreeMap<String, StorageTierSpec>,
    out: &mut VectorConfigs,
) -> Option<Value> {
    let stream_name = match stream {
        LogStream::Audit => "audit",
        LogStream::Platform => "platform",
    };
    if let Some(t) = &sink.tier {
        return tier_sink(&t.tier, &t.path, stream_name, tiers, out);
    }
    [
        ("loki", &sink.loki),
        ("elasticsearch", &sink.elasticsearch),
        ("http", &sink.http),
    ]
    .into_iter()
    .find_map(|(kind, e)| e.as_ref().map(|e| endpoint_sink(kind, e)))
}

/// Both configurations for `platform`, with tiers resolved by name.
///
/// Unresolvable references (an unknown tier, a sink with no destination) are left out of the
/// config; [`super::vector_check::validate`] reports them so such a config is never rolled out.
pub fn render(
    platform: &Platform,
    namespace: &str,
    tiers: &BTreeMap<String, StorageTierSpec>,
) -> VectorConfigs {
    let logging = &platform.spec.logging;
    let bytes = u64::from(logging.buffer.max_size_mib) * 1024 * 1024;
    let mut out = VectorConfigs {
        agent: agent_config(platform, namespace),
        aggregator: Value::Null,
        aggregator_secret_env: BTreeMap::new(),
        tier_volumes: BTreeMap::new(),
    };
    let mut sources = serde_json::Map::new();
    let mut transforms = serde_json::Map::new();
    let mut sinks = serde_json::Map::new();
    sources.insert(
        "from_agents".into(),
        json!({ "type": "vector", "address": format!("0.0.0.0:{AGGREGATOR_PORT}") }),
    );
    transforms.insert(
        "streams".into(),
        json!({
            "type": "route",
            "inputs": ["from_agents"],
            "route": {
                "audit": ".medplat.stream == \"audit\"",
                "platform": ".medplat.stream != \"audit\"",
            },
        }),
    );
    if let Some(mut s) = tier_sink(&logging.audit_tier, "audit", "audit", tiers, &mut out) {
        s["inputs"] = json!(["streams.audit"]);
        s["buffer"] = disk_buffer(bytes, WhenFull::Block);
        s["acknowledgements"] = json!({ "enabled": true });
        sinks.insert(AUDIT_TIER_SINK.into(), s);
    }
    for sink in &logging.sinks {
        for stream in &sink.streams {
            let Some(mut s) = platform_sink_body(sink, *stream, tiers, &mut out) else {
                continue;
            };
            match stream {
                LogStream::Audit => {
                    s["inputs"] = json!(["streams.audit"]);
                    s["buffer"] = disk_buffer(bytes, WhenFull::Block);
                    s["acknowledgements"] = json!({ "enabled": true });
                }
                LogStream::Platform => {
                    s["inputs"] = json!(["streams.platform"]);
                    s["buffer"] = disk_buffer(bytes, logging.buffer.when_full);
                }
            }
            sinks.insert(sink_id(*stream, &sink.name), s);
        }
    }
    metrics_pipeline(&mut sources, &mut sinks);
    out.aggregator = json!({
        "data_dir": DATA_DIR,
        "api": { "enabled": false },
        "sources": sources,
        "transforms": transforms,
        "sinks": sinks,
    });
    out
}

/// Renders a configuration value as Vector's YAML.
pub fn to_yaml(config: &Value) -> Result<String, super::RenderError> {
    serde_yaml::to_string(config).map_err(|e| super::RenderError::Serialise {
        what: "Vector configuration".into(),
        message: e.to_string(),
    })
}
