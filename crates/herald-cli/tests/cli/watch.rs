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
