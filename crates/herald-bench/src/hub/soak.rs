//! Soak: many runs reporting through the SDK's hub sink for a while, on one SQLite hub
//! or on two hubs over one PostgreSQL database; no acknowledged event may be lost, and
//! the hubs' memory is read over time.
//!
//! The producers are processes of their own (`hub-load produce`), each holding many
//! `Progress` reporters, one run and one hub sink each, as many programs on one machine
//! would: a sink has its sender thread and, once its run is on the hub, a long poll
//! for the run's cancel state. One driver thread per process emits each run's events
//! on a schedule (`item.started` and `item.finished` in turn, milestones, so that no
//! sink may drop them), spread over the period so that the runs do not all speak at
//! once. At the end every run finishes (which waits for its events to be taken), and
//! the process prints, per run, what it emitted and what the hub acknowledged
//! ([`herald::Stats::hub_acknowledged`]).
//!
//! The load generator then reads each run's `last_seq` on the hub: an event
//! acknowledged but not stored is lost. The hubs' RSS and CPU (and PostgreSQL's) are
//! sampled every few seconds throughout, with the appends (requests) they took and the
//! time their threads spent runnable but waiting for a CPU (`/proc/PID/task/*/schedstat`):
//! on a machine shared with the producers, that wait, not the hubs' own work, is what
//! an append's time grows with. The append latency is the hubs' own
//! `herald_append_seconds` histogram, which times each append's store work.

use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use herald::{HubOptions, Progress, Target};
use herald_protocol::{ItemFinished, ItemStarted, StepOutcome};
use serde::{Deserialize, Serialize};

use super::client::{REQUEST_TIMEOUT, http_client, metrics};
use super::pg::TempDatabase;
use super::process::{ChildProcess, HubProcess, cpu_percent, cpu_time};

/// How often the hubs are sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// Slots of a period over which the runs' events are spread.
const SLOTS: u32 = 10;
/// Threads of a producer process that finish its runs at the end.
const FINISHERS: usize = 32;
/// How long producers may take to start their runs, and to finish them at the end.
const PRODUCER_SLACK: Duration = Duration::from_secs(120);

/// The soak's load.
#[derive(Clone, Copy, Debug)]
pub struct SoakScale {
    /// Runs, one reporter and hub sink each.
    pub runs: usize,
    /// Events per second per run.
    pub rate: f64,
    /// How long the runs report.
    pub duration: Duration,
    /// Producer processes the runs are split over.
    pub processes: usize,
    /// The producers' niceness, if not the load generator's: with it the hubs get the
    /// CPU before the producers, as if these ran on machines of their own.
    pub producers_nice: Option<u8>,
}

impl SoakScale {
    /// The load: 1,000 runs at 10 events/s for 60 s.
    pub fn full() -> SoakScale {
        SoakScale {
            runs: 1_000,
            rate: 10.0,
            duration: Duration::from_secs(60),
            processes: 2,
            producers_nice: None,
        }
    }

    /// A smoke run of a few seconds.
    pub fn quick() -> SoakScale {
        SoakScale {
            runs: 20,
            rate: 10.0,
            duration: Duration::from_secs(3),
            processes: 2,
            producers_nice: None,
        }
    }
}

/// One run as its producer saw it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RunTally {
    run: String,
    /// Events the program reported, `run.started` and `run.finished` included; the SDK
    /// adds its own keep-alive heartbeat to a run silent on a sink for 10 s, which is
    /// stored and acknowledged but not counted here.
    emitted: u64,
    /// Events the hub acknowledged.
    acknowledged: u64,
    /// Events the sink dropped or gave up on.
    dropped: u64,
}

/// The hubs at one moment of the soak.
#[derive(Clone, Debug)]
pub struct SoakSample {
    /// Seconds since the runs started reporting.
    pub at_s: f64,
    /// Each hub's RSS, KiB.
    pub rss_kib: Vec<u64>,
    /// The hubs' CPU since the previous sample, % of one core, together.
    pub hub_cpu: f64,
    /// The producers' CPU since the previous sample, % of one core, together.
    pub producers_cpu: f64,
    /// PostgreSQL's backends' CPU since the previous sample, % of one core.
    pub db_cpu: Option<f64>,
    /// The hubs' threads' time runnable but not running since the previous sample, %
    /// of the interval, summed over threads (100% is one thread always waiting for a CPU).
    pub hub_waiting: f64,
    /// Events the hubs had stored by then, together.
    pub stored: u64,
    /// Appends (requests that appended) the hubs had taken by then, together.
    pub appends: u64,
    /// The time those appends took, together, seconds (the histogram's sum).
    pub append_s: f64,
    /// The hubs' CPU time since the previous sample, per event stored in it, µs (`NaN`
    /// when none was).
    pub hub_cpu_per_event_us: f64,
}

