//! What a model stream adapter adds per streamed delta (issue 14: at most 1 µs beyond
//! what the sinks cost), measured side by side with the same stream read without it,
//! in one run; the figures live in `BENCHMARKS.md`.
//!
//! The program under test reads a streamed response the way a blocking client does:
//! through a `BufReader`, line by line into one reused `String`, parsing each `data:`
//! line's JSON into a `serde_json::Value` to get its text. The adapter's variants are
//! that same program with its reader wrapped in [`LlmStream::reader`], so the
//! difference is exactly what the adapter adds on the caller's thread: its own line
//! splitting and parsing, and handing its events to the SDK's queue.
//!
//! - `hidden`: [`Progress::hidden`], which queues nothing: the adapter's parsing alone.
//! - `json_lines`: a JSON Lines sink writing to `io::sink()`: the parsing plus the queue
//!   push of each `text.delta`. The sink's own work (folding, serializing, writing)
//!   runs on the SDK's background thread, not the caller's: that is the "sink cost"
//!   the target leaves out. Ticks the queue refused because the background thread
//!   fell behind are counted and printed, since a refused push is cheaper than a
//!   taken one.
//!
//! Each iteration reads one call of [`DELTAS`] text deltas in the provider's wire
//! format (the shapes of the recorded fixtures in `tests/fixtures/llm/`), so
//! criterion's figures are per call; the summary divides by [`DELTAS`]. The adapter's
//! per-call work (`llm.request`, its heartbeat guard, `llm.response`) is spread over
//! the call's deltas, as it is in a real call.
//!
//! Run: `cargo bench -p herald --bench llm`.

use std::hint::black_box;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput, measurement::WallTime};
use herald::{LlmStream, Progress, Run, Target};
use serde_json::{Value, json};

/// Text deltas per streamed call.
const DELTAS: u64 = 200;
/// The group's name, and its directory under criterion's output.
const GROUP: &str = "llm";

/// Tokens as a model streams them: a few bytes each, some with escapes.
const TOKENS: &[&str] = &[
    "Okay",
    ",",
    " let",
    "'s",
    " check",
    " the",
    " weather",
    " for",
    " San",
    " Francisco",
    ",",
    " CA",
    ":",
    "\n\n",
    " \"quoted\"",
    " caf\u{e9}",
];

#[derive(Clone, Copy)]
enum Wire {
    Anthropic,
    OpenAi,
}

impl Wire {
    fn name(self) -> &'static str {
        match self {
            Wire::Anthropic => "anthropic",
            Wire::OpenAi => "openai",
        }
    }

    /// One call's response body with `DELTAS` text deltas.
    fn body(self) -> Vec<u8> {
        let mut out = String::new();
        let mut event = |name: Option<&str>, data: Value| {
            if let Some(name) = name {
                out.push_str(&format!("event: {name}\n"));
            }
            out.push_str(&format!("data: {data}\n\n"));
        };
        let tokens = TOKENS.iter().cycle().take(DELTAS as usize);
        match self {
            Wire::Anthropic => {
                event(
                    Some("message_start"),
                    json!({"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-opus-4-1-20250805","stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":2},"content":[],"stop_reason":null}}),
                );
                event(
                    Some("content_block_start"),
                    json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
                );
                for token in tokens {
                    event(
                        Some("content_block_delta"),
                        json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":token}}),
                    );
                }
                event(
                    Some("content_block_stop"),
                    json!({"type":"content_block_stop","index":0}),
                );
                event(
                    Some("message_delta"),
                    json!({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":DELTAS}}),
                );
                event(Some("message_stop"), json!({"type":"message_stop"}));
            }
            Wire::OpenAi => {
                let chunk = |delta: Value, finish: Value| json!({"id":"chatcmpl-9blY98pEJe6mXGKivCZyl61vxaUFq","object":"chat.completion.chunk","created":1718787945,"model":"gpt-4o-2024-05-13","system_fingerprint":"fp_f4e629d0a5","choices":[{"index":0,"delta":delta,"logprobs":null,"finish_reason":finish}],"usage":null});
                event(
                    None,
                    chunk(json!({"role":"assistant","content":""}), Value::Null),
                );
                for token in tokens {
                    event(None, chunk(json!({"content": token}), Value::Null));
                }
                event(None, chunk(json!({}), json!("stop")));
                event(
                    None,
                    json!({"id":"chatcmpl-9blY98pEJe6mXGKivCZyl61vxaUFq","object":"chat.completion.chunk","created":1718787945,"model":"gpt-4o-2024-05-13","system_fingerprint":"fp_f4e629d0a5","choices":[],"usage":{"prompt_tokens":13,"completion_tokens":DELTAS,"total_tokens":DELTAS + 13}}),
                );
                out.push_str("data: [DONE]\n\n");
            }
        }
        out.into_bytes()
    }

    fn adapter(self, run: &Run) -> LlmStream {
        match self {
            Wire::Anthropic => LlmStream::anthropic(run, "claude-opus-4-1"),
            Wire::OpenAi => LlmStream::openai(run, "gpt-4o"),
        }
    }
}

