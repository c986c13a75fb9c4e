//! One run of the scale benchmark: seed kubesim, start the operator as a child process, wait
//! for every object to be Ready, count requests and idle writes, read the operator's peak RSS,
//! then time kubesim doing the same writes without the operator.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use medplat_integration::state::{PARENTS, children, not_ready, stored};
use medplat_integration::workload::{self, Options, Size};

use super::replay;

/// The operator's identity, in its User-Agent (`medplat/VERSION (IDENTITY)`).
const IDENTITY: &str = "scale-operator";
/// Give up waiting for Ready after this long.
const READY_TIMEOUT: Duration = Duration::from_secs(3600);

/// What one run measured.
#[derive(Debug)]
pub struct RunResult {
    /// From the operator's start until every object was Ready for its generation.
    pub ready: Duration,
    /// kubesim doing the same writes with 32 concurrent writers and no operator.
    pub raw: Duration,
    /// The operator's peak resident set (VmHWM), KiB.
    pub peak_rss_kib: u64,
    /// The operator's writes until Ready and the listeners available (see `run_once`).
    pub writes: usize,
    /// Children + 1 status per object.
    pub minimum_writes: usize,
    /// The operator's requests until Ready and settled, by verb.
    pub by_verb: BTreeMap<String, usize>,
    /// The operator's writes until Ready and settled, by resource (and subresource).
    pub writes_by_resource: BTreeMap<String, usize>,
    /// The minimum, by resource.
    pub minimum_by_resource: BTreeMap<String, usize>,
    /// How long the settled operator was watched for writes.
    pub idle: Duration,
    /// The operator's writes during the idle period.
    pub idle_writes: usize,
    /// What the idle writes were, if any (first 20).
    pub idle_write_samples: Vec<String>,
}

/// CPU, memory and toolchain notes for the results file.
pub fn machine_notes() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
        })
        .map_or("?".into(), |k| format!("{:.1} GiB", k as f64 / 1048576.0));
    format!("Machine: {cpu}, {cores} cores available, {mem} RAM")
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn plural(kind: &str) -> String {
    medplat::controller::apply::plural_of(kind)
}

fn spawn_operator(kubeconfig: &std::path::Path, log: &std::path::Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    Command::new(std::env::current_exe().unwrap())
        .args(["run", "--metrics-addr", "127.0.0.1:0", "--no-webhook"])
        .env(super::ROLE_ENV, "operator")
        .env("KUBECONFIG", kubeconfig)
        .env("MEDPLAT_POD_NAME", IDENTITY)
        .env_remove("MEDPLAT_NAMESPACE")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// A loopback listener standing in for every PostgreSQL source (probes connect and leave).
async fn probe_target() -> (tokio::task::JoinHandle<()>, u16) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            drop(socket);
        }
    });
    (task, port)
}

/// How many Deployments medplat made (the HL7 listeners) have fewer available replicas than
/// desired.
fn listeners_starting(sim: &kubesim::Sim) -> usize {
    stored(sim, "apps/v1", "Deployment")
        .iter()
        .filter(|d| {
            let want = d["spec"]["replicas"].as_i64().unwrap_or(1);
            d["status"]["availableReplicas"].as_i64().unwrap_or(0) < want
        })
        .count()
}

