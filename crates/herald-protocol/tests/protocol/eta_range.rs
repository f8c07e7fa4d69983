//! What the reducer derives for the ETA (docs/protocol.md#rate-and-eta): weights, the
//! range around the point, the overdue note, and the run's ETA over the whole run.
//!
//! The estimator's exact figures are its own (measured in BENCHMARKS.md): these tests
//! check what the reducer does with them, with bounds wide enough for any sound
//! estimator on the steady paces they use.

use herald_protocol::{RunState, fold};
use serde_json::{Value, json};

use crate::util::{RUN, at, run_id, script};

fn state(steps: &[(f64, Value)]) -> RunState {
    fold(run_id(RUN), &script(steps))
}

/// `low <= eta <= high`, all three present.
#[track_caller]
fn range(eta: Option<f64>, low: Option<f64>, high: Option<f64>) -> (f64, f64, f64) {
    let (eta, low, high) = (
        eta.expect("an ETA"),
        low.expect("a low end"),
        high.expect("a high end"),
    );
    assert!(
        0.0 <= low && low <= eta && eta <= high,
        "{low} <= {eta} <= {high}"
    );
    (eta, low, high)
}

fn started(total_steps: u64) -> (f64, Value) {
    (
        0.0,
        json!({"event": "run.started", "name": "r", "total_steps": total_steps}),
    )
}

/// Items of `stage` finishing one a second from `from` (exclusive) to `to`.
fn items(stage: &str, from: u64, to: u64, weight: Option<f64>) -> Vec<(f64, Value)> {
    (from + 1..=to)
        .map(|i| {
            let mut item = json!({"event": "item.finished", "item": format!("{stage}{i}"),
                                  "stage": stage, "status": "succeeded"});
            if let Some(w) = weight {
                item["weight"] = json!(w);
            }
            (i as f64, item)
        })
        .collect()
}

#[test]
fn a_weighted_stage_is_estimated_in_weight() {
    // Four files: three small ones done, one a second, and the big one left. By count
    // one unit is left (about a second); by weight 700 of 1000 are (about 7 s).
    let mut steps = vec![
        started(1),
        (
            0.0,
            json!({"event": "stage.started", "stage": "pack", "total": 4, "total_weight": 1000}),
        ),
    ];
    steps.extend(items("pack", 0, 3, Some(100.0)));
    let s = state(&steps);
    let pack = &s.stages[0].progress;
    assert_eq!(pack.done, 3);
    assert_eq!(pack.done_weight, Some(300.0));
    assert_eq!(pack.total_weight, Some(1000.0));
    assert_eq!(pack.percent, Some(30.0), "percent by weight");
    let (eta, _, _) = range(pack.eta_s, pack.eta_low_s, pack.eta_high_s);
    assert!((5.0..10.0).contains(&eta), "in weight, not in count: {eta}");
    // The run of one stage has the stage's ETA.
    assert_eq!(s.eta_s, pack.eta_s);

    // Unweighted, the same items say about a second.
    let mut count = vec![
        started(1),
        (
            0.0,
            json!({"event": "stage.started", "stage": "pack", "total": 4}),
        ),
    ];
    count.extend(items("pack", 0, 3, None));
    let s = state(&count);
    let eta = s.stages[0].progress.eta_s.expect("an ETA");
    assert!(eta < 2.0, "{eta}");
    assert_eq!(s.stages[0].progress.done_weight, None);
}

#[test]
fn progress_weights_count_like_progress_counts() {
    // A download reporting bytes as they arrive: `done_weight` is the latest, and a
    // total weight given later makes the counter weighted from then on.
    let steps = vec![
        started(1),
        (
            0.0,
            json!({"event": "stage.started", "stage": "get", "total": 2}),
        ),
        (
            1.0,
            json!({"event": "progress", "stage": "get", "done": 0, "done_weight": 100, "elapsed_s": 1}),
        ),
        (
            2.0,
            json!({"event": "progress", "stage": "get", "done": 0, "done_weight": 200, "total_weight": 1000, "elapsed_s": 2}),
        ),
        (
            3.0,
            json!({"event": "progress", "stage": "get", "done": 1, "done_weight": 300, "elapsed_s": 3}),
        ),
    ];
    let s = state(&steps);
    let get = &s.stages[0].progress;
    assert_eq!(get.done_weight, Some(300.0));
    assert_eq!(get.total_weight, Some(1000.0));
    assert_eq!(get.percent, Some(30.0));
    // Items finished with weights and progress weights: the larger, as for counts.
    let mut both = steps.clone();
    both.push((
        4.0,
        json!({"event": "item.finished", "item": "x", "stage": "get", "status": "succeeded", "weight": 50}),
    ));
    assert_eq!(state(&both).stages[0].progress.done_weight, Some(300.0));
}

