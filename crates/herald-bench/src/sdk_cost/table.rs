//! The Markdown report of `sdk-hub-cost`: the work loop per variant against (a), then
//! what finishing and exiting cost and what was dropped.

use std::fmt::Write as _;
use std::time::Duration;

use herald::Stats;
use herald::protocol::Timestamp;

use super::{Report, Sample, Variant, median};

/// Milliseconds with two decimals.
fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Signed nanoseconds as milliseconds with two decimals.
fn signed_ms(ns: i128) -> String {
    format!("{:+.2} ms", ns as f64 / 1e6)
}

/// A duration as signed nanoseconds.
fn ns(d: Duration) -> i128 {
    d.as_nanos() as i128
}

/// `lo` alone when all are equal, else `lo–hi`.
fn range(values: &[u64]) -> String {
    let lo = values.iter().min().copied().unwrap_or(0);
    let hi = values.iter().max().copied().unwrap_or(0);
    if lo == hi {
        format!("{lo}")
    } else {
        format!("{lo}–{hi}")
    }
}

/// A count with thousands separators: 1,000,000.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn machine() -> String {
    // The machine's CPUs, not this thread's share of them (it may be pinned to one).
    let cores = std::fs::read_to_string("/proc/cpuinfo").map_or(0, |c| {
        c.lines().filter(|l| l.starts_with("processor")).count()
    });
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    let date = Timestamp::from_unix_micros(micros).to_string();
    format!("{cores} cores ({model}), {} UTC", &date[..16])
}

fn load(value: Option<f64>) -> String {
    value.map_or_else(|| "unknown".to_owned(), |l| format!("{l:.2}"))
}

/// Median of a figure of each round's sample of `variant` minus the same round's (a).
fn paired(report: &Report, variant: Variant, figure: impl Fn(&Sample) -> Duration) -> i128 {
    let base = report.samples(Variant::Hidden);
    median(
        report
            .samples(variant)
            .iter()
            .zip(base)
            .map(|(s, b)| ns(figure(s)) - ns(figure(b))),
    )
}

