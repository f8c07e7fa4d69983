//! `eta-replay` end to end: the recorded example traces, the binary's handling of good
//! and malformed files, and herald's standing on the synthetic suite.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use herald_bench::eta::{Peer, Trace, score_peers, suite, synthetic_suite};

/// The example traces shipped in `traces/`: copies of synthetic ones.
const EXAMPLES: [&str; 2] = ["heavy-tailed", "stall"];

fn example_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("traces")
        .join(format!("{name}.jsonl"))
}

fn eta_replay(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eta-replay"))
        .args(args)
        .output()
        .expect("eta-replay runs")
}

/// The examples are the harness's own synthetic traces written in the recorded format;
/// `HERALD_BENCH_WRITE_TRACES=1 cargo test -p herald-bench` writes them anew.
#[test]
fn example_traces_parse_and_are_the_synthetic_ones() {
    let suite = synthetic_suite();
    for name in EXAMPLES {
        let synthetic = suite.iter().find(|t| t.name() == name).unwrap();
        let path = example_path(name);
        if std::env::var_os("HERALD_BENCH_WRITE_TRACES").is_some() {
            std::fs::write(&path, synthetic.to_jsonl()).unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let parsed = Trace::from_jsonl(name, &text).unwrap();
        assert_eq!(&parsed, synthetic, "{}", path.display());
    }
}

#[test]
fn recorded_traces_are_scored() {
    let paths: Vec<PathBuf> = EXAMPLES.iter().map(|n| example_path(n)).collect();
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let out = eta_replay(&refs);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    for name in EXAMPLES {
        assert!(stdout.contains(&format!("| {name} (")), "{stdout}");
    }
    assert!(stdout.contains("| trace | herald | plain average | tqdm EMA | indicatif |"));
}

#[test]
fn a_malformed_line_is_named() {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("malformed.jsonl");
    std::fs::write(
        &path,
        "{\"t\": 1.0, \"done\": 1, \"total\": 3}\n\
         {\"t\": 2.0, \"done\": 2, \"total\": 3}\n\
         {\"t\": 3.0, \"done\": \"three\", \"total\": 3}\n",
    )
    .unwrap();
    let out = eta_replay(&[&path]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with(&format!(
            "eta-replay: {}: line 3: invalid type",
            path.display()
        )),
        "{stderr}"
    );
}

#[test]
fn an_unreadable_file_is_an_error() {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("does-not-exist.jsonl");
    let out = eta_replay(&[&path]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("cannot read"), "{stderr}");
}

/// The target of BENCHMARKS.md: over the synthetic suite, herald's mean MAPE is at most
/// 0.7 times the best peer's, and herald is the worst of the four on no trace.
#[test]
fn herald_meets_its_target_on_the_suite() {
    let reports: Vec<_> = synthetic_suite().iter().map(score_peers).collect();
    let suite = suite(&reports);
    assert_eq!(suite[0].name, Peer::Herald.name());
    let best_peer = suite[1..]
        .iter()
        .map(|s| s.mape)
        .fold(f64::INFINITY, f64::min);
    assert!(
        suite[0].mape <= 0.7 * best_peer,
        "herald {:.1}% vs best peer {best_peer:.1}%",
        suite[0].mape
    );
    assert!(suite[0].worst_on.is_empty(), "{:?}", suite[0].worst_on);
}

#[test]
fn seeds_redraw_the_suite_and_bad_counts_are_usage_errors() {
    let out = Command::new(env!("CARGO_BIN_EXE_eta-replay"))
        .args(["--seeds", "2"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("| 1 | "), "{stdout}");
    assert!(stdout.contains("Over 2 draws:"), "{stdout}");

    let out = Command::new(env!("CARGO_BIN_EXE_eta-replay"))
        .args(["--seeds", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("--seeds takes a positive count"),
        "{stderr}"
    );
}