#[test]
fn the_producers_range_stands_and_counts_down() {
    let steps = vec![
        started(1),
        (
            0.0,
            json!({"event": "stage.started", "stage": "s", "total": 100}),
        ),
        (
            5.0,
            json!({"event": "progress", "stage": "s", "done": 10, "eta_s": 40, "eta_low_s": 30, "eta_high_s": 60, "elapsed_s": 5}),
        ),
    ];
    let s = state(&steps);
    let c = &s.stages[0].progress;
    assert_eq!(
        (c.eta_s, c.eta_low_s, c.eta_high_s),
        (Some(40.0), Some(30.0), Some(60.0))
    );
    assert_eq!(
        (s.eta_s, s.eta_low_s, s.eta_high_s),
        (Some(40.0), Some(30.0), Some(60.0))
    );
    // Ten seconds later, each end has counted down ten seconds.
    let later = s.at(at(15.0));
    assert_eq!(
        (later.eta_s, later.eta_low_s, later.eta_high_s),
        (Some(30.0), Some(20.0), Some(50.0))
    );
    // A producer that sends only a point leaves no range.
    let mut point = steps.clone();
    point.push((
        6.0,
        json!({"event": "progress", "stage": "s", "done": 12, "eta_s": 35, "elapsed_s": 6}),
    ));
    let c = state(&point).stages[0].progress.clone();
    assert_eq!(
        (c.eta_s, c.eta_low_s, c.eta_high_s),
        (Some(35.0), Some(35.0), Some(35.0))
    );
}

/// The demo's shape: four stages of ten items, one a second.
fn four_stages(upto: f64) -> Vec<(f64, Value)> {
    let mut steps = vec![started(4)];
    for (k, name) in ["fetch", "parse", "index", "report"]
        .into_iter()
        .enumerate()
    {
        let t0 = k as f64 * 10.0;
        if t0 > upto {
            break;
        }
        steps.push((
            t0,
            json!({"event": "stage.started", "stage": name, "total": 10}),
        ));
        for i in 1..=10u64 {
            let t = t0 + i as f64;
            if t > upto {
                break;
            }
            steps.push((
                t,
                json!({"event": "item.finished", "item": format!("{name}{i}"), "stage": name, "status": "succeeded"}),
            ));
        }
        if t0 + 10.0 <= upto {
            steps.push((
                t0 + 10.0,
                json!({"event": "stage.finished", "stage": name, "status": "succeeded", "elapsed_s": 10}),
            ));
        }
    }
    steps
}

#[test]
fn the_run_eta_covers_the_stages_to_come() {
    // At 19 s the second of four stages is nearly done: the run is near 50%, and
    // two stages of about 10 s each are still to come.
    let s = state(&four_stages(19.0));
    let percent = s.percent.expect("a percent");
    assert!((45.0..50.0).contains(&percent), "{percent}");
    let stage_eta = s
        .current_stage()
        .and_then(|st| st.progress.eta_s)
        .expect("a stage ETA");
    assert!(stage_eta < 3.0, "{stage_eta}");
    let (eta, _, _) = range(s.eta_s, s.eta_low_s, s.eta_high_s);
    assert!(
        (15.0..30.0).contains(&eta),
        "the run's ETA covers the run: {eta}"
    );

    // Seen a little later, it still does, and it agrees with a state read back from
    // JSON (as the hub's run list reads it).
    let now = at(19.5);
    let live = s.at(now);
    let json = serde_json::to_string(&s).expect("serializes");
    let stored: RunState = serde_json::from_str(&json).expect("reads back");
    let listed = stored.at(now);
    let (a, b) = (live.eta_s.expect("live"), listed.eta_s.expect("listed"));
    assert!((a - b).abs() < 0.5, "run page {a}, list {b}");
    assert!(a > 15.0);

    // In the last stage, the run's ETA is that stage's.
    let s = state(&four_stages(35.0));
    assert_eq!(s.eta_s, s.current_stage().and_then(|st| st.progress.eta_s));
    // Once every announced stage ended, nothing is left to estimate.
    let s = state(&four_stages(40.0));
    assert_eq!(s.eta_s, None);
}

