//! The alert rules, runbooks and Alertmanager example, checked with the real tools
//! (`promtool`, `amtool`) and against each other.
//!
//! A missing tool skips its test loudly, unless `MEDPLAT_REQUIRE_REAL_TOOLS=1` (set by
//! `scripts/test-all`), which makes it fail.

// Test helpers outside #[test] functions unwrap too: a panic is a test failure.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use medplat::render::platform::alerts::alert_names;
use medplat::render::platform::default_platform;
use medplat::render::platform::rules::{RulesFile, prometheus_rule, rule_groups, rules_file_yaml};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rules_path() -> PathBuf {
    repo().join("deploy/prometheus/medplat-rules.yaml")
}

fn run(tool: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(tool).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn committed_rules_file_matches_the_default_platform() {
    let generated = rules_file_yaml(&default_platform().spec).unwrap();
    let on_disk = std::fs::read_to_string(rules_path()).unwrap_or_default();
    assert!(
        on_disk == generated,
        "deploy/prometheus/medplat-rules.yaml is out of date; run \
         `cargo run -- alerts --format prometheus-rules > deploy/prometheus/medplat-rules.yaml`"
    );
}

/// A Platform exercising every alerting knob, to check that overrides still give valid rules.
fn customised_platform_yaml() -> &'static str {
    r#"apiVersion: medplat.io/v1alpha1
kind: Platform
metadata: {name: default}
spec:
  logging: {auditTier: audit, buffer: {maxSizeMiB: 4096}}
  alerting:
    ruleLabels: {release: kube-prometheus-stack}
    routingLabels: {team: medplat-platform, hospital: hq}
    runbookBaseUrl: https://git.hospital.local/platform/medplat/-/blob/main/runbooks/
    overrides:
      - {alert: MedplatPipelineRunFailed, for: 30s, severity: critical, labels: {pager: data}}
      - {alert: MedplatDataSourceUnreachable, disabled: true}
      - {alert: MedplatAccessGrantExpiringSoon, severity: info}
"#
}

#[test]
fn promtool_accepts_the_rendered_rules() {
    let Some(promtool) = support::real_tool("promtool") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The checked-in default, a customised Platform's rules file, and the `.spec` of its
    // PrometheusRule (promtool cannot read the wrapper, REFERENCE.md).
    let platform_file = dir.path().join("platform.yaml");
    std::fs::write(&platform_file, customised_platform_yaml()).unwrap();
    let platform = medplat::cli::alerts::load_platform(&platform_file).unwrap();
    let custom = dir.path().join("custom.yaml");
    std::fs::write(&custom, rules_file_yaml(&platform.spec).unwrap()).unwrap();
    let obj = serde_json::to_value(prometheus_rule(&platform, "medplat-system").unwrap()).unwrap();
    let spec = dir.path().join("spec.yaml");
    std::fs::write(&spec, serde_yaml::to_string(&obj["spec"]).unwrap()).unwrap();
    for file in [rules_path(), custom, spec] {
        let (ok, out) = run(&promtool, &["check", "rules", file.to_str().unwrap()]);
        assert!(ok, "promtool check rules {}:\n{out}", file.display());
    }
}

#[test]
fn promtool_unit_tests_cover_every_group_and_alert_and_pass() {
    let dir = repo().join("operator/tests/promtool");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    // One test file per group, named after it; every alert named in some test.
    let groups = rule_groups(&default_platform().spec).unwrap();
    let stems: BTreeSet<String> = files
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let group_names: BTreeSet<String> = groups.iter().map(|g| g.name.clone()).collect();
    assert_eq!(stems, group_names, "one promtool test file per alert group");
    let all_tests: String = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    for name in alert_names() {
        let firing = format!("alertname: {name}");
        assert!(
            all_tests.matches(&firing).count() >= 2,
            "{name} needs a not-firing and a firing case"
        );
    }
    let Some(promtool) = support::real_tool("promtool") else {
        return;
    };
    for file in &files {
        let (ok, out) = run(&promtool, &["test", "rules", file.to_str().unwrap()]);
        assert!(ok, "promtool test rules {}:\n{out}", file.display());
    }
}

#[test]
fn every_alert_has_a_runbook_and_every_runbook_an_alert() {
    let dir = repo().join("runbooks");
    let pages: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md") && n != "README.md")
        .map(|n| n.trim_end_matches(".md").to_string())
        .collect();
    let alerts: BTreeSet<String> = alert_names().into_iter().map(str::to_string).collect();
    let missing: Vec<_> = alerts.difference(&pages).collect();
    let orphans: Vec<_> = pages.difference(&alerts).collect();
    assert!(missing.is_empty(), "alerts without a runbook: {missing:?}");
    assert!(orphans.is_empty(), "runbooks without an alert: {orphans:?}");
    let index = std::fs::read_to_string(dir.join("README.md")).unwrap();
    for name in &alerts {
        let page = std::fs::read_to_string(dir.join(format!("{name}.md"))).unwrap();
        assert!(page.starts_with(&format!("# {name}\n")), "{name}: title");
        let mut last = 0;
        for section in ["## Meaning", "## Impact", "## Diagnosis", "## Mitigation"] {
            let at = page
                .find(section)
                .unwrap_or_else(|| panic!("{name}: no {section}"));
            assert!(at >= last, "{name}: {section} out of order");
            last = at;
        }
        let diagnosis =
            &page[page.find("## Diagnosis").unwrap()..page.find("## Mitigation").unwrap()];
        assert!(
            diagnosis.contains("kubectl "),
            "{name}: Diagnosis needs kubectl commands"
        );
        assert!(
            index.contains(&format!("({name}.md)")),
            "{name}: not in runbooks/README.md"
        );
    }
}

