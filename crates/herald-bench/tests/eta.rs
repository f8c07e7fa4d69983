//! `eta-replay` end to end: the recorded example traces, the binary's handling of good
//! and malformed files, and herald's standing on the synthetic suite.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use herald_bench::eta::{
    Peer, SuiteScore, Trace, TraceReport, real_suite, real_suite_dir, score_peers, suite,
    synthetic_suite, synthetic_suite_seeded,
};

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

fn scored(traces: &[Trace]) -> (Vec<TraceReport>, Vec<SuiteScore>) {
    let reports: Vec<TraceReport> = traces.iter().map(score_peers).collect();
    let suite = suite(&reports);
    assert_eq!(suite[0].name, Peer::Herald.name());
    (reports, suite)
}

fn best_peer(suite: &[SuiteScore], f: impl Fn(&SuiteScore) -> f64) -> f64 {
    suite[1..].iter().map(f).fold(f64::INFINITY, f64::min)
}

/// The real suite is what `record.py` recorded: at least eight traces of different
/// shapes, weighted ones among them, each with its recipe in the script.
#[test]
fn the_real_suite_is_committed_with_its_recorder() {
    let traces = real_suite().unwrap();
    assert!(traces.len() >= 8, "{} traces", traces.len());
    assert!(traces.iter().filter(|t| t.is_weighted()).count() >= 3);
    let script = std::fs::read_to_string(real_suite_dir().join("record.py")).unwrap();
    for trace in &traces {
        let recipe = format!("\"{}\":", trace.name());
        assert!(script.contains(&recipe), "no recipe for {}", trace.name());
        let size = std::fs::metadata(real_suite_dir().join(format!("{}.jsonl", trace.name())))
            .unwrap()
            .len();
        assert!(size < 200_000, "{} is {size} bytes", trace.name());
    }
}

/// The targets of BENCHMARKS.md on the real suite: herald's mean MAPE is at most 0.7x
/// the best peer's, it is the worst of the four on no trace, its jitter is no worse
/// than the best peer's, and its range holds the truth at 75% of the instants or more.
#[test]
fn herald_meets_its_targets_on_the_real_suite() {
    let (_, suite) = scored(&real_suite().unwrap());
    let herald = &suite[0];
    assert!(herald.worst_on.is_empty(), "worst on {:?}", herald.worst_on);
    let best = best_peer(&suite, |s| s.mape);
    assert!(
        herald.mape <= 0.7 * best,
        "herald {:.1}% vs best peer {best:.1}%",
        herald.mape
    );
    let best_jitter = best_peer(&suite, |s| s.jitter);
    assert!(
        herald.jitter <= best_jitter,
        "{} vs {best_jitter}",
        herald.jitter
    );
    let calibration = herald.calibration.unwrap();
    assert!(calibration >= 75.0, "calibration {calibration:.1}%");
}

/// On the synthetic suite (whose MAPE target is `herald_meets_its_target_on_the_suite`):
/// jitter no worse than the best peer's, a calibrated range, and on 20 re-drawn suites
/// herald is never the worst of the four on any trace.
#[test]
fn herald_holds_on_synthetic_draws() {
    let (_, suite) = scored(&synthetic_suite());
    let best_jitter = best_peer(&suite, |s| s.jitter);
    assert!(suite[0].jitter <= best_jitter);
    assert!(suite[0].calibration.unwrap() >= 75.0);
    for seed in 0..20 {
        let (_, suite) = scored(&synthetic_suite_seeded(seed));
        assert!(
            suite[0].worst_on.is_empty(),
            "seed {seed}: worst on {:?}",
            suite[0].worst_on
        );
    }
}

#[test]
fn with_no_argument_both_suites_are_scored_apart() {
    let out = eta_replay(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let real = stdout.find("## Real suite").expect("a real suite section");
    let synthetic = stdout
        .find("## Synthetic suite")
        .expect("a synthetic section");
    assert!(real < synthetic);
    assert!(stdout[real..synthetic].contains("| pgload ("), "{stdout}");
    assert!(stdout[synthetic..].contains("| steady ("), "{stdout}");
    assert!(stdout.contains("range holds the truth at"), "{stdout}");
}

#[test]
fn a_bad_weight_is_named_with_its_line() {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bad-weight.jsonl");
    std::fs::write(
        &path,
        "{\"t\": 1.0, \"done\": 1, \"total\": 2, \"weight\": 5, \"total_weight\": 10}\n\
         {\"t\": 2.0, \"done\": 2, \"total\": 2, \"weight\": -5, \"total_weight\": 10}\n",
    )
    .unwrap();
    let out = eta_replay(&[&path]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("line 2: weight -5 is not a finite, non-negative number"),
        "{stderr}"
    );
}