pub(super) fn render(report: &Report) -> String {
    let scale = &report.scale;
    let mut out = String::new();
    let items = scale.total_items();
    let bare = report.samples(Variant::Bare);
    let work_per_item = median(bare.iter().map(|s| s.items_wall)) / items.max(1) as u32;
    let base_loop = median(
        report
            .samples(Variant::Hidden)
            .iter()
            .map(Sample::loop_wall),
    );
    let _ = writeln!(
        out,
        "Machine: {}. 1-minute load average {} at the start, {} at the end.\n",
        machine(),
        load(report.load.0),
        load(report.load.1)
    );
    let _ = writeln!(
        out,
        "Loop: {} stages × {} items through `Stage::iter`, each hashing {} KiB (SipHash; \
         {:.1} µs per item in the bare loop), an `info` log every 50 items, a tool call \
         every 100, a `warn` per stage, then {} × `Stage::inc(1)`: {} milestones per \
         run, plus ticks (logs at `info`, throttled `progress`). CPU times are \
         updated at the scheduler's tick (a few ms); \"hub CPU\" is every thread that is neither the loop's nor \
         the SDK's `herald-*`, and the hub's process when it has one. {} rounds, variants \
         interleaved and rotated; hub flush deadline {:?}. Placement: {}.\n",
        scale.stages,
        scale.items,
        scale.item_bytes.div_ceil(1024),
        work_per_item.as_secs_f64() * 1e6,
        thousands(scale.ticks),
        thousands(super::workload::milestones(scale)),
        scale.rounds,
        scale.flush_deadline,
        scale.placement.describe(),
    );
    let _ = writeln!(
        out,
        "**Work loop** (from `Progress::run` to just before `Run::finish`; median of {} \
         rounds; Δ is the median of each round's difference to (a) in the same round)\n",
        scale.rounds
    );
    let _ = writeln!(
        out,
        "| sink | work loop | slowest – fastest | Δ vs (a) | Δ per item vs (a) | \
         {} × `inc` |\n\
         |---|---:|---:|---:|---:|---:|",
        thousands(scale.ticks)
    );
    for (variant, samples) in &report.variants {
        let walls: Vec<Duration> = samples.iter().map(Sample::loop_wall).collect();
        let delta = paired(report, *variant, Sample::loop_wall);
        let delta_items = paired(report, *variant, |s| s.items_wall);
        let (delta, per_item) = if *variant == Variant::Hidden {
            (String::new(), String::new())
        } else {
            let percent = delta as f64 / ns(base_loop).max(1) as f64 * 100.0;
            (
                format!("{} ({percent:+.1}%)", signed_ms(delta)),
                format!("{:+.2} µs", delta_items as f64 / 1e3 / items.max(1) as f64),
            )
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} – {} | {delta} | {per_item} | {} |",
            variant.label(),
            ms(median(walls.iter().copied())),
            ms(walls.iter().max().copied().unwrap_or_default()),
            ms(walls.iter().min().copied().unwrap_or_default()),
            ms(median(samples.iter().map(|s| s.ticks_wall))),
        );
    }
    out.push_str(
        "\n**Where the time goes during the work loop** (medians; CPU per thread from \
         `/proc/self/task/*/schedstat`, switches from `.../status`; the work thread's CPU Δ \
         is the median of each round's difference to (a), the cost to the loop that other \
         processes' load on its CPU does not change)\n\n\
         | sink | work thread CPU | work thread CPU Δ vs (a) | work thread preempted | SDK threads CPU \
         | dispatcher's sleeps | hub sender's sleeps | hub CPU |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let base_cpu = median(report.samples(Variant::Hidden).iter().map(|s| s.cpu.work));
    for (variant, samples) in &report.variants {
        let cpu_delta = if *variant == Variant::Hidden {
            String::new()
        } else {
            let delta = paired(report, *variant, |s| s.cpu.work);
            let percent = delta as f64 / ns(base_cpu).max(1) as f64 * 100.0;
            format!("{} ({percent:+.1}%)", signed_ms(delta))
        };
        let _ = writeln!(
            out,
            "| {} | {} | {cpu_delta} | {} | {} | {} | {} | {} |",
            variant.label(),
            ms(median(samples.iter().map(|s| s.cpu.work))),
            thousands(median(samples.iter().map(|s| s.cpu.work_preempted))),
            ms(median(samples.iter().map(|s| s.cpu.sdk))),
            thousands(median(samples.iter().map(|s| s.cpu.dispatcher_sleeps))),
            thousands(median(samples.iter().map(|s| s.cpu.sender_sleeps))),
            ms(median(samples.iter().map(|s| s.cpu.hub))),
        );
    }
    let _ = writeln!(
        out,
        "\n**Finishing, exiting and drops** (`Run::finish` and dropping the `Progress`: \
         median (max) of {} rounds; drops from `Progress::stats()` after `Run::finish`, \
         per round)\n",
        scale.rounds
    );
    out.push_str(
        "| sink | `run.finish()` | SDK threads CPU in it | exit (drop `Progress`) \
         | queue drops: ticks / milestones | hub sink drops: ticks / milestones \
         | sink errors | events on the hub |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (variant, samples) in &report.variants {
        if *variant == Variant::Bare {
            continue;
        }
        let stat = |f: fn(&Stats) -> u64| -> String {
            let values: Vec<u64> = samples
                .iter()
                .filter_map(|s| s.stats.as_ref().map(f))
                .collect();
            range(&values)
        };
        let on_hub: Vec<&(String, u64)> =
            samples.iter().filter_map(|s| s.on_hub.as_ref()).collect();
        let on_hub = if on_hub.is_empty() {
            String::new()
        } else {
            let counts: Vec<u64> = on_hub.iter().map(|(_, n)| *n).collect();
            let succeeded = on_hub.iter().filter(|(s, _)| s == "succeeded").count();
            format!(
                "{} ({succeeded} of {} runs succeeded)",
                range(&counts),
                on_hub.len()
            )
        };
        let _ = writeln!(
            out,
            "| {} | {} ({}) | {} | {} ({}) | {} / {} | {} / {} | {} | {} |",
            variant.label(),
            ms(median(samples.iter().map(|s| s.finish))),
            ms(samples.iter().map(|s| s.finish).max().unwrap_or_default()),
            ms(median(samples.iter().map(|s| s.finish_sdk_cpu))),
            ms(median(samples.iter().map(|s| s.exit))),
            ms(samples.iter().map(|s| s.exit).max().unwrap_or_default()),
            stat(|s| s.dropped_ticks),
            stat(|s| s.dropped_milestones),
            stat(|s| s.hub_dropped_ticks),
            stat(|s| s.hub_dropped_milestones),
            stat(|s| s.sink_errors),
            on_hub,
        );
    }
    out
}
