//! The terminal sink through the public API, in a real process: bars forced with
//! `HERALD_PROGRESS=bars` onto a stderr that is a pipe. (The live screens themselves are
//! tested beside the code, against an in-memory terminal emulator.)

use std::process::Command;

use herald::Progress;
use herald::protocol::{EventBody, parse_event};

/// Set in the child process this test starts.
const CHILD: &str = "HERALD_TERMINAL_TEST_CHILD";
const NAME: &str = "terminal::forced_bars_on_a_pipe_are_plain_lines_without_escapes";

#[test]
fn forced_bars_on_a_pipe_are_plain_lines_without_escapes() {
    if std::env::var_os(CHILD).is_some() {
        report();
        return;
    }
    // Run this same test in a child whose stderr is a pipe, as `prog 2>log` would.
    let out = Command::new(std::env::current_exe().unwrap())
        .args([NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("HERALD_PROGRESS", "bars")
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "child failed:\n{stderr}");
    assert!(
        !stderr.contains('\x1b'),
        "escape codes on a pipe:\n{stderr:?}"
    );
    // Durations depend on the machine: compare everything else.
    let masked: Vec<String> = stderr.lines().map(mask_durations).collect();
    assert_eq!(
        masked,
        [
            "● pipeline started",
            "⚠ slow mirror, retrying",
            "✖ fetch: item 3 (c.txt) failed: 404 not found",
            "✔ fetch  5 done in <t> · 1 failed",
            "✔ pipeline succeeded in <t> · 4 items ok, 1 failed",
            "  ✔ fetch  5 done in <t> · 1 failed",
        ],
        "\n{stderr}"
    );
}

/// The child's work: a stage of five files, one of which fails.
fn report() {
    let progress = Progress::from_env().unwrap();
    let run = progress.run("pipeline");
    let fetch = run.stage("fetch").total(5);
    for (n, name) in (1..).zip(["a.txt", "b.txt", "c.txt", "d.txt", "e.txt"]) {
        let item = fetch.item_labeled(n.to_string(), Some(name));
        match name {
            "b.txt" => {
                run.warn("slow mirror, retrying");
                item.finish();
            }
            "c.txt" => item.fail("404 not found"),
            _ => item.finish(),
        }
    }
    fetch.finish();
    run.finish();
}

/// `line` with each duration (`0.0s`, `12s`, `1m05s`) replaced by `<t>`.
fn mask_durations(line: &str) -> String {
    line.split(' ')
        .map(|word| {
            let is_duration = word.ends_with('s')
                && word.len() > 1
                && word[..word.len() - 1]
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '.' || c == 'm' || c == 'h');
            if is_duration { "<t>" } else { word }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

const HOSTILE: &str = "terminal::hostile_names_reach_the_bars_escaped_and_json_lines_exact";
/// A run name that would retitle the window, clear the screen and reverse the text.
const EVIL_NAME: &str = "evil\x1b]0;pwned\x07\x1b[2J\u{202e}gnp.exe";
/// An error with a carriage return, a C1 CSI and a bell.
const EVIL_ERROR: &str = "over\rwrite\u{9b}2J\x07";

#[test]
fn hostile_names_reach_the_bars_escaped_and_json_lines_exact() {
    if std::env::var_os(CHILD).is_some() {
        let progress = Progress::from_env().unwrap();
        let run = progress.run(EVIL_NAME);
        let stage = run.stage("st\x1b[1Aage").total(1);
        stage.item("it\x1b[2Kem").fail(EVIL_ERROR);
        stage.finish();
        run.fail(EVIL_ERROR);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("progress.jsonl");
    let out = Command::new(std::env::current_exe().unwrap())
        .args([HOSTILE, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("HERALD_PROGRESS", "bars")
        .env("HERALD_PROGRESS_FILE", &file)
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "child failed:\n{stderr}");
    let bars: String = stderr
        .lines()
        .filter(|l| !l.starts_with("running ") && !l.starts_with("test "))
        .collect::<Vec<_>>()
        .join("\n");
    for c in ['\x1b', '\x07', '\r', '\u{9b}', '\u{202e}'] {
        assert!(!bars.contains(c), "{c:?} reached the terminal:\n{bars:?}");
    }
    assert!(
        bars.contains("● evil\\x1b]0;pwned\\x07\\x1b[2J\\u{202e}gnp.exe started"),
        "{bars}"
    );
    assert!(
        bars.contains("✖ st\\x1b[1Aage: item it\\x1b[2Kem failed: over\\rwrite\\u{9b}2J\\x07"),
        "{bars}"
    );
    // JSON Lines are for programs: the same text, exactly as reported.
    let lines = std::fs::read_to_string(&file).unwrap();
    let events: Vec<_> = lines.lines().map(|l| parse_event(l).unwrap()).collect();
    let name = events.iter().find_map(|e| match &e.body {
        EventBody::RunStarted(started) => Some(started.name.clone()),
        _ => None,
    });
    assert_eq!(name.as_deref(), Some(EVIL_NAME));
    let error = events.iter().find_map(|e| match &e.body {
        EventBody::RunFinished(finished) => finished.error.clone(),
        _ => None,
    });
    assert_eq!(error.as_deref(), Some(EVIL_ERROR));
}
