//! `herald exec`: the command's output and status pass through, it reports into its own
//! run, a silent command is stopped with its process group, a cancel stops it, and it
//! runs without a hub.

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use herald_protocol::{EventBody, RunOutcome};
use serde_json::json;

use crate::hubs::{ADMIN, DEADLINE, Running, TestHub, cmd, run_within, stderr_of, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_herald");

#[test]
fn output_and_exit_status_pass_through() {
    let hub = TestHub::start();
    let out = run_within(hub.herald(&[
        "exec",
        "--name",
        "greet",
        "--",
        "sh",
        "-c",
        "printf 'hello\\n'; printf 'oops\\n' >&2; exit 3",
    ]));
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert_eq!(out.stdout, b"hello\n");
    assert_eq!(
        stderr, "oops\n",
        "nothing of herald's own when all goes well"
    );

    let run = hub.run_named("greet");
    assert_eq!(run["status"], "failed");
    assert_eq!(run["result"], json!({"exit_code": 3}));
    let events = hub.events(run["id"].as_str().unwrap());
    let first = &events[0].body;
    assert!(matches!(first, EventBody::RunStarted(s) if s.name == "greet"));
    match &events.last().unwrap().body {
        EventBody::RunFinished(f) => {
            assert_eq!(f.status, RunOutcome::Failed);
            assert_eq!(f.error.as_deref(), Some("exited with status 3"));
        }
        other => panic!("the last event is {other:?}"),
    }
}

#[test]
fn the_command_reports_into_its_own_run() {
    let hub = TestHub::with_token(ADMIN);
    let script = r#"
        [ "$HERALD_TOKEN" != "$ADMIN_TOKEN" ] || { echo "the admin token leaked" >&2; exit 9; }
        "$HERALD_BIN" emit log level=info message="from the child" || exit 8
        "$HERALD_BIN" emit progress done=1 total=2 || exit 7
        printf '%s' "$HERALD_RUN"
    "#;
    let mut command = hub.herald(&[
        "exec", "--token", ADMIN, "--name", "nested", "--", "sh", "-c", script,
    ]);
    command.env("HERALD_BIN", BIN).env("ADMIN_TOKEN", ADMIN);
    let out = run_within(command);
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let run = String::from_utf8(out.stdout).unwrap();
    let state = hub.state(&run);
    assert_eq!(state["name"], "nested");
    assert_eq!(state["status"], "succeeded");
    let types: Vec<String> = hub
        .events(&run)
        .iter()
        .map(|e| e.event_type().to_owned())
        .collect();
    assert_eq!(types, ["run.started", "log", "progress", "run.finished"]);
    assert_eq!(state["logs"][0]["message"], "from the child");
}

#[test]
fn a_silent_command_is_stopped_with_its_process_group() {
    let hub = TestHub::start();
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("grandchild.pid");
    let script = format!("sleep 30 & echo $! > '{}'; sleep 30", pid_file.display());
    let start = Instant::now();
    let out = run_within(hub.herald(&[
        "exec",
        "--name",
        "stuck",
        "--idle-timeout",
        "1s",
        "--",
        "sh",
        "-c",
        &script,
    ]));
    let took = start.elapsed();
    let stderr = stderr_of(&out);
    // sh dies of the TERM sent to its group: 128 + 15, as a shell reports it. That,
    // and exec saying why, show it was stopped rather than left to its 30 s; how soon
    // depends on the machine, but not before its second of silence.
    assert_eq!(out.status.code(), Some(143), "{stderr}");
    assert!(took >= Duration::from_secs(1), "stopped after {took:?}");
    assert!(stderr.contains("was idle for 1.0s"), "{stderr}");
    assert!(
        stderr.contains("last known state: stuck  failed"),
        "{stderr}"
    );

    // The background grandchild went with its group (dead, if not yet reaped).
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let stat = format!("/proc/{}/stat", pid.trim());
    wait_for("the grandchild to die", || {
        std::fs::read_to_string(&stat).map_or(true, |s| s.contains(") Z "))
    });

    let run = hub.run_named("stuck");
    assert_eq!(run["status"], "failed");
    let error = run["last_error"]["message"].as_str().unwrap();
    assert!(error.starts_with("idle for 1.0s"), "{error}");
}

#[test]
fn events_of_the_command_count_as_activity() {
    const IDLE_S: f64 = 3.0;
    let hub = TestHub::start();
    let dir = tempfile::tempdir().unwrap();
    let stop = dir.path().join("stop");
    // No output at all, only events, one after the other (each a `herald emit` of
    // its own, far quicker than the idle timeout even on a busy machine), until the
    // test says stop.
    let script = r#"until [ -e "$STOP" ]; do "$HERALD_BIN" emit heartbeat || exit 8; done"#;
    let mut command = hub.herald(&[
        "exec",
        "--name",
        "reporting",
        "--idle-timeout",
        "3s",
        "--",
        "sh",
        "-c",
        script,
    ]);
    command.env("HERALD_BIN", BIN).env("STOP", &stop);
    let mut exec = Running::spawn(command);

    // The command's events span more than the idle timeout: it lived past it on
    // events alone.
    let run = hub.run_named("reporting");
    let id = run["id"].as_str().unwrap();
    let span_s = || {
        let beats: Vec<_> = hub
            .events(id)
            .into_iter()
            // Not exec's own heartbeats, which are not the command's activity.
            .filter(|e| {
                e.event_type() == "heartbeat"
                    && !e
                        .id
                        .as_deref()
                        .is_some_and(|id| id.starts_with("herald-exec:"))
            })
            .collect();
        match (beats.first(), beats.last()) {
            (Some(first), Some(last)) => last.ts.seconds_since(first.ts),
            _ => 0.0,
        }
    };
    wait_for("events spanning the idle timeout", || {
        exec.has_ended() || span_s() > IDLE_S + 0.5
    });
    std::fs::write(&stop, "").unwrap();
    let out = exec.finish_within(3 * DEADLINE);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(span_s() > IDLE_S, "{} s of events", span_s());
    assert_eq!(hub.state(id)["status"], "succeeded");
}

#[test]
fn a_cancel_through_the_hub_stops_the_command() {
    let hub = TestHub::start();
    let exec = Running::spawn(hub.herald(&[
        "exec",
        "--name",
        "cancel me",
        "--heartbeat",
        "200ms",
        "--",
        "sleep",
        "30",
    ]));
    let run = hub.run_named("cancel me");
    let id = run["id"].as_str().unwrap();
    let (status, _) = hub.post(
        &format!("/v1/runs/{id}/cancel"),
        None,
        &json!({"reason": "enough"}),
    );
    assert_eq!(status, 200);
    let out = exec.finish();
    assert_eq!(out.status.code(), Some(143), "{}", stderr_of(&out));
    let state = hub.state(id);
    assert_eq!(state["status"], "cancelled");
    assert_eq!(state["cancel_reason"], "enough");
}

#[test]
fn a_signal_to_exec_reaches_the_command() {
    let hub = TestHub::start();
    let exec = Running::spawn(hub.herald(&["exec", "--name", "terminated", "--", "sleep", "30"]));
    // Once the run is started, exec is past its setup and listens for signals.
    let run = hub.run_named("terminated");
    let id = run["id"].as_str().unwrap().to_owned();
    wait_for("run.started", || !hub.events(&id).is_empty());
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &exec.pid().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = exec.finish();
    // exec ends by the signal it got, as a shell's caller expects.
    assert_eq!(out.status.signal(), Some(15), "{}", stderr_of(&out));
    let state = hub.state(&id);
    assert_eq!(state["status"], "cancelled");
    assert_eq!(state["last_error"]["message"], "terminated by SIGTERM");
}

#[test]
fn without_a_hub_the_command_still_runs() {
    let start = Instant::now();
    let out = run_within(cmd(&[
        "exec",
        "--hub",
        "http://127.0.0.1:1",
        "--",
        "sh",
        "-c",
        "echo still works; exit 4",
    ]));
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert_eq!(out.stdout, b"still works\n");
    assert_eq!(
        stderr
            .matches("cannot reach the hub at http://127.0.0.1:1")
            .count(),
        1,
        "warned once: {stderr}"
    );
    assert!(start.elapsed() < DEADLINE);
}

#[test]
fn a_command_that_cannot_run_exits_127() {
    let hub = TestHub::start();
    let out = run_within(hub.herald(&["exec", "--name", "missing", "--", "no-such-command-here"]));
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(127), "{stderr}");
    assert!(
        stderr.contains("cannot run `no-such-command-here`"),
        "{stderr}"
    );
    assert_eq!(hub.run_named("missing")["status"], "failed");
}

