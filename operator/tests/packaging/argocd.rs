//! The Argo CD health scripts, run by a real Lua 5.1 (the language level of gopher-lua, which
//! Argo CD embeds) against objects of every kind whose conditions come from the operator's own
//! status code (`controller::status::conditions_for`): healthy, progressing, degraded, stale
//! generation, stale condition and no status at all.

use std::io::Write;
use std::process::{Command, Stdio};

use medplat::controller::status::{Outcome, conditions_for};
use serde_json::{Value, json};

use super::common::{repo, skip, yaml_docs};

const KINDS: &[&str] = &[
    "StorageTier",
    "DataSource",
    "Pipeline",
    "AccessPolicy",
    "Platform",
];

/// `v` as a Lua table constructor.
fn lua(v: &Value) -> String {
    match v {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!(
            "\"{}\"",
            s.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        ),
        Value::Array(items) => format!(
            "{{{}}}",
            items.iter().map(lua).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("[{}] = {}", lua(&Value::String(k.clone())), lua(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Runs `script` with `obj` as Argo CD does; returns (status, message).
fn health(lua_bin: &str, script: &str, obj: &Value) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("health.lua");
    std::fs::write(&file, script).unwrap();
    let harness = format!(
        "obj = {}\nlocal hs = assert(loadfile({}))()\nio.write(hs.status, \"\\t\", hs.message or \"\")\n",
        lua(obj),
        lua(&Value::String(file.display().to_string()))
    );
    let mut child = Command::new(lua_bin)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(harness.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "lua failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (status, message) = text.split_once('\t').unwrap();
    (status.to_string(), message.to_string())
}

fn object(kind: &str, generation: i64, status: Option<Value>) -> Value {
    let mut o = json!({"apiVersion": "medplat.io/v1alpha1", "kind": kind, "metadata": {"name": "x", "generation": generation}});
    if let Some(s) = status {
        o["status"] = s;
    }
    o
}

fn status(observed: i64, outcome: &Outcome, condition_generation: i64) -> Value {
    json!({
        "observedGeneration": observed,
        "conditions": serde_json::to_value(conditions_for(&[], Some(condition_generation), outcome, vec![])).unwrap()
    })
}

/// (case, object, expected status, text the message must contain)
fn cases(kind: &str) -> Vec<(&'static str, Value, &'static str, String)> {
    let ready = Outcome::ready("Reconciled", "children in the desired state");
    let stalled = Outcome::stalled(
        "PolicyViolation",
        "L4 data may not flow into tier research-l2",
    );
    let progressing = Outcome::progressing("WaitingForTier", "StorageTier raw-l4 is not ready");
    vec![
        (
            "healthy",
            object(kind, 3, Some(status(3, &ready, 3))),
            "Healthy",
            "Reconciled".into(),
        ),
        (
            "progressing",
            object(kind, 3, Some(status(3, &progressing, 3))),
            "Progressing",
            "WaitingForTier".into(),
        ),
        (
            "degraded",
            object(kind, 3, Some(status(3, &stalled, 3))),
            "Degraded",
            "research-l2".into(),
        ),
        (
            "stale generation",
            object(kind, 4, Some(status(3, &ready, 3))),
            "Progressing",
            "generation 4".into(),
        ),
        (
            "stale condition",
            object(kind, 4, Some(status(4, &ready, 3))),
            "Progressing",
            "generation 3".into(),
        ),
        (
            "no status",
            object(kind, 1, None),
            "Progressing",
            "report status".into(),
        ),
        (
            "no conditions",
            object(kind, 1, Some(json!({"observedGeneration": 1}))),
            "Progressing",
            "Ready".into(),
        ),
    ]
}

fn lua_bin() -> Option<String> {
    for name in ["lua5.1", "lua"] {
        // `lua -v` prints its version on stdout or stderr, depending on the build.
        let ok = Command::new(name)
            .arg("-v")
            .output()
            .map(|o| {
                o.status.success()
                    && format!(
                        "{}{}",
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    )
                    .contains("Lua 5.1")
            })
            .unwrap_or(false);
        if ok {
            return Some(name.to_string());
        }
    }
    skip("lua5.1 (apt-get install lua5.1; Argo CD's health scripts are Lua 5.1)");
    None
}

#[test]
fn the_health_script_reads_the_operators_conditions_for_every_kind() {
    let Some(bin) = lua_bin() else {
        return;
    };
    let script = std::fs::read_to_string(repo().join("deploy/argocd/health.lua")).unwrap();
    for kind in KINDS {
        for (case, obj, want, text) in cases(kind) {
            let (got, message) = health(&bin, &script, &obj);
            assert_eq!(got, want, "{kind} {case}: {message}");
            assert!(
                message.contains(&text),
                "{kind} {case}: message {message:?} lacks {text:?}"
            );
        }
    }
}

#[test]
fn the_argocd_snippet_embeds_the_script_for_every_kind_and_ignores_the_ca_bundle() {
    let script = std::fs::read_to_string(repo().join("deploy/argocd/health.lua")).unwrap();
    let text =
        std::fs::read_to_string(repo().join("deploy/argocd/resource-customizations.yaml")).unwrap();
    let cm = yaml_docs(&text).remove(0);
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], "argocd-cm");
    for kind in KINDS {
        let key = format!("resource.customizations.health.medplat.io_{kind}");
        let embedded = cm["data"][&key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} missing"));
        let normalise = |s: &str| s.lines().map(str::trim_end).collect::<Vec<_>>().join("\n");
        assert_eq!(
            normalise(embedded),
            normalise(&script),
            "{key} differs from deploy/argocd/health.lua"
        );
    }
    let ignore = cm["data"]["resource.customizations.ignoreDifferences.admissionregistration.k8s.io_ValidatingWebhookConfiguration"].as_str().unwrap();
    assert!(ignore.contains("caBundle"));
}
