//! The Markdown tables of `eta-replay`, as pasted into BENCHMARKS.md.

use std::fmt::Write;

use crate::eta::replay::{SuiteScore, TraceReport, score_peers, suite};
use crate::eta::trace::synthetic_suite_seeded;

/// Tables of MAPE, jitter and first estimates (rows: traces and the suite mean;
/// columns: estimators), then herald's standing against the best peer. `reports` must
/// score the same estimators in the same order, herald first.
pub fn render(reports: &[TraceReport]) -> String {
    let mut out = String::new();
    let Some(first) = reports.first() else {
        return out;
    };
    let names: Vec<&str> = first.scores.iter().map(|s| s.name.as_str()).collect();
    let suite = suite(reports);
    let header = |out: &mut String, title: &str, lead: &str| {
        let _ = writeln!(out, "{title}\n");
        let _ = writeln!(out, "| {lead} | {} |", names.join(" | "));
        let _ = writeln!(out, "|---|{}", "---:|".repeat(names.len()));
    };
    let fmt_pct = |x: Option<f64>| x.map_or("-".to_owned(), |x| format!("{x:.1}"));

    header(
        &mut out,
        "MAPE of the ETA, % (lower is better; instants scored / common in brackets)",
        "trace",
    );
    for r in reports {
        let cells: Vec<String> = r.scores.iter().map(|s| fmt_pct(s.mape)).collect();
        let _ = writeln!(
            out,
            "| {} ({}/{}) | {} |",
            r.trace,
            r.scored,
            r.common,
            cells.join(" | ")
        );
    }
    suite_row(&mut out, &suite, |s| format!("{:.1}", s.mape));

    out.push('\n');
    header(
        &mut out,
        "Jitter, % of the time left per step (lower is steadier)",
        "trace",
    );
    for r in reports {
        let cells: Vec<String> = r.scores.iter().map(|s| fmt_pct(s.jitter)).collect();
        let _ = writeln!(out, "| {} | {} |", r.trace, cells.join(" | "));
    }
    suite_row(&mut out, &suite, |s| format!("{:.2}", s.jitter));

    out.push('\n');
    header(
        &mut out,
        "Range: share of instants where the truth is within [low, high], % / mean width, % of the time left",
        "trace",
    );
    let range_cell = |cal: Option<f64>, width: Option<f64>| match (cal, width) {
        (Some(c), Some(w)) => format!("{c:.0} / {w:.0}"),
        _ => "-".to_owned(),
    };
    for r in reports {
        let cells: Vec<String> = r
            .scores
            .iter()
            .map(|s| range_cell(s.calibration, s.width))
            .collect();
        let _ = writeln!(out, "| {} | {} |", r.trace, cells.join(" | "));
    }
    suite_row(&mut out, &suite, |s| range_cell(s.calibration, s.width));

    out.push('\n');
    header(
        &mut out,
        "First estimate: seconds after the start @ units done (suite: % of the run)",
        "trace",
    );
    for r in reports {
        let cells: Vec<String> = r
            .scores
            .iter()
            .map(|s| {
                s.first.map_or("never".to_owned(), |f| {
                    format!("{:.1} s @{} ({:.0}%)", f.t, f.done, s.coverage * 100.0)
                })
            })
            .collect();
        let _ = writeln!(out, "| {} | {} |", r.trace, cells.join(" | "));
    }
    suite_row(&mut out, &suite, |s| format!("{:.1}%", s.first_pct));
    let _ = writeln!(
        out,
        "\n(In brackets: coverage, the share of scored instants with an estimate.)"
    );

    out.push('\n');
    standing(&mut out, &suite);
    out
}

fn suite_row(out: &mut String, suite: &[SuiteScore], cell: impl Fn(&SuiteScore) -> String) {
    let cells: Vec<String> = suite.iter().map(cell).collect();
    let _ = writeln!(out, "| **suite mean** | {} |", cells.join(" | "));
}

/// herald (the first column) against the best of the others.
fn standing(out: &mut String, suite: &[SuiteScore]) {
    let Some((herald, peers)) = suite.split_first() else {
        return;
    };
    let Some(best) = peers.iter().min_by(|a, b| a.mape.total_cmp(&b.mape)) else {
        return;
    };
    let _ = writeln!(
        out,
        "{}'s suite MAPE is {:.2}x that of the best peer ({}, {:.1}%); target: at most 0.70x.",
        herald.name,
        herald.mape / best.mape,
        best.name,
        best.mape
    );
    let worst = if herald.worst_on.is_empty() {
        "no trace".to_owned()
    } else {
        herald.worst_on.join(", ")
    };
    let _ = writeln!(
        out,
        "{} has the highest MAPE of all on: {worst} (target: no trace).",
        herald.name
    );
    let best_jitter = peers.iter().map(|p| p.jitter).fold(f64::INFINITY, f64::min);
    let _ = writeln!(
        out,
        "{}'s suite jitter is {:.2}, the best peer's {best_jitter:.2} (target: no worse).",
        herald.name, herald.jitter
    );
    if let (Some(cal), Some(width)) = (herald.calibration, herald.width) {
        let _ = writeln!(
            out,
            "{}'s range holds the truth at {cal:.0}% of the instants (target on the real suite: at least 75%), {width:.0}% of the time left wide on average.",
            herald.name
        );
    }
}

/// herald's standing on the suite drawn with seeds `0..seeds`: one row per draw (the
/// suite mean MAPE of herald and of the best peer, their ratio, the traces where herald
/// is the worst), then the mean and the largest ratio.
pub fn render_seeds(seeds: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| seed | herald MAPE % | best peer | its MAPE % | ratio | herald worst on |"
    );
    let _ = writeln!(out, "|---:|---:|---|---:|---:|---|");
    let mut ratios = Vec::new();
    for seed in 0..seeds {
        let reports: Vec<TraceReport> = synthetic_suite_seeded(seed)
            .iter()
            .map(score_peers)
            .collect();
        let suite = suite(&reports);
        let Some((herald, peers)) = suite.split_first() else {
            continue;
        };
        let Some(best) = peers.iter().min_by(|a, b| a.mape.total_cmp(&b.mape)) else {
            continue;
        };
        let ratio = herald.mape / best.mape;
        ratios.push(ratio);
        let worst = if herald.worst_on.is_empty() {
            "-".to_owned()
        } else {
            herald.worst_on.join(", ")
        };
        let _ = writeln!(
            out,
            "| {seed} | {:.1} | {} | {:.1} | {ratio:.2} | {worst} |",
            herald.mape, best.name, best.mape
        );
    }
    if !ratios.is_empty() {
        let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
        let max = ratios.iter().copied().fold(0.0, f64::max);
        let _ = writeln!(
            out,
            "\nOver {} draws: herald's ratio to the best peer is {mean:.2} on average, {max:.2} at most.",
            ratios.len()
        );
    }
    out
}
