//! The Platform's rendered children: the node-agent DaemonSet and its RBAC, the log agent and
//! aggregator with their Vector configurations, and the validation that guards a rollout.

// Test helpers outside #[test] functions unwrap too: a panic is a test failure.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use clap::Parser;
use serde_json::{Value, json};

use medplat::api::Level;
use medplat::api::platform::{EndpointSink, LogSink, LogStream, Platform, WhenFull};
use medplat::api::refs::{SecretKeyRef, TierPathRef};
use medplat::api::storage_tier::{
    AccessMode, DeletionPolicy, Encryption, ObjectStoreBackend, StorageTierSpec, TierBackend,
    VolumeBackend,
};
use medplat::render::platform::logging::{self, LoggingError};
use medplat::render::platform::vector::{self, AUDIT_TIER_SINK, VECTOR_MIN_DISK_BUFFER_BYTES};
use medplat::render::platform::vector_check::{validate, validate_structure};
use medplat::render::platform::{default_platform, node_agent};

const NS: &str = "medplat-system";

fn volume_tier(retention_days: u32) -> StorageTierSpec {
    StorageTierSpec {
        domain: "operations".into(),
        max_level: Level::L4,
        encryption: Encryption::Required,
        backend: TierBackend {
            volume: Some(VolumeBackend {
                storage_class_name: "encrypted-ssd".into(),
                size: "500Gi".into(),
                access_modes: vec![AccessMode::ReadWriteOnce],
            }),
            object_store: None,
        },
        retention_days,
        deletion_policy: DeletionPolicy::Retain,
    }
}

/// The private CA of the archive's store.
static ARCHIVE_CA: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let key = rcgen::KeyPair::generate().unwrap();
    rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .self_signed(&key)
        .unwrap()
        .pem()
});

fn object_tier() -> StorageTierSpec {
    StorageTierSpec {
        backend: TierBackend {
            volume: None,
            object_store: Some(ObjectStoreBackend {
                endpoint: "https://minio.storage.svc:9000".into(),
                bucket: "audit-archive".into(),
                region: Some("cn-north-1".into()),
                access_key_id: SecretKeyRef {
                    name: "archive-s3".into(),
                    key: "id".into(),
                },
                secret_access_key: SecretKeyRef {
                    name: "archive-s3".into(),
                    key: "secret".into(),
                },
                server_side_encryption: true,
                ca_bundle: Some(ARCHIVE_CA.clone()),
            }),
        },
        ..volume_tier(3650)
    }
}

fn tiers() -> BTreeMap<String, StorageTierSpec> {
    BTreeMap::from([
        ("audit".to_string(), volume_tier(365)),
        ("archive".to_string(), object_tier()),
        ("short".to_string(), volume_tier(30)),
    ])
}

fn endpoint(url: &str) -> Option<EndpointSink> {
    Some(EndpointSink {
        url: url.into(),
        index: None,
    })
}

fn sink(name: &str, streams: &[LogStream]) -> LogSink {
    LogSink {
        name: name.into(),
        streams: streams.to_vec(),
        tier: None,
        loki: None,
        elasticsearch: None,
        http: None,
    }
}

/// A Platform with one sink of each kind.
fn platform_with_sinks() -> Platform {
    let mut p = default_platform();
    p.spec.logging.sinks = vec![
        LogSink {
            loki: endpoint("http://loki.monitoring.svc:3100"),
            ..sink("loki", &[LogStream::Platform])
        },
        LogSink {
            elasticsearch: endpoint("https://es.siem.hospital.local:9200"),
            ..sink("siem", &[LogStream::Audit, LogStream::Platform])
        },
        LogSink {
            http: endpoint("https://collector.hospital.local/ingest"),
            ..sink("collector", &[LogStream::Audit])
        },
        LogSink {
            tier: Some(TierPathRef {
                tier: "archive".into(),
                path: "logs/medplat".into(),
            }),
            ..sink("archive", &[LogStream::Audit])
        },
    ];
    p.spec.logging.buffer.when_full = WhenFull::DropNewest;
    p
}

fn sinks(config: &Value) -> &serde_json::Map<String, Value> {
    config["sinks"].as_object().unwrap()
}

