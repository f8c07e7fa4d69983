//! CPU time and context switches per thread of this process, from
//! `/proc/self/task/*/schedstat` (time on a CPU in nanoseconds) and `.../status`
//! (voluntary and involuntary context switches), grouped into the work loop's thread,
//! the SDK's threads and the rest (the in-process hub).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;

/// The SDK names its threads `herald-progress` (the dispatcher) and `herald-hub-sink`
/// (a hub sink's sender).
const SDK_THREAD_PREFIX: &str = "herald-";
const SENDER_THREAD: &str = "herald-hub-sink";

/// One thread at one instant.
struct Thread {
    name: String,
    cpu: Duration,
    /// Times it went to sleep (blocked on a lock, a condition variable, a socket).
    voluntary: u64,
    /// Times the scheduler took the CPU from it while it could have run on.
    involuntary: u64,
}

/// Every thread of this process at one instant.
pub(crate) struct Threads {
    by_tid: HashMap<u32, Thread>,
}

/// CPU time spent between two snapshots, by whom.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CpuSplit {
    /// The calling thread (the work loop's).
    pub(crate) work: Duration,
    /// Threads named `herald-*`: the SDK's dispatcher and hub sender.
    pub(crate) sdk: Duration,
    /// Every other thread: the in-process hub's runtime and SQLite workers.
    pub(crate) other: Duration,
    /// Times the calling thread was preempted.
    pub(crate) work_preempted: u64,
    /// Times the SDK's dispatcher thread went to sleep, each ended by a wake-up.
    pub(crate) dispatcher_sleeps: u64,
    /// The same for the hub sink's sender thread.
    pub(crate) sender_sleeps: u64,
}

/// The calling thread's id.
fn current_tid() -> anyhow::Result<u32> {
    // `/proc/thread-self` links to `PID/task/TID`.
    let link = std::fs::read_link("/proc/thread-self").context("reading /proc/thread-self")?;
    link.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .context("/proc/thread-self does not end in a thread id")
}

impl Threads {
    /// Reads every thread's name and CPU time; threads that end while it reads are
    /// left out.
    pub(crate) fn now() -> anyhow::Result<Threads> {
        let mut by_tid = HashMap::new();
        for entry in std::fs::read_dir("/proc/self/task").context("listing /proc/self/task")? {
            let entry = entry?;
            let Some(tid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            let (Ok(comm), Ok(schedstat), Ok(status)) = (
                std::fs::read_to_string(entry.path().join("comm")),
                std::fs::read_to_string(entry.path().join("schedstat")),
                std::fs::read_to_string(entry.path().join("status")),
            ) else {
                continue;
            };
            let ns: u64 = schedstat
                .split_whitespace()
                .next()
                .and_then(|f| f.parse().ok())
                .context("malformed schedstat")?;
            let switches = |field: &str| -> anyhow::Result<u64> {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(field))
                    .and_then(|v| v.trim().parse().ok())
                    .with_context(|| format!("no {field} in /proc/self/task/{tid}/status"))
            };
            let thread = Thread {
                name: comm.trim().to_owned(),
                cpu: Duration::from_nanos(ns),
                voluntary: switches("voluntary_ctxt_switches:")?,
                involuntary: switches("nonvoluntary_ctxt_switches:")?,
            };
            by_tid.insert(tid, thread);
        }
        Ok(Threads { by_tid })
    }

    /// CPU time from `earlier` to this snapshot, split by thread; a thread started in
    /// between counts from zero.
    pub(crate) fn since(&self, earlier: &Threads) -> anyhow::Result<CpuSplit> {
        let me = current_tid()?;
        let mut split = CpuSplit::default();
        for (tid, now) in &self.by_tid {
            let before = earlier.by_tid.get(tid);
            let spent = now
                .cpu
                .saturating_sub(before.map_or(Duration::ZERO, |t| t.cpu));
            if *tid == me {
                split.work += spent;
                split.work_preempted += now.involuntary - before.map_or(0, |t| t.involuntary);
            } else if now.name.starts_with(SDK_THREAD_PREFIX) {
                split.sdk += spent;
                let sleeps = now.voluntary - before.map_or(0, |t| t.voluntary);
                if now.name == SENDER_THREAD {
                    split.sender_sleeps += sleeps;
                } else {
                    split.dispatcher_sleeps += sleeps;
                }
            } else {
                split.other += spent;
            }
        }
        Ok(split)
    }
}
