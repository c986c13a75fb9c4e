//! The e2e harness: a target cluster driven through the real `kubectl`.
//!
//! By default the target is an in-process kubesim with medplat's operator and webhook running
//! in this process (kubesim's pods are simulated, so the installed Deployment cannot run the
//! operator itself). With `MEDPLAT_E2E_KUBECONFIG` set, the target is that cluster, where the
//! installed Deployment runs the operator; the scenarios are the same `kubectl` commands.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use futures::FutureExt;
use medplat::controller::{Operator, Settings};
use medplat::webhook::certs::CertSource;
use medplat::webhook::tls::ServingIdentity;

/// The operator's namespace, as the kustomize base installs it.
pub const OPERATOR_NAMESPACE: &str = "medplat-system";

/// The repository's root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The in-process pieces when the target is kubesim.
pub struct Simulated {
    /// The simulated API server.
    pub sim: kubesim::Sim,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The simulated node agents, which never end by themselves.
    agents: Option<tokio::task::JoinHandle<()>>,
    /// The webhook's loopback URL, once started.
    pub webhook_url: Option<String>,
}

/// Where the scenarios run.
pub struct Target {
    /// The kubeconfig kubectl uses.
    pub kubeconfig: PathBuf,
    /// kubectl's discovery cache, fresh per run so new kinds are seen at once.
    pub cache_dir: tempfile::TempDir,
    /// `Some` when the target is kubesim.
    pub simulated: Option<Simulated>,
    _dir: tempfile::TempDir,
}

/// The result of a kubectl run.
#[derive(Debug)]
pub struct Output {
    /// Whether it exited 0.
    pub ok: bool,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

impl Target {
    /// kubesim (default) or the cluster of `MEDPLAT_E2E_KUBECONFIG`.
    pub async fn from_env() -> Target {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = tempfile::tempdir().unwrap();
        match std::env::var_os("MEDPLAT_E2E_KUBECONFIG") {
            Some(path) => {
                eprintln!(
                    "e2e: running against the real cluster of {}",
                    PathBuf::from(&path).display()
                );
                Target {
                    kubeconfig: PathBuf::from(path),
                    cache_dir,
                    simulated: None,
                    _dir: dir,
                }
            }
            None => {
                eprintln!(
                    "e2e: running against an in-process kubesim (set MEDPLAT_E2E_KUBECONFIG for a real cluster)"
                );
                let sim = kubesim::Sim::builder()
                    .nodes(vec![
                        kubesim::NodeSpec::new("worker-1"),
                        kubesim::NodeSpec::new("worker-2"),
                        kubesim::NodeSpec::new("worker-3"),
                    ])
                    .start()
                    .await
                    .unwrap();
                let kubeconfig = dir.path().join("kubeconfig");
                sim.write_kubeconfig(&kubeconfig).unwrap();
                Target {
                    kubeconfig,
                    cache_dir,
                    simulated: Some(Simulated {
                        sim,
                        stop: None,
                        tasks: Vec::new(),
                        agents: None,
                        webhook_url: None,
                    }),
                    _dir: dir,
                }
            }
        }
    }

    /// Whether the target is kubesim.
    pub fn is_simulated(&self) -> bool {
        self.simulated.is_some()
    }