#[test]
fn audit_streams_block_and_acknowledge_end_to_end() {
    let p = platform_with_sinks();
    let c = vector::render(&p, NS, &tiers());
    assert!(
        validate(&p, &tiers(), &c).is_empty(),
        "{:?}",
        validate(&p, &tiers(), &c)
    );
    for (name, config) in [("agent", &c.agent), ("aggregator", &c.aggregator)] {
        let mut audit = 0;
        for (id, s) in sinks(config) {
            if id.starts_with("audit_") {
                audit += 1;
                assert_eq!(s["buffer"]["type"], "disk", "{name} {id}");
                assert_eq!(s["buffer"]["when_full"], "block", "{name} {id}");
                assert_eq!(s["acknowledgements"]["enabled"], true, "{name} {id}");
            } else if id.starts_with("platform_") {
                assert_eq!(s["buffer"]["when_full"], "drop_newest", "{name} {id}");
            }
        }
        assert!(audit > 0, "{name} has no audit sink");
    }
    // The audit tier, and each audit sink of the spec, get their own Vector sink.
    let agg = sinks(&c.aggregator);
    for id in [
        AUDIT_TIER_SINK,
        "audit_sink_siem",
        "audit_sink_collector",
        "audit_sink_archive",
    ] {
        assert!(
            agg.contains_key(id),
            "{id} missing: {:?}",
            agg.keys().collect::<Vec<_>>()
        );
    }
    for id in ["platform_sink_loki", "platform_sink_siem"] {
        assert!(agg.contains_key(id), "{id}");
    }
    assert!(
        !agg.contains_key("audit_sink_loki"),
        "loki only takes the platform stream"
    );
}

#[test]
fn each_sink_kind_renders_its_vector_type() {
    let c = vector::render(&platform_with_sinks(), NS, &tiers());
    let agg = sinks(&c.aggregator);
    let cases = [
        ("platform_sink_loki", "loki"),
        ("audit_sink_siem", "elasticsearch"),
        ("audit_sink_collector", "http"),
        ("audit_sink_archive", "aws_s3"),
        (AUDIT_TIER_SINK, "file"),
        ("prometheus", "prometheus_exporter"),
    ];
    for (id, ty) in cases {
        assert_eq!(agg[id]["type"], ty, "{id}");
    }
    assert_eq!(
        agg["platform_sink_loki"]["endpoint"],
        "http://loki.monitoring.svc:3100"
    );
    assert_eq!(
        agg["audit_sink_collector"]["framing"]["method"],
        "newline_delimited"
    );
    assert!(
        agg[AUDIT_TIER_SINK]["path"]
            .as_str()
            .unwrap()
            .starts_with("/tiers/audit/audit/audit/")
    );
    // Secrets by reference only: the object-store sink names env vars filled from the Secret.
    let s3 = &agg["audit_sink_archive"];
    assert_eq!(s3["auth"]["access_key_id"], "${TIER_ARCHIVE_ACCESS_KEY_ID}");
    assert_eq!(s3["bucket"], "audit-archive");
    assert_eq!(
        c.aggregator_secret_env
            .get("TIER_ARCHIVE_SECRET_ACCESS_KEY"),
        Some(&("archive-s3".to_string(), "secret".to_string()))
    );
    assert!(c.tier_volumes.contains_key("audit"));
    assert!(!c.tier_volumes.contains_key("archive"));
    // The store's private CA goes inline, as Vector accepts it; the volume tier has none.
    assert_eq!(s3["tls"]["ca_file"], ARCHIVE_CA.as_str());
    assert!(agg[AUDIT_TIER_SINK].get("tls").is_none());

    // A bundle that fails its check (here one with a private key pasted in) is never copied
    // into the aggregator's configuration.
    let mut leaky = tiers();
    if let Some(os) = leaky
        .get_mut("archive")
        .and_then(|t| t.backend.object_store.as_mut())
    {
        os.ca_bundle = Some(format!(
            "{}-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n",
            *ARCHIVE_CA
        ));
    }
    let c = vector::render(&platform_with_sinks(), NS, &leaky);
    let agg = sinks(&c.aggregator);
    assert!(agg["audit_sink_archive"].get("tls").is_none());
    assert!(!c.aggregator.to_string().contains("PRIVATE KEY"));
}

