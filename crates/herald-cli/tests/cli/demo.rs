//! `herald demo`: its progress, its result, its failure reporting and its errors.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use herald_protocol::{EventBody, RunStatus, StageStatus, StepOutcome, fold};
use serde_json::Value;

use crate::util::{events, herald, run};

#[test]
fn json_lines_on_stderr_fold_to_the_result_on_stdout() {
    let out = run(&[
        "demo",
        "--items",
        "12",
        "--speed",
        "200",
        "--progress",
        "json",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // stdout holds the result alone, as one JSON document.
    let result: Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    assert_eq!(result["status"], "succeeded");
    assert_eq!(result["documents"], 12);

    // stderr holds events alone; folded, they give the same story.
    let events = events(&out.stderr);
    let state = fold(events[0].run.clone(), &events);
    assert_eq!(state.id.as_str(), result["run"].as_str().unwrap());
    assert_eq!(state.status, RunStatus::Succeeded);
    assert_eq!(
        state.items.succeeded, 36,
        "12 documents through three item stages"
    );
    assert_eq!(state.items.failed, 0);
    let stages: Vec<(&str, StageStatus)> = state
        .stages
        .iter()
        .map(|s| (s.name.as_str(), s.status))
        .collect();
    assert_eq!(
        stages,
        [
            ("fetch", StageStatus::Succeeded),
            ("classify", StageStatus::Succeeded),
            ("summarize", StageStatus::Succeeded),
            ("report", StageStatus::Succeeded),
        ]
    );
    assert_eq!(state.percent, Some(100.0));
    assert_eq!(state.result.as_ref(), Some(&result));
    assert!(state.text.contains("documents labelled"));
    assert_eq!(state.tools.succeeded, 2);

    // Every event type a producer writes shows up (the hub writes the other two).
    let mut seen: Vec<&str> = events.iter().map(|e| e.event_type()).collect();
    seen.sort_unstable();
    seen.dedup();
    for t in herald_protocol::EVENT_TYPES {
        if !matches!(*t, "run.cancel_requested" | "run.stalled") {
            assert!(seen.contains(t), "{t} never appeared; saw {seen:?}");
        }
    }
    assert!(seen.iter().any(|t| t.starts_with("custom.")));

    // The run's ETA covers the run: half way, with two of its four stages still to
    // come, it is more than what is left of the current stage, and never 0.
    let mut halfway = 0;
    for end in 1..events.len() {
        let state = fold(events[0].run.clone(), &events[..end]);
        let (Some(percent), Some(stage)) = (state.percent, state.current_stage()) else {
            continue;
        };
        if !(40.0..60.0).contains(&percent) || state.stages.len() != 2 {
            continue;
        }
        let (Some(run_eta), Some(stage_eta)) = (state.eta_s, stage.progress.eta_s) else {
            continue;
        };
        halfway += 1;
        assert!(
            run_eta > stage_eta && run_eta > 0.0,
            "at {percent}%: run ETA {run_eta}, stage {} ETA {stage_eta}",
            stage.name
        );
    }
    assert!(halfway > 0, "no state half way with a run ETA");
}

#[test]
fn stdout_gets_the_summary_and_stderr_only_events() {
    let out = run(&[
        "demo",
        "--items",
        "4",
        "--speed",
        "200",
        "--progress",
        "json",
    ]);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("succeeded — 4 documents"), "{stdout}");
    assert!(
        !stdout.contains(r#""v":1"#),
        "progress leaked to stdout: {stdout}"
    );
    // Parsing every stderr line as an event is the assertion.
    assert!(!events(&out.stderr).is_empty());
}

#[test]
fn progress_none_is_silent_and_a_progress_file_gets_the_events() {
    let out = run(&[
        "demo",
        "--items",
        "3",
        "--speed",
        "200",
        "--progress",
        "none",
    ]);
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let out = herald(&["demo", "--items", "3", "--speed", "200"])
        .env("HERALD_PROGRESS_FILE", &file)
        .output()
        .unwrap();
    assert!(out.status.success());
    // stderr is not a terminal here and the events went to the file instead.
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = events(&std::fs::read(&file).unwrap());
    assert_eq!(events.last().unwrap().event_type(), "run.finished");
}

#[test]
fn progress_json_with_a_progress_file_writes_both() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let out = herald(&["demo", "--items", "3", "--speed", "200"])
        .env("HERALD_PROGRESS", "json")
        .env("HERALD_PROGRESS_FILE", &file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let on_stderr = events(&out.stderr);
    let in_file = events(&std::fs::read(&file).unwrap());
    assert_eq!(on_stderr.last().unwrap().event_type(), "run.finished");
    let milestones = |events: &[herald_protocol::Event]| -> Vec<String> {
        events
            .iter()
            .filter(|e| e.body.is_milestone())
            .map(|e| e.event_type().to_owned())
            .collect()
    };
    assert_eq!(
        milestones(&on_stderr),
        milestones(&in_file),
        "the same stream"
    );
}

#[test]
fn commands_without_progress_of_their_own_have_no_progress_flags() {
    for command in ["ls", "cancel", "rm", "events", "watch", "emit", "serve"] {
        // A bad value in the environment is no business of theirs either.
        let out = herald(&[command, "--help"])
            .env("HERALD_PROGRESS", "sideways")
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{command}: {help}");
        assert!(!help.contains("--progress"), "{command} --help:\n{help}");
    }
    let out = run(&["demo", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--progress <MODE>", "--progress-file", "--progress-fd"] {
        assert!(help.contains(flag), "demo --help lacks {flag}:\n{help}");
    }
}

#[test]
fn a_failed_item_is_visible_before_the_job_ends() {
    let mut child = herald(&[
        "demo",
        "--items",
        "40",
        "--speed",
        "10",
        "--fail-at",
        "2",
        "--progress",
        "json",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen_while_running = false;
    let mut lines = Vec::new();
    for line in stderr.lines() {
        let line = line.unwrap();
        let event = herald_protocol::parse_event(&line).unwrap();
        if let EventBody::ItemFinished(f) = &event.body
            && f.status == StepOutcome::Failed
            && !seen_while_running
        {
            assert_eq!(f.item, "doc-002");
            assert!(f.error.as_deref().unwrap().contains("malformed JSON"));
            // The job is still going when its failure is already out.
            seen_while_running = child.try_wait().unwrap().is_none();
            assert!(seen_while_running, "the failure only showed at the end");
        }
        lines.push(event);
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "a failed job exits 1");
    assert!(seen_while_running);
    let state = fold(lines[0].run.clone(), &lines);
    assert_eq!(state.status, RunStatus::Failed);
    assert_eq!(state.items.failed, 1);
    assert!(state.last_error.unwrap().message.contains("doc-002"));
}

#[track_caller]
fn check_usage_error(args: &[&str], env: Option<(&str, &str)>, expected: &str) {
    let mut cmd = herald(args);
    if let Some((k, v)) = env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(
        stderr.contains(expected),
        "{args:?}: expected {expected:?} in {stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_arguments_get_a_clear_message_and_exit_code_2() {
    check_usage_error(&["demo", "--items", "0"], None, "--items");
    check_usage_error(&["demo", "--speed", "-1"], None, "--speed");
    check_usage_error(&["demo", "--speed", "fast"], None, "not a number");
    check_usage_error(
        &["demo", "--items", "3", "--fail-at", "5"],
        None,
        "--fail-at 5 is past the last document",
    );
    check_usage_error(&["demo"], Some(("HERALD_PROGRESS", "jsno")), "jsno");
    check_usage_error(&["demo", "--progress-fd", "x"], None, "--progress-fd");
    check_usage_error(
        &["demo", "--items", "1"],
        Some(("HERALD_PROGRESS_FILE", "/nonexistent/dir/p.jsonl")),
        "cannot open progress file",
    );
    check_usage_error(&["nonsense"], None, "unrecognized subcommand");
}

#[test]
fn progress_fd_writes_json_lines_to_an_inherited_descriptor() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fd3.jsonl");
    // The shell opens descriptor 3 on the file and hands it to herald.
    let script = format!(
        "exec 3>'{}'; exec '{}' demo --items 3 --speed 200 --progress none --progress-fd 3",
        file.display(),
        env!("CARGO_BIN_EXE_herald")
    );
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stderr.is_empty());
    let events = events(&std::fs::read(&file).unwrap());
    assert_eq!(events.first().unwrap().event_type(), "run.started");
    assert_eq!(events.last().unwrap().event_type(), "run.finished");

    let out = run(&["demo", "--items", "1", "--progress-fd", "97"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("file descriptor 97 is not open"),
        "{stderr}"
    );
}
