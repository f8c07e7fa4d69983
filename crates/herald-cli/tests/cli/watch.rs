//! `herald watch`: its exit codes (0 succeeded, 1 failed, 2 cancelled, 3 stalled or
//! idle), and the run's events as JSON Lines when stdout is not a terminal.

use std::time::{Duration, Instant};

use herald_protocol::EventBody;
use serde_json::json;

use crate::hubs::{Running, TestHub, run_within, stderr_of, stdout_events, wait_for};

#[test]
fn exit_codes_say_how_the_run_ended() {
    let hub = TestHub::start();
    for (status, code) in [("succeeded", 0), ("failed", 1), ("cancelled", 2)] {
        let run = hub.create(json!({"name": format!("ends {status}")}));
        hub.append(
            &run,
            json!([
                {"event": "run.started", "name": format!("ends {status}")},
                {"event": "log", "level": "info", "message": "working"},
                {"event": "run.finished", "status": status},
            ]),
        );
        let out = run_within(hub.herald(&["watch", &run.id]));
        let stderr = stderr_of(&out);
        assert_eq!(out.status.code(), Some(code), "{status}: {stderr}");
        let events = stdout_events(&out);
        let types: Vec<&str> = events.iter().map(|e| e.event_type()).collect();
        assert_eq!(types, ["run.started", "log", "run.finished"], "{status}");
    }
}

#[test]
fn follows_a_live_run_to_its_end() {
    let hub = TestHub::start();
    let run = hub.create(json!({"name": "live"}));
    hub.append(&run, json!([{"event": "run.started", "name": "live"}]));
    let mut watch = Running::spawn(hub.herald(&["watch", &run.id]));
    wait_for("the first event on stdout", || {
        watch.stdout_so_far().contains("run.started")
    });
    hub.append(
        &run,
        json!([
            {"event": "stage.started", "stage": "fetch", "total": 2},
            {"event": "progress", "stage": "fetch", "done": 2, "total": 2, "elapsed_s": 1.0},
            {"event": "run.finished", "status": "succeeded"},
        ]),
    );
    let out = watch.finish();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let seqs: Vec<u64> = stdout_events(&out).iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4], "every event once, in order");
}

#[test]
fn a_stalled_run_exits_3_with_its_last_state() {
    let hub = TestHub::start();
    // The hub's sweeper runs every second; 0.2 s of silence is enough to stall.
    let run = hub.create(json!({"name": "sleepy", "heartbeat_timeout_s": 0.2}));
    hub.append(
        &run,
        json!([
            {"event": "run.started", "name": "sleepy"},
            {"event": "stage.started", "stage": "load", "total": 10},
            {"event": "progress", "stage": "load", "done": 4, "total": 10, "elapsed_s": 0.1},
        ]),
    );
    let out = run_within(hub.herald(&["watch", &run.id]));
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(&format!("run {} stalled", run.id)),
        "{stderr}"
    );
    assert!(
        stderr.contains("last known state: sleepy  stalled  stage load  4/10  40%"),
        "{stderr}"
    );
    let last = stdout_events(&out).pop().expect("events on stdout");
    assert!(matches!(last.body, EventBody::RunStalled(_)), "{last:?}");
}

#[test]
fn idle_timeout_gives_up_with_the_last_known_state() {
    let hub = TestHub::start();
    let run = hub.create(json!({"name": "quiet"}));
    hub.append(
        &run,
        json!([
            {"event": "run.started", "name": "quiet"},
            {"event": "stage.started", "stage": "think"},
        ]),
    );
    let start = Instant::now();
    let out = run_within(hub.herald(&["watch", "--idle-timeout", "1s", &run.id]));
    let took = start.elapsed();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(took >= Duration::from_secs(1), "gave up after {took:?}");
    assert!(
        stderr.contains("nothing arrived from run") && stderr.contains("for 1.0s"),
        "{stderr}"
    );
    assert!(
        stderr.contains("last known state: quiet  running  stage think"),
        "{stderr}"
    );
    assert_eq!(stdout_events(&out).len(), 2);
}