/// What a soak measured.
#[derive(Clone, Debug)]
pub struct SoakReport {
    /// `SQLite, 1 hub` or `PostgreSQL, 2 hubs`.
    pub backend: String,
    /// The load.
    pub scale: SoakScale,
    /// Events the program reported (the SDK's own heartbeats not counted).
    pub emitted: u64,
    /// Events the hubs acknowledged to the sinks.
    pub acknowledged: u64,
    /// Events stored on the hubs.
    pub stored: u64,
    /// Events acknowledged and not stored: must be 0.
    pub lost: u64,
    /// Events the sinks dropped or gave up on.
    pub dropped: u64,
    /// Events a run emitted and the hub never stored, summed per run: those a sink
    /// still held when its `Progress` closed (after the tally is read, so not in
    /// `dropped`), given up on at the flush deadline.
    pub never_stored: u64,
    /// Appends the hubs timed.
    pub appends: u64,
    /// The hubs' mean append time, microseconds.
    pub append_mean_us: f64,
    /// Upper bound of the histogram bucket holding the 99th percentile append, seconds.
    pub append_p99_le_s: Option<f64>,
    /// The hubs' CPU time over the whole soak per event stored, µs.
    pub hub_cpu_per_event_us: f64,
    /// The hubs over time.
    pub samples: Vec<SoakSample>,
}

/// `hub-load produce --urls U[,U...] --runs N --first K --rate R --seconds S`: runs
/// `K..K+N`, run `i` on hub `i mod #urls`; prints `ready` once every run has started,
/// then after the soak one JSON line per run and `done`.
pub fn produce_main(
    urls: &[&str],
    runs: usize,
    first: usize,
    rate: f64,
    seconds: f64,
) -> anyhow::Result<()> {
    ensure!(
        !urls.is_empty() && runs > 0 && rate > 0.0 && seconds > 0.0,
        "nothing to produce"
    );
    let reporters: Vec<(Progress, herald::Run)> = (first..first + runs)
        .map(|i| {
            let progress =
                Progress::new([Target::hub(HubOptions::new(urls[i % urls.len()], None))]);
            let run = progress.run(&format!("soak-{i}"));
            (progress, run)
        })
        .collect();
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "ready")?;
    stdout.flush()?;

    let period = Duration::from_secs_f64(1.0 / rate);
    let slot = period / SLOTS;
    let mut emitted = vec![1u64; runs]; // run.started
    let start = Instant::now();
    // A whole number of periods, so that every run emits as many events.
    let ticks = (seconds * rate).round().max(1.0) as u32 * SLOTS;
    for tick in 0..ticks {
        let at = start + slot * tick;
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let round = tick / SLOTS;
        for (i, (_, run)) in reporters.iter().enumerate() {
            if i as u32 % SLOTS != tick % SLOTS {
                continue;
            }
            let item = format!("item-{}", round / 2);
            if round.is_multiple_of(2) {
                run.emit(ItemStarted {
                    item,
                    stage: None,
                    label: None,
                });
            } else {
                run.emit(ItemFinished {
                    item,
                    stage: None,
                    status: StepOutcome::Succeeded,
                    error: None,
                    elapsed_s: Some(period.as_secs_f64()),
                    weight: None,
                });
            }
            emitted[i] += 1;
        }
    }
    // Finished on several threads at once: one after another, the runs waiting their
    // turn would fall silent and their sinks send keep-alives.
    let mut shares: Vec<Vec<_>> = (0..FINISHERS).map(|_| Vec::new()).collect();
    for (i, reporter) in reporters.into_iter().zip(emitted).enumerate() {
        shares[i % FINISHERS].push(reporter);
    }
    let tallies: Vec<RunTally> = std::thread::scope(|scope| {
        let finishers: Vec<_> = shares
            .into_iter()
            .map(|share| scope.spawn(move || share.into_iter().map(finish).collect::<Vec<_>>()))
            .collect();
        finishers
            .into_iter()
            .flat_map(|f| f.join().unwrap_or_default())
            .collect()
    });
    for tally in &tallies {
        writeln!(stdout, "{}", serde_json::to_string(tally)?)?;
    }
    writeln!(stdout, "done")?;
    stdout.flush()?;
    Ok(())
}

