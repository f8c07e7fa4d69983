//! `sdk-hub-cost`: the program's work loop timed with the hub up, with the hub down and
//! with no hub sink, interleaved in one run, as Markdown tables (the figures of
//! BENCHMARKS.md, "SDK work loop with and without a hub").
//!
//! - `--quick`: tiny counts and a 200 ms flush deadline, a smoke run of a few seconds.
//! - `--rounds N`, `--stages N`, `--items N`, `--item-bytes N`, `--ticks N` set one
//!   count each; `--flush-deadline-ms MS` the hub sinks' flush deadline (the SDK's
//!   default, 5 s, unless given); `--no-silent-hub` leaves out the hub that accepts
//!   and never answers (each of its rounds waits out the deadline twice); `--only
//!   refused,silent` measures only the variants named (`bare`, `hidden`, `jsonl`,
//!   `up`, `refused`, `silent`), and always (a), `hidden`, which the others are
//!   compared to.
//! - `--hub apart|in-process`: the hub that is up in a process of its own, the work
//!   loop's thread pinned to CPU 0 and the rest to CPU 1 where there are two CPUs and
//!   `taskset` (the default; `--quick`'s is `in-process`), or on a runtime inside this
//!   process with nothing pinned.
//! - `sdk-hub-cost serve --db PATH` is the hub's own process, which the bench starts.
//!
//! Exit codes: 0 on success (a closed stdout included), 1 when a measurement fails
//! (the hub does not start or answer, `/proc` cannot be read), 2 on a usage error.

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use herald_bench::sdk_cost::{self, Placement, Scale, Variant};

const USAGE: &str = "usage: sdk-hub-cost [--quick] [--rounds N] [--stages N] [--items N] \
[--item-bytes N] [--ticks N] [--flush-deadline-ms MS] [--no-silent-hub] [--hub apart|in-process] \
[--only bare,hidden,jsonl,up,refused,silent]";

/// A mistake on the command line.
struct Usage(String);

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(err) => {
            if err
                .downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("sdk-hub-cost: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if matches!(args[..], ["-h" | "--help"]) {
        println!("{USAGE}");
        return Ok(ExitCode::SUCCESS);
    }
    if let ["serve", "--db", db] = args[..] {
        herald_bench::hub::serve_main(db)?;
        return Ok(ExitCode::SUCCESS);
    }
    let scale = match parse(&args) {
        Ok(scale) => scale,
        Err(Usage(message)) => {
            eprintln!("sdk-hub-cost: {message}\n{USAGE}");
            return Ok(ExitCode::from(2));
        }
    };
    let report = sdk_cost::run(&scale)?;
    let mut stdout = io::stdout().lock();
    stdout.write_all(report.to_markdown().as_bytes())?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// The scale, from the command line.
fn parse(args: &[&str]) -> Result<Scale, Usage> {
    let mut scale = if args.contains(&"--quick") {
        Scale::quick()
    } else {
        Scale::full()
    };
    let mut rest = args.iter().filter(|a| **a != "--quick");
    while let Some(&arg) = rest.next() {
        if arg == "--no-silent-hub" {
            scale.silent_hub = false;
            continue;
        }
        let value = rest
            .next()
            .copied()
            .ok_or_else(|| Usage(format!("{arg} takes a value")));
        match arg {
            "--rounds" => scale.rounds = count(arg, value?)? as usize,
            "--stages" => scale.stages = count(arg, value?)? as usize,
            "--items" => scale.items = count(arg, value?)? as usize,
            "--item-bytes" => scale.item_bytes = count(arg, value?)? as usize,
            "--ticks" => scale.ticks = count(arg, value?)?,
            "--hub" => {
                scale.placement = match value? {
                    "apart" => Placement::apart(),
                    "in-process" => Placement::InProcess,
                    other => {
                        return Err(Usage(format!(
                            "--hub takes `apart` or `in-process`, not `{other}`"
                        )));
                    }
                }
            }
            "--only" => {
                scale.only = value?
                    .split(',')
                    .map(|name| {
                        Variant::named(name).ok_or_else(|| {
                            Usage(format!("--only takes variant names, not `{name}`"))
                        })
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--flush-deadline-ms" => {
                scale.flush_deadline = Duration::from_millis(count(arg, value?)?)
            }
            other => return Err(Usage(format!("unknown argument `{other}`"))),
        }
    }
    Ok(scale)
}

/// A positive count.
fn count(name: &str, value: &str) -> Result<u64, Usage> {
    value
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| Usage(format!("{name} takes a positive count, not `{value}`")))
}
