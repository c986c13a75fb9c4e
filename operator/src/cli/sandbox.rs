//! `medplat sandbox`: the example hospital on a simulated cluster, with a summary and a
//! kubeconfig to explore it. `--exit-after-settle` makes it a check: exit 0 when every
//! resource is Ready.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::sandbox::{Sandbox, SandboxOptions, summary};

/// Options of `medplat sandbox`.
#[derive(Args, Debug, Clone)]
pub struct SandboxArgs {
    /// Where to write the kubeconfig for kubectl.
    #[arg(long, default_value = "medplat-sandbox.kubeconfig")]
    pub kubeconfig: PathBuf,
    /// The loopback port of the simulated API server (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// How long to wait for every resource to settle, in seconds.
    #[arg(long, default_value_t = 120)]
    pub settle_timeout_secs: u64,
    /// Exit after the summary: 0 when every resource is Ready, 1 otherwise.
    #[arg(long)]
    pub exit_after_settle: bool,
}

async fn run_async(args: SandboxArgs) -> ExitCode {
    let opts = SandboxOptions {
        kubeconfig: args.kubeconfig.clone(),
        port: args.port,
        settle_timeout: Duration::from_secs(args.settle_timeout_secs),
    };
    println!(
        "medplat sandbox: starting kubesim (a simulated Kubernetes API server — a test double, not a cluster),"
    );
    println!("the operator, and the example hospital (examples/hospital, compiled in)…");
    let sandbox = match Sandbox::start(&opts).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let settled = match sandbox.wait_settled(opts.settle_timeout).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            sandbox.stop().await;
            return ExitCode::FAILURE;
        }
    };
    let (nodes, rows) = match (sandbox.nodes().await, sandbox.rows().await) {
        (Ok(n), Ok(r)) => (n, r),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            sandbox.stop().await;
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "\n{}", summary::render(&nodes, &rows));
    let tally = summary::tally(&rows);
    let ready = tally.get("ready").copied().unwrap_or(0);
    let not_ready = tally.get("not ready").copied().unwrap_or(0);
    if !settled {
        let _ = writeln!(out, "Not settled after {}s.", opts.settle_timeout.as_secs());
    }
    let _ = writeln!(out, "{ready} resources Ready, {not_ready} not Ready.");
    let all_ready = settled && not_ready == 0;
    if args.exit_after_settle {
        drop(out);
        sandbox.stop().await;
        return if all_ready {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let _ = writeln!(
        out,
        "\nExplore it:\n  kubectl --kubeconfig {} get medplat -A\n  kubectl --kubeconfig {} -n clinical describe pipeline research-extract\nPress Ctrl-C to stop.",
        opts.kubeconfig.display(),
        opts.kubeconfig.display()
    );
    drop(out);
    let _ = tokio::signal::ctrl_c().await;
    println!("stopping…");
    sandbox.stop().await;
    ExitCode::SUCCESS
}

/// Runs `medplat sandbox`.
pub fn run(args: SandboxArgs) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(8 * 1024 * 1024)
        .build()
    {
        Ok(rt) => rt.block_on(run_async(args)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}