#[test]
fn a_wrong_run_or_duration_is_named() {
    let hub = TestHub::start();
    let out = run_within(hub.herald(&["watch", "no-such-run"]));
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("no run no-such-run"), "{stderr}");

    let out = run_within(hub.herald(&["watch", "--idle-timeout", "soon", "r1"]));
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("`soon` is not a duration"), "{stderr}");
}

/// The demo's shape, as a producer recorded it: four stages of ten items, one a
/// second, the last event `upto` seconds after the start, which was `ago` seconds ago.
/// `total_steps` is said in `run.started` when given.
fn four_stages(total_steps: Option<u64>, upto: u64, ago: f64) -> serde_json::Value {
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    let ts = |secs: f64| {
        json!(herald_protocol::Timestamp::from_unix_micros(
            now_us - ((ago - secs) * 1e6) as i64
        ))
    };
    let mut started = json!({"event": "run.started", "name": "demo", "ts": ts(0.0)});
    if let Some(steps) = total_steps {
        started["total_steps"] = json!(steps);
    }
    let mut events = vec![started];
    for (k, name) in ["fetch", "parse", "index", "report"]
        .into_iter()
        .enumerate()
    {
        let t0 = k as u64 * 10;
        if t0 > upto {
            break;
        }
        events.push(
            json!({"event": "stage.started", "stage": name, "total": 10, "ts": ts(t0 as f64)}),
        );
        for i in 1..=10u64.min(upto - t0) {
            events.push(
                json!({"event": "item.finished", "item": format!("{name}{i}"),
                               "stage": name, "status": "succeeded", "ts": ts((t0 + i) as f64)}),
            );
        }
        if t0 + 10 <= upto {
            events.push(
                json!({"event": "stage.finished", "stage": name, "status": "succeeded",
                               "elapsed_s": 10, "ts": ts((t0 + 10) as f64)}),
            );
        }
    }
    json!(events)
}

#[test]
fn the_run_eta_covers_the_run_and_watch_the_list_and_the_run_agree() {
    let hub = TestHub::start();
    // At 19 s of four stages of 10 s, the second nearly done: about 20 s are left
    // in the run, about 1 in its stage.
    let run = hub.create(json!({"name": "demo"}));
    hub.append(&run, four_stages(Some(4), 19, 19.2));
    let state = hub.state(&run.id);
    let eta = state["eta_s"].as_f64().expect("the run has an ETA");
    assert!(
        (10.0..40.0).contains(&eta),
        "the run's ETA covers the run: {state:#}"
    );
    let stage_eta = state["stages"][1]["eta_s"].as_f64().expect("a stage ETA");
    assert!(stage_eta < 3.0 && stage_eta < eta, "{state:#}");
    assert!(state["eta_low_s"].as_f64().unwrap() <= eta);
    assert!(state["eta_high_s"].as_f64().unwrap() >= eta);
    // The list has the same ETA as the run's page (seen a moment apart).
    let (_, list) = hub.get("/v1/runs");
    let listed = list["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == json!(run.id))
        .expect("the run is listed");
    let listed_eta = listed["eta_s"]
        .as_f64()
        .expect("the list has the run's ETA");
    assert!(
        (listed_eta - eta).abs() < 2.0,
        "list {listed_eta}, run {eta}"
    );
    // And so does watch: the run's ETA, not the stage's.
    let out = run_within(hub.herald(&["watch", "--idle-timeout", "1s", &run.id]));
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("last known state: demo  running  stage parse  9/10")
            && stderr.contains("  ETA ")
            && !stderr.contains("stage ETA"),
        "{stderr}"
    );

    // Without `total_steps` the stages to come are not known: no run ETA, and watch
    // shows the stage's, said to be the stage's (early in the stage, so that it has
    // seconds left while watch waits).
    let run = hub.create(json!({"name": "demo"}));
    hub.append(&run, four_stages(None, 13, 13.1));
    let state = hub.state(&run.id);
    assert!(state.get("eta_s").is_none(), "{state:#}");
    assert!(state["stages"][1]["eta_s"].is_number(), "{state:#}");
    let out = run_within(hub.herald(&["watch", "--idle-timeout", "1s", &run.id]));
    let stderr = stderr_of(&out);
    assert!(stderr.contains("  stage ETA "), "{stderr}");
}