#[test]
fn the_agent_reads_managed_pods_the_operator_and_host_audit_logs() {
    let c = vector::render(&default_platform(), NS, &tiers());
    let src = c.agent["sources"].as_object().unwrap();
    assert_eq!(
        src["workload_pods"]["extra_label_selector"],
        "app.kubernetes.io/managed-by=medplat"
    );
    assert!(
        src["operator_pods"]["extra_label_selector"]
            .as_str()
            .unwrap()
            .contains("component=operator")
    );
    let files: Vec<&str> = src["host_audit"]["include"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(files.contains(&"/var/log/audit/audit.log"));
    assert!(files.iter().any(|f| f.contains("kubernetes/audit")));
    let vrl = c.agent["transforms"]["enrich_pods"]["source"]
        .as_str()
        .unwrap();
    for field in ["node", "namespace", "pipeline", "classification", "stream"] {
        assert!(vrl.contains(&format!(".medplat.{field}")), "{field}");
    }
    assert_eq!(
        sinks(&c.agent)["audit_forward"]["address"],
        "medplat-log-aggregator.medplat-system.svc:6000"
    );
}

#[test]
fn spec_problems_name_the_field() {
    type Edit = fn(&mut Platform);
    let cases: &[(&str, Edit, &str)] = &[
        (
            "missing audit tier",
            |p| p.spec.logging.audit_tier = "nope".into(),
            "spec.logging.auditTier",
        ),
        (
            "short audit tier",
            |p| p.spec.logging.audit_tier = "short".into(),
            "spec.logging.auditTier",
        ),
        (
            "retention below 180",
            |p| p.spec.logging.audit_retention_days = 90,
            "spec.logging.auditRetentionDays",
        ),
        (
            "tier longer than its retention",
            |p| p.spec.logging.audit_retention_days = 400,
            "spec.logging.auditTier",
        ),
        (
            "unknown sink tier",
            |p| p.spec.logging.sinks[3].tier.as_mut().unwrap().tier = "gone".into(),
            "spec.logging.sinks[3].tier.tier",
        ),
        (
            "dotdot path",
            |p| p.spec.logging.sinks[3].tier.as_mut().unwrap().path = "a/../b".into(),
            "spec.logging.sinks[3].tier.path",
        ),
        (
            "bad url",
            |p| p.spec.logging.sinks[0].loki = endpoint("loki:3100"),
            "spec.logging.sinks[0].loki.url",
        ),
        (
            "two destinations",
            |p| p.spec.logging.sinks[0].http = endpoint("http://x"),
            "spec.logging.sinks[0]",
        ),
        (
            "no destination",
            |p| p.spec.logging.sinks[0].loki = None,
            "spec.logging.sinks[0]",
        ),
        (
            "duplicate name",
            |p| p.spec.logging.sinks[1].name = "loki".into(),
            "spec.logging.sinks[1].name",
        ),
        (
            "no stream",
            |p| p.spec.logging.sinks[0].streams.clear(),
            "spec.logging.sinks[0].streams",
        ),
        (
            "small buffer",
            |p| p.spec.logging.buffer.max_size_mib = 100,
            "spec.logging.buffer.maxSizeMiB",
        ),
        (
            "bad size",
            |p| p.spec.logging.aggregator_storage.size = "lots".into(),
            "spec.logging.aggregatorStorage.size",
        ),
        (
            "bad image",
            |p| p.spec.logging.agent_image = "vector latest".into(),
            "spec.logging.agentImage",
        ),
    ];
    for (what, edit, field) in cases {
        let mut p = platform_with_sinks();
        edit(&mut p);
        let c = vector::render(&p, NS, &tiers());
        let problems = validate(&p, &tiers(), &c);
        assert!(
            problems.iter().any(|x| x.field == *field),
            "{what}: want a problem on {field}, got {problems:?}"
        );
        match logging::render(&p, NS, &tiers()) {
            Err(LoggingError::Invalid(ps)) => {
                assert!(ps.iter().any(|x| x.field == *field), "{what}")
            }
            other => panic!("{what}: a bad Platform must not render children: {other:?}"),
        }
    }
}

#[test]
fn structural_problems_are_found() {
    let good = json!({
        "sources": { "in": { "type": "vector" } },
        "transforms": { "r": { "type": "route", "inputs": ["in"], "route": { "audit": "true" } } },
        "sinks": { "audit_x": {
            "type": "file", "inputs": ["r.audit"],
            "buffer": { "type": "disk", "max_size": VECTOR_MIN_DISK_BUFFER_BYTES, "when_full": "block" },
            "acknowledgements": { "enabled": true }
        } }
    });
    assert!(
        validate_structure("t", &good).is_empty(),
        "{:?}",
        validate_structure("t", &good)
    );
    type Edit = fn(&mut Value);
    let cases: &[(Edit, &str)] = &[
        (
            |c| c["sinks"]["audit_x"]["inputs"] = json!(["r.platform"]),
            "t.sinks.audit_x.inputs",
        ),
        (
            |c| c["sinks"]["audit_x"]["inputs"] = json!([]),
            "t.sinks.audit_x.inputs",
        ),
        (
            |c| c["sinks"]["audit_x"]["buffer"]["when_full"] = json!("drop_newest"),
            "t.sinks.audit_x.buffer",
        ),
        (
            |c| c["sinks"]["audit_x"]["buffer"]["type"] = json!("memory"),
            "t.sinks.audit_x.buffer",
        ),
        (
            |c| c["sinks"]["audit_x"]["acknowledgements"]["enabled"] = json!(false),
            "t.sinks.audit_x.acknowledgements",
        ),
        (
            |c| c["sinks"]["audit_x"]["buffer"]["max_size"] = json!(1024),
            "t.sinks.audit_x.buffer.max_size",
        ),
        (
            |c| c["sources"]["unused"] = json!({ "type": "file" }),
            "t.sources.unused",
        ),
        (
            |c| c["transforms"]["r"]["inputs"] = json!(["ghost"]),
            "t.transforms.r.inputs",
        ),
    ];
    for (edit, field) in cases {
        let mut c = good.clone();
        edit(&mut c);
        let problems = validate_structure("t", &c);
        assert!(
            problems.iter().any(|p| p.field == *field),
            "want {field}, got {problems:?}"
        );
    }
}

#[test]
fn logging_children_are_complete_and_locked_down() {
    let p = platform_with_sinks();
    let ch = logging::render(&p, NS, &tiers()).unwrap();
    let agent = serde_json::to_value(&ch.agent).unwrap();
    let pod = &agent["spec"]["template"]["spec"];
    assert_eq!(pod["tolerations"], json!([{ "operator": "Exists" }]));
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert!(c["resources"]["limits"]["memory"].is_string());
    let host_logs = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "host-logs")
        .unwrap();
    assert_eq!(host_logs["readOnly"], true);
    assert!(
        agent["spec"]["template"]["metadata"]["annotations"]["medplat.io/config-hash"].is_string()
    );

    let agg = serde_json::to_value(&ch.aggregator).unwrap();
    let claims: Vec<&str> = agg["spec"]["volumeClaimTemplates"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["metadata"]["name"].as_str())
        .collect();
    assert_eq!(claims, vec!["data", "tier-audit"]);
    let pod = &agg["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let env = pod["containers"][0]["env"].as_array().unwrap();
    assert!(
        env.iter()
            .any(|e| e["valueFrom"]["secretKeyRef"]["name"] == "archive-s3")
    );
    assert!(
        !serde_json::to_string(&ch.aggregator_config)
            .unwrap()
            .contains("secret\":")
    );
    assert_eq!(
        agg["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"],
        "Retain"
    );
    assert_eq!(ch.service_monitors.len(), 2);
    let yaml = &ch.aggregator_config.data.as_ref().unwrap()["vector.yaml"];
    let parsed: Value = serde_yaml::from_str(yaml).unwrap();
    assert_eq!(parsed, vector::render(&p, NS, &tiers()).aggregator);
}

#[test]
fn the_config_hash_follows_the_config() {
    let a = logging::render(&platform_with_sinks(), NS, &tiers()).unwrap();
    let b = logging::render(&platform_with_sinks(), NS, &tiers()).unwrap();
    assert_eq!(a.config_hash, b.config_hash);
    let mut p = platform_with_sinks();
    p.spec.logging.buffer.max_size_mib = 2048;
    let c = logging::render(&p, NS, &tiers()).unwrap();
    assert_ne!(a.config_hash, c.config_hash);
}

#[test]
fn node_agent_daemonset_has_only_the_documented_privileges() {
    let mut p = default_platform();
    p.spec.hardening.node_selector = BTreeMap::from([("medplat.io/pool".into(), "data".into())]);
    p.spec.hardening.disabled_kernel_modules = vec!["cramfs".into(), "usb-storage".into()];
    p.spec.hardening.interval = "15m".into();
    let ch = node_agent::render(&p, NS);
    let ds = serde_json::to_value(&ch.daemon_set).unwrap();
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["tolerations"], json!([{ "operator": "Exists" }]));
    assert_eq!(pod["hostNetwork"], true);
    assert!(pod.get("hostPID").is_none() && pod.get("hostIPC").is_none());
    assert_eq!(pod["nodeSelector"]["medplat.io/pool"], "data");
    assert_eq!(pod["serviceAccountName"], "medplat-node-agent");
    assert_eq!(pod["volumes"][0]["hostPath"]["path"], "/");
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["capabilities"], json!({ "drop": ["ALL"] }));
    assert_eq!(c["volumeMounts"][0]["readOnly"], true);
    assert_eq!(c["volumeMounts"][0]["mountPath"], "/host");
    assert!(
        c["resources"]["limits"]["cpu"].is_string()
            && c["resources"]["limits"]["memory"].is_string()
    );
    assert_eq!(
        c["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.nodeName"
    );
    // The rendered command line is one `medplat node-agent` accepts.
    let args: Vec<String> = serde_json::from_value(c["args"].clone()).unwrap();
    let mut argv = vec!["medplat".to_string()];
    argv.extend(args);
    let cli = medplat::cli::Cli::try_parse_from(&argv).unwrap();
    let medplat::cli::Command::NodeAgent(a) = cli.command else {
        panic!("not node-agent: {argv:?}");
    };
    assert_eq!(a.interval, "15m");
    assert_eq!(a.disabled_kernel_modules, vec!["cramfs", "usb-storage"]);
    assert_eq!(a.root, std::path::PathBuf::from("/host"));
}

