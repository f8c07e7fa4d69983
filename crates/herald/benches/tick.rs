//! The SDK's cost per progress tick, side by side with `indicatif::ProgressBar::inc`
//! and tqdm, in one run (the figures live in `BENCHMARKS.md`).
//!
//! Every variant does 1000 ticks per criterion iteration and declares
//! `Throughput::Elements(1000)`, so criterion's time per iteration in µs reads as ns per
//! tick. Every stage and bar is announced (its first tick) before timing starts, and the
//! handles are finished after it, so only the steady-state tick is measured.
//!
//! Live bars need a terminal: on a pipe or a file herald's terminal sink writes plain
//! lines and never redraws, which would make `Target::stderr_bars()` look cheaper than
//! it is. So that variant runs in a child process of this binary on a pseudo-terminal
//! (util-linux `script`, at 100x30), where the bars redraw as on a person's screen; its
//! screen is saved beside criterion's output and its redraws are counted. The other
//! variants keep this process's stdout and stderr untouched.
//!
//! After the criterion group, the bench runs `benches/tqdm_tick.py` (Python's tqdm cannot
//! be measured from Rust) and prints one summary table of every figure, with the ratio of
//! herald's tick to indicatif's, read back from criterion's own estimates of this run.
//!
//! Run: `cargo bench -p herald --bench tick`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput, measurement::WallTime};
use herald::{Progress, Stage, Target, ToolCall};
use indicatif::{InMemoryTerm, ProgressBar, ProgressDrawTarget};

/// Ticks per criterion iteration.
const TICKS: u64 = 1000;
/// The group's name, and its directory under criterion's output.
const GROUP: &str = "tick";
/// Set in the child process that measures the bars on a pseudo-terminal.
const ON_PTY: &str = "HERALD_TICK_BENCH_ON_PTY";
/// The pseudo-terminal's size, in the child's `stty` syntax.
const PTY_SIZE: &str = "rows 30 cols 100";

/// The refresh rate `ProgressDrawTarget::stderr()` uses, given to the in-memory terminal
/// so it redraws as often as indicatif would on a real one.
const INDICATIF_STDERR_HZ: u8 = 20;

/// One measured variant: its criterion id and how the summary names it.
struct Variant {
    function: &'static str,
    parameter: &'static str,
    label: &'static str,
}

const FLOOR: Variant = Variant {
    function: "floor_fetch_add",
    parameter: "atomic_u64",
    label: "floor: AtomicU64::fetch_add(1, Relaxed)",
};
/// Not a tick: what indicatif's `inc` adds to the atomic add on every call, to read its
/// figure against.
const CLOCK: Variant = Variant {
    function: "reference_instant_now",
    parameter: "std",
    label: "reference: Instant::now()",
};
const HERALD_HIDDEN: Variant = Variant {
    function: "herald_inc",
    parameter: "hidden",
    label: "herald Stage::inc(1), Progress::hidden()",
};
const HERALD_JSON: Variant = Variant {
    function: "herald_inc",
    parameter: "json_lines",
    label: "herald Stage::inc(1), Target::json_writer(io::sink())",
};
const HERALD_BARS: Variant = Variant {
    function: "herald_inc",
    parameter: "stderr_bars",
    label: "herald Stage::inc(1), Target::stderr_bars() on a pty",
};
const HERALD_TOOL: Variant = Variant {
    function: "herald_tool_inc",
    parameter: "json_lines",
    label: "herald ToolCall::inc(1), Target::json_writer(io::sink())",
};
const HERALD_WRAP: Variant = Variant {
    function: "herald_wrap_iter",
    parameter: "hidden",
    label: "herald wrap_iter, per element, hidden",
};
const INDICATIF_HIDDEN: Variant = Variant {
    function: "indicatif_inc",
    parameter: "hidden",
    label: "indicatif ProgressBar::inc(1), hidden",
};
const INDICATIF_TERM: Variant = Variant {
    function: "indicatif_inc",
    parameter: "in_memory_term",
    label: "indicatif ProgressBar::inc(1), InMemoryTerm at 20 Hz",
};
const INDICATIF_WRAP: Variant = Variant {
    function: "indicatif_wrap_iter",
    parameter: "in_memory_term",
    label: "indicatif wrap_iter, per element, InMemoryTerm at 20 Hz",
};

