//! Producers stopped by a signal still have the last word: `herald demo` finishes its
//! run `cancelled` ("terminated by SIGTERM") in its JSON Lines and on its hub, and
//! ends by the signal; `herald exec` reports a command killed by a signal, and passes
//! a signal of its own on before it reports and ends by it; `herald watch` leaves the
//! terminal tidy. Every signal is sent once the process is seen under way, never after
//! a sleep.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use herald_protocol::{Event, EventBody, RunOutcome, parse_event};
use serde_json::json;

use crate::hubs::{DEADLINE, Running, TestHub, cmd, stderr_of, wait_for};

/// Sends `signal` (`TERM`, `INT`, ...) to the process `pid`.
fn kill(pid: u32, signal: &str) {
    let sent = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal} {pid}");
}

/// A herald command on a pseudo-terminal of util-linux's `script`, with what it draws.
struct Scripted {
    script: std::process::Child,
    rx: mpsc::Receiver<Vec<u8>>,
    /// What it has drawn so far.
    out: Vec<u8>,
}

impl Scripted {
    /// Runs the shell line `line` under `script`, without the variables `unset`.
    fn start(line: &str, unset: &[&str]) -> Scripted {
        let mut script = Command::new("script");
        script
            .args(["-q", "-e", "-c", line, "/dev/null"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for var in unset {
            script.env_remove(var);
        }
        let mut script = script.spawn().expect("util-linux `script` runs");
        let mut stdout = script.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = vec![0; 8192];
            while let Ok(n) = std::io::Read::read(&mut stdout, &mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Scripted {
            script,
            rx,
            out: Vec::new(),
        }
    }

    /// Waits until what it drew contains `needle`.
    fn wait_for_output(&mut self, what: &str, needle: &str) {
        wait_for(what, || {
            self.out.extend(self.rx.try_iter().flatten());
            String::from_utf8_lossy(&self.out).contains(needle)
        });
    }

    /// Sends Ctrl-C's SIGINT to the command `script` runs (`what`), and returns
    /// `script`'s status once it ended, with all it drew read.
    fn interrupt(&mut self, what: &str) -> std::process::ExitStatus {
        let mut command = Vec::new();
        wait_for(&format!("{what} under script"), || {
            command = children_of(self.script.id());
            !command.is_empty()
        });
        kill(command[0], "INT");
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.script.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > DEADLINE {
                let _ = self.script.kill();
                panic!("{what} did not end within {DEADLINE:?} of Ctrl-C");
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        while let Ok(chunk) = self.rx.recv_timeout(DEADLINE) {
            self.out.extend(chunk);
        }
        status
    }
}

/// The whole lines of the JSON Lines file at `path` as events.
fn file_events(path: &Path) -> Vec<Event> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|l| l.ends_with('}'))
        .map(|l| parse_event(l).unwrap_or_else(|e| panic!("not an event ({e}): {l}")))
        .collect()
}

fn items_finished(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e.body, EventBody::ItemFinished(_)))
        .count()
}

/// Asserts `event` is a `run.finished` with `status` and `error`.
#[track_caller]
fn assert_finished(event: &Event, status: RunOutcome, error: &str) {
    match &event.body {
        EventBody::RunFinished(f) => {
            assert_eq!(f.status, status, "{event:?}");
            assert_eq!(f.error.as_deref(), Some(error), "{event:?}");
        }
        _ => panic!("the last event is not run.finished: {event:?}"),
    }
}

/// `herald demo` writing JSON Lines to a file, stopped by `signal` (number `number`)
/// once a few documents are done.
#[track_caller]
fn check_demo_stopped_by(signal: &str, number: i32) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("progress.jsonl");
    let mut command = cmd(&["demo", "--progress", "json", "--progress-file"]);
    command.arg(&file);
    let demo = Running::spawn(command);
    wait_for("three documents done", || {
        items_finished(&file_events(&file)) >= 3
    });
    kill(demo.pid(), signal);
    let out = demo.finish();
    let stderr = stderr_of(&out);
    assert_eq!(
        out.status.signal(),
        Some(number),
        "{:?}: {stderr}",
        out.status
    );
    assert!(out.stdout.is_empty(), "a result printed for a stopped job");
    let events = file_events(&file);
    let last = events.last().expect("events");
    assert_finished(
        last,
        RunOutcome::Cancelled,
        &format!("terminated by SIG{signal}"),
    );
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=events.len() as u64).collect::<Vec<_>>(),
        "a dense stream"
    );
}

