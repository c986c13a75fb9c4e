//! Fuzz body for the contract: arbitrary YAML or JSON objects through deserialisation of every
//! medplat kind, kubesim's admission (structural schema, defaulting, pruning and CEL) against
//! every CRD, `medplat check`, and the policy engine over whatever sources, tiers, policies and
//! pipelines the input holds, whether or not the schema would admit them.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use jiff::Timestamp;
use medplat::api::access_policy::AccessPolicySpec;
use medplat::api::data_source::DataSourceSpec;
use medplat::api::pipeline::PipelineSpec;
use medplat::api::storage_tier::StorageTierSpec;
use medplat::api::{AccessPolicy, DataSource, NodeCompliance, Pipeline, Platform, StorageTier};
use medplat::manifests::{LoadedObject, parse_stream};
use medplat::policy::{NamedPolicy, PipelineContext, evaluate_pipeline};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Objects beyond this many in one input are ignored: the policy engine is quadratic in them and
/// a slow input teaches the fuzzer nothing a small one would not.
const MAX_OBJECTS: usize = 32;

/// Every CRD as JSON, built once: generating the schemas is the costliest step of all.
fn crds() -> &'static [Value] {
    static CRDS: OnceLock<Vec<Value>> = OnceLock::new();
    CRDS.get_or_init(|| {
        medplat::api::all_crds()
            .iter()
            .filter_map(|c| serde_json::to_value(c).ok())
            .collect()
    })
}

/// The clock the policy engine sees: fixed, so a crash replays.
fn now() -> Timestamp {
    Timestamp::from_second(1_780_000_000).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Runs one input through the whole contract.
pub fn contract(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut objects = match parse_stream(Path::new("fuzz.yaml"), &text) {
        Ok(objects) => objects,
        Err(e) => {
            assert!(!e.to_string().is_empty(), "a parse error says nothing");
            return;
        }
    };
    objects.truncate(MAX_OBJECTS);
    for obj in &objects {
        deserialise_every_kind(&obj.value);
        admit_against_every_crd(&obj.value);
    }
    let report = medplat::check::check_objects(&objects, now());
    for p in &report.problems {
        assert!(!p.reason.is_empty(), "a problem without a reason: {p:?}");
        assert!(!p.message.is_empty(), "a problem without a message: {p:?}");
    }
    evaluate_every_pipeline(&objects);
}

/// Deserialises the value as every kind; what deserialises must serialise and read back to the
/// same JSON (the operator writes status and reads it back through the same types).
fn deserialise_every_kind(value: &Value) {
    round_trip::<DataSource>(value);
    round_trip::<Pipeline>(value);
    round_trip::<StorageTier>(value);
    round_trip::<AccessPolicy>(value);
    round_trip::<Platform>(value);
    round_trip::<NodeCompliance>(value);
}

fn round_trip<T: DeserializeOwned + Serialize>(value: &Value) {
    let Ok(typed) = serde_json::from_value::<T>(value.clone()) else {
        return;
    };
    let Ok(written) = serde_json::to_value(&typed) else {
        return;
    };
    let read_back: T = match serde_json::from_value(written.clone()) {
        Ok(t) => t,
        Err(e) => panic!(
            "{} serialises to JSON it cannot read back: {e}\n{written}",
            std::any::type_name::<T>()
        ),
    };
    let rewritten = serde_json::to_value(&read_back).ok();
    assert_eq!(
        rewritten.as_ref(),
        Some(&written),
        "{} does not round-trip",
        std::any::type_name::<T>()
    );
}

/// Admits the value against every CRD, as it is and then as an update of itself (so that
/// transition rules run too).
fn admit_against_every_crd(value: &Value) {
    for crd in crds() {
        match kubesim::validation::validate_custom_resource(crd, value, None) {
            Ok(admitted) => {
                let _ = kubesim::validation::validate_custom_resource(crd, &admitted, Some(value));
            }
            Err(errors) => {
                assert!(!errors.is_empty(), "a rejection without a cause");
                for e in errors {
                    let _ = e.message_without_path();
                }
            }
        }
    }
}

/// The `spec` of every object read as each kind's spec, regardless of its `kind` and of the
/// schema: the policy engine must cope with anything the types can hold.
fn evaluate_every_pipeline(objects: &[LoadedObject]) {
    let mut sources = BTreeMap::new();
    let mut tiers = BTreeMap::new();
    let mut policies = Vec::new();
    let mut pipelines = Vec::new();
    for (i, obj) in objects.iter().enumerate() {
        let Some(spec) = obj.value.get("spec") else {
            continue;
        };
        let name = match obj.name() {
            "" => format!("object-{i}"),
            n => n.to_string(),
        };
        if let Some(s) = spec_as::<DataSourceSpec>(spec) {
            sources.insert(name.clone(), s);
        }
        if let Some(t) = spec_as::<StorageTierSpec>(spec) {
            tiers.insert(name.clone(), t);
        }
        if let Some(p) = spec_as::<AccessPolicySpec>(spec) {
            policies.push((name.clone(), p));
        }
        if let Some(p) = spec_as::<PipelineSpec>(spec) {
            pipelines.push((name, p));
        }
    }
    let named: Vec<NamedPolicy<'_>> = policies
        .iter()
        .map(|(name, spec)| NamedPolicy {
            namespace: "fuzz",
            name,
            spec,
        })
        .collect();
    for (name, spec) in &pipelines {
        let ctx = PipelineContext {
            namespace: "fuzz",
            name,
            spec,
            service_account: "medplat-worker",
            sources: &sources,
            tiers: &tiers,
            policies: &named,
        };
        let decision = evaluate_pipeline(&ctx, now());
        assert_eq!(
            decision.allowed(),
            decision.blocking().next().is_none(),
            "allowed() disagrees with blocking()"
        );
        assert!(decision.processing_level() >= decision.output.level);
        for v in &decision.violations {
            assert!(
                !v.message.is_empty(),
                "a violation without a message: {v:?}"
            );
        }
    }
}

fn spec_as<T: DeserializeOwned>(spec: &Value) -> Option<T> {
    serde_json::from_value(spec.clone()).ok()
}