/// The program's own reading of a stream: lines through a `BufReader`, each `data:`
/// line's JSON parsed, its text taken. Returns the text's length, so nothing is
/// optimized away.
fn read_stream(reader: impl Read) -> usize {
    let mut reader = BufReader::new(reader);
    let mut line = String::new();
    let mut text = 0;
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return text,
            Ok(_) => {}
        }
        let Some(data) = line.trim_end().strip_prefix("data: ") else {
            continue;
        };
        let Ok(value) = serde_json::from_str::<Value>(data) else {
            continue;
        };
        let delta = match &value["delta"]["text"] {
            Value::Null => &value["choices"][0]["delta"]["content"],
            text => text,
        };
        if let Value::String(s) = delta {
            text += s.len();
        }
    }
}

/// One variant: the wire format and where the adapter's events go, if it is used.
#[derive(Clone, Copy)]
enum With {
    /// The program alone.
    Nothing,
    /// The adapter, into `Progress::hidden()`.
    Hidden,
    /// The adapter, into a JSON Lines sink writing to nothing.
    JsonLines,
}

impl With {
    fn name(self) -> &'static str {
        match self {
            With::Nothing => "program_alone",
            With::Hidden => "adapter_hidden",
            With::JsonLines => "adapter_json_lines",
        }
    }
}

fn bench(group: &mut BenchmarkGroup<'_, WallTime>, wire: Wire, with: With) -> Option<u64> {
    let body = wire.body();
    let id = BenchmarkId::new(with.name(), wire.name());
    let progress = match with {
        With::Nothing => {
            group.bench_function(id, |b| {
                b.iter(|| black_box(read_stream(black_box(&body[..]))))
            });
            return None;
        }
        With::Hidden => Progress::hidden(),
        With::JsonLines => Progress::new([Target::json_writer(std::io::sink())]),
    };
    let run = progress.run("bench");
    group.bench_function(id, |b| {
        b.iter(|| {
            let mut reader = wire.adapter(&run).reader(black_box(&body[..]));
            let text = read_stream(&mut reader);
            black_box(reader.finish());
            black_box(text)
        })
    });
    run.finish();
    Some(progress.stats().dropped_ticks)
}

/// Median ns per delta of the program alone, of the program with the adapter, and of
/// their difference, from `pairs` calls of each timed in alternation: on a shared
/// machine a burst of other load lands on both halves of a pair, and the median
/// ignores the pairs it hit unevenly.
fn paired(wire: Wire, progress: &Progress, pairs: usize) -> [f64; 3] {
    let body = wire.body();
    let run = progress.run("bench-paired");
    let alone = || {
        let t = Instant::now();
        black_box(read_stream(black_box(&body[..])));
        t.elapsed()
    };
    let with = || {
        let t = Instant::now();
        let mut reader = wire.adapter(&run).reader(black_box(&body[..]));
        black_box(read_stream(&mut reader));
        black_box(reader.finish());
        t.elapsed()
    };
    let mut samples: [Vec<f64>; 3] = Default::default();
    for i in 0..pairs {
        let (a, w) = if i % 2 == 0 {
            let a = alone();
            (a, with())
        } else {
            let w = with();
            (alone(), w)
        };
        let per_delta = |d: Duration| d.as_nanos() as f64 / DELTAS as f64;
        samples[0].push(per_delta(a));
        samples[1].push(per_delta(w));
        samples[2].push(per_delta(w) - per_delta(a));
    }
    run.finish();
    samples.map(|mut v| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    })
}

