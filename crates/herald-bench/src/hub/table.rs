//! The Markdown report of `hub-load`: the machine, one table per part, the targets.

use std::fmt::Write;

use herald_protocol::Timestamp;

use super::client::now_us;
use super::{
    E2eReport, FanoutReport, IngestPath, IngestRow, Percentiles, Report, Scale, SoakReport,
};

/// Batched ingest must reach this share of the bare loop's rate.
const INGEST_TARGET: f64 = 0.6;
/// p99 publish-to-subscriber latency target, in microseconds.
const LATENCY_TARGET_US: u64 = 10_000;
/// Memory per idle stream target, in KiB.
const IDLE_TARGET_KIB: f64 = 16.0;
/// Share of the idle streams' memory the hub must have returned after they close.
const RETURNED_TARGET: f64 = 0.9;
/// p50 and p99 end-to-end latency target, in microseconds.
const E2E_TARGET_US: u64 = 100_000;
/// p99 append time target of the soak, in seconds.
const SOAK_APPEND_TARGET_S: f64 = 0.05;

/// `1234567` as `1,234,567`.
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

/// Microseconds as milliseconds with two decimals.
fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

fn verdict(met: bool) -> &'static str {
    if met { "**met**" } else { "**missed**" }
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let date = Timestamp::from_unix_micros(now_us() as i64).to_string();
    format!("{cores} cores ({model}), {}", &date[..10])
}

fn path_name(row: &IngestRow, clients: usize) -> String {
    match row.path {
        IngestPath::BareRusqlite => "bare SQLite, rusqlite loop".to_owned(),
        IngestPath::BareSqlx => "bare SQLite, sqlx loop with the hub's statements".to_owned(),
        IngestPath::Hub => format!("hub over HTTP, {clients} connections"),
        IngestPath::HubH2c => format!("hub over HTTP/2 (h2c), {clients} producers on 1 connection"),
        IngestPath::BarePostgres => {
            format!("bare PostgreSQL, sqlx with the store's statements, {clients} connections")
        }
        IngestPath::HubPostgres { hubs: 1 } => {
            format!("hub on PostgreSQL over HTTP, {clients} connections")
        }
        IngestPath::HubPostgres { hubs } => format!(
            "{hubs} hubs on one PostgreSQL over HTTP, {clients} connections split between them"
        ),
    }
}

fn render_ingest(out: &mut String, rows: &[IngestRow], scale: &Scale) -> Option<(f64, f64)> {
    let _ = writeln!(
        out,
        "\n**Ingest** (progress events; hub rows: {} producers, one run and one connection each; median of {} interleaved rounds)\n",
        scale.clients, scale.rounds
    );
    let _ = writeln!(
        out,
        "| path | events per transaction | events | events/s (median) | slowest – fastest | × bare loop | request p50 / p99 | hub CPU | hub CPU per event | load CPU | PostgreSQL CPU |"
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for row in rows {
        // Each row against the bare loop of its own database: PostgreSQL's hubs
        // against the bare PostgreSQL loop, the rest against bare rusqlite.
        let limit = match row.path {
            IngestPath::BarePostgres | IngestPath::HubPostgres { .. } => IngestPath::BarePostgres,
            _ => IngestPath::BareRusqlite,
        };
        let bare = rows
            .iter()
            .find(|r| r.batch == row.batch && r.path == limit)
            .map_or(f64::NAN, IngestRow::rate);
        // CPU time per stored event (all hubs' together), the figure that noise on a
        // shared machine moves least.
        let per_event = row.hub_cpu.map_or("".to_owned(), |cpu| {
            let us = cpu / 100.0 * row.wall.as_secs_f64() * 1e6 / row.events.max(1) as f64;
            format!("{us:.1} µs")
        });
        let latency = row
            .request_latency
            .map_or("".to_owned(), |p| format!("{} / {}", ms(p.p50), ms(p.p99)));
        let pct = |v: Option<f64>| v.map_or("".to_owned(), |v| format!("{v:.0}%"));
        let range = row.range.map_or("".to_owned(), |(lo, hi)| {
            format!(
                "{} – {}",
                thousands(lo.round() as u64),
                thousands(hi.round() as u64)
            )
        });
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {range} | {:.2} | {latency} | {} | {per_event} | {} | {} |",
            path_name(row, scale.clients),
            row.batch,
            thousands(row.events as u64),
            thousands(row.rate().round() as u64),
            row.rate() / bare,
            pct(row.hub_cpu),
            pct(row.load_cpu),
            pct(row.db_cpu),
        );
    }
    let batched = |path| {
        rows.iter()
            .find(|r| r.batch == scale.batch && r.batch > 1 && r.path == path)
            .map(IngestRow::rate)
    };
    Some((
        batched(IngestPath::Hub)?,
        batched(IngestPath::BareRusqlite)?,
    ))
}

