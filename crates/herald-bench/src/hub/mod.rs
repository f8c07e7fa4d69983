//! The hub under load (BENCHMARKS.md): ingest against a bare SQLite insert loop,
//! publish-to-subscriber latency with many SSE subscribers, and memory per idle
//! stream; the figures of `hub-load` and of BENCHMARKS.md.
//!
//! The hub always runs in a process of its own (`hub-load serve`, the same
//! `herald_hub::serve` with the default configuration that `herald serve` uses) over a
//! fresh SQLite file, and all traffic stays on 127.0.0.1. Every loop is bounded in
//! count and in time, and every part checks that its counts add up before it reports.
//!
//! Given a PostgreSQL server (`--postgres URL` of its maintenance database), ingest and
//! fan-out also run on PostgreSQL, in the same invocation: hubs (`hub-load serve --db
//! postgres://...`) on a fresh database per measurement, one hub and two hubs, beside
//! the SQLite figures of the same run.
//!
//! # Layout
//!
//! - `ingest`: events per second, bare SQLite (rusqlite and sqlx) and the hub.
//! - `fanout`: latency from append to SSE subscriber, and the subscriber process.
//! - `idle`: hub RSS with many idle SSE streams.
//! - `e2e`: a program's call through the SDK's hub sink and the hub to a subscriber.
//! - `soak`: many runs through the SDK's hub sink for a minute; nothing acknowledged
//!   lost, the hubs' memory and CPU over time.
//! - `allocator`: the allocator of this binary, and so of the hub it measures.
//! - `process`: the hub's process, `/proc` readings.
//! - `pg`: a fresh PostgreSQL database per measurement, and its server's CPU.
//! - `client`: HTTP requests and an SSE parser.
//! - `raw_sse`: an SSE stream read straight off its socket, for the fan-out's subscribers.
//! - `table`: the Markdown report.

mod allocator;
mod client;
mod e2e;
mod fanout;
mod idle;
mod ingest;
mod pg;
mod process;
mod raw_sse;
mod soak;
mod table;

use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

pub use allocator::ALLOCATOR;
pub use e2e::{E2eKind, E2eReport, E2eRow};
pub use fanout::{FanoutReport, Transport, subscribe_main};
pub use idle::IdleReport;
pub use ingest::{IngestPath, IngestRow};
pub(crate) use process::cpu_time;
pub use process::serve_main;
pub use soak::{SoakReport, SoakSample, SoakScale, produce_main};

/// A part of the measurement, run on its own with `hub-load PART`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Events per second through the hub and the bare loops.
    Ingest,
    /// Latency from append to SSE subscriber.
    Fanout,
    /// Memory per idle SSE stream.
    Idle,
    /// From a program's call, through the SDK's hub sink and the hub, to a subscriber.
    E2e,
    /// Many runs through the SDK's hub sink for a while; run only when named.
    Soak,
}

impl Part {
    /// The parts run when none is named, in the order they run (`soak` runs only
    /// when named).
    pub const ALL: [Part; 4] = [Part::Ingest, Part::Fanout, Part::Idle, Part::E2e];

    /// The part named `name` on the command line.
    pub fn parse(name: &str) -> Option<Part> {
        match name {
            "ingest" => Some(Part::Ingest),
            "fanout" => Some(Part::Fanout),
            "idle" => Some(Part::Idle),
            "e2e" => Some(Part::E2e),
            "soak" => Some(Part::Soak),
            _ => None,
        }
    }
}

/// How much load: the counts by default, tiny ones for a smoke run.
#[derive(Clone, Debug)]
pub struct Scale {
    /// Concurrent client connections of the ingest, one producer run each.
    pub clients: usize,
    /// Events appended one per request (and one per bare transaction).
    pub single_events: usize,
    /// Events appended `batch` per request (and per bare transaction).
    pub batched_events: usize,
    /// Events per batched request.
    pub batch: usize,
    /// Interleaved rounds of each ingest measurement; the median is reported.
    pub rounds: usize,
    /// Whether each ingest round also runs the producers through one HTTP/2
    /// connection (cleartext, prior knowledge) to the SQLite hub.
    pub h2c: bool,
    /// SSE subscribers on the fan-out run.
    pub subscribers: usize,
    /// Events sent to them.
    pub pings: usize,
    /// Events sent per second.
    pub ping_rate: f64,
    /// Idle SSE streams held open.
    pub streams: usize,
    /// Runs the idle streams are spread over.
    pub stream_runs: usize,
    /// Rounds of the fan-out, idle and end-to-end measurements; each round's figures
    /// are reported, and their median.
    pub latency_rounds: usize,
    /// Trials of each kind per end-to-end round.
    pub e2e_trials: usize,
    /// The soak's load.
    pub soak: SoakScale,
}

impl Scale {
    /// The counts BENCHMARKS.md reports.
    pub fn full() -> Scale {
        Scale {
            clients: 4,
            single_events: 10_000,
            batched_events: 200_000,
            batch: 100,
            rounds: 3,
            h2c: false,
            subscribers: 1_000,
            pings: 100,
            ping_rate: 20.0,
            streams: 10_000,
            stream_runs: 10,
            latency_rounds: 5,
            e2e_trials: 40,
            soak: SoakScale::full(),
        }
    }

