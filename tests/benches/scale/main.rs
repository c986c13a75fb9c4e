//! The operator's scale benchmark: `cargo bench -p medplat-integration --bench scale`.
//!
//! For each size (issue 4's 1,000 Pipelines + 1,000 DataSources + 100 AccessPolicies and
//! issue 8's 5,000 + 2,000 + 200), several times:
//! 1. an in-process kubesim is seeded with a generated hospital (`medplat_integration::workload`);
//! 2. the operator runs as a child process (`medplat run`, this binary re-executed), so its peak
//!    RSS (`VmHWM`) is the operator's alone;
//! 3. the time from its start until every object is `Ready` for its generation is taken, with
//!    the operator's requests from kubesim's request log, by verb and by written resource;
//! 4. the writes made during `--idle-secs` idle seconds are counted (must be 0);
//! 5. the lower bound: the same children and status writes replayed with no operator, into a
//!    fresh kubesim in the same process, as fast as 32 concurrent writers can.
//!
//! Prints one table per size with medians and ratios (Markdown, for `bench/RESULTS.md`).
//! Options: `--sizes issue4,issue8` (or `P/S/A[/namespaces]`), `--runs 3`, `--idle-secs 300`,
//! `--idle-runs N` (only the first N runs of each size idle `--idle-secs`; the others idle
//! [`SHORT_IDLE`], to fit the benchmark in less time; default: every run).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod measure;
mod replay;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use medplat_integration::workload::Size;

/// Set in the child process that runs the operator.
const ROLE_ENV: &str = "MEDPLAT_SCALE_ROLE";

/// How long runs past `--idle-runs` idle.
const SHORT_IDLE: Duration = Duration::from_secs(30);

struct Args {
    sizes: Vec<(String, Size)>,
    runs: usize,
    idle: Duration,
    idle_runs: usize,
}

fn parse_size(s: &str) -> (String, Size) {
    match s {
        "issue4" => (
            "issue 4".into(),
            Size {
                pipelines: 1000,
                sources: 1000,
                policies: 100,
                namespaces: 10,
            },
        ),
        "issue8" => (
            "issue 8".into(),
            Size {
                pipelines: 5000,
                sources: 2000,
                policies: 200,
                namespaces: 10,
            },
        ),
        other => {
            let n: Vec<usize> = other
                .split('/')
                .map(|x| x.parse().unwrap_or_else(|_| panic!("bad size {other:?}")))
                .collect();
            assert!(
                n.len() == 3 || n.len() == 4,
                "a size is issue4, issue8 or P/S/A[/namespaces]"
            );
            (
                other.into(),
                Size {
                    pipelines: n[0],
                    sources: n[1],
                    policies: n[2],
                    namespaces: n.get(3).copied().unwrap_or(2),
                },
            )
        }
    }
}

fn parse_args() -> Args {
    let mut args = Args {
        sizes: vec![parse_size("issue4"), parse_size("issue8")],
        runs: 3,
        idle: Duration::from_secs(300),
        idle_runs: usize::MAX,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--sizes" => {
                args.sizes = it
                    .next()
                    .expect("--sizes LIST")
                    .split(',')
                    .map(parse_size)
                    .collect()
            }
            "--runs" => args.runs = it.next().and_then(|n| n.parse().ok()).expect("--runs N"),
            "--idle-secs" => {
                args.idle = Duration::from_secs(
                    it.next()
                        .and_then(|n| n.parse().ok())
                        .expect("--idle-secs N"),
                )
            }
            "--idle-runs" => {
                args.idle_runs = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--idle-runs N")
            }
            // cargo bench passes --bench; filters are not used.
            _ => {}
        }
    }
    args
}

