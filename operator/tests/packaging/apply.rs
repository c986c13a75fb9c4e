//! Every install flavour — the kustomize base, the hospital overlay, the base with the
//! monitoring component, and the Helm chart — built with the real tools and applied with
//! `kubectl apply --server-side` to an in-process kubesim; every object must be accepted and
//! then be there.

use std::path::Path;
use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use super::common::{helm_template, key, kustomize, rendered_objects, repo};

/// Stand-ins for the Prometheus operator's CRDs (open schemas): enough for kubesim to serve
/// ServiceMonitor and PrometheusRule, as a cluster with the Prometheus operator does.
fn monitoring_crds() -> Vec<Value> {
    [("ServiceMonitor", "servicemonitors"), ("PrometheusRule", "prometheusrules")]
        .iter()
        .map(|(kind, plural)| {
            json!({
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": format!("{plural}.monitoring.coreos.com")},
                "spec": {
                    "group": "monitoring.coreos.com",
                    "scope": "Namespaced",
                    "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase(), "listKind": format!("{kind}List")},
                    "versions": [{"name": "v1", "served": true, "storage": true,
                        "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]
                }
            })
        })
        .collect()
}

struct Kubectl {
    kubeconfig: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Kubectl {
    fn new(sim: &kubesim::Sim) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        sim.write_kubeconfig(&kubeconfig).unwrap();
        Kubectl {
            kubeconfig,
            _dir: dir,
        }
    }

    /// Runs kubectl with `stdin`; returns (success, stdout, stderr).
    async fn run(&self, args: &[&str], stdin: &str) -> (bool, String, String) {
        let mut child = tokio::process::Command::new("kubectl")
            .args(args)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self._dir.path().join("cache"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl must be installed (it is on every medplat machine)");
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.as_bytes()).await.unwrap();
        drop(input);
        let out = child.wait_with_output().await.unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    async fn apply(&self, objects: &[Value]) {
        let stream: String = objects
            .iter()
            .map(|o| format!("---\n{}\n", serde_json::to_string(o).unwrap()))
            .collect();
        let (ok, out, err) = self
            .run(
                &[
                    "apply",
                    "--server-side",
                    "--field-manager=install-test",
                    "-f",
                    "-",
                ],
                &stream,
            )
            .await;
        assert!(
            ok,
            "kubectl apply --server-side failed:\nstdout: {out}\nstderr: {err}"
        );
    }

    async fn apply_dir(&self, dir: &Path) {
        let (ok, out, err) = self
            .run(&["apply", "--server-side", "-f", dir.to_str().unwrap()], "")
            .await;
        assert!(
            ok,
            "kubectl apply -f {} failed:\n{out}\n{err}",
            dir.display()
        );
    }

    /// Every object of `objects`, read back from the server.
    async fn get(&self, objects: &[Value]) -> Vec<Value> {
        let stream: String = objects
            .iter()
            .map(|o| format!("---\n{}\n", serde_json::to_string(o).unwrap()))
            .collect();
        let (ok, out, err) = self.run(&["get", "-f", "-", "-o", "json"], &stream).await;
        assert!(ok, "kubectl get failed:\n{out}\n{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        match v["kind"].as_str() {
            Some("List") => v["items"].as_array().unwrap().clone(),
            _ => vec![v],
        }
    }
}

/// A kustomization in a temporary directory: the base plus the monitoring component.
fn base_with_monitoring() -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    // kustomize takes only relative paths to other kustomizations.
    let deploy = relative_to(dir.path(), &repo().join("deploy").canonicalize().unwrap());
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - {}\ncomponents:\n  - {}\n",
            deploy.join("base").display(),
            deploy.join("components/monitoring").display()
        ),
    )
    .unwrap();
    kustomize(dir.path())
}

/// `target` (absolute) as a path relative to `from` (absolute).
fn relative_to(from: &Path, target: &Path) -> std::path::PathBuf {
    let from = from.canonicalize().unwrap();
    let up = from.components().count() - 1;
    let mut rel: std::path::PathBuf = (0..up).map(|_| "..").collect();
    rel.push(target.strip_prefix("/").unwrap());
    rel
}

/// The objects of each install flavour; `None` for the chart when Helm's engine is missing.
fn flavours() -> Vec<(&'static str, Option<Vec<Value>>)> {
    let namespace =
        |name: &str| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    let chart = |values: Value| {
        helm_template(&values, "medplat-system").map(|t| {
            let mut objs = vec![namespace("medplat-system")];
            objs.extend(rendered_objects(&t));
            objs
        })
    };
    vec![
        ("deploy/base", Some(kustomize(&repo().join("deploy/base")))),
        (
            "deploy/overlays/hospital",
            Some(kustomize(&repo().join("deploy/overlays/hospital"))),
        ),
        (
            "deploy/base + components/monitoring",
            Some(base_with_monitoring()),
        ),
        ("charts/medplat (defaults)", chart(json!({}))),
        (
            "charts/medplat (monitoring, fail closed)",
            chart(
                json!({"serviceMonitor": {"enabled": true}, "prometheusRule": {"enabled": true}, "webhook": {"failurePolicy": "Fail"}}),
            ),
        ),
    ]
}

#[tokio::test]
async fn every_install_flavour_applies_to_kubesim() {
    for (what, objects) in flavours() {
        let Some(objects) = objects else {
            continue;
        };
        assert!(
            objects.len() >= 12,
            "{what}: only {} objects",
            objects.len()
        );
        let sim = kubesim::Sim::builder().start().await.unwrap();
        let k = Kubectl::new(&sim);
        k.apply_dir(&repo().join("crds")).await;
        k.apply(&monitoring_crds()).await;
        k.apply(&objects).await;
        let stored = k.get(&objects).await;
        let mut want: Vec<String> = objects.iter().map(key).collect();
        let mut got: Vec<String> = stored.iter().map(key).collect();
        want.sort();
        got.sort();
        assert_eq!(got, want, "{what}: not every object was stored");
        sim.shutdown().await;
    }
}

#[test]
fn the_hospital_overlay_changes_what_it_says() {
    let objs = kustomize(&repo().join("deploy/overlays/hospital"));
    let find = |kind: &str| objs.iter().find(|o| o["kind"] == kind).unwrap();
    for o in &objs {
        if o["kind"] != "Namespace" && o["metadata"].get("namespace").is_some() {
            assert_eq!(o["metadata"]["namespace"], "hospital-medplat", "{}", key(o));
        }
    }
    assert_eq!(find("Namespace")["metadata"]["name"], "hospital-medplat");
    let crb = find("ClusterRoleBinding");
    assert_eq!(crb["subjects"][0]["namespace"], "hospital-medplat");
    let d = find("Deployment");
    assert_eq!(d["spec"]["replicas"], 3);
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    let image = c["image"].as_str().unwrap();
    assert!(image.starts_with("registry.hospital.local/"), "{image}");
    let worker = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "MEDPLAT_WORKER_IMAGE")
        .unwrap();
    assert_eq!(
        worker["value"], image,
        "workers follow the operator's image"
    );
    let w = &find("ValidatingWebhookConfiguration")["webhooks"][0];
    assert_eq!(w["failurePolicy"], "Fail");
    assert_eq!(
        w["clientConfig"]["service"]["namespace"],
        "hospital-medplat"
    );
    assert_eq!(
        w["namespaceSelector"]["matchExpressions"][0]["values"],
        json!(["kube-system", "hospital-medplat"])
    );
}