    /// A smoke run of a few seconds: every path, tiny counts.
    pub fn quick() -> Scale {
        Scale {
            clients: 2,
            single_events: 50,
            batched_events: 400,
            batch: 100,
            rounds: 1,
            h2c: false,
            subscribers: 5,
            pings: 50,
            ping_rate: 200.0,
            streams: 10,
            stream_runs: 2,
            latency_rounds: 1,
            e2e_trials: 3,
            soak: SoakScale::quick(),
        }
    }
}

/// Nearest-rank percentiles of a sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Sample size.
    pub n: usize,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest.
    pub max: u64,
}

impl Percentiles {
    /// Percentiles of `sample` (sorted in place).
    pub fn of(sample: &mut [u64]) -> Percentiles {
        sample.sort_unstable();
        let rank = |q: f64| {
            let i = ((q * sample.len() as f64).ceil() as usize).clamp(1, sample.len().max(1));
            sample.get(i - 1).copied().unwrap_or(0)
        };
        Percentiles {
            n: sample.len(),
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: sample.last().copied().unwrap_or(0),
        }
    }

    /// Percentiles of durations, in microseconds.
    pub fn of_durations(sample: &[Duration]) -> Percentiles {
        let mut us: Vec<u64> = sample.iter().map(|d| d.as_micros() as u64).collect();
        Percentiles::of(&mut us)
    }
}

/// Everything one `hub-load` run measured.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The ingest rows, bare loops and hub, batches of 1 and of 100.
    pub ingest: Vec<IngestRow>,
    /// The fan-out figures, each the rounds of one setup: one SQLite hub with SSE
    /// subscribers, then with WebSocket ones, then PostgreSQL's when measured.
    pub fanout: Vec<Vec<FanoutReport>>,
    /// The idle-stream figures, one per round.
    pub idle: Vec<IdleReport>,
    /// The end-to-end figures.
    pub e2e: Option<E2eReport>,
    /// The soaks: one SQLite hub, then two hubs on PostgreSQL when measured.
    pub soak: Vec<SoakReport>,
    /// The machine's 1-minute load average when the run started, if known: other
    /// processes' work is in the figures too.
    pub load_at_start: Option<f64>,
}

/// The 1-minute load average, from `/proc/loadavg`.
pub(crate) fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl Report {
    /// The report as Markdown tables, with each target and whether it is met.
    pub fn to_markdown(&self, scale: &Scale) -> String {
        table::render(self, scale)
    }
}

/// Runs `parts` at `scale`, in a temporary directory of the system's temp dir (every
/// SQLite file of a run on the same file system), and removes it afterwards; with
/// `postgres`, the URL of a PostgreSQL server's maintenance database, ingest and
/// fan-out run on PostgreSQL too, each measurement on a database of its own that it
/// creates and drops.
pub fn run(parts: &[Part], scale: &Scale, postgres: Option<&str>) -> anyhow::Result<Report> {
    process::raise_open_files_limit();
    let dir = tempfile::Builder::new()
        .prefix("hub-load-")
        .tempdir()
        .context("creating a temporary directory")?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let mut report = Report {
            load_at_start: load_average(),
            ..Report::default()
        };
        for part in [
            Part::Ingest,
            Part::Fanout,
            Part::Idle,
            Part::E2e,
            Part::Soak,
        ] {
            if !parts.contains(&part) {
                continue;
            }
            match part {
                Part::Ingest => {
                    report.ingest = ingest::run(dir.path(), scale, postgres)
                        .await
                        .context("ingest")?
                }
                Part::Fanout => {
                    for transport in [Transport::Sse, Transport::Ws] {
                        report.fanout.push(
                            fanout::run(dir.path(), scale, transport)
                                .await
                                .with_context(|| format!("fanout, {}", transport.name()))?,
                        );
                    }
                    if let Some(admin_url) = postgres {
                        for hubs in [1, 2] {
                            report.fanout.push(
                                fanout::run_postgres(admin_url, hubs, scale)
                                    .await
                                    .with_context(|| {
                                        format!("fanout, {hubs} hubs on PostgreSQL")
                                    })?,
                            );
                        }
                    }
                }
                Part::Idle => {
                    for round in 0..scale.latency_rounds {
                        report.idle.push(
                            idle::run(dir.path(), scale, round)
                                .await
                                .with_context(|| format!("idle, round {}", round + 1))?,
                        );
                    }
                }
                Part::E2e => report.e2e = Some(e2e::run(dir.path(), scale).await.context("e2e")?),
                Part::Soak => {
                    report.soak.push(
                        soak::run(dir.path(), &scale.soak, None)
                            .await
                            .context("soak, SQLite")?,
                    );
                    if let Some(admin_url) = postgres {
                        report.soak.push(
                            soak::run(dir.path(), &scale.soak, Some(admin_url))
                                .await
                                .context("soak, two hubs on PostgreSQL")?,
                        );
                    }
                }
            }
        }
        Ok(report)
    })
}
