//! What a hub sink costs the program's own work loop, with the hub up and with it
//! down, against no hub sink at all: the figures of `sdk-hub-cost` and of
//! BENCHMARKS.md ("SDK work loop with and without a hub"; docs/sdk.md#reporting: reporting
//! never blocks, slows or crashes the work).
//!
//! One process runs the same work loop (stages of items through `Stage::iter`, each
//! item hashing a buffer, with logs, tool calls and an `inc` hot loop) once per
//! variant per round, the variants interleaved and their order rotated every round so
//! that drift in the machine's load falls on all of them alike. Every variant gets a
//! fresh `Progress`; the loop is timed from `Progress::run` to just before
//! `Run::finish`, whose wait for the sinks is timed apart, as is dropping the
//! `Progress` (the program's exit).
//!
//! # Layout
//!
//! - `workload`: the loop, through the SDK and bare.
//! - `hubs`: the in-process hub that is up, and the two kinds of hub that are down.
//! - `cpu`: CPU time per thread from `/proc`, split into work, SDK and hub.
//! - `table`: the Markdown report.

mod cpu;
pub(crate) mod hubs;
mod table;
mod workload;

use std::io;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use herald::{HubOptions, Progress, Stats, Target};

use cpu::{CpuSplit, Threads};
use hubs::{LocalHub, ProcessHub};

/// How much work, how many rounds, and how long a finishing run waits for a hub.
#[derive(Clone, Debug)]
pub struct Scale {
    /// Stages of items.
    pub stages: usize,
    /// Items per stage.
    pub items: usize,
    /// Bytes each item hashes: its CPU work.
    pub item_bytes: usize,
    /// `Stage::inc(1)` calls of the hot loop.
    pub ticks: u64,
    /// Interleaved rounds of every variant.
    pub rounds: usize,
    /// `HubOptions::flush_deadline` of the hub sinks: how long `Run::finish` and the
    /// program's exit wait for a hub.
    pub flush_deadline: Duration,
    /// Also measure a hub that accepts connections and never answers.
    pub silent_hub: bool,
    /// Measure only these variants (and always (a), which the others are compared
    /// to); empty: all of them.
    pub only: Vec<Variant>,
    /// Where the hub that is up runs, and whether threads are pinned.
    pub placement: Placement,
}

/// Where the hub that is up runs, and where the work loop runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// The hub on a tokio runtime inside this process; nothing pinned: every thread
    /// shares the machine's cores as the scheduler likes.
    InProcess,
    /// The hub in a process of its own. With `pin`, the work loop's thread runs on
    /// CPU 0 alone and everything else (the SDK's threads, the bench's own, the hub's
    /// process) on CPU 1, with `taskset`: as a program whose hub is another machine's,
    /// and whose SDK threads find a free core.
    Apart {
        /// Pin the work loop to CPU 0 and the rest to CPU 1.
        pin: bool,
    },
}

impl Placement {
    /// Apart, pinned where the machine has two CPUs and `taskset` is there.
    pub fn apart() -> Placement {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let taskset = std::process::Command::new("taskset")
            .arg("-V")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        Placement::Apart {
            pin: cpus >= 2 && taskset,
        }
    }

    /// How the report describes it.
    pub fn describe(self) -> &'static str {
        match self {
            Placement::InProcess => {
                "the hub on a runtime inside the bench's process; no thread pinned"
            }
            Placement::Apart { pin: true } => {
                "the hub in a process of its own; the work loop's thread pinned to CPU 0, \
                 the SDK's threads, the bench's others and the hub's process to CPU 1 (taskset)"
            }
            Placement::Apart { pin: false } => {
                "the hub in a process of its own; no thread pinned (fewer than 2 CPUs, or no taskset)"
            }
        }
    }

    fn work_cpu(self) -> Option<usize> {
        matches!(self, Placement::Apart { pin: true }).then_some(0)
    }
}

