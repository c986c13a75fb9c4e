//! The end-to-end story, driven by `kubectl` against kubesim (default) or a real cluster
//! (`MEDPLAT_E2E_KUBECONFIG`): install, the example hospital Ready, a non-compliant pipeline
//! rejected by the webhook, the same pipeline blocked by the controller with the webhook off,
//! fixed and run, a node losing hardening and its sensitive pods leaving it, a grant expiring on time, and an uninstall that keeps the data's claims.
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

    step(
        6,
        "a node loses hardening: it loses its label and its sensitive pods leave it",
    );
    node_loses_hardening(&t).await;

    step(7, "a grant expires: its RoleBinding disappears on time");
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
        8,
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

/// Running pods labelled L3 or above, as (namespace/name, node, whether a Job owns it).
fn sensitive_pods(t: &Target) -> Vec<(String, String, bool)> {
    let pods = json(&t.must(&["get", "pods", "-A", "-l", "medplat.io/level", "-o", "json"]));
    pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            matches!(
                p["metadata"]["labels"]["medplat.io/level"].as_str(),
                Some("L3" | "L4" | "L5")
            ) && p["status"]["phase"] == "Running"
                && p["metadata"]["deletionTimestamp"].is_null()
        })
        .filter_map(|p| {
            let node = p["spec"]["nodeName"].as_str()?;
            Some((
                format!(
                    "{}/{}",
                    p["metadata"]["namespace"].as_str()?,
                    p["metadata"]["name"].as_str()?
                ),
                node.to_string(),
                p["metadata"]["ownerReferences"][0]["kind"] == "Job",
            ))
        })
        .collect()
}

fn hardened_label(t: &Target, node: &str) -> Option<String> {
    let n = json(&t.must(&["get", "node", node, "-o", "json"]));
    n["metadata"]["labels"]["medplat.io/hardened"]
        .as_str()
        .map(str::to_string)
}

/// The Platform is in Enforce mode (as the example hospital sets it). One node's agent
/// reports a failing check, exactly the status it writes when someone turns ASLR off on the
/// host: the node loses `medplat.io/hardened` at once, its L3+ pods are evicted with a Warning
/// Event and come back on hardened nodes. The agent's next clean scan restores the node.
///
/// On a real cluster the step needs at least two hardened nodes and a running L3+ pod (the
/// example ADT listener); the node's real agent overwrites the patched status at its next
/// interval, which is far longer than this step takes.
async fn node_loses_hardening(t: &Target) {
    let hardened_nodes = || {
        let nodes = json(&t.must(&[
            "get",
            "nodes",
            "-l",
            "medplat.io/hardened=true",
            "-o",
            "json",
        ]));
        nodes["items"].as_array().unwrap().len()
    };
    if !t.is_simulated() && hardened_nodes() < 2 {
        eprintln!(
            "e2e step 6 SKIPPED: the cluster has fewer than two nodes labelled medplat.io/hardened=true, so no node can lose hardening while another takes its pods (see e2e/README.md)"
        );
        return;
    }
    let (pod, node, _) = eventually(
        Duration::from_secs(90),
        "a long-running L3+ pod (not a run's Job pod, which may finish) on a hardened node",
        || {
            sensitive_pods(t).into_iter().find(|(_, node, run_pod)| {
                !run_pod && hardened_label(t, node).as_deref() == Some("true")
            })
        },
    )
    .await;
    eprintln!("e2e: {pod} (sensitive) runs on {node}; its agent now reports a failing check");

    let original = json(&t.must(&["get", "nodecompliance", &node, "-o", "json"]))["status"].clone();
    let mut failing = original.clone();
    let checks = failing["checks"].as_array_mut().unwrap();
    let check = checks
        .iter_mut()
        .find(|c| c["status"] == "PASS")
        .expect("the agent's scan has a passing check to fail");
    let failed_id = check["id"].as_str().unwrap().to_string();
    check["status"] = "FAIL".into();
    check["actual"] = "drifted".into();
    failing["compliant"] = false.into();
    failing["summary"]["pass"] = (failing["summary"]["pass"].as_i64().unwrap() - 1).into();
    failing["summary"]["fail"] = (failing["summary"]["fail"].as_i64().unwrap() + 1).into();
    let patch = |status: &Value| {
        t.must(&[
            "patch",
            "nodecompliance",
            &node,
            "--subresource=status",
            "--type=merge",
            "-p",
            &serde_json::json!({ "status": status }).to_string(),
        ]);
    };
    patch(&failing);

    eventually(
        Duration::from_secs(30),
        "the node to lose its hardened label",
        || (hardened_label(t, &node).as_deref() == Some("false")).then_some(()),
    )
    .await;
    eventually(
        Duration::from_secs(60),
        "the sensitive pods to leave the unhardened node and run on hardened ones",
        || {
            let pods = sensitive_pods(t);
            let none_left = pods.iter().all(|(_, n, _)| n != &node);
            let back = pods
                .iter()
                .any(|(_, n, _)| hardened_label(t, n).as_deref() == Some("true"));
            (none_left && back).then_some(())
        },
    )
    .await;
    let (pod_ns, pod_name) = pod.split_once('/').unwrap();
    let events = t.must(&[
        "-n",
        pod_ns,
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={pod_name}"),
        "-o",
        "json",
    ]);
    assert!(
        events.contains("Warning") && events.contains(&node),
        "no Warning Event on the evicted pod {pod}:\n{events}"
    );
    eventually(
        Duration::from_secs(30),
        "the Platform to count the node as not hardened",
        || {
            let p = json(&t.must(&["get", "platform", "default", "-o", "json"]));
            let text = p["status"]["hardenedNodes"].as_str()?.to_string();
            let (h, total) = text.split_once('/')?;
            (h.parse::<u32>().ok()? < total.parse::<u32>().ok()?).then_some(())
        },
    )
    .await;
    eprintln!("e2e: {node} failed {failed_id}; its sensitive pods moved to hardened nodes");

    // The host is fixed: the agent's next scan passes again and the node is hardened again.
    patch(&original);
    eventually(
        Duration::from_secs(30),
        "the node to be hardened again",
        || (hardened_label(t, &node).as_deref() == Some("true")).then_some(()),
    )
    .await;
}
