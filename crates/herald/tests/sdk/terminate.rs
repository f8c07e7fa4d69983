//! `Progress::finish_on_signals` in real processes: this test binary runs itself as a
//! child that reports a run and waits to be killed; the parent sends it a signal once
//! the child's JSON Lines file shows it is under way, and reads what it left.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use herald::Progress;
use herald::protocol::{Event, EventBody, RunOutcome, parse_event};

/// Set in the child process: what it should do.
const CHILD: &str = "HERALD_TERMINATE_TEST_CHILD";
/// Where the child writes its process id.
const PID_FILE: &str = "HERALD_TERMINATE_TEST_PID_FILE";
/// The log line that says the child reported everything it will before the signal.
const READY: &str = "ready for the signal";
/// The longest any one step of these tests may take.
const DEADLINE: Duration = Duration::from_secs(20);

/// The child's work: a run with a sub-run, a stage part done and an item in hand,
/// then a wait that only a signal ends.
fn report_and_wait(opt_in: bool) -> ! {
    let progress = Progress::from_env().unwrap();
    if opt_in {
        progress.finish_on_signals().unwrap();
    }
    if let Some(path) = std::env::var_os(PID_FILE) {
        std::fs::write(path, std::process::id().to_string()).unwrap();
    }
    let run = progress.run("import");
    let sub = run.child("sub-agent");
    let stage = run.stage("load").total(10);
    stage.inc(3);
    let _item = stage.item("7");
    sub.info("working");
    run.info(READY);
    progress.flush();
    loop {
        std::thread::park();
    }
}

/// Runs the test `name` of this binary as a child that reports and waits.
fn child(name: &str, mode: &str, progress_file: &Path) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, mode)
        .env("HERALD_PROGRESS", "none")
        .env("HERALD_PROGRESS_FILE", progress_file)
        .env_remove("HERALD_URL")
        .env_remove("NO_COLOR");
    command
}

/// The events in the JSON Lines file at `path`, once there is a whole line.
fn events(path: &Path) -> Vec<Event> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|l| l.ends_with('}'))
        .map(|l| parse_event(l).unwrap_or_else(|e| panic!("not an event ({e}): {l}")))
        .collect()
}

/// Waits until `done` holds, checking every 20 ms; panics after [`DEADLINE`].
#[track_caller]
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < DEADLINE, "no {what} within {DEADLINE:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the child's file says it is ready.
#[track_caller]
fn wait_ready(path: &Path) {
    wait_for("ready line in the progress file", || {
        events(path)
            .iter()
            .any(|e| matches!(&e.body, EventBody::Log(log) if log.message == READY))
    });
}

fn kill(pid: u32, signal: &str) {
    let sent = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal} {pid}");
}

/// Waits for `child` to end, within [`DEADLINE`].
#[track_caller]
fn wait_exit(child: &mut Child) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("the child did not end within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The `run.finished` events in `events`, as (run id, status, error).
fn finishes(events: &[Event]) -> Vec<(String, RunOutcome, Option<String>)> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::RunFinished(f) => Some((e.run.to_string(), f.status, f.error.clone())),
            _ => None,
        })
        .collect()
}

/// Sends `signal` (number `number`) to a child that opted in, and checks that both its
/// runs end `cancelled` naming the signal, the file ends with the run's finish, and
/// the child was killed by the signal.
#[track_caller]
fn check_signal(name: &str, signal: &str, number: i32) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("progress.jsonl");
    let mut child = child(name, "opt-in", &file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_ready(&file);
    kill(child.id(), signal);
    let status = wait_exit(&mut child);
    assert_eq!(
        status.signal(),
        Some(number),
        "ended by SIG{signal}: {status:?}"
    );
    let events = events(&file);
    let error = Some(format!("terminated by SIG{signal}"));
    let finished = finishes(&events);
    assert_eq!(finished.len(), 2, "{finished:?}");
    // The sub-run first, then its parent, whose finish is the file's last line.
    assert!(finished[0].0.starts_with("sub-agent-"), "{finished:?}");
    assert!(finished[1].0.starts_with("import-"), "{finished:?}");
    for (_, status, err) in &finished {
        assert_eq!((*status, err), (RunOutcome::Cancelled, &error));
    }
    let last = events.last().unwrap();
    assert!(
        matches!(last.body, EventBody::RunFinished(_)) && last.run.as_str() == finished[1].0,
        "the last line is not the run's finish: {last:?}"
    );
}