impl Scale {
    /// The loop: 3 stages of 2,000 items of a few tens of µs each (128 KiB
    /// hashed), 10^6 ticks; 9 rounds; the SDK's default flush deadline of 5 s.
    pub fn full() -> Scale {
        Scale {
            stages: 3,
            items: 2_000,
            item_bytes: 128 * 1024,
            ticks: 1_000_000,
            rounds: 9,
            flush_deadline: HubOptions::new("http://127.0.0.1:1", None).flush_deadline,
            silent_hub: true,
            only: Vec::new(),
            placement: Placement::apart(),
        }
    }

    /// A smoke run of well under a few seconds: tiny counts and a short deadline.
    pub fn quick() -> Scale {
        Scale {
            stages: 2,
            items: 120,
            item_bytes: 1024,
            ticks: 10_000,
            rounds: 2,
            flush_deadline: Duration::from_millis(200),
            silent_hub: true,
            only: Vec::new(),
            placement: Placement::InProcess,
        }
    }

    /// Items of all stages.
    pub fn total_items(&self) -> u64 {
        (self.stages * self.items) as u64
    }
}

/// One way of running the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// No SDK at all: the floor.
    Bare,
    /// `Progress::hidden()`: the SDK's handles with no sink (no queue, no thread).
    Hidden,
    /// JSON Lines to `io::sink()`: a live sink, the queue and the background thread,
    /// without a hub.
    JsonLines,
    /// The hub sink to a real hub that is up.
    HubUp,
    /// The hub sink to a loopback port with no listener: connections refused.
    HubRefused,
    /// The hub sink to a listener that never accepts: requests time out.
    HubSilent,
}

impl Variant {
    /// The variants of `scale`, in the order of the first round.
    pub fn all(scale: &Scale) -> Vec<Variant> {
        let mut all = vec![
            Variant::Bare,
            Variant::Hidden,
            Variant::JsonLines,
            Variant::HubUp,
            Variant::HubRefused,
        ];
        if scale.silent_hub {
            all.push(Variant::HubSilent);
        }
        if !scale.only.is_empty() {
            all.retain(|v| *v == Variant::Hidden || scale.only.contains(v));
        }
        all
    }

    /// The variant of a short name: `bare`, `hidden`, `jsonl`, `up`, `refused`, `silent`.
    pub fn named(name: &str) -> Option<Variant> {
        Some(match name {
            "bare" => Variant::Bare,
            "hidden" => Variant::Hidden,
            "jsonl" => Variant::JsonLines,
            "up" => Variant::HubUp,
            "refused" => Variant::HubRefused,
            "silent" => Variant::HubSilent,
            _ => return None,
        })
    }

    /// The row label in the report.
    pub fn label(self) -> &'static str {
        match self {
            Variant::Bare => "no SDK (bare loop)",
            Variant::Hidden => "(a) no hub sink: `Progress::hidden()`",
            Variant::JsonLines => "no hub sink: JSON Lines to `io::sink()`",
            Variant::HubUp => "(b) hub sink, hub up",
            Variant::HubRefused => "(c) hub sink, hub down: connection refused",
            Variant::HubSilent => "(c') hub sink, hub down: accepts, never answers",
        }
    }

    fn uses_hub(self) -> bool {
        matches!(
            self,
            Variant::HubUp | Variant::HubRefused | Variant::HubSilent
        )
    }
}

/// One variant's figures in one round.
#[derive(Clone, Debug)]
pub struct Sample {
    /// The stages of items.
    pub items_wall: Duration,
    /// The `inc` hot loop.
    pub ticks_wall: Duration,
    /// CPU time during the loop: the loop's thread, the SDK's threads, the hub's.
    pub cpu: CpuTimes,
    /// `Run::finish`: the wait for the sinks to take the run's last events.
    pub finish: Duration,
    /// CPU time of the SDK's threads during `Run::finish`.
    pub finish_sdk_cpu: Duration,
    /// Dropping the `Progress`: the SDK closes its sinks (the program's exit).
    pub exit: Duration,
    /// `Progress::stats()` after `Run::finish` (none for the bare loop).
    pub stats: Option<Stats>,
    /// With the hub up: the run's status on the hub and how many events it stored.
    pub on_hub: Option<(String, u64)>,
}