fn main() {
    let started = SystemTime::now();
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo test --benches` runs this binary without `--bench`: criterion then runs each
    // variant once as a smoke test, and the child process, the tqdm run and the summary
    // are skipped.
    let measuring = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--list");
    let on_pty = std::env::var_os(ON_PTY).is_some();

    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
        .configure_from_args();
    let mut group = criterion.benchmark_group(GROUP);
    group.throughput(Throughput::Elements(TICKS));
    if on_pty || !measuring {
        bench_herald_inc(&mut group, &HERALD_BARS, || {
            Progress::new([Target::stderr_bars()])
        });
    }
    if !on_pty {
        bench_floor(&mut group);
        bench_clock(&mut group);
        bench_herald_inc(&mut group, &HERALD_HIDDEN, Progress::hidden);
        bench_herald_inc(&mut group, &HERALD_JSON, || {
            Progress::new([Target::json_writer(std::io::sink())])
        });
        bench_herald_tool_inc(&mut group);
        bench_herald_wrap_iter(&mut group);
        bench_indicatif_inc(&mut group, &INDICATIF_HIDDEN, ProgressDrawTarget::hidden);
        bench_indicatif_inc(&mut group, &INDICATIF_TERM, in_memory_term);
        bench_indicatif_wrap_iter(&mut group);
    }
    group.finish();
    criterion.final_summary();

    if measuring && !on_pty {
        let bars = run_bars_on_pty(&args);
        let tqdm = run_tqdm();
        print_summary(started, &bars, &tqdm);
    }
}

fn bench_floor(group: &mut BenchmarkGroup<'_, WallTime>) {
    let counter = AtomicU64::new(0);
    group.bench_function(id(&FLOOR), |b| {
        b.iter(|| {
            let counter = black_box(&counter);
            for _ in 0..TICKS {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        })
    });
}

fn bench_clock(group: &mut BenchmarkGroup<'_, WallTime>) {
    group.bench_function(id(&CLOCK), |b| {
        b.iter(|| {
            for _ in 0..TICKS {
                black_box(Instant::now());
            }
        })
    });
}

fn bench_herald_inc(
    group: &mut BenchmarkGroup<'_, WallTime>,
    variant: &Variant,
    progress: impl FnOnce() -> Progress,
) {
    let progress = progress();
    let run = progress.run("bench");
    // No total: the count grows for as long as criterion runs.
    let stage = run.stage("ticks");
    stage.inc(1);
    group.bench_function(id(variant), |b| {
        b.iter(|| {
            let stage: &Stage = black_box(&stage);
            for _ in 0..TICKS {
                stage.inc(1);
            }
        })
    });
    stage.finish();
    run.finish();
}

/// A tool call's own count: throttled in the handle rather than sampled, so its tick
/// is measured apart from a stage's. Without a total, as the stage's.
fn bench_herald_tool_inc(group: &mut BenchmarkGroup<'_, WallTime>) {
    let progress = Progress::new([Target::json_writer(std::io::sink())]);
    let run = progress.run("bench");
    let call = run.tool("ticks", None, None);
    call.inc(1);
    group.bench_function(id(&HERALD_TOOL), |b| {
        b.iter(|| {
            let call: &ToolCall = black_box(&call);
            for _ in 0..TICKS {
                call.inc(1);
            }
        })
    });
    call.finish(None);
    run.finish();
}

fn bench_herald_wrap_iter(group: &mut BenchmarkGroup<'_, WallTime>) {
    let progress = Progress::hidden();
    let run = progress.run("bench");
    let stage = run.stage("ticks");
    stage.inc(1);
    group.bench_function(id(&HERALD_WRAP), |b| {
        b.iter(|| {
            for i in stage.wrap_iter(0..TICKS) {
                black_box(i);
            }
        })
    });
    stage.finish();
    run.finish();
}

fn in_memory_term() -> ProgressDrawTarget {
    ProgressDrawTarget::term_like_with_hz(Box::new(InMemoryTerm::new(10, 80)), INDICATIF_STDERR_HZ)
}

fn bench_indicatif_inc(
    group: &mut BenchmarkGroup<'_, WallTime>,
    variant: &Variant,
    target: impl FnOnce() -> ProgressDrawTarget,
) {
    let bar = ProgressBar::with_draw_target(None, target());
    bar.inc(1);
    group.bench_function(id(variant), |b| {
        b.iter(|| {
            let bar = black_box(&bar);
            for _ in 0..TICKS {
                bar.inc(1);
            }
        })
    });
    bar.finish();
}

fn bench_indicatif_wrap_iter(group: &mut BenchmarkGroup<'_, WallTime>) {
    let bar = ProgressBar::with_draw_target(None, in_memory_term());
    bar.inc(1);
    group.bench_function(id(&INDICATIF_WRAP), |b| {
        b.iter(|| {
            for i in bar.wrap_iter(0..TICKS) {
                black_box(i);
            }
        })
    });
    bar.finish();
}

fn id(variant: &Variant) -> BenchmarkId {
    BenchmarkId::new(variant.function, variant.parameter)
}

/// What the child on a pseudo-terminal did: a note for the summary, or why it could not
/// run.
type BarsResult = Result<String, String>;

/// Measures `Target::stderr_bars()` in a child process of this binary whose stderr is a
/// pseudo-terminal, saving its screen beside criterion's output.
fn run_bars_on_pty(args: &[String]) -> BarsResult {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut command = format!("stty {PTY_SIZE}; exec {}", quote(&exe.to_string_lossy()));
    for arg in args {
        command.push(' ');
        command.push_str(&quote(arg));
    }
    println!(
        "\nMeasuring {GROUP}/{}/{} in a child process on a pseudo-terminal ...",
        HERALD_BARS.function, HERALD_BARS.parameter
    );
    let output = Command::new("script")
        .args([
            "--quiet",
            "--return",
            "--flush",
            "--command",
            &command,
            "/dev/null",
        ])
        .env(ON_PTY, "1")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| {
            format!("cannot run `script` ({e}): install util-linux (apt-get install util-linux)")
        })?;
    let screen = criterion_dir().join(GROUP).join("stderr_bars-screen.log");
    let saved = std::fs::create_dir_all(criterion_dir().join(GROUP))
        .and_then(|()| std::fs::write(&screen, &output.stdout));
    if !output.status.success() {
        return Err(format!(
            "the child on a pseudo-terminal failed ({}); its screen: {}",
            output.status,
            screen.display()
        ));
    }
    // Each redraw of the live area clears it first with `ESC [ J`.
    let redraws = output.stdout.windows(3).filter(|w| w == b"\x1b[J").count();
    Ok(match saved {
        Ok(()) => format!(
            "bars on a {PTY_SIZE} pty: {redraws} redraws; screen in {}",
            screen.display()
        ),
        Err(e) => format!("bars on a {PTY_SIZE} pty: {redraws} redraws (screen not saved: {e})"),
    })
}

/// What `tqdm_tick.py` measured, or why it could not.
type TqdmResult = Result<serde_json::Value, String>;

/// Runs `tqdm_tick.py` and parses its one JSON line.
fn run_tqdm() -> TqdmResult {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/tqdm_tick.py");
    println!("\nRunning {} (tqdm's cost per tick) ...", script.display());
    let output = Command::new("python3").arg(&script).output().map_err(|e| {
        format!("cannot run python3 ({e}): install Python 3 and `pip install tqdm`")
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!(
            "{} failed ({}): {}",
            script.display(),
            output.status,
            stderr.trim()
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .ok_or_else(|| format!("no JSON line in the output of {}", script.display()))
}

/// Where criterion writes its estimates, found as criterion 0.8 finds it:
/// `CRITERION_HOME`, else `criterion` in `CARGO_TARGET_DIR`, else in the target
/// directory `cargo metadata` names (under `cargo bench`), else `target/criterion`.
fn criterion_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(find_criterion_dir)
}

fn find_criterion_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(dir);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    let metadata = std::env::var_os("CARGO").and_then(|cargo| {
        let output = Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .output()
            .ok()?;
        let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
        Some(PathBuf::from(metadata["target_directory"].as_str()?))
    });
    metadata.map_or_else(
        || PathBuf::from("target/criterion"),
        |t| t.join("criterion"),
    )
}

/// Criterion's estimate of ns per tick for `variant`, if this run measured it: the
/// figure criterion prints (the slope, or the mean without one), over `TICKS`.
fn ns_per_tick(variant: &Variant, since: SystemTime) -> Option<f64> {
    let path = criterion_dir()
        .join(GROUP)
        .join(variant.function)
        .join(variant.parameter)
        .join("new/estimates.json");
    // An estimate from an earlier run (a filtered or skipped variant) is not this run's.
    let modified = std::fs::metadata(&path).ok()?.modified().ok()?;
    if modified < since {
        return None;
    }
    let estimates: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    let typical = estimates
        .get("slope")
        .filter(|s| !s.is_null())
        .or_else(|| estimates.get("mean"))?;
    Some(typical["point_estimate"].as_f64()? / TICKS as f64)
}

fn print_summary(started: SystemTime, bars: &BarsResult, tqdm: &TqdmResult) {
    println!("\n== SDK cost per progress tick (ns per tick, this run) ==");
    let row = |label: &str, ns: Option<f64>, note: &str| match ns {
        Some(ns) => println!("{label:<58} {ns:>8.2} ns"),
        None => println!("{label:<58} {:>11}  {note}", "-"),
    };
    let rust = |variant: &Variant| ns_per_tick(variant, started);
    let python = |key: &str| tqdm.as_ref().ok().and_then(|t| t[key].as_f64());
    for variant in [
        &FLOOR,
        &CLOCK,
        &HERALD_HIDDEN,
        &HERALD_JSON,
        &HERALD_BARS,
        &HERALD_TOOL,
        &HERALD_WRAP,
        &INDICATIF_HIDDEN,
        &INDICATIF_TERM,
        &INDICATIF_WRAP,
    ] {
        let note = match bars {
            Err(e) if variant.parameter == HERALD_BARS.parameter => e.as_str(),
            _ => "not measured in this run (filtered out?)",
        };
        row(variant.label, rust(variant), note);
    }
    match tqdm {
        Ok(t) => {
            let version = t["tqdm"].as_str().unwrap_or("?");
            let for_loop = format!("tqdm {version} for-loop, per iteration");
            row(&for_loop, python("iter_ns"), "");
            let update = format!("tqdm {version} update(1), per call");
            row(&update, python("update_ns"), "");
            let bare_loop = "  (Python bare for-loop, per iteration)";
            row(bare_loop, python("bare_loop_ns"), "");
            let bare_call = "  (Python bare method call, per call)";
            row(bare_call, python("bare_call_ns"), "");
        }
        Err(e) => println!("tqdm: not measured: {e}"),
    }
    if let (Ok(note), Some(_)) = (bars, rust(&HERALD_BARS)) {
        println!("  ({note})");
    }

    println!("-- ratios (issue target: herald/indicatif inc <= 0.333) --");
    let ratios = [
        (
            "herald inc hidden / indicatif inc hidden",
            rust(&HERALD_HIDDEN),
            rust(&INDICATIF_HIDDEN),
        ),
        (
            "herald inc json_lines / indicatif inc in-memory term",
            rust(&HERALD_JSON),
            rust(&INDICATIF_TERM),
        ),
        (
            "herald inc stderr_bars / indicatif inc in-memory term",
            rust(&HERALD_BARS),
            rust(&INDICATIF_TERM),
        ),
        (
            "herald wrap_iter / indicatif wrap_iter",
            rust(&HERALD_WRAP),
            rust(&INDICATIF_WRAP),
        ),
        (
            "herald wrap_iter / tqdm for-loop",
            rust(&HERALD_WRAP),
            python("iter_ns"),
        ),
        (
            "herald inc json_lines / tqdm update(1)",
            rust(&HERALD_JSON),
            python("update_ns"),
        ),
    ];
    for (label, herald, peer) in ratios {
        if let (Some(herald), Some(peer)) = (herald, peer) {
            println!("{label:<58} {:>8.3}", herald / peer);
        }
    }
}
