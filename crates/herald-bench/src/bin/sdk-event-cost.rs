//! `sdk-event-cost`: what the SDK costs the program's thread per item, with nothing
//! else in the item: the loop (an item's two events, a log every 50 items, a
//! tool call every 100) with empty items, through `Progress::hidden()` or a live sink
//! (JSON Lines to `io::sink()`), on the main thread. Prints that thread's CPU time per
//! item. Run it under `perf stat` for instructions and allocations per item
//! (BENCHMARKS.md, "SDK work loop with and without a hub").
//!
//! `sdk-event-cost hidden|jsonl [ITEMS]` (200,000 items unless given). Exit codes: 0
//! on success, 1 when `/proc` cannot be read, 2 on a usage error.

use std::io;
use std::process::ExitCode;

use herald::{Progress, Target};

const USAGE: &str = "usage: sdk-event-cost hidden|jsonl [ITEMS]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let items = match args.get(1).map(|n| n.parse::<usize>()) {
        None => Ok(200_000),
        Some(Ok(n)) if n > 0 => Ok(n),
        Some(_) => Err(()),
    };
    let (progress, items) = match (args.first().map(String::as_str), items) {
        (Some("hidden"), Ok(items)) if args.len() <= 2 => (Progress::hidden(), items),
        (Some("jsonl"), Ok(items)) if args.len() <= 2 => {
            (Progress::new([Target::json_writer(io::sink())]), items)
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match herald_bench::sdk_cost::sdk_only(&progress, items) {
        Ok(cpu) => {
            println!(
                "{items} items, work thread CPU {:.2} ms, {:.0} ns per item",
                cpu.as_secs_f64() * 1e3,
                cpu.as_secs_f64() * 1e9 / items as f64
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("sdk-event-cost: {err:#}");
            ExitCode::FAILURE
        }
    }
}