fn main() {
    let started = SystemTime::now();
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Under `cargo test --benches` each variant runs once, as a smoke test, and no
    // summary is printed.
    let measuring = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--list");
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
        .configure_from_args();
    let mut group = criterion.benchmark_group(GROUP);
    group.throughput(Throughput::Elements(DELTAS));
    let mut dropped = Vec::new();
    for wire in [Wire::Anthropic, Wire::OpenAi] {
        for with in [With::Nothing, With::Hidden, With::JsonLines] {
            if let Some(n) = bench(&mut group, wire, with) {
                dropped.push((wire, with, n));
            }
        }
    }
    group.finish();
    criterion.final_summary();
    if measuring {
        print_summary(started, &dropped);
        print_paired();
    }
}

fn print_paired() {
    const PAIRS: usize = 2000;
    println!(
        "\n== The same, paired: {PAIRS} calls alone and {PAIRS} with the adapter, alternated =="
    );
    println!("median ns per delta: program alone, with the adapter, and of the pairs' differences");
    for wire in [Wire::Anthropic, Wire::OpenAi] {
        for (with, progress) in [
            (With::Hidden, Progress::hidden()),
            (
                With::JsonLines,
                Progress::new([Target::json_writer(std::io::sink())]),
            ),
        ] {
            let [alone, adapter, adds] = paired(wire, &progress, PAIRS);
            let dropped = progress.stats().dropped_ticks;
            println!(
                "{:<32} alone {alone:>7.1}  with {adapter:>7.1}  adds {adds:>7.1} ns per delta{}",
                format!("{} {}", wire.name(), with.name()),
                if dropped > 0 {
                    format!("  ({dropped} deltas refused by the full queue)")
                } else {
                    String::new()
                }
            );
        }
    }
}

fn print_summary(started: SystemTime, dropped: &[(Wire, With, u64)]) {
    println!("\n== What the adapter adds per streamed delta (this run) ==");
    println!("{DELTAS} text deltas per call; ns per delta, criterion's estimate / {DELTAS}");
    for wire in [Wire::Anthropic, Wire::OpenAi] {
        let per_delta = |with: With| estimate_ns(with.name(), wire.name(), started);
        let alone = per_delta(With::Nothing);
        for with in [With::Nothing, With::Hidden, With::JsonLines] {
            let label = format!("{} {}", wire.name(), with.name());
            match (per_delta(with), alone) {
                (Some(ns), Some(alone)) if !matches!(with, With::Nothing) => println!(
                    "{label:<32} {ns:>9.1} ns   adds {:>7.1} ns per delta",
                    ns - alone
                ),
                (Some(ns), _) => println!("{label:<32} {ns:>9.1} ns"),
                (None, _) => println!("{label:<32} {:>12}  not measured in this run", "-"),
            }
        }
    }
    for (wire, with, n) in dropped {
        if *n > 0 {
            println!(
                "  ({} {}: the queue refused {n} text deltas while the background thread caught up)",
                wire.name(),
                with.name()
            );
        }
    }
    println!("-- target: the adapter adds at most 1000 ns per delta beyond the sinks' cost --");
}

/// Criterion's estimate of ns per delta for a variant, if this run measured it: the
/// figure criterion prints (the slope, or the mean without one), over `DELTAS`.
fn estimate_ns(function: &str, parameter: &str, since: SystemTime) -> Option<f64> {
    let path = criterion_dir()
        .join(GROUP)
        .join(function)
        .join(parameter)
        .join("new/estimates.json");
    // An estimate from an earlier run (a filtered variant) is not this run's.
    if std::fs::metadata(&path).ok()?.modified().ok()? < since {
        return None;
    }
    let estimates: Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    let typical = estimates
        .get("slope")
        .filter(|s| !s.is_null())
        .or_else(|| estimates.get("mean"))?;
    Some(typical["point_estimate"].as_f64()? / DELTAS as f64)
}

/// Where criterion writes its estimates, as `benches/tick.rs` finds it.
fn criterion_dir() -> PathBuf {
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
        let metadata: Value = serde_json::from_slice(&output.stdout).ok()?;
        Some(PathBuf::from(metadata["target_directory"].as_str()?))
    });
    metadata.map_or_else(
        || PathBuf::from("target/criterion"),
        |t| t.join("criterion"),
    )
}