/// Finishes one run, which waits (up to the sink's flush deadline) for its events to
/// be taken, and tallies it.
fn finish(((progress, run), emitted): ((Progress, herald::Run), u64)) -> RunTally {
    let id = run.id().to_string();
    run.finish();
    let stats = progress.stats();
    drop(progress);
    RunTally {
        run: id,
        emitted: emitted + 1, // run.finished
        acknowledged: stats.hub_acknowledged,
        dropped: stats.hub_dropped_milestones + stats.hub_dropped_ticks,
    }
}

/// Sets the niceness of every thread of `pid` (Linux's niceness is per thread; threads
/// started later inherit their starter's), with `renice(1)`: the workspace has no unsafe
/// code to call `setpriority` itself. Threads start and end while this runs (a thread
/// started from one not reniced yet keeps the old niceness), so it goes over the
/// threads again until every one has the niceness.
fn renice(pid: u32, nice: u8) -> anyhow::Result<()> {
    const PASSES: usize = 10;
    for _ in 0..PASSES {
        let behind: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .with_context(|| format!("listing /proc/{pid}/task"))?
            .flatten()
            .filter(|task| {
                std::fs::read_to_string(task.path().join("stat"))
                    .ok()
                    .is_some_and(|stat| niceness(&stat) != Some(i64::from(nice)))
            })
            .map(|task| task.file_name().to_string_lossy().into_owned())
            .collect();
        if behind.is_empty() {
            return Ok(());
        }
        // A thread that ended since it was listed makes `renice` fail for it alone.
        std::process::Command::new("renice")
            .args(["-n", &nice.to_string(), "-p"])
            .args(&behind)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .context("running renice")?;
    }
    bail!("renice left threads of producer {pid} at another niceness after {PASSES} passes")
}

/// The niceness in a `/proc/PID/task/TID/stat` line: field 19, the 17th after the
/// command's `)` (the command may hold spaces and parentheses).
fn niceness(stat: &str) -> Option<i64> {
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(16))
        .and_then(|n| n.parse().ok())
}

/// CPU time per event, µs; `NaN` (written as nothing) when no event was stored.
fn per_event_us(cpu: Duration, events: u64) -> f64 {
    if events == 0 {
        return f64::NAN;
    }
    cpu.as_secs_f64() * 1e6 / events as f64
}

/// How long a process's threads have waited runnable for a CPU, summed: the second field
/// of each `/proc/PID/task/TID/schedstat`. A thread that ended since is not counted,
/// nor one that vanishes while this reads.
fn run_queue_wait(pid: u32) -> anyhow::Result<Duration> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .with_context(|| format!("listing /proc/{pid}/task"))?;
    let mut waited_ns = 0u64;
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        waited_ns += stat
            .split_whitespace()
            .nth(1)
            .and_then(|w| w.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok(Duration::from_nanos(waited_ns))
}

/// Sums a counter or the buckets of `herald_append_seconds` over the hubs' `/metrics`.
struct AppendHistogram {
    /// (upper bound in seconds, cumulative count), in order.
    buckets: Vec<(f64, u64)>,
    count: u64,
    sum_s: f64,
    events: u64,
}