#[test]
fn demo_stopped_by_sigterm_ends_its_run_cancelled() {
    check_demo_stopped_by("TERM", 15);
}

#[test]
fn demo_stopped_by_sigint_ends_its_run_cancelled() {
    check_demo_stopped_by("INT", 2);
}

#[test]
fn demo_stopped_by_sigterm_leaves_the_final_event_on_its_hub() {
    let hub = TestHub::start();
    let demo = Running::spawn(hub.herald(&["demo", "--hub", &hub.url, "--progress", "none"]));
    let run = hub.run_named("demo: triage 200 documents");
    let id = run["id"].as_str().unwrap().to_owned();
    wait_for("three documents done on the hub", || {
        items_finished(&hub.events(&id)) >= 3
    });
    kill(demo.pid(), "TERM");
    let out = demo.finish();
    assert_eq!(out.status.signal(), Some(15), "{}", stderr_of(&out));
    let events = hub.events(&id);
    assert_finished(
        events.last().unwrap(),
        RunOutcome::Cancelled,
        "terminated by SIGTERM",
    );
    let state = hub.state(&id);
    assert_eq!(state["status"], "cancelled", "{state}");
}

/// `herald exec --name NAME -- sh -c SCRIPT` on `hub`, to its end.
fn exec_sh(hub: &TestHub, name: &str, script: &str) -> std::process::Output {
    Running::spawn(hub.herald(&["exec", "--name", name, "--", "sh", "-c", script])).finish()
}

#[test]
fn a_command_killed_by_a_stop_signal_is_cancelled_naming_it() {
    let hub = TestHub::start();
    let out = exec_sh(&hub, "self-terminated", "kill -TERM $$");
    // exec was not signalled itself: it exits as a shell would.
    assert_eq!(out.status.code(), Some(143), "{}", stderr_of(&out));
    let id = hub.run_named("self-terminated")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let events = hub.events(&id);
    assert_finished(
        events.last().unwrap(),
        RunOutcome::Cancelled,
        "terminated by SIGTERM",
    );
}

#[test]
fn a_command_killed_by_sigkill_failed_naming_it() {
    let hub = TestHub::start();
    let out = exec_sh(&hub, "self-killed", "kill -KILL $$");
    assert_eq!(out.status.code(), Some(137), "{}", stderr_of(&out));
    let id = hub.run_named("self-killed")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let events = hub.events(&id);
    assert_finished(
        events.last().unwrap(),
        RunOutcome::Failed,
        "terminated by SIGKILL",
    );
}

#[test]
fn sigint_to_exec_reaches_the_command_s_group_and_exec_ends_by_it() {
    let hub = TestHub::start();
    // With a process group of its own, the command is not in the terminal's: exec
    // passes the Ctrl-C on.
    let exec = Running::spawn(hub.herald(&[
        "exec",
        "--name",
        "interrupted",
        "--idle-timeout",
        "1h",
        "--",
        "sh",
        "-c",
        "sleep 30; echo not reached",
    ]));
    let id = hub.run_named("interrupted")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_for("run.started", || !hub.events(&id).is_empty());
    kill(exec.pid(), "INT");
    let out = exec.finish();
    assert_eq!(out.status.signal(), Some(2), "{}", stderr_of(&out));
    assert!(out.stdout.is_empty());
    let events = hub.events(&id);
    assert_finished(
        events.last().unwrap(),
        RunOutcome::Cancelled,
        "terminated by SIGINT",
    );
}

