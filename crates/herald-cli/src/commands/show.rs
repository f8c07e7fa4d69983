//! Runs in words, for the commands that print them: the one-line status of a run
//! (`watch` on a terminal, the last known state of `watch` and `exec`), the messages
//! an event is worth, and durations and ages as people read them.
//!
//! Everything here reads a [`RunState`] folded by the protocol crate; nothing derives
//! a run's status of its own. The forms of numbers follow the SDK's terminal bars, so
//! that a run reads the same in `herald watch` as in the program's own terminal.

use std::time::{SystemTime, UNIX_EPOCH};

use herald::{escape_controls, eta_text, overdue_text};
use herald_protocol::{RunState, Timestamp};

/// The wall clock as a protocol timestamp.
pub(crate) fn now() -> Timestamp {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    Timestamp::from_unix_micros(i64::try_from(micros).unwrap_or(i64::MAX))
}

/// A duration for people: `0.4s`, `42s`, `1m05s`, `2h03m`, `3d04h`.
pub(crate) fn duration(secs: f64) -> String {
    let secs = if secs.is_finite() { secs.max(0.0) } else { 0.0 };
    if secs < 10.0 {
        // Tenths, floored, so a live counter never shows 10.0s before 10s.
        return format!("{:.1}s", (secs * 10.0).floor() / 10.0);
    }
    let whole = secs as u64;
    match whole {
        0..60 => format!("{whole}s"),
        60..3600 => format!("{}m{:02}s", whole / 60, whole % 60),
        3600..360_000 => format!("{}h{:02}m", whole / 3600, whole % 3600 / 60),
        _ => format!("{}d{:02}h", whole / 86_400, whole % 86_400 / 3600),
    }
}

/// How long ago `t` was, at `now`: `3.2s ago`, `-` when unknown.
pub(crate) fn age(t: Option<Timestamp>, now: Timestamp) -> String {
    match t {
        Some(t) => format!("{} ago", duration(now.seconds_since(t))),
        None => "-".to_owned(),
    }
}

/// A percentage, floored so that a run never reads 100% before it is done.
pub(crate) fn percent(p: f64) -> String {
    let p = if p.is_finite() {
        p.clamp(0.0, 100.0)
    } else {
        0.0
    };
    format!("{}%", p.floor() as u64)
}