async fn histogram(client: &reqwest::Client, bases: &[String]) -> anyhow::Result<AppendHistogram> {
    let mut total = AppendHistogram {
        buckets: Vec::new(),
        count: 0,
        sum_s: 0.0,
        events: 0,
    };
    for base in bases {
        let text = metrics(client, base).await?;
        let mut i = 0;
        for line in text.lines() {
            let Some((name, value)) = line.rsplit_once(' ') else {
                continue;
            };
            if let Some(le) = name
                .strip_prefix("herald_append_seconds_bucket{le=\"")
                .and_then(|l| l.strip_suffix("\"}"))
            {
                let le: f64 = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse()?
                };
                let n: u64 = value.parse()?;
                match total.buckets.get_mut(i) {
                    Some(bucket) => bucket.1 += n,
                    None => total.buckets.push((le, n)),
                }
                i += 1;
            } else if name == "herald_append_seconds_count" {
                total.count += value.parse::<u64>()?;
            } else if name == "herald_append_seconds_sum" {
                total.sum_s += value.parse::<f64>()?;
            } else if name == "herald_events_appended_total" {
                total.events += value.parse::<u64>()?;
            }
        }
    }
    Ok(total)
}

impl AppendHistogram {
    /// The bound of the first bucket holding 99% of the appends.
    fn p99_le(&self) -> Option<f64> {
        let need = (self.count as f64 * 0.99).ceil() as u64;
        self.buckets
            .iter()
            .find(|(_, n)| *n >= need)
            .map(|(le, _)| *le)
    }
}

/// One soak: on one SQLite hub over a file in `dir`, or (with `postgres`, a server's
/// maintenance database) on two hubs over a fresh database.
pub(crate) async fn run(
    dir: &std::path::Path,
    scale: &SoakScale,
    postgres: Option<&str>,
) -> anyhow::Result<SoakReport> {
    let db = match postgres {
        Some(admin) => Some(TempDatabase::create(admin).await?),
        None => None,
    };
    let res = async {
        let mut hubs = Vec::new();
        match &db {
            Some(db) => {
                for _ in 0..2 {
                    hubs.push(HubProcess::start_on(&db.url).await?);
                }
            }
            None => hubs.push(HubProcess::start(&dir.join("soak.db")).await?),
        }
        let report = soak(&hubs, db.as_ref(), scale).await;
        for hub in hubs {
            hub.stop().await;
        }
        report
    }
    .await;
    if let Some(db) = db {
        db.drop_now().await?;
    }
    res
}

