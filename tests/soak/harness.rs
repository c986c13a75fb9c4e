//! Runs the operator (one replica, or two with leader election) against a kubesim holding a
//! generated hospital, with chaos, until it reaches the fault-free run's state.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::FutureExt;
use medplat::cli::run::user_agent;
use medplat::controller::leader::{LeaderConfig, run_as_leader};
use medplat::controller::{Operator, Settings};
use medplat_integration::state::{differences, not_ready, snapshot, stored};
use medplat_integration::workload::{self, Options, Size, Workload};
use serde_json::Value;
use tokio::task::JoinHandle;

use super::converge_timeout;
use super::requests::{
    busiest_since, by_operator, jobs_created_twice, peak_per_second, rate_since, writer_changes,
    writes_outside_term,
};

/// The Lease the replicas compete for, and how long it lasts: short, so takeovers happen within
/// the run, with the installed ratio of grace to duration (one third).
const LEASE: Duration = Duration::from_secs(6);

/// What the fault-free run ended with.
pub struct Baseline {
    /// Every child and parent status, normalised.
    pub snapshot: BTreeMap<String, Value>,
    /// The busiest second of its requests.
    pub peak: (usize, String),
    /// How long it took.
    pub took: Duration,
}

/// What goes wrong during a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// 5% of requests fail (500, 429, 409), watches drop every 10 s, kubesim restarts twice.
    Faults,
    /// The operator is killed and started again three times.
    Kills,
    /// Two replicas with leader election under the faults of `Faults`; the leader is killed
    /// once.
    Replicas,
}

fn size() -> Size {
    if std::env::var("MEDPLAT_SOAK_SCALE").as_deref() == Ok("full") {
        Size {
            pipelines: 1000,
            sources: 500,
            policies: 100,
            namespaces: 10,
        }
    } else {
        Size {
            pipelines: 100,
            sources: 50,
            policies: 10,
            namespaces: 2,
        }
    }
}

/// A loopback port standing in for every PostgreSQL source, the same for every run (it is in
/// the sources' specs and their egress NetworkPolicies).
fn probe_port() -> u16 {
    static PORT: OnceLock<u16> = OnceLock::new();
    *PORT.get_or_init(|| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for socket in listener.incoming() {
                drop(socket);
            }
        });
        port
    })
}

fn hospital() -> Workload {
    workload::generate(
        size(),
        &Options {
            postgres: ("127.0.0.1".into(), probe_port()),
            run_request_every: 2,
            // Never fires during a test, so both runs see the same Jobs: only run requests.
            schedule: Some("0 3 1 1 *".into()),
        },
    )
}

fn settings() -> Settings {
    Settings {
        probe_timeout: Duration::from_millis(300),
        resync: Duration::from_secs(60),
        ..Settings::default()
    }
}

/// Panics anywhere but in the test code itself (an assertion), recorded by a hook.
fn panics() -> &'static Mutex<Vec<String>> {
    static PANICS: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    PANICS.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let file = info
                .location()
                .map(|l| l.file().to_string())
                .unwrap_or_default();
            if !file.starts_with("tests/")
                && let Ok(mut p) = panics().lock()
            {
                p.push(format!("{info}"));
            }
            previous(info);
        }));
        Mutex::new(Vec::new())
    })
}

async fn start_sim(w: &Workload) -> kubesim::Sim {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = kubesim::Sim::builder()
        .nodes(medplat_integration::Cluster::default_nodes())
        .start()
        .await
        .unwrap();
    for crd in medplat::api::all_crds() {
        sim.seed(&serde_json::to_value(&crd).unwrap()).unwrap();
    }
    sim.seed(&serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "medplat-system"}}))
        .unwrap();
    workload::seed(&sim, w);
    sim
}

fn client(config: &kube::Config, id: &str) -> kube::Client {
    let mut config = config.clone();
    config.headers.push(user_agent(id));
    kube::Client::try_from(config).unwrap()
}

/// One operator process, as far as the API server can tell: aborting its task is a kill.
struct Replica {
    id: String,
    task: JoinHandle<()>,
}

