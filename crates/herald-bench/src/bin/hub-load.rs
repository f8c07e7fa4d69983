//! `hub-load`: the hub under load, side by side with a bare SQLite insert loop, as
//! Markdown tables (the figures of BENCHMARKS.md, "Hub ingest and fan-out").
//!
//! - `hub-load [ingest] [fanout] [idle] [e2e] [soak]`: runs the named parts (all but `soak`
//!   by default).
//! - `--postgres URL` (or `HERALD_BENCH_POSTGRES_URL`), the maintenance database of a
//!   PostgreSQL server, e.g. `postgres://postgres@127.0.0.1:5432/postgres`: ingest
//!   and fan-out also run with hubs on PostgreSQL (one, and two on one database), each
//!   on a database the run creates and drops.
//! - `--quick`: tiny counts, a smoke run of a few seconds; `--clients N`,
//!   `--single-events N`, `--batched-events N`, `--batch N` (events per batched
//!   request, 100), `--rounds N`, `--subscribers N`, `--events N`, `--rate R`,
//!   `--streams N`, `--stream-runs N`, `--latency-rounds N`, `--e2e-trials N`,
//!   `--soak-runs N`, `--soak-rate R`, `--soak-seconds N`, `--soak-processes N` set one
//!   count each; `--soak-nice-producers N` runs the soak's producers at that niceness
//!   (1 to 19), so that on a machine they share with the hub, the hub gets the CPU first.
//! - `--h2c`: each ingest round also runs the SQLite hub with every producer on one
//!   HTTP/2 connection (cleartext, prior knowledge), beside the hub over HTTP/1.1.
//! - `hub-load serve --db PATH|URL` and `hub-load subscribe --transport sse|ws --url URL
//!   --count N --timeout-s S` are the hub's and the subscribers' own processes, which the
//!   load generator starts itself, and so is `hub-load produce --urls URL[,URL] --runs N
//!   --first K --rate R --seconds S`, a process of the soak's producers.
//! - `HUB_LOAD_HUB_EXE=PATH`: the hub runs as `PATH serve`, another build of `hub-load`,
//!   so two builds of the hub meet the same load generator and subscribers.
//!
//! - The hub it starts runs on this binary's allocator: glibc's malloc, or jemalloc
//!   (background threads on) or mimalloc when built with `herald-bench`'s `jemalloc` or
//!   `mimalloc` feature; the idle part's table names it.
//!
//! Exit codes: 0 on success (a closed stdout included), 1 when a measurement fails or
//! its counts do not add up, 2 on a usage error.

use std::io::{self, Write};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use herald_bench::hub::{self, Part, Scale, Transport};

