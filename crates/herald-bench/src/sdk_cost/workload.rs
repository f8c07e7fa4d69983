//! The program's work loop: the same stages, items, logs, tool calls and ticks, once
//! through the SDK and once without it (the bare loop, the floor).
//!
//! Each item hashes a fixed buffer (SipHash, std's `DefaultHasher` with its fixed
//! keys), a fixed amount of CPU work of a few tens of microseconds, so that the loop
//! is the same work in every variant and round.

use std::hash::{DefaultHasher, Hasher};
use std::hint::black_box;
use std::time::{Duration, Instant};

use herald::{Progress, Run, RunOptions};
use serde_json::{Value, json};

use super::Scale;

/// An `info` log line every this many items (a tick to the SDK: dropped first).
const LOG_EVERY: u64 = 50;
/// A tool call (`tool.started` and `tool.finished`, milestones) every this many items.
const TOOL_EVERY: u64 = 100;

/// The buffer each item hashes.
pub(crate) fn buffer(bytes: usize) -> Vec<u8> {
    (0..bytes)
        .map(|i| (i.wrapping_mul(31) % 251) as u8)
        .collect()
}

/// One item's work: hashes the buffer with the item's index.
fn item_work(buffer: &[u8], index: u64) -> u64 {
    let mut hasher = DefaultHasher::new();
    hasher.write_u64(index);
    hasher.write(black_box(buffer));
    hasher.finish()
}

/// How long the two parts of the loop took.
pub(crate) struct LoopTimes {
    /// The stages of items, with their logs and tool calls.
    pub(crate) items: Duration,
    /// The `inc` hot loop.
    pub(crate) ticks: Duration,
}

/// What a program logs every `LOG_EVERY` items: built in the bare loop too, as a
/// program that logs elsewhere would.
fn log_line(stage: usize, index: u64, digest: u64) -> String {
    format!("stage {stage}: item {index}, digest {digest:016x}")
}

fn tool_input(index: u64) -> Value {
    json!({"item": index, "kind": "lookup"})
}

fn tool_output(digest: u64) -> Value {
    json!({"digest": format!("{digest:016x}")})
}

/// The loop without the SDK: the same hashing, log lines and tool payloads, built and
/// thrown away.
pub(crate) fn bare(scale: &Scale, buffer: &[u8]) -> LoopTimes {
    let started = Instant::now();
    let mut digest = 0u64;
    for stage in 1..=scale.stages {
        for index in 1..=scale.items as u64 {
            digest ^= item_work(buffer, index);
            if index % LOG_EVERY == 0 {
                black_box(log_line(stage, index, digest));
            }
            if index % TOOL_EVERY == 0 {
                black_box((tool_input(index), tool_output(digest)));
            }
        }
    }
    black_box(digest);
    let items = started.elapsed();
    let started = Instant::now();
    let mut count = 0u64;
    for _ in 0..scale.ticks {
        count = black_box(count) + 1;
    }
    black_box(count);
    LoopTimes {
        items,
        ticks: started.elapsed(),
    }
}

/// The loop through the SDK: a run of `scale.stages` stages of `scale.items` items
/// each (`Stage::iter`), an `info` log every 50 items, a tool call every 100, a `warn`
/// at the end of each stage, then a stage counted with `scale.ticks` calls of
/// `Stage::inc(1)`. Returns the run, unfinished: finishing it is timed apart.
pub(crate) fn with_sdk(progress: &Progress, scale: &Scale, buffer: &[u8]) -> (Run, LoopTimes) {
    let started = Instant::now();
    let run = progress.run_with(
        "sdk-hub-cost",
        RunOptions {
            total_steps: Some(scale.stages as u64 + 1),
            ..RunOptions::default()
        },
    );
    let mut digest = 0u64;
    for stage_idx in 1..=scale.stages {
        let stage = run
            .stage(&format!("hash-{stage_idx}"))
            .total(scale.items)
            .unit("items");
        for index in stage.iter(1..=scale.items as u64) {
            digest ^= item_work(buffer, index);
            if index % LOG_EVERY == 0 {
                run.info(log_line(stage_idx, index, digest));
            }
            if index % TOOL_EVERY == 0 {
                let call = run.tool("lookup", Some(tool_input(index)), None);
                call.finish(Some(tool_output(digest)));
            }
        }
        stage.finish();
        run.warn(format!("stage {stage_idx} done, digest {digest:016x}"));
    }
    black_box(digest);
    let items = started.elapsed();
    let started = Instant::now();
    let count = run.stage("count").total(scale.ticks).unit("ticks");
    for _ in 0..scale.ticks {
        count.inc(1);
    }
    count.finish();
    let ticks = started.elapsed();
    (run, LoopTimes { items, ticks })
}

/// Events the SDK reports for one loop at `scale`, milestones only (ticks are
/// throttled, so their count depends on timing): `run.started`, per stage
/// `stage.started`, two item events per item, two tool events per tool call,
/// `stage.finished` and the `warn` line, then the counting stage's two events and
/// `run.finished`.
pub(crate) fn milestones(scale: &Scale) -> u64 {
    let items = scale.items as u64;
    let per_stage = 2 + 2 * items + 2 * (items / TOOL_EVERY) + 1;
    1 + scale.stages as u64 * per_stage + 2 + 1
}