/// `s` cut to `width` characters, with `…` where it was cut.
pub(crate) fn cut(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The run's name, or its id when it has none yet.
pub(crate) fn name(state: &RunState) -> &str {
    if state.name.is_empty() {
        state.id.as_str()
    } else {
        &state.name
    }
}

/// One line saying where a run is: name, status, stage and count, percent, ETA,
/// elapsed time, and what it is doing or waiting on. `state` is as seen at `now`
/// (`RunState::at`). Names, notes and tool feedback come from the producer: they are
/// shown with their controls escaped, so the line stays one line on a terminal.
pub(crate) fn status_line(state: &RunState, now: Timestamp) -> String {
    let mut parts = vec![name(state).to_owned(), state.status.as_str().to_owned()];
    let counter = match state.current_stage() {
        Some(stage) => {
            parts.push(format!("stage {}", stage.name));
            Some(&stage.progress)
        }
        None => state.progress.as_ref(),
    };
    if let Some(counter) = counter {
        let unit = counter
            .unit
            .as_deref()
            .map_or(String::new(), |u| format!(" {u}"));
        match counter.total {
            Some(total) => parts.push(format!("{}/{total}{unit}", counter.done)),
            None if counter.done > 0 => parts.push(format!("{}{unit}", counter.done)),
            None => {}
        }
    }
    if let Some(p) = state.percent {
        parts.push(percent(p));
    }
    // The whole run's ETA when it can be told; else the current stage's, labelled
    // as the stage's. An ETA run down to nothing says nothing: the run is late, or
    // about to end.
    let counter = state.current_counter();
    if let Some(eta) = state.eta_s.filter(|eta| *eta >= 0.1) {
        parts.push(eta_text(eta, state.eta_low_s, state.eta_high_s));
    } else if let Some((c, eta)) = counter.and_then(|c| c.eta_s.map(|eta| (c, eta)))
        && eta >= 0.1
        && !state.stages.is_empty()
    {
        parts.push(format!(
            "stage {}",
            eta_text(eta, c.eta_low_s, c.eta_high_s)
        ));
    }
    if let Some(o) = counter.and_then(|c| c.overdue) {
        parts.push(overdue_text(o.running_s, o.typical_s));
    }
    parts.push(format!("elapsed {}", duration(state.elapsed_s)));
    let items = &state.items;
    if items.running + items.failed > 0 {
        let mut counts = Vec::new();
        if items.running > 0 {
            counts.push(format!("{} running", items.running));
        }
        if items.failed > 0 {
            counts.push(format!("{} failed", items.failed));
        }
        parts.push(format!("items {}", counts.join(", ")));
    }
    if let Some(tool) = state.tools.in_flight.last() {
        parts.push(
            tool.feedback
                .clone()
                .unwrap_or_else(|| format!("tool {}", tool.tool)),
        );
    } else if let Some(note) = &state.heartbeat_note
        && !state.status.is_terminal()
    {
        parts.push(note.clone());
    }
    if state.cancel_requested && !state.status.is_terminal() {
        parts.push("cancel requested".to_owned());
    }
    if !state.status.is_terminal()
        && let Some(last) = state.last_event_at
    {
        // Only worth saying when it starts to matter.
        if now.seconds_since(last) >= 5.0 {
            parts.push(format!("last event {}", age(Some(last), now)));
        }
    }
    escape_controls(&parts.join("  ")).into_owned()
}

#[cfg(test)]
mod tests {
    use herald_protocol::{Draft, Event, RunId, StageStarted, fold};

    use super::*;

    fn at(secs: f64) -> Timestamp {
        "2026-01-01T00:00:00Z"
            .parse::<Timestamp>()
            .unwrap()
            .add_seconds(secs)
    }

    fn event(seq: u64, secs: f64, json: &str) -> Event {
        let run = RunId::new("r1").unwrap();
        let draft: Draft = herald_protocol::parse_draft_str(json, &run).unwrap();
        Draft {
            ts: Some(at(secs)),
            ..draft
        }
        .stamp(run, seq, at(secs))
    }

    #[track_caller]
    fn check(events: &[Event], now: f64, expected: &str) {
        let state = fold(RunId::new("r1").unwrap(), events).at(at(now));
        assert_eq!(status_line(&state, at(now)), expected);
    }

    #[test]
    fn status_lines() {
        let started = event(1, 0.0, r#"{"event":"run.started","name":"nightly"}"#);
        check(
            std::slice::from_ref(&started),
            2.0,
            "nightly  running  elapsed 2.0s",
        );
        let stage = event(
            2,
            1.0,
            &serde_json::to_string(&Draft::new(
                at(1.0),
                StageStarted {
                    stage: "fetch".into(),
                    total: Some(10),
                    unit: None,
                    total_weight: None,
                },
            ))
            .unwrap(),
        );
        let progress = event(
            3,
            2.0,
            r#"{"event":"progress","stage":"fetch","done":4,"total":10,"elapsed_s":1}"#,
        );
        check(
            &[started.clone(), stage.clone(), progress.clone()],
            9.0,
            // Its ETA ran out long ago: its current unit is overdue.
            "nightly  running  stage fetch  4/10  40%  current item running 7.0s, typically 1.0s  elapsed 9.0s  last event 7.0s ago",
        );
        let finished = event(
            4,
            3.0,
            r#"{"event":"run.finished","status":"failed","error":"disk full"}"#,
        );
        let events = [started, stage, progress, finished];
        check(&events, 30.0, "nightly  failed  40%  elapsed 3.0s");
    }

    /// A run whose stage `fetch` reported ETA 240 s (180 to 300) at 10 s, its
    /// `run.started` being `started`.
    fn with_stage_eta(started: &str) -> Vec<Event> {
        vec![
            event(1, 0.0, started),
            event(
                2,
                0.0,
                r#"{"event":"stage.started","stage":"fetch","total":100}"#,
            ),
            event(
                3,
                10.0,
                r#"{"event":"progress","stage":"fetch","done":10,"eta_s":240,"eta_low_s":180,"eta_high_s":300,"elapsed_s":10}"#,
            ),
        ]
    }

    #[test]
    fn the_eta_is_the_runs_when_it_can_be_told_else_the_stages_labelled() {
        // One stage of one: the run's ETA, with its range.
        check(
            &with_stage_eta(r#"{"event":"run.started","name":"sync","total_steps":1}"#),
            10.0,
            "sync  running  stage fetch  10/100  10%  ETA 3–5 min  elapsed 10s",
        );
        // Stages to come, of a number not known: the stage's ETA, said to be.
        check(
            &with_stage_eta(r#"{"event":"run.started","name":"sync"}"#),
            10.0,
            "sync  running  stage fetch  10/100  10%  stage ETA 3–5 min  elapsed 10s",
        );
        // One stage of two: the run's ETA covers both (about twice as long).
        check(
            &with_stage_eta(r#"{"event":"run.started","name":"sync","total_steps":2}"#),
            10.0,
            "sync  running  stage fetch  10/100  5%  ETA 8m10s  elapsed 10s",
        );
    }

    #[test]
    fn durations_and_cuts() {
        assert_eq!(duration(0.42), "0.4s");
        assert_eq!(duration(65.0), "1m05s");
        assert_eq!(duration(7380.0), "2h03m");
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 4), "abc");
    }
}