fn alertmanager_config() -> PathBuf {
    repo().join("examples/alertmanager/alertmanager.yml")
}

#[test]
fn alertmanager_example_is_valid() {
    let Some(amtool) = support::real_tool("amtool") else {
        return;
    };
    let (ok, out) = run(
        &amtool,
        &["check-config", alertmanager_config().to_str().unwrap()],
    );
    assert!(ok, "amtool check-config:\n{out}");
}

#[test]
fn alertmanager_routes_by_severity_and_component() {
    let Some(amtool) = support::real_tool("amtool") else {
        return;
    };
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "alertname=MedplatSensitiveWorkloadOnUnhardenedNode",
                "severity=critical",
                "component=node-hardening",
                "namespace=icu",
            ],
            "security-pager",
        ),
        (
            &[
                "alertname=MedplatAuditLogDeliveryFailing",
                "severity=critical",
                "component=log-collection",
            ],
            "security-pager",
        ),
        (
            &[
                "alertname=MedplatPipelineRunFailed",
                "severity=critical",
                "component=pipeline",
            ],
            "data-platform-pager",
        ),
        (
            &[
                "alertname=MedplatNodeHardeningNonCompliant",
                "severity=warning",
                "component=node-hardening",
            ],
            "security-ticket",
        ),
        (
            &[
                "alertname=MedplatWorkerAccessDenied",
                "severity=warning",
                "component=access-policy",
            ],
            "security-ticket",
        ),
        (
            &[
                "alertname=MedplatDataSourceUnreachable",
                "severity=warning",
                "component=datasource",
            ],
            "data-platform-ticket",
        ),
        (
            &[
                "alertname=MedplatOperatorReconcileErrors",
                "severity=warning",
                "component=operator",
            ],
            "data-platform-ticket",
        ),
        (
            &[
                "alertname=MedplatAccessGrantExpiringSoon",
                "severity=info",
                "component=access-policy",
            ],
            "data-platform-channel",
        ),
        (
            &["alertname=KubePodCrashLooping", "severity=critical"],
            "default",
        ),
    ];
    let config = format!("--config.file={}", alertmanager_config().display());
    for (labels, want) in cases {
        let mut args = vec!["config", "routes", "test", config.as_str()];
        args.extend_from_slice(labels);
        let out = Command::new(&amtool).args(&args).output().unwrap();
        let got = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(&got, want, "labels {labels:?}");
    }
}

#[test]
fn alertmanager_critical_inhibits_warning_of_the_same_alert_and_namespace() {
    let text = std::fs::read_to_string(alertmanager_config()).unwrap();
    let config: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let rules = config["inhibit_rules"].as_sequence().unwrap();
    let found = rules.iter().any(|r| {
        let has = |key: &str, m: &str| {
            r[key]
                .as_sequence()
                .is_some_and(|s| s.iter().any(|x| x.as_str() == Some(m)))
        };
        let equal: BTreeSet<&str> = r["equal"]
            .as_sequence()
            .map(|s| s.iter().filter_map(|x| x.as_str()).collect())
            .unwrap_or_default();
        has("source_matchers", "severity=\"critical\"")
            && has("target_matchers", "severity=\"warning\"")
            && equal == BTreeSet::from(["alertname", "namespace"])
    });
    assert!(
        found,
        "no inhibit rule: critical inhibits warning on equal alertname+namespace"
    );
}

#[test]
fn cli_prints_a_prometheus_rule_and_a_rules_file() {
    let bin = env!("CARGO_BIN_EXE_medplat");
    let out = Command::new(bin).args(["alerts"]).output().unwrap();
    assert!(out.status.success());
    let obj: serde_yaml::Value = serde_yaml::from_slice(&out.stdout).unwrap();
    assert_eq!(obj["kind"].as_str(), Some("PrometheusRule"));
    assert_eq!(obj["apiVersion"].as_str(), Some("monitoring.coreos.com/v1"));

    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("platform.yaml");
    std::fs::write(&f, customised_platform_yaml()).unwrap();
    let out = Command::new(bin)
        .args(["alerts", "--format", "prometheus-rules", "-f"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file: RulesFile = serde_yaml::from_slice(&out.stdout).unwrap();
    let rule = file
        .groups
        .iter()
        .flat_map(|g| &g.rules)
        .find(|r| r.alert == "MedplatPipelineRunFailed")
        .unwrap();
    assert_eq!(rule.for_, "30s");
    assert_eq!(rule.labels["team"], "medplat-platform");
    assert_eq!(
        rule.annotations["runbook_url"],
        "https://git.hospital.local/platform/medplat/-/blob/main/runbooks/MedplatPipelineRunFailed"
    );
}

#[test]
fn cli_rejects_a_manifest_that_is_not_a_platform() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x.yaml");
    std::fs::write(&f, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_medplat"))
        .args(["alerts", "-f"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a medplat.io Platform"));
    let out = Command::new(env!("CARGO_BIN_EXE_medplat"))
        .args(["alerts", "-f", "/nonexistent/platform.yaml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/platform.yaml")
    );
}