impl Sample {
    /// The whole work loop.
    pub fn loop_wall(&self) -> Duration {
        self.items_wall + self.ticks_wall
    }
}

/// CPU time spent during the work loop.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuTimes {
    /// The thread running the loop.
    pub work: Duration,
    /// The SDK's threads (`herald-progress`, `herald-hub-sink`).
    pub sdk: Duration,
    /// Everything else in the process: the in-process hub.
    pub hub: Duration,
    /// Times the scheduler took the CPU from the loop's thread.
    pub work_preempted: u64,
    /// Times the SDK's dispatcher thread (`herald-progress`) went to sleep (and was
    /// woken again).
    pub dispatcher_sleeps: u64,
    /// Times the hub sink's sender thread (`herald-hub-sink`) went to sleep.
    pub sender_sleeps: u64,
}

impl From<CpuSplit> for CpuTimes {
    fn from(split: CpuSplit) -> CpuTimes {
        CpuTimes {
            work: split.work,
            sdk: split.sdk,
            hub: split.other,
            work_preempted: split.work_preempted,
            dispatcher_sleeps: split.dispatcher_sleeps,
            sender_sleeps: split.sender_sleeps,
        }
    }
}

/// Every variant's samples, one per round, and the conditions of the run.
#[derive(Clone, Debug)]
pub struct Report {
    /// The scale measured.
    pub scale: Scale,
    /// Per variant, its samples in round order.
    pub variants: Vec<(Variant, Vec<Sample>)>,
    /// The 1-minute load average before and after.
    pub load: (Option<f64>, Option<f64>),
}

impl Report {
    /// The samples of `variant`.
    pub fn samples(&self, variant: Variant) -> &[Sample] {
        self.variants
            .iter()
            .find(|(v, _)| *v == variant)
            .map_or(&[], |(_, s)| s.as_slice())
    }

    /// The report as Markdown tables.
    pub fn to_markdown(&self) -> String {
        table::render(self)
    }
}

/// Runs every variant `scale.rounds` times, interleaved.
pub fn run(scale: &Scale) -> anyhow::Result<Report> {
    if scale.stages == 0 || scale.items == 0 || scale.rounds == 0 {
        bail!("stages, items and rounds must be positive");
    }
    let load_before = crate::hub::load_average();
    let hub = match scale.placement {
        Placement::InProcess => UpHub::Local(LocalHub::start()?),
        Placement::Apart { pin } => {
            if pin {
                // Every thread so far, and so every thread they start (the SDK's
                // among them), on CPU 1; the work loop moves itself to CPU 0.
                let status = std::process::Command::new("taskset")
                    .args(["-a", "-p", "-c", "1", &std::process::id().to_string()])
                    .stdout(std::process::Stdio::null())
                    .status()
                    .context("running taskset")?;
                if !status.success() {
                    bail!("taskset -a -p -c 1 on this process: {status}");
                }
            }
            UpHub::Process(ProcessHub::start(pin.then_some(1))?)
        }
    };
    let buffer = workload::buffer(scale.item_bytes);
    let variants = Variant::all(scale);
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); variants.len()];
    // A warm-up pass, not reported: page faults, the allocator's first arenas, the
    // hub's first connection and SQLite pages. The hub-down variants are left out:
    // they would only wait out their flush deadlines.
    for &variant in &variants {
        if !variant.uses_hub() || variant == Variant::HubUp {
            measure(variant, scale, &buffer, &hub)?;
        }
    }
    for round in 0..scale.rounds {
        for offset in 0..variants.len() {
            let i = (round + offset) % variants.len();
            let sample = measure(variants[i], scale, &buffer, &hub)
                .with_context(|| format!("{:?}, round {}", variants[i], round + 1))?;
            samples[i].push(sample);
        }
    }
    match hub {
        UpHub::Local(hub) => hub.stop(),
        UpHub::Process(hub) => hub.stop(),
    }
    Ok(Report {
        scale: scale.clone(),
        variants: variants.into_iter().zip(samples).collect(),
        load: (load_before, crate::hub::load_average()),
    })
}