/// Runs the benchmark once at `size`.
pub async fn run_once(size: Size, idle: Duration, run: usize) -> RunResult {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (probe_task, port) = probe_target().await;
    let w = workload::generate(
        size,
        &Options {
            postgres: ("127.0.0.1".into(), port),
            run_request_every: 0,
            // 03:00 on 1 January: no scheduled run starts during a measurement. Runs that
            // start and finish are changes in the world the operator must report (each
            // Pipeline's `lastRun`), not idle writes; an every-15-minutes schedule put
            // 3,232 such status writes into one 300 s idle window.
            schedule: Some("0 3 1 1 *".into()),
        },
    );
    workload::assert_compliant(&w);
    let sim = kubesim::Sim::builder()
        .nodes(medplat_integration::Cluster::default_nodes())
        .log_capacity(20_000_000)
        .history_limit(100_000)
        .start()
        .await
        .unwrap();
    for crd in medplat::api::all_crds() {
        sim.seed(&serde_json::to_value(&crd).unwrap()).unwrap();
    }
    let seeded = Instant::now();
    workload::seed(&sim, &w);
    eprintln!(
        "seeded {} objects in {:.1}s",
        w.all().count(),
        seeded.elapsed().as_secs_f64()
    );
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).unwrap();
    let log_path = std::env::temp_dir().join(format!(
        "medplat-scale-{}-{}-{}-{run}.log",
        size.pipelines, size.sources, size.policies
    ));
    sim.clear_request_log();

    let start = Instant::now();
    let mut operator = spawn_operator(&kubeconfig, &log_path);
    let pid = operator.id();
    let mut last_report = Instant::now();
    loop {
        let (n, example) = not_ready(&sim);
        if n == 0 {
            break;
        }
        if let Ok(Some(status)) = operator.try_wait() {
            panic!(
                "the operator exited with {status} before Ready; log: {}",
                log_path.display()
            );
        }
        if start.elapsed() > READY_TIMEOUT {
            let _ = operator.kill();
            panic!(
                "{n} objects not Ready after {READY_TIMEOUT:?}, e.g. {}",
                example.unwrap_or_default()
            );
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "  {:>5.0}s: {n} not Ready, RSS {} MiB",
                start.elapsed().as_secs_f64(),
                status_kib(pid, "VmRSS:") / 1024
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ready = start.elapsed();
    // Idle means nothing left to react to. The simulated Deployment controller brings the HL7
    // listeners up a little after their DataSources turn Ready, and each DataSource then
    // records `Reachable` once: a change in the world, not an idle write. So the idle period
    // starts when every listener Deployment is available too.
    while listeners_starting(&sim) > 0 && start.elapsed() < READY_TIMEOUT {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let settled = start.elapsed();
    let ours = |r: &kubesim::RequestRecord| r.user_agent.contains(&format!("({IDENTITY})"));
    let until_ready: Vec<kubesim::RequestRecord> =
        sim.request_log().into_iter().filter(|r| ours(r)).collect();
    let marker = sim.request_log().len();
    eprintln!(
        "Ready after {:.1}s, listeners available after {:.1}s; idling {}s",
        ready.as_secs_f64(),
        settled.as_secs_f64(),
        idle.as_secs()
    );

    tokio::time::sleep(idle).await;
    let idle_log: Vec<kubesim::RequestRecord> = sim.request_log()[marker..]
        .iter()
        .filter(|r| ours(r) && r.is_write())
        .cloned()
        .collect();
    let peak_rss_kib = status_kib(pid, "VmHWM:");
    let _ = operator.kill();
    let _ = operator.wait();

    let mut by_verb = BTreeMap::new();
    let mut writes_by_resource = BTreeMap::new();
    for r in &until_ready {
        *by_verb.entry(r.verb.clone()).or_insert(0) += 1;
        if r.is_write() {
            let key = if r.subresource.is_empty() {
                r.resource.clone()
            } else {
                format!("{}/{}", r.resource, r.subresource)
            };
            *writes_by_resource.entry(key).or_insert(0) += 1;
        }
    }
    let writes = until_ready.iter().filter(|r| r.is_write()).count();

    // The minimum: every child once, every parent's status once.
    let kids = children(&sim);
    let mut minimum_by_resource: BTreeMap<String, usize> = BTreeMap::new();
    for (kind, _) in &kids {
        *minimum_by_resource.entry(plural(kind)).or_insert(0) += 1;
    }
    let mut parents = Vec::new();
    for (v, k) in PARENTS {
        for o in stored(&sim, v, k) {
            *minimum_by_resource
                .entry(format!("{}/status", plural(k)))
                .or_insert(0) += 1;
            parents.push((*o).clone());
        }
    }
    let minimum_writes = minimum_by_resource.values().sum();
    sim.shutdown().await;
    probe_task.abort();

    let raw = replay::raw_writes(&w, &parents, &kids).await;
    RunResult {
        ready,
        raw,
        peak_rss_kib,
        writes,
        minimum_writes,
        by_verb,
        writes_by_resource,
        minimum_by_resource,
        idle,
        idle_writes: idle_log.len(),
        idle_write_samples: idle_log
            .iter()
            .take(20)
            .map(|r| format!("{} {} {}", r.verb, r.path, r.code))
            .collect(),
    }
}