impl Replica {
    /// A single replica without leader election.
    fn single(sim: &kubesim::Sim, id: &str) -> Replica {
        let client = client(&sim.kube_config(), id);
        let never = futures::future::pending::<()>().boxed().shared();
        let (operator, run) = Operator::start(client, settings(), never).unwrap();
        note_leader_start();
        let task = tokio::spawn(async move {
            let _keep = operator;
            run.await;
        });
        Replica {
            id: id.into(),
            task,
        }
    }

    /// A replica with leader election that, like a pod restarted by its Deployment, starts
    /// again whenever it stops leading or cannot reach its Lease.
    fn elected(sim: &kubesim::Sim, id: &str) -> Replica {
        let config = sim.kube_config();
        let identity = id.to_string();
        let task = tokio::spawn(async move {
            loop {
                let client = client(&config, &identity);
                let (operator, watches) =
                    Operator::start_caches(client.clone(), settings()).unwrap();
                let watches = tokio::spawn(watches);
                let leader = LeaderConfig {
                    namespace: "medplat-system".into(),
                    name: "medplat-operator".into(),
                    identity: identity.clone(),
                    duration: LEASE,
                    grace: LEASE / 3,
                };
                let never = futures::future::pending::<()>().boxed().shared();
                let outcome = run_as_leader(client, leader, never, |stop| {
                    note_leader_start();
                    operator.controllers(stop).boxed()
                })
                .await;
                watches.abort();
                eprintln!("replica {identity} stopped: {outcome:?}; restarting");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        Replica {
            id: id.into(),
            task,
        }
    }

    fn kill(self) -> String {
        self.task.abort();
        self.id
    }
}

/// The share of parents that are Ready.
fn ready_share(sim: &kubesim::Sim) -> f64 {
    let total: usize = medplat_integration::state::PARENTS
        .iter()
        .map(|(v, k)| stored(sim, v, k).len())
        .sum();
    let (not, _) = not_ready(sim);
    1.0 - not as f64 / total.max(1) as f64
}

async fn until_ready_share(sim: &kubesim::Sim, share: f64) {
    let start = Instant::now();
    while ready_share(sim) < share && start.elapsed() < converge_timeout() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `sim` holds `expected` (or, without one, until every parent is Ready, every run
/// request has a finished run, and nothing changes for a second). Returns the final snapshot.
async fn converge(
    sim: &kubesim::Sim,
    expected: Option<&BTreeMap<String, Value>>,
) -> BTreeMap<String, Value> {
    let start = Instant::now();
    let mut previous: Option<BTreeMap<String, Value>> = None;
    loop {
        let (not, example) = not_ready(sim);
        if not == 0 {
            let now = snapshot(sim);
            let done = match expected {
                Some(e) => &now == e,
                None => runs_finished(sim) && previous.as_ref() == Some(&now),
            };
            if done {
                return now;
            }
            previous = Some(now);
        }
        if start.elapsed() > converge_timeout() {
            let detail = match expected {
                Some(e) => differences(e, &snapshot(sim), 10).join("\n"),
                None => example.unwrap_or_default(),
            };
            panic!(
                "no convergence after {:?} ({not} not Ready):\n{detail}",
                converge_timeout()
            );
        }
        tokio::time::sleep(Duration::from_millis(if expected.is_some() {
            500
        } else {
            1000
        }))
        .await;
    }
}

/// Whether every Pipeline with a run request has a finished run for it.
fn runs_finished(sim: &kubesim::Sim) -> bool {
    stored(sim, "medplat.io/v1alpha1", "Pipeline")
        .iter()
        .all(|p| {
            let Some(request) =
                p["metadata"]["annotations"][medplat::api::pipeline::RUN_REQUESTED_AT].as_str()
            else {
                return true;
            };
            p["status"]["lastHandledRunRequest"].as_str() == Some(request)
                && p["status"]["lastRun"]["result"] == "Succeeded"
        })
}

/// The fault-free run, once per test binary.
pub fn baseline() -> &'static Baseline {
    static BASE: OnceLock<Baseline> = OnceLock::new();
    BASE.get_or_init(|| {
        std::thread::spawn(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let w = hospital();
                    workload::assert_compliant(&w);
                    let sim = start_sim(&w).await;
                    let start = Instant::now();
                    let op = Replica::single(&sim, "baseline");
                    let snapshot = converge(&sim, None).await;
                    let took = start.elapsed();
                    op.kill();
                    let peak = peak_per_second(&sim.request_log());
                    eprintln!(
                        "baseline ({}): {} objects in {:.1}s, peak {} requests/s at {}",
                        size(),
                        snapshot.len(),
                        took.as_secs_f64(),
                        peak.0,
                        peak.1
                    );
                    sim.shutdown().await;
                    Baseline {
                        snapshot,
                        peak,
                        took,
                    }
                })
        })
        .join()
        .unwrap()
    })
}

/// Runs `scenario` and checks it ends in the baseline's state, with no Job created twice, no
/// panic, and a bounded request rate.
pub async fn run_scenario(base: &Baseline, scenario: Scenario) {
    let _ = panics();
    let w = hospital();
    let sim = Arc::new(start_sim(&w).await);
    let start = Instant::now();
    let faulty = scenario != Scenario::Kills;
    // 5% of requests fail and every watch drops every 10 s, until the checks below.
    let watch_closer = faulty.then(|| {
        sim.faults()
            .fail_randomly(5.0, "*", "*", &[500, 429, 409], 0x5eed);
        let sim = sim.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                sim.faults().close_watches();
            }
        })
    });

    let mut replicas: Vec<Replica> = match scenario {
        Scenario::Faults | Scenario::Kills => vec![Replica::single(&sim, "soak-0")],
        Scenario::Replicas => vec![
            Replica::elected(&sim, "replica-a"),
            Replica::elected(&sim, "replica-b"),
        ],
    };
    match scenario {
        Scenario::Faults => {
            for share in [0.25, 0.6] {
                until_ready_share(&sim, share).await;
                eprintln!(
                    "{scenario:?}: kubesim restarts at {:.0}% Ready",
                    share * 100.0
                );
                sim.restart().await;
            }
        }
        Scenario::Kills => {
            for (i, share) in [0.2, 0.45, 0.7].into_iter().enumerate() {
                until_ready_share(&sim, share).await;
                let killed = replicas.remove(0).kill();
                eprintln!(
                    "{scenario:?}: killed {killed} at {:.0}% Ready",
                    share * 100.0
                );
                replicas.push(Replica::single(&sim, &format!("soak-{}", i + 1)));
            }
        }
        Scenario::Replicas => {
            until_ready_share(&sim, 0.25).await;
            sim.restart().await;
            until_ready_share(&sim, 0.4).await;
            let holder = lease_holder(&sim);
            if let Some(i) = replicas.iter().position(|r| Some(&r.id) == holder.as_ref()) {
                let killed = replicas.remove(i).kill();
                eprintln!("{scenario:?}: killed the leader {killed} at 40% Ready");
                // A restarted pod of a Deployment has a new name, so a new identity.
                replicas.push(Replica::elected(&sim, &format!("{killed}-restarted")));
            }
            until_ready_share(&sim, 0.6).await;
            sim.restart().await;
        }
    }

    let mut converged = converge(&sim, Some(&base.snapshot)).await;
    let took = start.elapsed();
    // Still converged a few seconds later, faults still on: nothing oscillates. A takeover
    // makes the new leader reconcile every parent once, which is its job, not oscillation. The
    // state is already converged, so `converge` returns while that pass is still running (two
    // test runs measured the pass itself: 111 and 159 requests/s of idempotent patches, the
    // second after a takeover just before the window, a third after the leader restarted and
    // took its own Lease back, which `leaseTransitions` does not count). So a window starts
    // only once the current leader has led as long as a fault-free start took, and is
    // measured again when a replica began leading inside it.
    let settle = Duration::from_secs(5);
    let mut windows = 0;
    let (log, quiet_rate, quiet_busiest) = loop {
        windows += 1;
        if let Some(wait) = since_leader_start().and_then(|s| base.took.checked_sub(s)) {
            tokio::time::sleep(wait).await;
            converged = converge(&sim, Some(&base.snapshot)).await;
        }
        let window_start = Instant::now();
        let log_at_convergence = sim.request_log().len();
        tokio::time::sleep(settle).await;
        let log = sim.request_log();
        let quiet_rate = rate_since(&log, log_at_convergence, settle.as_secs_f64());
        let quiet_busiest = busiest_since(&log, log_at_convergence, 8).join(", ");
        let restarted = since_leader_start().is_some_and(|s| s < window_start.elapsed());
        if !restarted || windows == 3 {
            break (log, quiet_rate, quiet_busiest);
        }
        eprintln!(
            "{scenario:?}: a replica began leading inside the quiet window ({quiet_rate:.1} requests/s); measuring again once converged"
        );
        converged = converge(&sim, Some(&base.snapshot)).await;
    };
    let after = snapshot(&sim);
    let drift = differences(&converged, &after, 10);
    assert!(
        drift.is_empty(),
        "{scenario:?}: the state moved after converging:\n{}",
        drift.join("\n")
    );
    if let Some(t) = watch_closer {
        t.abort();
    }
    sim.faults().clear();
    for r in replicas {
        r.kill();
    }

    let peak = peak_per_second(&log);
    let failed = log
        .iter()
        .filter(|r| by_operator(r) && r.code >= 400)
        .count();
    eprintln!(
        "{scenario:?} ({}): converged in {:.1}s (fault-free {:.1}s); {} requests, {failed} answered with an error; peak {} requests/s at {} (fault-free {}); {:.1} requests/s once converged ({quiet_busiest})",
        size(),
        took.as_secs_f64(),
        base.took.as_secs_f64(),
        log.iter().filter(|r| by_operator(r)).count(),
        peak.0,
        peak.1,
        base.peak.0,
        quiet_rate
    );

    let twice = jobs_created_twice(&log);
    assert!(
        twice.is_empty(),
        "{scenario:?}: Jobs created twice:\n{}",
        twice.join("\n")
    );
    let panicked = panics().lock().map(|p| p.clone()).unwrap_or_default();
    assert!(
        panicked.is_empty(),
        "{scenario:?}: panics:\n{}",
        panicked.join("\n")
    );
    // Backoff, not a hot loop: errors must not multiply the busiest second, and a converged
    // operator under faults is nearly quiet.
    assert!(
        peak.0 <= 2 * base.peak.0 + 100,
        "{scenario:?}: peak {} requests/s against {} without faults",
        peak.0,
        base.peak.0
    );
    assert!(
        quiet_rate < 50.0,
        "{scenario:?}: {quiet_rate:.1} requests/s after converging: {quiet_busiest}"
    );
    if scenario == Scenario::Replicas {
        let changes = writer_changes(&log);
        let transitions = lease_transitions(&sim);
        eprintln!(
            "{scenario:?}: writers changed {} times, the Lease changed hands {transitions} times: {changes:?}",
            changes.len()
        );
        let outside = writes_outside_term(&log);
        assert!(
            outside.is_empty(),
            "{scenario:?}: {} writes by a replica not holding the Lease, e.g.:\n{}",
            outside.len(),
            outside
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
        // The first acquisition is no transition and no change of writer.
        assert!(
            changes.len() <= transitions as usize,
            "{scenario:?}: replicas wrote in turn {} times but the Lease changed hands only {transitions} times: {changes:?}",
            changes.len()
        );
    }
    if let Ok(sim) = Arc::try_unwrap(sim) {
        sim.shutdown().await;
    }
}

