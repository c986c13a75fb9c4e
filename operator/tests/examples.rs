//! The example manifests against the Rust types, the CRD schemas and the policy engine:
//! `examples/hospital/` is clean and every file in `examples/violations/` fails exactly as its
//! header says.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use jiff::Timestamp;
use medplat::api::{AccessPolicy, DataSource, Level, Pipeline, Platform, StorageTier};
use medplat::check::{Severity, check_objects};
use medplat::manifests::{LoadedObject, load};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A fixed instant, so grant expiry in the examples does not make the tests age.
fn now() -> Timestamp {
    "2026-11-28T00:00:00Z".parse().unwrap()
}

fn hospital() -> Vec<LoadedObject> {
    load(&[repo().join("examples/hospital")]).unwrap()
}

#[test]
fn every_hospital_object_loads_through_the_rust_types() {
    let objects = hospital();
    let mut kinds = BTreeSet::new();
    for o in &objects {
        let result = match o.kind() {
            "StorageTier" => o.typed::<StorageTier>().map(drop),
            "DataSource" => o.typed::<DataSource>().map(drop),
            "Pipeline" => o.typed::<Pipeline>().map(drop),
            "AccessPolicy" => o.typed::<AccessPolicy>().map(drop),
            "Platform" => o.typed::<Platform>().map(drop),
            _ => Ok(()),
        };
        result.unwrap_or_else(|e| panic!("{}: {e}", o.location()));
        kinds.insert(o.kind().to_string());
    }
    for k in [
        "StorageTier",
        "DataSource",
        "Pipeline",
        "AccessPolicy",
        "Platform",
    ] {
        assert!(kinds.contains(k), "examples/hospital has no {k}");
    }
}

#[test]
fn the_hospital_passes_schema_cel_and_policy() {
    let report = check_objects(&hospital(), now());
    assert_eq!(report.pipelines, 4);
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
}

#[test]
fn the_hospital_pipelines_get_the_levels_they_are_designed_for() {
    use medplat::policy::{NamedPolicy, PipelineContext, evaluate_pipeline};
    let objects = hospital();
    let typed = |kind: &'static str| objects.iter().filter(move |o| o.kind() == kind);
    let tiers = typed("StorageTier")
        .map(|o| (o.name().to_string(), o.typed::<StorageTier>().unwrap().spec))
        .collect();
    let sources = typed("DataSource")
        .map(|o| (o.name().to_string(), o.typed::<DataSource>().unwrap().spec))
        .collect();
    let policies: Vec<AccessPolicy> = typed("AccessPolicy").map(|o| o.typed().unwrap()).collect();
    let named: Vec<NamedPolicy<'_>> = policies
        .iter()
        .map(|p| NamedPolicy {
            namespace: "clinical",
            name: p.metadata.name.as_deref().unwrap(),
            spec: &p.spec,
        })
        .collect();
    let expected = [
        ("lab-results-curated", Level::L4, Level::L3),
        ("research-extract", Level::L4, Level::L2),
        ("adt-curated", Level::L4, Level::L3),
        ("his-patients-sync", Level::L4, Level::L4),
    ];
    for (name, input, output) in expected {
        let p: Pipeline = typed("Pipeline")
            .find(|o| o.name() == name)
            .unwrap()
            .typed()
            .unwrap();
        let sa = p.service_account();
        let d = evaluate_pipeline(
            &PipelineContext {
                namespace: "clinical",
                name,
                spec: &p.spec,
                service_account: &sa,
                sources: &sources,
                tiers: &tiers,
                policies: &named,
            },
            now(),
        );
        assert_eq!(
            (d.input_level, d.output.level),
            (input, output),
            "{name}: {:?}",
            d.lowerings
        );
        assert!(d.allowed(), "{name}: {:?}", d.violations);
    }
}

/// The `# <prefix> Reason field` lines of a violation file (`expect:` errors, `warn:` warnings).
fn expectations(path: &Path, prefix: &str) -> BTreeSet<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .map(|l| {
            let (reason, field) = l.split_once(' ').unwrap();
            (reason.to_string(), field.trim().to_string())
        })
        .collect()
}

