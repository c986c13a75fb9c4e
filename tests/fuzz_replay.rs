//! Replays the fuzz corpora through the fuzz targets' own bodies (`fuzz/src/`, included by path)
//! on stable Rust, so that every seed and every crash ever found (`fuzz/regressions/<target>/`)
//! stays a deterministic test. The long, coverage-guided runs are `scripts/fuzz-all`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
#[path = "../fuzz/src/contract.rs"]
mod contract;
#[allow(dead_code)]
#[path = "../fuzz/src/parsers.rs"]
mod parsers;

use std::path::{Path, PathBuf};

use medplat_integration::repo_root;

/// Every regular file under `dir`, recursively, sorted; none when it does not exist.
fn inputs(dir: &Path, extensions: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(inputs(&path, extensions));
        } else if extensions.is_empty()
            || path
                .extension()
                .is_some_and(|x| extensions.iter().any(|want| x == *want))
        {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Runs `body` over the target's seed corpus, its regressions and `extra` trees.
fn replay(target: &str, body: fn(&[u8]), extra: &[(&str, &[&str])]) {
    let root = repo_root();
    let mut files = inputs(&root.join("fuzz/corpus").join(target), &[]);
    files.extend(inputs(&root.join("fuzz/regressions").join(target), &[]));
    for (dir, extensions) in extra {
        files.extend(inputs(&root.join(dir), extensions));
    }
    assert!(!files.is_empty(), "{target}: no corpus to replay");
    for file in &files {
        let data = std::fs::read(file).unwrap();
        let outcome = std::panic::catch_unwind(|| body(&data));
        assert!(outcome.is_ok(), "{target} panics on {}", file.display());
    }
    eprintln!("{target}: replayed {} inputs", files.len());
}

#[test]
fn contract_corpus_and_examples_replay() {
    replay(
        "contract",
        contract::contract,
        &[("examples", &["yaml", "yml", "json"]), ("crds", &["yaml"])],
    );
}

#[test]
fn hl7_corpus_replays() {
    replay(
        "hl7_parse",
        parsers::hl7_parse,
        &[("examples/hospital/data", &["hl7"])],
    );
}

#[test]
fn csv_corpus_replays() {
    replay(
        "csv_read",
        parsers::csv_read,
        &[("examples/hospital/data", &["csv"])],
    );
}

#[test]
fn ndjson_corpus_replays() {
    replay(
        "ndjson_read",
        parsers::ndjson_read,
        &[("examples/hospital/data", &["ndjson"])],
    );
}