fn lease(sim: &kubesim::Sim) -> Option<Value> {
    stored(sim, "coordination.k8s.io/v1", "Lease")
        .into_iter()
        .find(|l| l["metadata"]["name"] == "medplat-operator")
        .map(|l| (*l).clone())
}

fn lease_holder(sim: &kubesim::Sim) -> Option<String> {
    lease(sim).and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
}

/// When a replica last began running its controllers (a single replica starting, an elected
/// one winning the Lease, or re-acquiring it after a restart under the same name, which leaves
/// `leaseTransitions` as it was): its start-up pass reconciles every parent once.
fn leader_started() -> &'static Mutex<Option<Instant>> {
    static STARTED: OnceLock<Mutex<Option<Instant>>> = OnceLock::new();
    STARTED.get_or_init(|| Mutex::new(None))
}

fn note_leader_start() {
    if let Ok(mut started) = leader_started().lock() {
        *started = Some(Instant::now());
    }
}

/// How long ago a replica last began running its controllers.
fn since_leader_start() -> Option<Duration> {
    leader_started()
        .lock()
        .ok()
        .and_then(|started| started.map(|t| t.elapsed()))
}

fn lease_transitions(sim: &kubesim::Sim) -> i64 {
    lease(sim)
        .and_then(|l| l["spec"]["leaseTransitions"].as_i64())
        .unwrap_or(0)
}