    /// Runs kubectl with `args` (and `stdin`, if given) against the target.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.cache_dir.path())
            .args(args)
            .current_dir(repo_root())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run kubectl: {e}"));
        if let Some(input) = stdin
            && let Some(mut s) = child.stdin.take()
        {
            s.write_all(input.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        Output {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs kubectl and fails the test, with its output, when it fails.
    pub fn must(&self, args: &[&str]) -> String {
        let out = self.kubectl(args, None);
        assert!(
            out.ok,
            "kubectl {} failed:\n{}\n{}",
            args.join(" "),
            out.stdout,
            out.stderr
        );
        out.stdout
    }

    /// Runs kubectl with stdin and fails the test when it fails.
    pub fn must_with(&self, args: &[&str], stdin: &str) -> String {
        let out = self.kubectl(args, Some(stdin));
        assert!(
            out.ok,
            "kubectl {} failed:\n{}\n{}",
            args.join(" "),
            out.stdout,
            out.stderr
        );
        out.stdout
    }

    /// On kubesim, starts the operator (leader election on, like the Deployment) and the
    /// webhook in this process, and points the installed ValidatingWebhookConfiguration at
    /// the webhook's loopback URL (kubesim cannot reach Services). On a real cluster the
    /// installed Deployment is the operator: waits for it to roll out.
    pub async fn start_operator(&mut self) {
        let Some(s) = self.simulated.as_mut() else {
            self.must(&[
                "-n",
                OPERATOR_NAMESPACE,
                "rollout",
                "status",
                "deployment/medplat-operator",
                "--timeout=300s",
            ]);
            return;
        };
        let client = s.sim.client();
        let (stop, mut rx) = tokio::sync::watch::channel(false);
        let shutdown = async move {
            let _ = rx.wait_for(|v| *v).await;
        }
        .boxed()
        .shared();
        let settings = Settings {
            probe_timeout: Duration::from_millis(500),
            resync: Duration::from_secs(5),
            ..Settings::default()
        };
        let (operator, watches) = Operator::start_caches(client.clone(), settings).unwrap();
        let leader = medplat::controller::leader::LeaderConfig {
            namespace: OPERATOR_NAMESPACE.into(),
            name: "medplat-operator".into(),
            identity: "e2e-replica".into(),
            duration: Duration::from_secs(15),
            grace: Duration::from_secs(5),
        };
        let options = medplat::webhook::WebhookOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            cert: CertSource {
                namespace: OPERATOR_NAMESPACE.into(),
                secret: "medplat-webhook-tls".into(),
                identity: ServingIdentity {
                    service: "medplat-webhook".into(),
                    namespace: OPERATOR_NAMESPACE.into(),
                    extra_dns: vec![],
                    extra_ips: vec!["127.0.0.1".parse().unwrap()],
                },
                config_name: Some("medplat".into()),
            },
        };
        let (webhook, serve) = medplat::webhook::start(
            client.clone(),
            operator.context.parents.clone(),
            options,
            shutdown.clone(),
        )
        .await
        .unwrap();
        s.webhook_url = Some(format!("https://{}/validate", webhook.local_addr));
        // kubesim runs no containers, so the node-agent DaemonSet the Platform renders scans
        // nothing: simulated agents write every node's NodeCompliance, all hardened, through
        // the real agent's writer, as the DaemonSet does on a real cluster.
        let scanned = ["worker-1", "worker-2", "worker-3"]
            .map(|n| (n.to_string(), true))
            .to_vec();
        s.agents = Some(tokio::spawn(medplat::sandbox::agents::run(
            client.clone(),
            scanned,
            medplat::sandbox::agents::example_interval(),
        )));
        let controllers_shutdown = shutdown.clone();
        s.tasks.push(tokio::spawn(watches));
        s.tasks.push(tokio::spawn(serve));
        s.tasks.push(tokio::spawn(async move {
            let _ = medplat::controller::leader::run_as_leader(
                client,
                leader,
                controllers_shutdown,
                |stop| operator.controllers(stop).boxed(),
            )
            .await;
        }));
        s.stop = Some(stop);
    }

    /// On kubesim, stops the in-process operator and webhook (as deleting the Deployment
    /// would). On a real cluster, nothing to do.
    pub async fn stop_operator(&mut self) {
        if let Some(s) = self.simulated.as_mut() {
            if let Some(agents) = s.agents.take() {
                agents.abort();
            }
            if let Some(stop) = s.stop.take() {
                let _ = stop.send(true);
            }
            for t in s.tasks.drain(..) {
                let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
            }
        }
    }
}

/// Polls `check` until it returns `Some`, or fails the test after `timeout` naming `what`.
pub async fn eventually<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The YAML of the development Secrets of the example hospital, as kubectl would create
/// them from `examples/hospital/secrets/`.
pub fn dev_secrets_yaml() -> String {
    let dir: &Path = &repo_root().join("examples/hospital/secrets");
    medplat::manifests::secrets_from_dir(dir, "clinical")
        .unwrap()
        .iter()
        .map(|s| format!("---\n{}", serde_yaml::to_string(s).unwrap()))
        .collect()
}