#[test]
fn sigterm_finishes_open_runs_as_cancelled_and_ends_the_process() {
    if std::env::var_os(CHILD).is_some() {
        report_and_wait(true);
    }
    check_signal(
        "terminate::sigterm_finishes_open_runs_as_cancelled_and_ends_the_process",
        "TERM",
        15,
    );
}

#[test]
fn sigint_finishes_open_runs_as_cancelled_and_ends_the_process() {
    if std::env::var_os(CHILD).is_some() {
        report_and_wait(true);
    }
    check_signal(
        "terminate::sigint_finishes_open_runs_as_cancelled_and_ends_the_process",
        "INT",
        2,
    );
}

#[test]
fn sighup_finishes_open_runs_as_cancelled_and_ends_the_process() {
    if std::env::var_os(CHILD).is_some() {
        report_and_wait(true);
    }
    check_signal(
        "terminate::sighup_finishes_open_runs_as_cancelled_and_ends_the_process",
        "HUP",
        1,
    );
}

#[test]
fn without_opting_in_a_signal_leaves_no_final_word() {
    const NAME: &str = "terminate::without_opting_in_a_signal_leaves_no_final_word";
    if std::env::var_os(CHILD).is_some() {
        report_and_wait(false);
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("progress.jsonl");
    let mut child = child(NAME, "default", &file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_ready(&file);
    kill(child.id(), "TERM");
    let status = wait_exit(&mut child);
    assert_eq!(status.signal(), Some(15), "{status:?}");
    assert!(finishes(&events(&file)).is_empty(), "opt-in is opt-in");
}

#[test]
fn the_bars_end_on_a_line_of_their_own_with_the_cursor_shown() {
    const NAME: &str = "terminate::the_bars_end_on_a_line_of_their_own_with_the_cursor_shown";
    if std::env::var_os(CHILD).is_some() {
        report_and_wait(true);
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("progress.jsonl");
    let pid_file = dir.path().join("pid");
    // `script` (util-linux) gives the child a pseudo-terminal, so bars are drawn, and
    // copies what was drawn to its stdout.
    let mut inner = child(NAME, "opt-in", &file);
    inner
        .env("HERALD_PROGRESS", "bars")
        .env(PID_FILE, &pid_file);
    let line = format!(
        "exec {} {NAME} --exact --nocapture --test-threads=1",
        std::env::current_exe().unwrap().display()
    );
    let mut script = Command::new("script");
    script
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .envs(inner.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut script = script.spawn().expect("util-linux `script` runs");
    let mut stdout = script.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = vec![0; 8192];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut out = Vec::new();
    wait_for("bars on the terminal", || {
        out.extend(rx.try_iter().flatten());
        String::from_utf8_lossy(&out).contains('█')
    });
    wait_ready(&file);
    let pid: u32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    kill(pid, "TERM");
    let status = wait_exit(&mut script);
    while let Ok(chunk) = rx.recv_timeout(DEADLINE) {
        out.extend(chunk);
    }
    assert_ne!(status.code(), Some(0), "{status:?}");
    let mut parser = vt100::Parser::new(24.try_into().unwrap(), 100.try_into().unwrap(), 0);
    parser.process(&out);
    let screen = parser.screen();
    let text = screen.contents();
    assert!(
        text.contains("⊘ import cancelled after") && text.contains("error: terminated by SIGTERM"),
        "{text}"
    );
    assert!(
        !text.contains('█') && !text.contains('░'),
        "bars left:\n{text}"
    );
    assert_eq!(
        screen.cursor_position().1,
        0,
        "not on a line of its own:\n{text}"
    );
    assert!(!screen.hide_cursor());
}