#[test]
fn node_agent_may_only_touch_its_own_nodecompliance() {
    let ch = node_agent::render(&default_platform(), NS);
    let role = serde_json::to_value(&ch.cluster_role).unwrap();
    let rules = role["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 2);
    for r in rules {
        assert_eq!(r["apiGroups"], json!(["medplat.io"]));
        let verbs: Vec<&str> = r["verbs"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(!verbs.contains(&"delete") && !verbs.contains(&"*") && !verbs.contains(&"list"));
    }
    let binding = serde_json::to_value(&ch.cluster_role_binding).unwrap();
    assert_eq!(binding["subjects"][0]["namespace"], NS);
    let vap = serde_json::to_value(&ch.admission_policy).unwrap();
    let expr = vap["spec"]["validations"][0]["expression"]
        .as_str()
        .unwrap();
    assert!(expr.contains("system:serviceaccount:medplat-system:medplat-node-agent"));
    assert!(expr.contains("authentication.kubernetes.io/node-name"));
    assert_eq!(
        ch.admission_policy_binding
            .spec
            .as_ref()
            .unwrap()
            .validation_actions,
        Some(vec!["Deny".to_string()])
    );
}

#[test]
fn the_hospital_example_platform_renders_valid_children() {
    use medplat::api::{Platform, StorageTier};
    use medplat::render::platform::rules::{RulesTarget, alerting_children};
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/hospital");
    let objects = medplat::manifests::load(&[dir]).unwrap();
    let platform: Platform = objects
        .iter()
        .find(|o| o.kind() == "Platform")
        .unwrap()
        .typed()
        .unwrap();
    let tiers: BTreeMap<String, StorageTierSpec> = objects
        .iter()
        .filter(|o| o.kind() == "StorageTier")
        .map(|o| {
            let t: StorageTier = o.typed().unwrap();
            (t.metadata.name.clone().unwrap(), t.spec)
        })
        .collect();
    let logging = logging::render(&platform, NS, &tiers).unwrap();
    assert!(logging.children().unwrap().len() >= 10);
    assert_eq!(
        node_agent::render(&platform, NS).children().unwrap().len(),
        6
    );
    for target in [RulesTarget::PrometheusRule, RulesTarget::ConfigMap] {
        assert!(!alerting_children(&platform, NS, target).unwrap().is_empty());
    }
    // With the audit tier's retention cut to 90 days, the same Platform is refused.
    let mut short = tiers.clone();
    short
        .get_mut(&platform.spec.logging.audit_tier)
        .unwrap()
        .retention_days = 90;
    assert!(matches!(
        logging::render(&platform, NS, &short),
        Err(LoggingError::Invalid(_))
    ));
}