#[test]
fn a_bad_run_id_is_a_usage_error_and_the_command_does_not_run() {
    for id in ["", "bad id!"] {
        let out = run_within(cmd(&["exec", "--id", id, "--", "sh", "-c", "echo ran"]));
        let stderr = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("'--id <RUN>'"), "{stderr}");
        assert!(out.stdout.is_empty(), "the command ran");
    }
}

#[test]
fn a_run_id_taken_already_runs_the_command_without_reporting_and_keeps_the_run() {
    let hub = TestHub::start();
    let first = run_within(hub.herald(&["exec", "--id", "taken", "--", "true"]));
    assert_eq!(first.status.code(), Some(0), "{}", stderr_of(&first));
    let (_, before) = hub.get("/v1/runs/taken");
    let out = run_within(hub.herald(&[
        "exec",
        "--id",
        "taken",
        "--",
        "sh",
        "-c",
        "echo second; exit 3",
    ]));
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert_eq!(out.stdout, b"second\n");
    assert!(stderr.contains("409 run_exists"), "{stderr}");
    // The first run is left as it was: nothing of the second reached it.
    let (_, after) = hub.get("/v1/runs/taken");
    assert_eq!(
        (&after["status"], &after["last_seq"]),
        (&before["status"], &before["last_seq"])
    );
}
