//! The lower bound: kubesim doing the operator's writes with no operator. A fresh kubesim is
//! seeded with the same hospital (untimed); then every child medplat wrote is server-side
//! applied and every parent's status written once, by 32 concurrent writers over HTTP.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::api::{Patch, PatchParams};
use medplat::controller::apply::dynamic_api;
use medplat_integration::workload::{self, Workload};
use serde_json::{Value, json};

const WRITERS: usize = 32;
const MANAGER: &str = "raw-replay";

fn key(kind: &str, v: &Value) -> (String, String, String) {
    (
        kind.to_string(),
        v["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        v["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

/// A child as medplat applied it: no server-set metadata or status; owner uids mapped from the
/// measured cluster to the fresh one.
fn as_applied(child: &Value, uids: &HashMap<String, String>) -> Value {
    let mut c = child.clone();
    if let Some(o) = c.as_object_mut() {
        o.remove("status");
    }
    if let Some(meta) = c["metadata"].as_object_mut() {
        for k in [
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "managedFields",
        ] {
            meta.remove(k);
        }
        if let Some(owners) = meta
            .get_mut("ownerReferences")
            .and_then(Value::as_array_mut)
        {
            for o in owners {
                if let Some(new) = o["uid"].as_str().and_then(|u| uids.get(u)) {
                    o["uid"] = json!(new);
                }
            }
        }
    }
    if let Some(labels) = c["metadata"]["labels"].as_object_mut()
        && let Some(new) = labels
            .get(medplat::render::common::OWNER_UID)
            .and_then(Value::as_str)
            .and_then(|u| uids.get(u))
    {
        labels.insert(medplat::render::common::OWNER_UID.into(), json!(new));
    }
    // Server-set spec fields (a Service's clusterIP) stay the server's.
    if c["kind"] == "Service"
        && let Some(spec) = c["spec"].as_object_mut()
    {
        spec.remove("clusterIP");
        spec.remove("clusterIPs");
    }
    c
}

enum Write {
    Apply(Value),
    Status(Value),
}

/// Seeds a fresh kubesim with `w`, then times applying `children` and the status of every
/// object of `parents`.
pub async fn raw_writes(w: &Workload, parents: &[Value], children: &[(String, Value)]) -> Duration {
    let sim = kubesim::Sim::builder()
        .nodes(medplat_integration::Cluster::default_nodes())
        .log_capacity(1_000_000)
        .history_limit(100_000)
        .start()
        .await
        .unwrap();
    for crd in medplat::api::all_crds() {
        sim.seed(&serde_json::to_value(&crd).unwrap()).unwrap();
    }
    workload::seed(&sim, w);
    let mut uids = HashMap::new();
    let mut fresh = HashMap::new();
    for (v, k) in medplat_integration::state::PARENTS {
        for o in medplat_integration::state::stored(&sim, v, k) {
            fresh.insert(
                key(k, &o),
                o["metadata"]["uid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
    }
    let mut writes = Vec::new();
    for p in parents {
        let kind = p["kind"].as_str().unwrap_or_default();
        if let (Some(old), Some(new)) = (p["metadata"]["uid"].as_str(), fresh.get(&key(kind, p))) {
            uids.insert(old.to_string(), new.clone());
        }
        writes.push(Write::Status(json!({
            "apiVersion": p["apiVersion"],
            "kind": p["kind"],
            "metadata": {"name": p["metadata"]["name"], "namespace": p["metadata"]["namespace"]},
            "status": p["status"],
        })));
    }
    let mut applies: Vec<Write> = children
        .iter()
        .map(|(_, c)| Write::Apply(as_applied(c, &uids)))
        .collect();
    // Children before statuses, as the operator orders them.
    applies.append(&mut writes);
    let total = applies.len();
    let queue = Arc::new(Mutex::new(applies.into_iter()));
    let client = sim.client();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        let queue = queue.clone();
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().unwrap().next();
                let Some(write) = next else { break };
                let (obj, status) = match write {
                    Write::Apply(o) => (o, false),
                    Write::Status(o) => (o, true),
                };
                let api = dynamic_api(
                    &client,
                    obj["apiVersion"].as_str().unwrap(),
                    obj["kind"].as_str().unwrap(),
                    obj["metadata"]["namespace"].as_str(),
                );
                let name = obj["metadata"]["name"].as_str().unwrap().to_string();
                let params = PatchParams::apply(MANAGER).force();
                let result = if status {
                    api.patch_status(&name, &params, &Patch::Apply(&obj)).await
                } else {
                    api.patch(&name, &params, &Patch::Apply(&obj)).await
                };
                if let Err(e) = result {
                    panic!("raw write of {} {name}: {e}", obj["kind"]);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let took = start.elapsed();
    eprintln!("raw: {total} writes in {:.1}s", took.as_secs_f64());
    sim.shutdown().await;
    took
}