fn median<T: Copy + PartialOrd>(mut v: Vec<T>) -> T {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

fn main() -> ExitCode {
    if std::env::var(ROLE_ENV).as_deref() == Ok("operator") {
        // The child: exactly `medplat run` with the arguments after the program name.
        let argv = std::iter::once("medplat".to_string()).chain(std::env::args().skip(1));
        return medplat::cli::run(<medplat::cli::Cli as clap::Parser>::parse_from(argv));
    }
    let args = parse_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("{}", measure::machine_notes());
    for (label, size) in &args.sizes {
        let mut runs = Vec::new();
        for run in 0..args.runs {
            eprintln!("== {label} ({size}), run {}/{}", run + 1, args.runs);
            let idle = if run < args.idle_runs {
                args.idle
            } else {
                SHORT_IDLE
            };
            let r = rt.block_on(measure::run_once(*size, idle, run));
            eprintln!("{r:#?}");
            runs.push(r);
        }
        print_table(label, *size, &runs);
    }
    ExitCode::SUCCESS
}

fn print_table(label: &str, size: Size, runs: &[measure::RunResult]) {
    let m = |f: &dyn Fn(&measure::RunResult) -> f64| median(runs.iter().map(f).collect());
    let ready = m(&|r| r.ready.as_secs_f64());
    let raw = m(&|r| r.raw.as_secs_f64());
    let ratio = m(&|r| r.ready.as_secs_f64() / r.raw.as_secs_f64());
    let rss = m(&|r| r.peak_rss_kib as f64 / 1024.0);
    let writes = m(&|r| r.writes as f64);
    let minimum = m(&|r| r.minimum_writes as f64);
    let over = m(&|r| r.writes as f64 / r.minimum_writes as f64);
    let objects = size.pipelines + size.sources + size.policies;
    println!("\n### {label}: {size} ({} runs, medians)\n", runs.len());
    println!("| measure | median | per run | target |");
    println!("|---|---|---|---|");
    let per = |f: &dyn Fn(&measure::RunResult) -> String| {
        runs.iter().map(f).collect::<Vec<_>>().join(" / ")
    };
    println!(
        "| time to all Ready | {ready:.1} s | {} | |",
        per(&|r| format!("{:.1}", r.ready.as_secs_f64()))
    );
    println!(
        "| kubesim raw writes (same writes, 32 writers) | {raw:.1} s | {} | |",
        per(&|r| format!("{:.1}", r.raw.as_secs_f64()))
    );
    println!(
        "| Ready ÷ raw writes | {ratio:.2}× | {} | < 3× |",
        per(&|r| format!("{:.2}", r.ready.as_secs_f64() / r.raw.as_secs_f64()))
    );
    println!(
        "| operator peak RSS (VmHWM) | {rss:.0} MiB | {} | < 200 MiB |",
        per(&|r| format!("{:.0}", r.peak_rss_kib as f64 / 1024.0))
    );
    println!(
        "| operator writes | {writes:.0} | {} | |",
        per(&|r| r.writes.to_string())
    );
    println!(
        "| minimum writes (children + 1 status per object) | {minimum:.0} | {} | |",
        per(&|r| r.minimum_writes.to_string())
    );
    println!(
        "| writes ÷ minimum | {over:.3} | {} | ≤ 1.10 |",
        per(&|r| format!("{:.3}", r.writes as f64 / r.minimum_writes as f64))
    );
    println!(
        "| writes while idle (max; per run: writes in idle seconds) | {} | {} | 0 |",
        runs.iter().map(|r| r.idle_writes).max().unwrap_or(0),
        per(&|r| format!("{} in {} s", r.idle_writes, r.idle.as_secs()))
    );
    println!(
        "| objects / s to Ready | {:.0} | | |",
        objects as f64 / ready
    );
    for r in runs.iter().filter(|r| r.idle_writes > 0) {
        println!(
            "\nIdle writes (first 20): {}",
            r.idle_write_samples.join("; ")
        );
    }
    let mid = &runs[runs.len() / 2];
    println!(
        "\nRequests by verb until Ready and settled (run {}):\n",
        runs.len() / 2 + 1
    );
    println!("| verb | requests |");
    println!("|---|---|");
    for (verb, n) in &mid.by_verb {
        println!("| {verb} | {n} |");
    }
    println!(
        "\nWrites by resource until Ready and settled (run {}):\n",
        runs.len() / 2 + 1
    );
    println!("| resource | writes | objects (minimum) |");
    println!("|---|---|---|");
    let keys: std::collections::BTreeSet<&String> = mid
        .writes_by_resource
        .keys()
        .chain(mid.minimum_by_resource.keys())
        .collect();
    for k in keys {
        println!(
            "| {k} | {} | {} |",
            mid.writes_by_resource.get(k).copied().unwrap_or(0),
            mid.minimum_by_resource.get(k).copied().unwrap_or(0)
        );
    }
    let _: &BTreeMap<String, usize> = &mid.by_verb;
}
