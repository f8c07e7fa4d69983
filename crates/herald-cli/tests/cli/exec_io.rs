//! `herald exec`'s promises about a command's input and its silences: stdin passes
//! through to the command byte for byte, and while the command says nothing the run
//! still gets a heartbeat every `--heartbeat` (10 s unless told), saying for how long
//! the output has been silent.

use std::io::{Read, Write};
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use herald_protocol::EventBody;

use crate::hubs::{DEADLINE, TestHub, cmd, stderr_of, wait_for};

#[test]
fn stdin_passes_through_and_a_silent_command_gets_heartbeats() {
    check_stdin_and_heartbeats(&[]);
}

#[test]
fn stdin_passes_through_to_a_command_in_a_process_group_of_its_own() {
    // With an idle timeout the command runs in a group of its own, to be stopped as a
    // whole; its input must still reach it. (Far from idle: heartbeats are not
    // activity, but it is given its input well within the timeout.)
    check_stdin_and_heartbeats(&["--idle-timeout", "1m"]);
}

/// Runs a command that is silent until its first line of input and then echoes the
/// rest, under `herald exec` with `extra` flags; checks the heartbeats of its silence
/// and that its input came through whole.
fn check_stdin_and_heartbeats(extra: &[&str]) {
    let hub = TestHub::start();
    let script = r#"read first; printf 'first: %s\n' "$first"; cat"#;
    let mut args = vec!["exec", "--name", "reader", "--heartbeat", "200ms"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "sh", "-c", script]);
    let mut child = hub
        .herald(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("herald exec runs");
    let started = Instant::now();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let err = thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr.read_to_end(&mut bytes);
        bytes
    });

    // While the command waits for input, heartbeats keep coming, and say it is silent.
    let run = hub.run_named("reader");
    let id = run["id"].as_str().unwrap().to_owned();
    let mut beats = Vec::new();
    wait_for("three heartbeats while the command is silent", || {
        beats = hub
            .events(&id)
            .into_iter()
            .filter_map(|e| match e.body {
                EventBody::Heartbeat(h) => Some((e.ts, h.note)),
                _ => None,
            })
            .collect();
        beats.len() >= 3
    });
    assert!(
        beats.iter().any(|(_, note)| note
            .as_deref()
            .is_some_and(|n| n.starts_with("no output for"))),
        "{beats:?}"
    );
    // Paced by `--heartbeat`: never closer together than it.
    for pair in beats.windows(2) {
        let gap = pair[1].0.seconds_since(pair[0].0);
        assert!(gap >= 0.199, "heartbeats {gap:.3}s apart: {beats:?}");
    }

    // Then the input: a line, and every byte value, more than a pipe holds at once.
    let payload: Vec<u8> = (0..=255u8).cycle().take(256 * 1024).collect();
    let mut input = b"hello\n".to_vec();
    input.extend_from_slice(&payload);
    let writer = thread::spawn(move || {
        stdin.write_all(&input).expect("exec takes its stdin");
        // Dropping stdin closes it: the command's `cat` ends.
    });

    while child.try_wait().expect("waiting for exec").is_none() {
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("herald exec did not end within {DEADLINE:?}");
        }
        thread::sleep(Duration::from_millis(10));
    }
    writer.join().expect("the writer");
    let status = child.wait().unwrap();
    let output = std::process::Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    };
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let mut expected = b"first: hello\n".to_vec();
    expected.extend_from_slice(&payload);
    assert!(
        output.stdout == expected,
        "stdout is not the input: {} bytes, expected {}",
        output.stdout.len(),
        expected.len()
    );
    assert_eq!(hub.state(&id)["status"], "succeeded");
}

#[test]
fn the_default_heartbeat_is_every_10_s() {
    // The short help gives each option one line, with its default.
    let out = cmd(&["exec", "-h"]).output().expect("herald runs");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{help}");
    let option = help
        .lines()
        .find(|line| line.trim_start().starts_with("--heartbeat"))
        .unwrap_or_else(|| panic!("no --heartbeat in:\n{help}"));
    assert!(option.ends_with("[default: 10s]"), "{option}");
}
