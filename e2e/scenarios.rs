//! The end-to-end story, driven by `kubectl` against kubesim (default) or a real cluster
//! (`MEDPLAT_E2E_KUBECONFIG`): install, the example hospital Ready, a non-compliant pipeline
//! rejected by the webhook, the same pipeline blocked by the controller with the webhook off,
//! fixed and run, a grant expiring on time, and an uninstall that keeps the data's claims.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use medplat_e2e::{OPERATOR_NAMESPACE, Target, dev_secrets_yaml, eventually, repo_root};
use serde_json::Value;

const WAIT: &str = "--timeout=120s";

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn step(n: u32, what: &str) {
    eprintln!("e2e step {n}: {what}");
}

/// The overlay to install: `deploy/base` on kubesim, `MEDPLAT_E2E_OVERLAY` (default
/// `deploy/overlays/kind`) on a real cluster.
fn overlay(t: &Target) -> String {
    if t.is_simulated() {
        "deploy/base".into()
    } else {
        std::env::var("MEDPLAT_E2E_OVERLAY").unwrap_or_else(|_| "deploy/overlays/kind".into())
    }
}

/// On kubesim, points the installed webhook configuration at the in-process webhook: kubesim
/// cannot resolve Services. On a real cluster the Service works as installed.
fn route_webhook_to_loopback(t: &Target) {
    let Some(url) = t.simulated.as_ref().and_then(|s| s.webhook_url.clone()) else {
        return;
    };
    let mut vwc = json(&t.must(&[
        "get",
        "validatingwebhookconfiguration",
        "medplat",
        "-o",
        "json",
    ]));
    for hook in vwc["webhooks"].as_array_mut().unwrap() {
        let ca = hook["clientConfig"]["caBundle"].clone();
        hook["clientConfig"] = serde_json::json!({"url": url, "caBundle": ca});
    }
    if let Some(m) = vwc["metadata"].as_object_mut() {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    t.must_with(&["replace", "-f", "-"], &vwc.to_string());
}

// kubectl runs synchronously; kubesim is served by the other runtime threads meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_hospital_story() {
    let mut t = Target::from_env().await;

    step(1, "install the CRDs and the operator with kustomize");
    let dry = t.must(&["apply", "--dry-run=client", "-f", "crds/"]);
    assert_eq!(
        dry.matches("(dry run)").count(),
        6,
        "kubectl parses every CRD:\n{dry}"
    );
    t.must(&["apply", "--server-side", "-f", "crds/"]);
    let ov = overlay(&t);
    let rendered = t.must(&["kustomize", &ov]);
    t.must_with(&["apply", "--server-side", "-f", "-"], &rendered);
    t.start_operator().await;
    // The operator writes the CA of its certificate into the configuration's caBundle.
    eventually(
        Duration::from_secs(60),
        "caBundle in the webhook configuration",
        || {
            let v = json(&t.must(&[
                "get",
                "validatingwebhookconfiguration",
                "medplat",
                "-o",
                "json",
            ]));
            v["webhooks"][0]["clientConfig"]["caBundle"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(|_| ())
        },
    )
    .await;
    route_webhook_to_loopback(&t);

    step(2, "apply the example hospital and wait for Ready");
    t.must(&[
        "apply",
        "--server-side",
        "-f",
        "examples/hospital/00-namespace.yaml",
    ]);
    t.must_with(&["apply", "--server-side", "-f", "-"], &dev_secrets_yaml());
    t.must(&["apply", "--server-side", "-f", "examples/hospital/"]);
    t.must(&[
        "wait",
        "--for=condition=Ready",
        "storagetiers",
        "--all",
        WAIT,
    ]);
    for kind in ["datasources", "pipelines", "accesspolicies"] {
        t.must(&[
            "wait",
            "--for=condition=Ready",
            kind,
            "--all",
            "-n",
            "clinical",
            WAIT,
        ]);
    }
    let listing = t.must(&["get", "medplat", "-A"]);
    for name in [
        "research-extract",
        "lab-results-curated",
        "raw-l4",
        "clinicians",
    ] {
        assert!(
            listing.contains(name),
            "kubectl get medplat -A lacks {name}:\n{listing}"
        );
    }

    step(
        3,
        "a non-compliant pipeline is rejected by the webhook, with the reasons",
    );
    let violation = repo_root().join("examples/violations/pipeline-raw-l4-into-research.yaml");
    let violation = violation.to_str().unwrap();
    let rejected = t.kubectl(&["apply", "--server-side", "-f", violation], None);
    assert!(
        !rejected.ok,
        "the webhook admitted a non-compliant pipeline:\n{}",
        rejected.stdout
    );
    for reason in ["denied the request", "TierLevelTooLow", "TierNotEncrypted"] {
        assert!(
            rejected.stderr.contains(reason),
            "no {reason} in:\n{}",
            rejected.stderr
        );
    }

    step(
        4,
        "with the webhook off, the same pipeline is admitted and blocked: PolicyCompliant=False, no Job",
    );
    t.must(&["delete", "validatingwebhookconfiguration", "medplat"]);
    t.must(&["apply", "--server-side", "-f", violation]);
    t.must(&[
        "wait",
        "--for=condition=PolicyCompliant=False",
        "-n",
        "clinical",
        "pipeline/raw-copy-to-research",
        WAIT,
    ]);
    let described = t.must(&[
        "-n",
        "clinical",
        "get",
        "pipeline",
        "raw-copy-to-research",
        "-o",
        "json",
    ]);
    let p = json(&described);
    assert!(!p["status"]["violations"].as_array().unwrap().is_empty());
    let events = t.must(&[
        "-n",
        "clinical",
        "get",
        "events",
        "--field-selector",
        "reason=PolicyViolation",
        "-o",
        "json",
    ]);
    assert!(
        events.contains("raw-copy-to-research"),
        "no PolicyViolation event:\n{events}"
    );

    step(
        5,
        "fix it: the pipeline becomes compliant and its run request becomes a Job",
    );
    let fix = r#"{"spec": {"purpose": "Treatment", "sources": ["lis-results"], "serviceAccountName": "medplat-pipeline-lab-results-curated",
        "sink": {"tier": "raw-l4", "dataset": "lis/copy"}},
        "metadata": {"annotations": {"medplat.io/run-requested-at": "2026-11-28T12:00:00Z"}}}"#;
    t.must(&[
        "-n",
        "clinical",
        "patch",
        "pipeline",
        "raw-copy-to-research",
        "--type",
        "merge",
        "-p",
        fix,
    ]);
    t.must(&[
        "wait",
        "--for=condition=PolicyCompliant=True",
        "-n",
        "clinical",
        "pipeline/raw-copy-to-research",
        WAIT,
    ]);
    eventually(Duration::from_secs(60), "the fixed pipeline's Job", || {
        let jobs = t.must(&[
            "-n",
            "clinical",
            "get",
            "jobs",
            "-l",
            "medplat.io/owner-name=raw-copy-to-research",
            "-o",
            "name",
        ]);
        (!jobs.trim().is_empty()).then_some(())
    })
    .await;

    step(6, "a grant expires: its RoleBinding disappears on time");
    let until = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(8);
    let grant = format!(
        "apiVersion: medplat.io/v1alpha1\nkind: AccessPolicy\nmetadata: {{name: short-grant, namespace: clinical}}\nspec:\n  purpose: Research\n  subjects: [{{kind: Group, name: visiting-researchers}}]\n  rules:\n    - resources: {{kind: StorageTier, names: [research-l2]}}\n      verbs: [read]\n      constraints: {{deidentifiedOnly: true, validUntil: \"{until}\"}}\n"
    );
    t.must_with(&["apply", "--server-side", "-f", "-"], &grant);
    eventually(
        Duration::from_secs(30),
        "the short grant's RoleBinding",
        || {
            t.kubectl(
                &[
                    "-n",
                    "clinical",
                    "get",
                    "rolebinding",
                    "medplat-access-short-grant",
                ],
                None,
            )
            .ok
            .then_some(())
        },
    )
    .await;
    eventually(
        Duration::from_secs(40),
        "the RoleBinding to go at validUntil",
        || {
            (!t.kubectl(
                &[
                    "-n",
                    "clinical",
                    "get",
                    "rolebinding",
                    "medplat-access-short-grant",
                ],
                None,
            )
            .ok)
                .then_some(())
        },
    )
    .await;
    assert!(
        jiff::Timestamp::now() >= until,
        "the grant was removed before validUntil"
    );

    step(
        7,
        "uninstall: the operator and the CRDs go, the data's claims stay",
    );
    let claims_before = t.must(&[
        "-n",
        "clinical",
        "get",
        "pvc",
        "-l",
        "medplat.io/tier",
        "-o",
        "name",
    ]);
    assert!(
        claims_before.contains("medplat-tier-raw-l4"),
        "no tier claims to keep:\n{claims_before}"
    );
    t.must_with(&["delete", "--ignore-not-found", "-f", "-"], &rendered);
    t.stop_operator().await;
    t.must(&["delete", "-f", "crds/", "--wait=true", WAIT]);
    eventually(
        Duration::from_secs(60),
        "the medplat resources to be gone",
        || (!t.kubectl(&["get", "storagetiers"], None).ok).then_some(()),
    )
    .await;
    let claims_after = t.must(&[
        "-n",
        "clinical",
        "get",
        "pvc",
        "-l",
        "medplat.io/tier",
        "-o",
        "name",
    ]);
    assert_eq!(
        claims_after, claims_before,
        "uninstalling deleted data claims"
    );
    let ns = t.kubectl(&["get", "namespace", OPERATOR_NAMESPACE], None);
    assert!(
        !ns.ok || ns.stdout.contains("Terminating"),
        "the operator namespace is still there"
    );
}