/// The hub that is up.
enum UpHub {
    Local(LocalHub),
    Process(ProcessHub),
}

impl UpHub {
    fn url(&self) -> String {
        match self {
            UpHub::Local(hub) => hub.url(),
            UpHub::Process(hub) => hub.url(),
        }
    }

    fn run_state(&self, id: &herald::protocol::RunId) -> anyhow::Result<(String, u64)> {
        match self {
            UpHub::Local(hub) => hub.run_state(id),
            UpHub::Process(hub) => hub.run_state(id),
        }
    }

    /// CPU time of the hub's own process so far; zero for the in-process hub, whose
    /// threads are counted with this process's.
    fn process_cpu(&self) -> anyhow::Result<Duration> {
        match self {
            UpHub::Local(_) => Ok(Duration::ZERO),
            UpHub::Process(hub) => hub.cpu(),
        }
    }
}

/// Runs `work` on a thread of its own, pinned to `cpu` when one is given.
fn on_work_thread<T: Send>(
    cpu: Option<usize>,
    work: impl FnOnce() -> anyhow::Result<T> + Send,
) -> anyhow::Result<T> {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("work".into())
            .spawn_scoped(s, || {
                if let Some(cpu) = cpu {
                    hubs::pin_current_thread(cpu)?;
                }
                work()
            })
            .context("starting the work thread")?
            .join()
            .map_err(|_| anyhow::anyhow!("the work thread panicked"))?
    })
}

/// One variant, once, with a fresh `Progress` (made on this thread, so that the SDK's
/// threads run where this one may), the loop on a thread of its own.
fn measure(variant: Variant, scale: &Scale, buffer: &[u8], hub: &UpHub) -> anyhow::Result<Sample> {
    let cpu = scale.placement.work_cpu();
    let mut silent = None;
    let hub_url = match variant {
        Variant::HubUp => Some(hub.url()),
        Variant::HubRefused => Some(format!("http://{}", hubs::refused_addr()?)),
        Variant::HubSilent => {
            let listener = hubs::silent_listener()?;
            let url = format!("http://{}", listener.local_addr()?);
            silent = Some(listener);
            Some(url)
        }
        Variant::Bare | Variant::Hidden | Variant::JsonLines => None,
    };
    let progress = match (variant, hub_url) {
        (Variant::Bare, _) => {
            let (times, cpu) = on_work_thread(cpu, || {
                let before = Threads::now()?;
                let times = workload::bare(scale, buffer);
                Ok((times, Threads::now()?.since(&before)?))
            })?;
            return Ok(Sample {
                items_wall: times.items,
                ticks_wall: times.ticks,
                cpu: cpu.into(),
                finish: Duration::ZERO,
                finish_sdk_cpu: Duration::ZERO,
                exit: Duration::ZERO,
                stats: None,
                on_hub: None,
            });
        }
        (_, Some(url)) => {
            let mut options = HubOptions::new(&url, None);
            options.flush_deadline = scale.flush_deadline;
            Progress::new([Target::hub(options)])
        }
        (Variant::JsonLines, None) => Progress::new([Target::json_writer(io::sink())]),
        (_, None) => Progress::hidden(),
    };
    let (times, cpu, run_id, finish, finish_sdk_cpu, stats, exit) = on_work_thread(cpu, || {
        let before = Threads::now()?;
        let hub_before = hub.process_cpu()?;
        let (run, times) = workload::with_sdk(&progress, scale, buffer);
        let after_loop = Threads::now()?;
        let mut cpu = CpuTimes::from(after_loop.since(&before)?);
        if variant == Variant::HubUp {
            cpu.hub += hub.process_cpu()?.saturating_sub(hub_before);
        }
        let run_id = run.id().clone();
        let started = Instant::now();
        run.finish();
        let finish = started.elapsed();
        let finish_sdk_cpu = Threads::now()?.since(&after_loop)?.sdk;
        let stats = progress.stats();
        let started = Instant::now();
        drop(progress);
        let exit = started.elapsed();
        Ok((times, cpu, run_id, finish, finish_sdk_cpu, stats, exit))
    })?;
    // Resets the connections waiting in its backlog, so that a sender still blocked on
    // one (the SDK leaves it to its request timeout) ends now.
    drop(silent);
    // What reached the hub is reported, not required: a hub that falls behind makes
    // the sink's outbox overflow, which is one of the things this measures.
    let on_hub = match variant {
        Variant::HubUp => Some(hub.run_state(&run_id)?),
        _ => None,
    };
    Ok(Sample {
        items_wall: times.items,
        ticks_wall: times.ticks,
        cpu,
        finish,
        finish_sdk_cpu,
        exit,
        stats: Some(stats),
        on_hub,
    })
}