/// The whole report.
pub(crate) fn render(report: &Report, scale: &Scale) -> String {
    let mut out = String::new();
    let load = |l: Option<f64>| l.map_or("?".to_owned(), |l| format!("{l:.2}"));
    let _ = writeln!(
        out,
        "Machine: {}. 1-minute load average {} at the start, {} at the end. CPU % is of one core.",
        machine(),
        load(report.load_at_start),
        load(super::load_average()),
    );
    let mut targets = Vec::new();
    if !report.ingest.is_empty()
        && let Some((hub, bare)) = render_ingest(&mut out, &report.ingest, scale)
    {
        targets.push(format!(
                "- batched ingest ({} per request) at least {INGEST_TARGET}× bare SQLite's {}-row transactions: {:.2}× ({} vs {} events/s), {}",
                scale.batch,
                scale.batch,
                hub / bare,
                thousands(hub.round() as u64),
                thousands(bare.round() as u64),
                verdict(hub >= INGEST_TARGET * bare)
            ));
    }
    if let Some(f) = report.fanout.first().and_then(|r| r.first()) {
        let _ = writeln!(
            out,
            "\n**Publish to subscriber** ({} subscribers on one run in a process of their own; {} events appended one per request at {}/s; each row the median of {} rounds, one run each, with the slowest and fastest round)\n",
            thousands(f.subscribers as u64),
            f.events,
            f.rate,
            scale.latency_rounds,
        );
        let _ = writeln!(
            out,
            "| hubs | subscribers | deliveries per round | p50 | p90 | p99 | p99 slowest – fastest | max | append round trip p50 / p99 | hub CPU | subscribers' CPU | PostgreSQL CPU |"
        );
        let _ = writeln!(
            out,
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for rounds in &report.fanout {
            let Some(f) = rounds.first() else { continue };
            let pick = |get: &dyn Fn(&FanoutReport) -> u64| -> Vec<u64> {
                let mut v: Vec<u64> = rounds.iter().map(get).collect();
                v.sort_unstable();
                v
            };
            let cpu = |get: &dyn Fn(&FanoutReport) -> f64| -> f64 {
                let mut v: Vec<f64> = rounds.iter().map(get).collect();
                v.sort_by(f64::total_cmp);
                median_f(&v)
            };
            let p99 = pick(&|r| r.latency_us.p99);
            let db = rounds.iter().filter_map(|r| r.db_cpu).collect::<Vec<_>>();
            let _ = writeln!(
                out,
                "| {} | {} {} | {} | {} | {} | {} | {} – {} | {} | {} / {} | {:.0}% | {:.0}% | {} |",
                f.setup,
                thousands(f.subscribers as u64),
                f.transport.name(),
                thousands(f.deliveries as u64),
                ms(median(&pick(&|r| r.latency_us.p50))),
                ms(median(&pick(&|r| r.latency_us.p90))),
                ms(median(&p99)),
                ms(*p99.last().unwrap_or(&0)),
                ms(*p99.first().unwrap_or(&0)),
                ms(median(&pick(&|r| r.latency_us.max))),
                ms(median(&pick(&|r| r.append_us.p50))),
                ms(median(&pick(&|r| r.append_us.p99))),
                cpu(&|r| r.hub_cpu),
                cpu(&|r| r.subscriber_cpu),
                if db.is_empty() {
                    String::new()
                } else {
                    format!("{:.0}%", cpu(&|r| r.db_cpu.unwrap_or(0.0)))
                },
            );
            if f.setup == "1 hub, SQLite" {
                targets.push(format!(
                    "- p99 publish-to-subscriber latency under {} with {} {} subscribers: {} (median of {} rounds; {} – {}), {}",
                    ms(LATENCY_TARGET_US),
                    thousands(f.subscribers as u64),
                    f.transport.name(),
                    ms(median(&p99)),
                    rounds.len(),
                    ms(*p99.last().unwrap_or(&0)),
                    ms(*p99.first().unwrap_or(&0)),
                    verdict(median(&p99) < LATENCY_TARGET_US)
                ));
            }
        }
    }
    if let Some(i) = report.idle.first() {
        let _ = writeln!(
            out,
            "\n**Memory per idle stream** ({} SSE streams spread over {} runs; hub VmRSS; {} rounds, each a fresh hub process; allocator: {})\n",
            thousands(i.streams as u64),
            i.runs,
            report.idle.len(),
            super::ALLOCATOR
        );
        let _ = writeln!(
            out,
            "| round | streams | RSS before | all open | after 3 s idle | per stream | after closing them | returned | RSS steady after |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        let mib = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
        for (n, i) in report.idle.iter().enumerate() {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {:.1} KiB | {} | {:.0}% | {:.1} s |",
                n + 1,
                thousands(i.streams as u64),
                mib(i.before_kib),
                mib(i.open_kib),
                mib(i.settled_kib),
                i.per_stream_kib(),
                mib(i.closed_kib),
                i.returned() * 100.0,
                i.returned_after.as_secs_f64(),
            );
        }
        let mut per_stream: Vec<f64> = report.idle.iter().map(|i| i.per_stream_kib()).collect();
        per_stream.sort_by(f64::total_cmp);
        let mut returned: Vec<f64> = report.idle.iter().map(|i| i.returned()).collect();
        returned.sort_by(f64::total_cmp);
        let (per, ret) = (median_f(&per_stream), median_f(&returned));
        targets.push(format!(
            "- under {IDLE_TARGET_KIB} KiB per idle stream with {} streams: {per:.1} KiB (median of {} rounds; {:.1} – {:.1}), {}",
            thousands(i.streams as u64),
            per_stream.len(),
            per_stream.first().unwrap_or(&f64::NAN),
            per_stream.last().unwrap_or(&f64::NAN),
            verdict(per < IDLE_TARGET_KIB)
        ));
        targets.push(format!(
            "- at least {:.0}% of the streams' memory returned after they close (once the RSS stops falling, within 30 s): {:.0}% (median), {}",
            RETURNED_TARGET * 100.0,
            ret * 100.0,
            verdict(ret >= RETURNED_TARGET)
        ));
    }
    if let Some(e) = &report.e2e {
        render_e2e(&mut out, e, &mut targets);
    }
    for soak in &report.soak {
        render_soak(&mut out, soak, &mut targets);
    }
    if !targets.is_empty() {
        let _ = writeln!(out, "\nTargets:\n");
        for t in targets {
            let _ = writeln!(out, "{t}");
        }
    }
    out
}

/// The median of sorted values (the lower of the two middle ones).
fn median(sorted: &[u64]) -> u64 {
    sorted
        .get(sorted.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(0)
}

fn median_f(sorted: &[f64]) -> f64 {
    sorted
        .get(sorted.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(f64::NAN)
}

fn render_e2e(out: &mut String, e: &E2eReport, targets: &mut Vec<String>) {
    let rounds = e.rows.first().map_or(0, |r| r.rounds.len());
    let _ = writeln!(
        out,
        "\n**End to end** (a program's call, through the SDK's hub sink with default settings and the hub, to an SSE subscriber; {} trials of each per round, median of {rounds} rounds with the slowest and fastest round)\n",
        e.trials
    );
    let _ = writeln!(
        out,
        "| call | p50 | p50 slowest – fastest | p99 | p99 slowest – fastest | max | limit |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    for row in &e.rows {
        let pick = |get: fn(&Percentiles) -> u64| -> Vec<u64> {
            let mut v: Vec<u64> = row.rounds.iter().map(get).collect();
            v.sort_unstable();
            v
        };
        let (p50, p99, max) = (pick(|p| p.p50), pick(|p| p.p99), pick(|p| p.max));
        let spread = |v: &[u64]| {
            format!(
                "{} – {}",
                ms(*v.last().unwrap_or(&0)),
                ms(*v.first().unwrap_or(&0))
            )
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            row.kind.label(),
            ms(median(&p50)),
            spread(&p50),
            ms(median(&p99)),
            spread(&p99),
            ms(*max.last().unwrap_or(&0)),
            ms(E2E_TARGET_US),
        );
        targets.push(format!(
            "- {}: p50 and p99 end to end under {}: {} and {}, {}",
            row.kind.label(),
            ms(E2E_TARGET_US),
            ms(median(&p50)),
            ms(median(&p99)),
            verdict(median(&p50) < E2E_TARGET_US && median(&p99) < E2E_TARGET_US)
        ));
    }
}

fn render_soak(out: &mut String, soak: &SoakReport, targets: &mut Vec<String>) {
    let scale = &soak.scale;
    let _ = writeln!(
        out,
        "\n**Soak, {}** ({} runs through the SDK's hub sink, one `Progress` each, in {} processes{}; {} events/s per run for {} s)\n",
        soak.backend,
        thousands(scale.runs as u64),
        scale.processes,
        scale
            .producers_nice
            .map_or(String::new(), |n| format!(" at nice {n}")),
        scale.rate,
        scale.duration.as_secs()
    );
    let _ = writeln!(
        out,
        "| emitted by the runs | acknowledged | stored | lost | dropped by sinks | emitted, never stored | appends | events per append | append mean | append p99 | hubs' CPU per event |"
    );
    let _ = writeln!(
        out,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let p99 = match soak.append_p99_le_s {
        None => "?".to_owned(),
        Some(le) if le.is_finite() => format!("≤ {}", ms((le * 1e6) as u64)),
        Some(_) => "over the largest bucket".to_owned(),
    };
    let _ = writeln!(
        out,
        "| {} | {} | {} | {} | {} | {} | {} | {:.1} | {} | {p99} | {} |",
        thousands(soak.emitted),
        thousands(soak.acknowledged),
        thousands(soak.stored),
        soak.lost,
        soak.dropped,
        thousands(soak.never_stored),
        thousands(soak.appends),
        soak.stored as f64 / soak.appends.max(1) as f64,
        ms(soak.append_mean_us as u64),
        cpu_per_event(soak.hub_cpu_per_event_us),
    );
    let hubs = soak.samples.first().map_or(1, |s| s.rss_kib.len());
    let rss_heads: Vec<String> = (0..hubs)
        .map(|h| format!("hub {} RSS", (b'A' + h as u8) as char))
        .collect();
    let _ = writeln!(
        out,
        "\n| s | {} | hubs' CPU | hubs' run-queue wait | producers' CPU | PostgreSQL CPU | events stored | appends/s | events per append | append mean | hubs' CPU per event |",
        rss_heads.join(" | ")
    );
    let _ = writeln!(
        out,
        "|---:|{}---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        "---:|".repeat(hubs)
    );
    let mut before = (0.0, 0, 0, 0.0);
    for sample in &soak.samples {
        let (at_s, stored, appends, append_s) = before;
        let (new_events, new_appends) = (
            sample.stored.saturating_sub(stored),
            sample.appends.saturating_sub(appends),
        );
        // An interval without appends (a sampler late under load) has no mean.
        let per_append = |x: f64| (new_appends > 0).then(|| x / new_appends as f64);
        let append_mean = per_append((sample.append_s - append_s) * 1e6)
            .map_or(String::new(), |us| ms(us as u64));
        let events_per_append =
            per_append(new_events as f64).map_or(String::new(), |n| format!("{n:.1}"));
        let cpu_per_event = cpu_per_event(sample.hub_cpu_per_event_us);
        before = (sample.at_s, sample.stored, sample.appends, sample.append_s);
        let rss: Vec<String> = sample
            .rss_kib
            .iter()
            .map(|k| format!("{:.1} MiB", *k as f64 / 1024.0))
            .collect();
        let _ = writeln!(
            out,
            "| {:.0} | {} | {:.0}% | {:.0}% | {:.0}% | {} | {} | {:.0} | {events_per_append} | {append_mean} | {cpu_per_event} |",
            sample.at_s,
            rss.join(" | "),
            sample.hub_cpu,
            sample.hub_waiting,
            sample.producers_cpu,
            sample.db_cpu.map_or(String::new(), |c| format!("{c:.0}%")),
            thousands(sample.stored),
            new_appends as f64 / (sample.at_s - at_s).max(f64::EPSILON),
        );
    }
    targets.push(format!(
        "- soak ({}): 0 acknowledged events lost: {} lost of {}, {}",
        soak.backend,
        soak.lost,
        thousands(soak.acknowledged),
        verdict(soak.lost == 0)
    ));
    if let Some(le) = soak.append_p99_le_s {
        targets.push(format!(
            "- soak ({}): append p99 under {}: {p99}, {}",
            soak.backend,
            ms((SOAK_APPEND_TARGET_S * 1e6) as u64),
            verdict(le <= SOAK_APPEND_TARGET_S)
        ));
    }
}

/// The hubs' CPU per event stored, µs; `NaN` (nothing stored) is written as nothing.
fn cpu_per_event(us: f64) -> String {
    Some(us)
        .filter(|us| us.is_finite())
        .map_or(String::new(), |us| format!("{us:.1} µs"))
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