async fn soak(
    hubs: &[HubProcess],
    db: Option<&TempDatabase>,
    scale: &SoakScale,
) -> anyhow::Result<SoakReport> {
    let bases: Vec<String> = hubs.iter().map(HubProcess::base_url).collect();
    let urls = bases.join(",");
    let per = scale.runs.div_ceil(scale.processes);
    let mut producers = Vec::new();
    for p in 0..scale.processes {
        let first = p * per;
        let runs = per.min(scale.runs.saturating_sub(first));
        if runs == 0 {
            break;
        }
        let args = [
            "produce".to_owned(),
            "--urls".to_owned(),
            urls.clone(),
            "--runs".to_owned(),
            runs.to_string(),
            "--first".to_owned(),
            first.to_string(),
            "--rate".to_owned(),
            scale.rate.to_string(),
            "--seconds".to_owned(),
            scale.duration.as_secs_f64().to_string(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        producers.push(ChildProcess::spawn(&args)?);
    }
    for producer in &mut producers {
        let line = producer.line(PRODUCER_SLACK).await?;
        ensure!(line == "ready", "a producer said `{line}`, not `ready`");
        if let Some(nice) = scale.producers_nice {
            renice(producer.pid(), nice)?;
        }
    }
    let client = http_client()?;
    let cpu_of = |pids: &[u32]| -> anyhow::Result<Duration> {
        pids.iter()
            .try_fold(Duration::ZERO, |t, pid| Ok(t + cpu_time(&pid.to_string())?))
    };
    let hub_pids: Vec<u32> = hubs.iter().map(HubProcess::pid).collect();
    let producer_pids: Vec<u32> = producers.iter().map(ChildProcess::pid).collect();
    let waited_of = |pids: &[u32]| -> anyhow::Result<Duration> {
        pids.iter()
            .try_fold(Duration::ZERO, |t, pid| Ok(t + run_queue_wait(*pid)?))
    };
    let start = Instant::now();
    let mut samples: Vec<SoakSample> = Vec::new();
    let hub_cpu_start = cpu_of(&hub_pids)?;
    let stored_start = histogram(&client, &bases).await?.events;
    let mut last = (start, hub_cpu_start, cpu_of(&producer_pids)?);
    let mut last_waited = waited_of(&hub_pids)?;
    let mut last_stored = stored_start;
    let mut last_db = match db {
        Some(db) => Some(db.cpu_now().await?),
        None => None,
    };
    // Samples until the producers are done reporting: they print their tallies then.
    let ends = start + scale.duration;
    let mut next = start + SAMPLE_EVERY;
    loop {
        let now = Instant::now();
        if now >= ends {
            break;
        }
        tokio::time::sleep(next.saturating_duration_since(now).min(ends - now)).await;
        let at = Instant::now();
        let (hub_cpu, producers_cpu) = (cpu_of(&hub_pids)?, cpu_of(&producer_pids)?);
        let waited = waited_of(&hub_pids)?;
        let wall = at - last.0;
        let db_cpu = match (db, &last_db) {
            (Some(db), Some(before)) => {
                let used = db.cpu_since(before).await;
                last_db = Some(db.cpu_now().await?);
                used.map(|u| cpu_percent(Duration::ZERO, u, wall))
            }
            _ => None,
        };
        let now = histogram(&client, &bases).await?;
        samples.push(SoakSample {
            at_s: (at - start).as_secs_f64(),
            rss_kib: hubs
                .iter()
                .map(HubProcess::rss_kib)
                .collect::<Result<_, _>>()?,
            hub_cpu: cpu_percent(last.1, hub_cpu, wall),
            producers_cpu: cpu_percent(last.2, producers_cpu, wall),
            db_cpu,
            hub_waiting: cpu_percent(last_waited, waited, wall),
            stored: now.events,
            appends: now.count,
            append_s: now.sum_s,
            hub_cpu_per_event_us: per_event_us(
                hub_cpu.saturating_sub(last.1),
                now.events.saturating_sub(last_stored),
            ),
        });
        last = (at, hub_cpu, producers_cpu);
        last_waited = waited;
        last_stored = now.events;
        next += SAMPLE_EVERY;
    }
    let mut tallies = Vec::new();
    for producer in &mut producers {
        loop {
            let line = producer.line(PRODUCER_SLACK).await?;
            if line == "done" {
                break;
            }
            tallies.push(
                serde_json::from_str::<RunTally>(&line)
                    .with_context(|| format!("a producer said `{line}`"))?,
            );
        }
    }
    for producer in producers {
        producer.stop(Duration::from_secs(10)).await;
    }
    ensure!(
        tallies.len() == scale.runs,
        "{} runs reported of {}",
        tallies.len(),
        scale.runs
    );
    let final_sample = histogram(&client, &bases).await?;
    let hub_cpu_end = cpu_of(&hub_pids)?;
    let mut report = SoakReport {
        backend: match db {
            Some(_) => format!("PostgreSQL, {} hubs", hubs.len()),
            None => "SQLite, 1 hub".to_owned(),
        },
        scale: *scale,
        emitted: 0,
        acknowledged: 0,
        stored: 0,
        lost: 0,
        dropped: 0,
        never_stored: 0,
        appends: final_sample.count,
        append_mean_us: final_sample.sum_s * 1e6 / final_sample.count.max(1) as f64,
        append_p99_le_s: final_sample.p99_le(),
        hub_cpu_per_event_us: per_event_us(
            hub_cpu_end.saturating_sub(hub_cpu_start),
            final_sample.events.saturating_sub(stored_start),
        ),
        samples,
    };
    for tally in &tallies {
        let res = client
            .get(format!("{}/v1/runs/{}", bases[0], tally.run))
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await?;
        ensure!(
            res.status().is_success(),
            "run {}: {}",
            tally.run,
            res.status()
        );
        let state: serde_json::Value = res.json().await?;
        let stored = state["last_seq"]
            .as_u64()
            .with_context(|| format!("run {} has no last_seq", tally.run))?;
        report.emitted += tally.emitted;
        report.acknowledged += tally.acknowledged;
        report.stored += stored;
        report.lost += tally.acknowledged.saturating_sub(stored);
        report.dropped += tally.dropped;
        report.never_stored += tally.emitted.saturating_sub(stored);
    }
    if report.lost > 0 {
        bail!(
            "{} acknowledged events lost ({} acknowledged, {} stored)",
            report.lost,
            report.acknowledged,
            report.stored
        );
    }
    Ok(report)
}
