//! What a producer's text may do to the terminal of whoever looks at its run: nothing.
//! `herald ls`, `herald watch` (its bars on a real pseudo-terminal, and the last known
//! state it prints when it gives up) and error messages show control characters
//! escaped; `--json`, `herald events` and watch's JSON Lines keep the exact text.

use std::process::Command;

use herald_protocol::{EventBody, parse_event};
use serde_json::{Value, json};

use crate::hubs::{TestHub, TestRun, run_within, stderr_of, stdout_events};

/// A run name that would retitle the window, clear the screen, ring the bell and
/// reverse the text after it.
const NAME: &str = "evil\x1b]0;pwned\x07\x1b[2J\u{202e}gnp.exe";
/// The same name as the terminal shows it.
const NAME_SHOWN: &str = r"evil\x1b]0;pwned\x07\x1b[2J\u{202e}gnp.exe";

/// Characters that act on a terminal; none may reach one from a producer.
const ACTING: [char; 5] = ['\x07', '\u{9b}', '\u{85}', '\u{202e}', '\u{2066}'];
/// Where the producer's escape sequences start in the texts of [`hostile_run`]; herald's
/// own sequences (colors, cursor movement on a terminal) follow none of these.
const RAW: [&str; 8] = [
    "\x1b]",
    "evil\x1b",
    "it\x1b",
    "to\x1b",
    "looking\x1b",
    "note\x1b",
    "log\x1b",
    "end\x1b",
];

/// A run on `hub` whose every text is hostile, finished as failed.
fn hostile_run(hub: &TestHub) -> TestRun {
    let run = hub.create(json!({"name": NAME}));
    hub.append(
        &run,
        json!([
            {"event": "run.started", "name": NAME},
            {"event": "stage.started", "stage": "st\u{9b}2Jage", "total": 2},
            {"event": "item.started", "item": "it\x1b[1Aem", "stage": "st\u{9b}2Jage"},
            {"event": "item.finished", "item": "it\x1b[1Aem", "stage": "st\u{9b}2Jage",
             "status": "failed", "error": "over\rwrite\u{85}"},
            {"event": "tool.started", "call_id": "t1", "tool": "to\x1b[2Kol",
             "feedback": "\u{2066}looking\x1b[?25l"},
            {"event": "heartbeat", "elapsed_s": 1.0, "note": "note\x1b[H\x1b[2J"},
            {"event": "log", "level": "error", "message": "log\x1b]0;pwned\x07"},
        ]),
    );
    run
}

/// Asserts `text` holds nothing of the producer's that acts on a terminal.
#[track_caller]
fn assert_inert(what: &str, text: &str) {
    for c in ACTING {
        assert!(
            !text.contains(c),
            "{what}: {c:?} reached the terminal:\n{text:?}"
        );
    }
    for raw in RAW {
        assert!(
            !text.contains(raw),
            "{what}: {raw:?} reached the terminal:\n{text:?}"
        );
    }
}

#[test]
fn ls_shows_a_hostile_name_escaped_and_json_keeps_it_exact() {
    let hub = TestHub::start();
    let run = hostile_run(&hub);

    let out = run_within(hub.herald(&["ls"]));
    let table = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert_inert("ls", &table);
    assert!(!table.contains(['\x1b', '\r']), "{table:?}");
    let row = table.lines().nth(1).expect("a row");
    // The name column is cut to 32 columns, counted as shown.
    let cut: String = NAME_SHOWN.chars().take(31).collect();
    assert!(row.contains(&format!("{cut}…")), "{row}");
    assert_eq!(
        table.lines().count(),
        2,
        "the name broke the table:\n{table}"
    );

    let out = run_within(hub.herald(&["ls", "--json"]));
    let listing: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(listing["runs"][0]["id"], json!(run.id));
    assert_eq!(listing["runs"][0]["name"], json!(NAME));
}

#[test]
fn events_keep_hostile_text_exact() {
    let hub = TestHub::start();
    let run = hostile_run(&hub);
    let out = run_within(hub.herald(&["events", &run.id]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let events = stdout_events(&out);
    match &events[0].body {
        EventBody::RunStarted(started) => assert_eq!(started.name, NAME),
        other => panic!("not run.started: {other:?}"),
    }
    match &events[3].body {
        EventBody::ItemFinished(item) => {
            assert_eq!(item.item, "it\x1b[1Aem");
            assert_eq!(item.error.as_deref(), Some("over\rwrite\u{85}"));
        }
        other => panic!("not item.finished: {other:?}"),
    }
}

#[test]
fn watch_gives_up_with_the_last_state_escaped_and_its_json_lines_exact() {
    let hub = TestHub::start();
    let run = hostile_run(&hub);
    // stdout is a pipe: the events as JSON Lines; the last known state on stderr.
    let out = run_within(hub.herald(&["watch", &run.id, "--idle-timeout", "1s"]));
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert_inert("watch's stderr", &stderr);
    assert!(!stderr.contains(['\x1b', '\r']), "{stderr:?}");
    assert!(
        stderr.contains(&format!(
            "last known state: {NAME_SHOWN}  running  stage st\\u{{9b}}2Jage  1/2"
        )),
        "{stderr}"
    );
    assert!(stderr.contains(r"\u{2066}looking\x1b[?25l"), "{stderr}");
    let lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    let first = parse_event(lines[0]).unwrap();
    match first.body {
        EventBody::RunStarted(started) => assert_eq!(started.name, NAME),
        other => panic!("not run.started: {other:?}"),
    }
}

#[test]
fn watch_on_a_terminal_draws_hostile_text_escaped() {
    let hub = TestHub::start();
    let run = hostile_run(&hub);
    hub.append(
        &run,
        json!([{"event": "run.finished", "status": "failed", "error": "end\x1b]0;pwned\x07"}]),
    );
    // `script` (util-linux) runs watch on a pseudo-terminal and copies what it draws.
    let watch = format!(
        "{} watch {} --hub {}",
        env!("CARGO_BIN_EXE_herald"),
        run.id,
        hub.url
    );
    let mut command = Command::new("script");
    command.args(["-q", "-e", "-c", &watch, "/dev/null"]);
    for var in ["HERALD_URL", "HERALD_TOKEN", "HERALD_RUN", "NO_COLOR"] {
        command.env_remove(var);
    }
    let out = run_within(command);
    let screen = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "watch exits 1 for a failed run:\n{screen:?}"
    );
    // Carriage returns are herald's own here: the bars redraw in place.
    assert_inert("watch's bars", &screen);
    // The bars did draw, in color: what was kept out was the producer's, not herald's.
    assert!(screen.contains("\x1b[31m"), "{screen:?}");
    assert!(screen.contains(NAME_SHOWN), "{screen}");
    assert!(screen.contains(r"end\x1b]0;pwned\x07"), "{screen}");
    assert!(screen.contains(r"item it\x1b[1Aem"), "{screen}");
}

#[test]
fn an_error_that_quotes_text_shows_it_escaped() {
    let out = crate::util::run(&["emit", "--run", "r1", "ev\x1b]0;pwned\x07nt"]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains(['\x1b', '\x07']), "{stderr:?}");
    assert!(
        stderr.contains(r"unknown event type `ev\x1b]0;pwned\x07nt`"),
        "{stderr}"
    );
}