#[test]
fn without_the_stages_to_come_the_run_has_no_eta_of_its_own() {
    // No `total_steps` and no declared stages: how much is left of the run is not
    // known, so the run has no ETA; its stage has its own.
    let mut steps = four_stages(19.0);
    steps[0] = (0.0, json!({"event": "run.started", "name": "r"}));
    let s = state(&steps);
    assert_eq!((s.eta_s, s.eta_low_s, s.eta_high_s), (None, None, None));
    let stage = s.current_stage().expect("a stage runs");
    assert_eq!(stage.name, "parse");
    assert!(stage.progress.eta_s.is_some());
    assert!(s.at(at(19.5)).eta_s.is_none());

    // A run without stages: its own counter is the whole run.
    let steps: Vec<(f64, Value)> = (0..=5)
        .map(|i| {
            (
                i as f64,
                json!({"event": "progress", "done": i, "total": 10, "elapsed_s": i}),
            )
        })
        .collect();
    let s = state(&steps);
    let counter = s.progress.as_ref().expect("the run's own counter");
    assert!(s.eta_s.is_some());
    assert_eq!(s.eta_s, counter.eta_s);
    assert_eq!(s.eta_low_s, counter.eta_low_s);
}

#[test]
fn stages_declared_ahead_give_the_run_its_size() {
    // Three stages declared; the first weighs 1000 and took 10 s; the second weighs
    // 3000 (30 s at that pace), the third is unweighed (10 s, as the first took).
    let mut steps = vec![(
        0.0,
        json!({"event": "run.started", "name": "r", "stages": [
            {"stage": "a", "total": 10, "total_weight": 1000},
            {"stage": "b", "total_weight": 3000},
            {"stage": "c"},
        ]}),
    )];
    steps.push((0.0, json!({"event": "stage.started", "stage": "a"})));
    steps.extend(items("a", 0, 10, Some(100.0)));
    steps.push((
        10.0,
        json!({"event": "stage.finished", "stage": "a", "status": "succeeded", "elapsed_s": 10}),
    ));
    let s = state(&steps);
    assert_eq!(s.planned_stages.len(), 3);
    // The stage started with the sizes it was declared with.
    assert_eq!(s.stages[0].progress.total, Some(10));
    assert_eq!(s.stages[0].progress.total_weight, Some(1000.0));
    // Three declared stages, one done.
    let percent = s.percent.expect("a percent");
    assert!((percent - 100.0 / 3.0).abs() < 1e-9, "{percent}");
    let (eta, low, high) = range(s.eta_s, s.eta_low_s, s.eta_high_s);
    assert!((eta - 40.0).abs() < 1e-6, "{eta}");
    // One stage seen: no spread to go by.
    assert!((high - low).abs() < 1e-6);
}

#[test]
fn an_overdue_unit_is_said_so() {
    // One item a second for twenty seconds, then nothing for a minute.
    let mut steps = vec![
        started(1),
        (
            0.0,
            json!({"event": "stage.started", "stage": "s", "total": 100}),
        ),
    ];
    steps.extend(items("s", 0, 20, None));
    let s = state(&steps);
    assert_eq!(s.stages[0].progress.overdue, None);
    let late = s.at(at(80.0));
    let overdue = late.stages[0]
        .progress
        .overdue
        .expect("overdue after a minute");
    assert!((overdue.running_s - 60.0).abs() < 1e-6, "{overdue:?}");
    assert!((0.5..2.0).contains(&overdue.typical_s), "{overdue:?}");
    // It is in the state as views read it.
    let json = serde_json::to_value(&late).expect("serializes");
    assert!(
        json["stages"][0]["overdue"]["running_s"].is_number(),
        "{json:#}"
    );
}