#[test]
fn every_violation_fails_exactly_as_documented() {
    let dir = repo().join("examples/violations");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "only {} violation examples", files.len());
    let mut failures = Vec::new();
    for file in files {
        let expected = expectations(&file, "# expect: ");
        let expected_warnings = expectations(&file, "# warn: ");
        assert!(
            !expected.is_empty(),
            "{} has no '# expect:' header",
            file.display()
        );
        let mut objects = hospital();
        objects.extend(load(std::slice::from_ref(&file)).unwrap());
        let report = check_objects(&objects, now());
        let found = |severity| -> BTreeSet<(String, String)> {
            report
                .problems
                .iter()
                .filter(|p| p.file.starts_with(&file.display().to_string()))
                .filter(|p| p.severity == severity)
                .map(|p| (p.reason.clone(), p.field.clone()))
                .collect()
        };
        let got = found(Severity::Error);
        let warned = found(Severity::Warning);
        let others: Vec<_> = report
            .problems
            .iter()
            .filter(|p| !p.file.starts_with(&file.display().to_string()))
            .collect();
        if got != expected || warned != expected_warnings || !others.is_empty() {
            failures.push(format!(
                "{}: expected {expected:?}, got {got:?}; warnings expected {expected_warnings:?}, got {warned:?}; elsewhere {others:?}",
                file.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn check_exit(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_medplat"))
        .current_dir(repo())
        .arg("check")
        .args(args)
        .args(["--now", "2026-11-28T00:00:00Z"])
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn check_exits_0_clean_1_on_problems_2_on_unreadable_input() {
    let (code, out) = check_exit(&["-f", "examples/hospital"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = check_exit(&[
        "-f",
        "examples/hospital",
        "-f",
        "examples/violations/tier-l4-unencrypted.yaml",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("tier-l4-unencrypted.yaml:1: error: StorageTier/scratch-l4: spec.encryption: SchemaInvalid"), "{out}");
    let (code, _) = check_exit(&["-f", "examples/does-not-exist"]);
    assert_eq!(code, 2);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.yaml"), "kind: [unclosed\n").unwrap();
    let (code, _) = check_exit(&["-f", dir.path().to_str().unwrap()]);
    assert_eq!(code, 2);
}

#[test]
fn check_json_output_is_machine_readable() {
    let (code, out) = check_exit(&[
        "-f",
        "examples/hospital",
        "-f",
        "examples/violations/pipeline-expired-grant.yaml",
        "-o",
        "json",
    ]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let p = &v["problems"][0];
    assert_eq!(p["reason"], "GrantExpired");
    assert_eq!(p["field"], "spec.sink.tier");
    assert_eq!(p["object"], "Pipeline/clinical/quality-audit");
    assert_eq!(p["severity"], "error");
}

#[test]
fn the_sandbox_embeds_exactly_the_example_hospital() {
    use medplat::sandbox::embedded::{DEV_SECRETS, MANIFESTS};
    let dir = repo().join("examples/hospital");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    files.sort();
    let embedded: Vec<String> = MANIFESTS.iter().map(|(f, _)| f.to_string()).collect();
    assert_eq!(embedded, files, "update operator/src/sandbox/embedded.rs");
    for (file, text) in MANIFESTS {
        assert_eq!(*text, std::fs::read_to_string(dir.join(file)).unwrap());
    }
    let mut secrets: Vec<(String, String)> = Vec::new();
    for s in std::fs::read_dir(dir.join("secrets")).unwrap() {
        let s = s.unwrap().path();
        if s.is_dir() {
            for k in std::fs::read_dir(&s).unwrap() {
                let k = k.unwrap().path();
                secrets.push((
                    s.file_name().unwrap().to_string_lossy().into_owned(),
                    k.file_name().unwrap().to_string_lossy().into_owned(),
                ));
            }
        }
    }
    secrets.sort();
    let mut embedded: Vec<(String, String)> = DEV_SECRETS
        .iter()
        .map(|(s, k, _)| (s.to_string(), k.to_string()))
        .collect();
    embedded.sort();
    assert_eq!(embedded, secrets, "update operator/src/sandbox/embedded.rs");
}
