//! `cancel-latency`: how soon a program that reports nothing hears a cancel made
//! through the hub (BENCHMARKS.md, "Cancel latency of a silent program"), as a
//! Markdown table of percentiles over `--trials N` cancels (default 200).
//!
//! Exit codes: 0 on success, 1 when a measurement fails (a cancel not heard within
//! 15 s counts as one), 2 on a usage error.

use std::process::ExitCode;

use herald_bench::cancel;

const USAGE: &str = "usage: cancel-latency [--trials N]";

fn main() -> ExitCode {
    let mut trials = 200;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next().map(|n| n.parse::<usize>())) {
            ("--trials", Some(Ok(n))) if n > 0 => trials = n,
            _ => {
                eprintln!("cancel-latency: {USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let mut latencies = match cancel::measure(trials) {
        Ok(latencies) => latencies,
        Err(e) => {
            eprintln!("cancel-latency: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    latencies.sort_unstable();
    let ms = |q: f64| cancel::quantile(&latencies, q).as_secs_f64() * 1000.0;
    println!("| trials | p50 | p90 | p99 | max |");
    println!("|---:|---:|---:|---:|---:|");
    println!(
        "| {trials} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(1.0)
    );
    ExitCode::SUCCESS
}
