//! kubesim throughput and memory benchmark: `cargo bench -p kubesim`.
//!
//! Measures, in process on loopback through `kube::Client` (HTTP/1.1, JSON):
//! - create throughput (concurrent writers), and the same writes without HTTP (store only);
//! - list throughput over 5,000 objects;
//! - watch delivery to one watcher, and fan-out to 10 watchers;
//! - resident memory added by 50,000 stored objects.
//!
//! Each figure is the median of several runs, measured side by side in one process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

const RUNS: usize = 5;
const WRITES: usize = 5_000;
const WRITERS: usize = 32;

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "medplat", "medplat.io/pipeline": "lab-results"}},
        "data": {"pipeline.json": "x".repeat(512)}
    }))
    .unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

async fn create_many(api: &Api<ConfigMap>, prefix: &str, n: usize) -> Duration {
    let start = Instant::now();
    let per = n / WRITERS;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let api = api.clone();
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                api.create(&PostParams::default(), &cm(&format!("{prefix}-{w}-{i}")))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

async fn fresh_ns(api_client: &kube::Client, name: &str) -> Api<ConfigMap> {
    let ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(api_client.clone());
    ns.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
    )
    .await
    .unwrap();
    Api::namespaced(api_client.clone(), name)
}

async fn watch_delivery(sim: &kubesim::Sim, run: usize, watchers: usize) -> Duration {
    let client = sim.client();
    let api = fresh_ns(&client, &format!("watch-{watchers}-{run}")).await;
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let total = WRITES / WRITERS * WRITERS;
    let mut handles = Vec::new();
    let ready = Arc::new(tokio::sync::Barrier::new(watchers + 1));
    for _ in 0..watchers {
        let api = api.clone();
        let rv = rv.clone();
        let ready = ready.clone();
        handles.push(tokio::spawn(async move {
            let mut stream = api
                .watch(&WatchParams::default().timeout(290), &rv)
                .await
                .unwrap()
                .boxed();
            ready.wait().await;
            let mut seen = 0;
            while seen < total {
                match stream.next().await {
                    Some(Ok(WatchEvent::Added(_))) => seen += 1,
                    Some(Ok(_)) => {}
                    other => panic!("watch ended early: {other:?}"),
                }
            }
            Instant::now()
        }));
    }
    ready.wait().await;
    let start = Instant::now();
    create_many(&api, "w", total).await;
    let mut last = start;
    for h in handles {
        last = last.max(h.await.unwrap());
    }
    last - start
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sim = kubesim::Sim::builder().log_capacity(50_000).controllers(false).start().await.unwrap();
        let client = sim.client();
        let total = WRITES / WRITERS * WRITERS;

        let mut http_writes = Vec::new();
        let mut lists = Vec::new();
        for run in 0..RUNS {
            let api = fresh_ns(&client, &format!("bench-{run}")).await;
            let t = create_many(&api, "cm", total).await;
            http_writes.push(total as f64 / t.as_secs_f64());
            let start = Instant::now();
            let n = 20;
            for _ in 0..n {
                let l = api.list(&ListParams::default()).await.unwrap();
                assert_eq!(l.items.len(), total);
            }
            lists.push(n as f64 / start.elapsed().as_secs_f64());
        }

        let mut store_writes = Vec::new();
        let objects = sim.objects();
        let cm_rt = objects.store().registry().get("", "v1", "configmaps").unwrap();
        for run in 0..RUNS {
            let ns = format!("store-{run}");
            sim.seed(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})).unwrap();
            let opts = kubesim::objects::WriteOptions { manager: "bench".into(), ..Default::default() };
            let start = Instant::now();
            for i in 0..total {
                let body = serde_json::to_value(cm(&format!("s-{i}"))).unwrap();
                objects.run(&cm_rt, || objects.plan_create(&cm_rt, &ns, body.clone(), &opts, false)).unwrap();
            }
            store_writes.push(total as f64 / start.elapsed().as_secs_f64());
        }

        let mut one_watch = Vec::new();
        let mut fan_out = Vec::new();
        for run in 0..RUNS {
            let t1 = watch_delivery(&sim, run, 1).await;
            one_watch.push(total as f64 / t1.as_secs_f64());
            let t10 = watch_delivery(&sim, run, 10).await;
            fan_out.push((total * 10) as f64 / t10.as_secs_f64());
        }
        sim.shutdown().await;

        // Memory: 50,000 objects in a fresh kubesim (store only, so the HTTP client's own
        // allocations do not count), measured as the growth of this process's RSS.
        let before = rss_kib();
        let sim2 = kubesim::Sim::builder().controllers(false).start().await.unwrap();
        let o2 = sim2.objects();
        let rt2 = o2.store().registry().get("", "v1", "configmaps").unwrap();
        let opts = kubesim::objects::WriteOptions { manager: "bench".into(), ..Default::default() };
        for i in 0..50_000 {
            let body = serde_json::to_value(cm(&format!("m-{i}"))).unwrap();
            o2.run(&rt2, || o2.plan_create(&rt2, "default", body.clone(), &opts, false)).unwrap();
        }
        let after = rss_kib();
        assert_eq!(o2.store().count(&rt2.storage), 50_000);
        sim2.shutdown().await;

        println!("kubesim benchmark (median of {RUNS} runs, {total} objects per run, {WRITERS} concurrent writers)");
        println!("  create via kube::Client/HTTP : {:>10.0} writes/s", median(http_writes.clone()));
        println!("  create via store (no HTTP)   : {:>10.0} writes/s", median(store_writes.clone()));
        println!("  list {total} objects via HTTP: {:>10.1} lists/s ({:.0} objects/s)", median(lists.clone()), median(lists) * total as f64);
        println!("  watch delivery, 1 watcher    : {:>10.0} events/s", median(one_watch));
        println!("  watch fan-out, 10 watchers   : {:>10.0} events/s delivered in total", median(fan_out));
        println!(
            "  memory for 50,000 ConfigMaps : {:>10.1} MiB RSS growth ({:.1} KiB/object)",
            after.saturating_sub(before) as f64 / 1024.0,
            after.saturating_sub(before) as f64 / 50_000.0
        );
        println!("  ratio HTTP/store writes      : {:>10.2}", median(http_writes) / median(store_writes));
    });
}