#[test]
fn a_second_signal_kills_a_command_that_ignored_the_first() {
    let hub = TestHub::start();
    // A grace period longer than the test's deadline: only the second signal can end
    // the command in time.
    let mut exec = Running::spawn(hub.herald(&[
        "exec",
        "--name",
        "stubborn",
        "--kill-after",
        "1h",
        "--",
        "sh",
        "-c",
        "trap 'echo got TERM' TERM; echo ready; while :; do sleep 0.1; done",
    ]));
    wait_for("the command under way", || {
        exec.stdout_so_far().contains("ready")
    });
    kill(exec.pid(), "TERM");
    wait_for("the command to take the TERM", || {
        exec.stdout_so_far().contains("got TERM")
    });
    kill(exec.pid(), "TERM");
    let out = exec.finish();
    assert_eq!(out.status.signal(), Some(15), "{}", stderr_of(&out));
    let id = hub.run_named("stubborn")["id"].as_str().unwrap().to_owned();
    let events = hub.events(&id);
    assert_finished(
        events.last().unwrap(),
        RunOutcome::Cancelled,
        "terminated by SIGTERM",
    );
    let result = match &events.last().unwrap().body {
        EventBody::RunFinished(f) => f.result.clone(),
        _ => None,
    };
    assert_eq!(result, Some(json!({"exit_code": 137})), "killed");
}

/// The process ids whose parent is `parent`, from `/proc`.
fn children_of(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; the name may hold spaces, so read after `)`.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

#[test]
fn watch_stopped_by_ctrl_c_leaves_its_bars_and_the_cursor_on_a_new_line() {
    let hub = TestHub::start();
    let run = hub.create(json!({"name": "long job"}));
    hub.append(
        &run,
        json!([
            {"event": "run.started", "name": "long job"},
            {"event": "stage.started", "stage": "load", "total": 10},
            {"event": "progress", "stage": "load", "done": 4, "total": 10, "elapsed_s": 1.0},
        ]),
    );
    // `script` (util-linux) runs watch on a pseudo-terminal and copies what it draws.
    let line = format!(
        "exec {} watch {} --hub {}",
        env!("CARGO_BIN_EXE_herald"),
        run.id,
        hub.url
    );
    let mut term = Scripted::start(&line, &["HERALD_TOKEN", "NO_COLOR"]);
    term.wait_for_output("bars on the terminal", "█");
    let status = term.interrupt("watch");
    let out = term.out;
    // script says 128 + N for a command a signal ended.
    assert_eq!(
        status.code(),
        Some(130),
        "watch ended by SIGINT: {status:?}"
    );
    let mut parser = vt100::Parser::new(24.try_into().unwrap(), 100.try_into().unwrap(), 0);
    parser.process(&out);
    let screen = parser.screen();
    let text = screen.contents();
    assert!(
        text.contains("▸ load") && text.contains("40%"),
        "the bars stay:\n{text}"
    );
    assert_eq!(
        screen.cursor_position().1,
        0,
        "the cursor is left after the bars:\n{text}"
    );
    assert!(!screen.hide_cursor());
}

#[test]
fn demo_serve_hands_ctrl_c_to_its_hub_after_the_run() {
    let dir = tempfile::tempdir().unwrap();
    // `script` gives demo a terminal on stdin, which `--serve` needs to keep serving.
    let line = format!(
        "exec {} demo --serve --items 3 --speed 50 --progress none --data-dir {}",
        env!("CARGO_BIN_EXE_herald"),
        dir.path().display()
    );
    let mut term = Scripted::start(
        &line,
        &[
            "HERALD_URL",
            "HERALD_TOKEN",
            "HERALD_RUN",
            "HERALD_PROGRESS",
        ],
    );
    term.wait_for_output("the run done and the hub still serving", "Ctrl-C to stop");
    let status = term.interrupt("demo --serve");
    let out = term.out;
    let text = String::from_utf8_lossy(&out);
    // `script -e` exits as its command did: 130 had SIGINT killed it.
    assert_eq!(status.code(), Some(0), "{status:?}:\n{text}");
    assert!(text.contains("herald: the hub stopped"), "{text}");
}