/// The SDK's own cost on the work thread, with no work in the items: `items` items
/// of the loop (their logs and tool calls, `Stage::iter`) through `progress`,
/// on the calling thread. Returns that thread's CPU time for the loop. What
/// `sdk-event-cost` runs, under `perf stat`, to count instructions and allocations
/// per item without the items' hashing in the way.
pub fn sdk_only(progress: &Progress, items: usize) -> anyhow::Result<Duration> {
    let scale = Scale {
        stages: 1,
        items,
        item_bytes: 8,
        ticks: 1,
        ..Scale::quick()
    };
    let buffer = workload::buffer(scale.item_bytes);
    let before = Threads::now()?;
    let (run, _) = workload::with_sdk(progress, &scale, &buffer);
    let cpu = Threads::now()?.since(&before)?.work;
    run.finish();
    Ok(cpu)
}

/// The median of `values` (the lower middle of an even count); zero when empty.
pub(crate) fn median<T: Copy + Ord + Default>(values: impl IntoIterator<Item = T>) -> T {
    let mut values: Vec<T> = values.into_iter().collect();
    values.sort_unstable();
    values
        .get(values.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant runs at tiny scale against a real in-process hub over a real
    /// SQLite file: the hub-up run arrives whole, nothing is dropped while a sink is
    /// up, and the report has a row per variant. No timing is asserted.
    #[test]
    fn every_variant_runs_at_tiny_scale() {
        // The SDK's own flush deadline, not `quick`'s 200 ms: on a busy machine the
        // hub-up run's last batch can take longer than that to be stored, and this
        // test is about what arrives, not how fast.
        let scale = Scale {
            flush_deadline: Duration::from_secs(5),
            ..Scale::quick()
        };
        let report = run(&scale).unwrap();
        for variant in Variant::all(&scale) {
            let samples = report.samples(variant);
            assert_eq!(samples.len(), scale.rounds, "{variant:?}");
            for sample in samples {
                if variant == Variant::HubUp {
                    let (status, events) = sample.on_hub.clone().unwrap();
                    assert_eq!(status, "succeeded");
                    assert!(events >= workload::milestones(&scale), "{events} events");
                } else {
                    assert_eq!(sample.on_hub, None, "{variant:?}");
                }
                if variant == Variant::HubUp || variant == Variant::JsonLines {
                    // Nothing dropped, whatever the hub acknowledged.
                    let mut stats = sample.stats.unwrap();
                    stats.hub_acknowledged = 0;
                    assert_eq!(stats, Stats::default(), "{variant:?} dropped events");
                }
            }
        }
        let markdown = report.to_markdown();
        for variant in Variant::all(&scale) {
            assert!(
                markdown.contains(&format!("| {} |", variant.label())),
                "no row for {variant:?} in:\n{markdown}"
            );
        }
    }

    #[test]
    fn milestones_count_the_loops_events() {
        let sink = herald::MemorySink::new();
        let progress = Progress::new([Target::memory(&sink)]);
        let scale = Scale::quick();
        let (run, _) = workload::with_sdk(&progress, &scale, &workload::buffer(16));
        run.finish();
        let milestones = sink
            .events()
            .iter()
            .filter(|e| e.body.is_milestone())
            .count() as u64;
        assert_eq!(milestones, workload::milestones(&scale));
    }
}