// The hub's allocator, as `herald serve` has it (jemalloc, by the default feature), or
// glibc's or mimalloc for the comparison: see `hub::ALLOCATOR`.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: hub-load [ingest] [fanout] [idle] [e2e] [soak] [--quick] [--postgres URL] [--clients N] \
[--single-events N] [--batched-events N] [--batch N] [--rounds N] [--h2c] [--subscribers N] [--events N] [--rate R] \
[--streams N] [--stream-runs N] [--latency-rounds N] [--e2e-trials N] [--soak-runs N] [--soak-rate R] \
[--soak-seconds N] [--soak-processes N] [--soak-nice-producers N]";

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
            eprintln!("hub-load: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args[..] {
        ["-h" | "--help"] => {
            println!("{USAGE}");
            return Ok(ExitCode::SUCCESS);
        }
        ["serve", "--db", db] => {
            hub::serve_main(db)?;
            return Ok(ExitCode::SUCCESS);
        }
        [
            "subscribe",
            "--transport",
            transport,
            "--url",
            url,
            "--count",
            count,
            "--timeout-s",
            timeout,
        ] => {
            let (Some(transport), Ok(count), Ok(timeout)) =
                (Transport::parse(transport), count.parse(), timeout.parse())
            else {
                return usage_error("subscribe takes sse or ws, a count and whole seconds");
            };
            hub::subscribe_main(transport, url, count, Duration::from_secs(timeout))?;
            return Ok(ExitCode::SUCCESS);
        }
        [
            "produce",
            "--urls",
            urls,
            "--runs",
            runs,
            "--first",
            first,
            "--rate",
            rate,
            "--seconds",
            seconds,
        ] => {
            let (Ok(runs), Ok(first), Ok(rate), Ok(seconds)) =
                (runs.parse(), first.parse(), rate.parse(), seconds.parse())
            else {
                return usage_error("produce takes counts, a rate and seconds");
            };
            let urls: Vec<&str> = urls.split(',').collect();
            hub::produce_main(&urls, runs, first, rate, seconds)?;
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let (parts, scale, postgres) = match parse(&args) {
        Ok(parsed) => parsed,
        Err(Usage(message)) => return usage_error(&message),
    };
    let postgres = postgres.or_else(|| {
        std::env::var("HERALD_BENCH_POSTGRES_URL")
            .ok()
            .filter(|url| !url.is_empty())
    });
    let report = hub::run(&parts, &scale, postgres.as_deref())?;
    let mut stdout = io::stdout().lock();
    stdout.write_all(report.to_markdown(&scale).as_bytes())?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn usage_error(message: &str) -> anyhow::Result<ExitCode> {
    eprintln!("hub-load: {message}\n{USAGE}");
    Ok(ExitCode::from(2))
}

/// The parts to run, the scale and the PostgreSQL server, from the command line.
fn parse(args: &[&str]) -> Result<(Vec<Part>, Scale, Option<String>), Usage> {
    let quick = args.contains(&"--quick");
    let mut scale = if quick { Scale::quick() } else { Scale::full() };
    let mut parts = Vec::new();
    let mut postgres = None;
    let mut rest = args.iter().filter(|a| **a != "--quick");
    while let Some(&arg) = rest.next() {
        if let Some(part) = Part::parse(arg) {
            parts.push(part);
            continue;
        }
        let mut value = |name: &str| -> Result<&str, Usage> {
            rest.next()
                .copied()
                .ok_or_else(|| Usage(format!("{name} takes a value")))
        };
        match arg {
            "--clients" => scale.clients = count(arg, value(arg)?)?,
            "--single-events" => scale.single_events = count(arg, value(arg)?)?,
            "--batched-events" => scale.batched_events = count(arg, value(arg)?)?,
            "--batch" => scale.batch = count(arg, value(arg)?)?,
            "--rounds" => scale.rounds = count(arg, value(arg)?)?,
            "--h2c" => scale.h2c = true,
            "--subscribers" => scale.subscribers = count(arg, value(arg)?)?,
            "--events" => scale.pings = count(arg, value(arg)?)?,
            "--rate" => {
                let v = value(arg)?;
                scale.ping_rate = f64::from_str(v)
                    .ok()
                    .filter(|r| r.is_finite() && *r > 0.0 && *r <= 10_000.0)
                    .ok_or_else(|| Usage(format!("--rate takes events per second, not `{v}`")))?;
            }
            "--streams" => scale.streams = count(arg, value(arg)?)?,
            "--soak-runs" => scale.soak.runs = count(arg, value(arg)?)?,
            "--soak-seconds" => {
                scale.soak.duration = Duration::from_secs(count(arg, value(arg)?)? as u64)
            }
            "--soak-processes" => scale.soak.processes = count(arg, value(arg)?)?,
            "--soak-nice-producers" => {
                let v = value(arg)?;
                let nice = u8::from_str(v).ok().filter(|n| (1..=19).contains(n));
                scale.soak.producers_nice = Some(nice.ok_or_else(|| {
                    Usage(format!("--soak-nice-producers takes 1 to 19, not `{v}`"))
                })?);
            }
            "--soak-rate" => {
                let v = value(arg)?;
                scale.soak.rate = f64::from_str(v)
                    .ok()
                    .filter(|r| r.is_finite() && *r > 0.0 && *r <= 1_000.0)
                    .ok_or_else(|| {
                        Usage(format!("--soak-rate takes events per second, not `{v}`"))
                    })?;
            }
            "--stream-runs" => scale.stream_runs = count(arg, value(arg)?)?,
            "--latency-rounds" => scale.latency_rounds = count(arg, value(arg)?)?,
            "--e2e-trials" => scale.e2e_trials = count(arg, value(arg)?)?,
            "--postgres" => {
                let url = value(arg)?;
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return Err(Usage(format!(
                        "--postgres takes a postgres:// URL of the server's maintenance database, not `{url}`"
                    )));
                }
                postgres = Some(url.to_owned());
            }
            other => return Err(Usage(format!("unknown argument `{other}`"))),
        }
    }
    if parts.is_empty() {
        parts = Part::ALL.to_vec();
    }
    Ok((parts, scale, postgres))
}

/// A positive count.
fn count(name: &str, value: &str) -> Result<usize, Usage> {
    value
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| Usage(format!("{name} takes a positive count, not `{value}`")))
}