#[test]
fn a_producers_eta_counts_down_no_further_than_the_estimators_own() {
    // A producer counting one unit a second, and saying 500 s are left.
    let mut steps = vec![
        started(1),
        (
            0.0,
            json!({"event": "stage.started", "stage": "s", "total": 1000}),
        ),
    ];
    steps.extend((0..=10u64).map(|i| {
        (
            i as f64,
            json!({"event": "progress", "stage": "s", "done": i, "eta_s": 500, "elapsed_s": i}),
        )
    }));
    let s = state(&steps);
    let eta = |now: f64| s.at(at(now)).stages[0].progress.eta_s.expect("an ETA");
    // One second on, it has counted down one second.
    assert!((eta(11.0) - 499.0).abs() < 1e-6, "{}", eta(11.0));
    // Four seconds on, the estimator's own ETA has held for two (two typical gaps),
    // and so has the producer's: it is not 496.
    assert!((eta(14.0) - 498.0).abs() < 1e-6, "{}", eta(14.0));
    // Far on, the unit is overdue, and the estimator's own estimate stands.
    let late = s.at(at(100.0));
    assert!(late.stages[0].progress.overdue.is_some());
}

#[test]
fn a_state_read_back_from_its_json_estimates_as_the_live_one() {
    // Three shapes: units counted, weighted items, and a producer's own ETA.
    let mut counted = vec![
        started(2),
        (
            0.0,
            json!({"event": "stage.started", "stage": "s", "total": 100}),
        ),
    ];
    counted.extend(items("s", 0, 20, None));
    let mut weighted = vec![
        started(2),
        (
            0.0,
            json!({"event": "stage.started", "stage": "w", "total": 40, "total_weight": 4000.0}),
        ),
    ];
    weighted.extend(items("w", 0, 10, Some(50.0)));
    let mut producer = vec![
        started(1),
        (
            0.0,
            json!({"event": "stage.started", "stage": "p", "total": 1000}),
        ),
    ];
    producer.extend((0..=10u64).map(|i| {
        (
            i as f64,
            json!({"event": "progress", "stage": "p", "done": i, "eta_s": 500, "elapsed_s": i}),
        )
    }));
    for steps in [counted, weighted, producer] {
        let live = state(&steps);
        let stored = serde_json::to_string(&live).expect("serializes");
        let back: RunState = serde_json::from_str(&stored).expect("reads back");
        assert!(back.stages[0].progress.eta_basis.is_some(), "{stored}");
        // Just after, while it holds, and long overdue: the same state, ETAs and all.
        for now in [20.5, 21.5, 23.0, 40.0, 500.0] {
            let json = |s: &RunState| serde_json::to_value(s.at(at(now))).expect("serializes");
            assert_eq!(json(&back), json(&live), "at {now}: {stored}");
        }
        assert!(live.at(at(500.0)).stages[0].progress.overdue.is_some());
    }
}

#[test]
fn a_state_stored_without_the_basis_reads_and_counts_down() {
    let mut steps = vec![
        started(1),
        (
            0.0,
            json!({"event": "stage.started", "stage": "s", "total": 100}),
        ),
    ];
    steps.extend(items("s", 0, 20, None));
    let mut json = serde_json::to_value(state(&steps)).expect("serializes");
    let stage = json["stages"][0].as_object_mut().expect("a stage");
    assert!(stage.remove("eta_basis").is_some(), "{json:#}");
    let old: RunState = serde_json::from_value(json).expect("an old state reads");
    let eta = old.stages[0].progress.eta_s.expect("an ETA");
    // Without the basis, the ETA counts down since the last update, as it used to.
    let later = old.at(at(25.0)).stages[0].progress.eta_s.expect("an ETA");
    assert!(
        (later - (eta - 5.0).max(0.0)).abs() < 1e-6,
        "{eta} then {later}"
    );
}
